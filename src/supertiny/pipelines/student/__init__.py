"""Student pipeline."""

from supertiny.pipelines.student.pipeline import create_pipeline

__all__ = ["create_pipeline"]
