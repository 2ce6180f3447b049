"""Teacher pipeline."""

from supertiny.pipelines.teacher.pipeline import create_pipeline

__all__ = ["create_pipeline"]
