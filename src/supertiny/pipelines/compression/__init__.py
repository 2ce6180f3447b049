"""Compression pipeline."""

from supertiny.pipelines.compression.pipeline import create_pipeline

__all__ = ["create_pipeline"]
