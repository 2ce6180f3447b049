"""Catalog dataset types of supertiny (use them in catalog.yml as ``supertiny.datasets.<Name>``)."""

from supertiny.datasets.jsonl import JSONLinesDataset, JSONLinesReader, UnparsedLine
from supertiny.datasets.model import ModelBundle, ModelDataset, ModelDirectory, megabytes

__all__ = ["JSONLinesDataset", "JSONLinesReader", "ModelBundle", "ModelDataset", "ModelDirectory", "UnparsedLine", "megabytes"]
