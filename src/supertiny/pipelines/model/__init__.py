"""Model pipeline."""

from supertiny.pipelines.model.pipeline import create_pipeline

__all__ = ["create_pipeline"]
