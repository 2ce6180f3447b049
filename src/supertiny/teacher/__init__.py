"""The teacher: an LLM behind any OpenAI-compatible endpoint, driven as a function-call pipeline.

``label_requests`` is the entry point; the parts behind it are small: ``config`` (the
``teacher`` parameters), ``client`` (async OpenAI client, retries, accounting, probe),
``cache`` (responses on disk), ``server`` (the embedded ``transformers serve``),
``strategies`` (native / prompted / decomposed), ``fewshot`` (example retrieval) and
``judge`` (an LLM asked whether calls fulfil a request, through the same client).
"""

from typing import Any

__all__ = ["TeacherConfig", "label_requests"]


def __getattr__(name: str) -> Any:
    # Imported on first use, so that `python -m supertiny.teacher.cache` runs the cache module
    # once (an eager import here would load it before it runs as __main__).
    if name == "TeacherConfig":
        from supertiny.teacher.config import TeacherConfig

        return TeacherConfig
    if name == "label_requests":
        from supertiny.teacher.label import label_requests

        return label_requests
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
