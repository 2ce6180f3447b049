"""Filtering pipeline."""

from supertiny.pipelines.filtering.pipeline import create_pipeline

__all__ = ["create_pipeline"]
