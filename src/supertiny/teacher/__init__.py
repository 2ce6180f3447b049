"""The teacher: an LLM behind any OpenAI-compatible endpoint, driven as a function-call pipeline.

``label_requests`` is the entry point; the parts behind it are small: ``config`` (the
``teacher`` parameters), ``client`` (async OpenAI client, retries, accounting, probe),
``cache`` (responses on disk), ``server`` (the embedded ``transformers serve``),
``strategies`` (native / prompted / decomposed) and ``fewshot`` (example retrieval).
"""

from supertiny.teacher.config import TeacherConfig
from supertiny.teacher.label import label_requests

__all__ = ["TeacherConfig", "label_requests"]
