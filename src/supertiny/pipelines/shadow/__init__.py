"""Shadow pipeline: the teacher and the served model answer the same requests, side by side."""

from supertiny.pipelines.shadow.pipeline import create_pipeline

__all__ = ["create_pipeline"]
