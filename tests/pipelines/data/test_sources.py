"""Swapping the request source is a catalog entry: JSON Lines, Parquet and a local Hugging Face
dataset all give the same requests through the same node."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from kedro.io import DataCatalog

from supertiny.pipelines.data.nodes import validate_requests

PARAMS = {"fields": {}, "default_tools": None, "source_split": None}


def _requests_from(catalog_entry: dict, tool_catalog: list[dict]) -> list[dict]:
    catalog = DataCatalog.from_config({"raw_requests": catalog_entry})
    requests, rejected, _ = validate_requests(catalog.load("raw_requests"), tool_catalog, PARAMS)
    assert rejected == []
    return requests


def _columnar(rows: list[dict]) -> list[dict]:
    """Columnar formats keep heterogeneous nested fields as JSON text."""
    return [{**row, "reference": json.dumps(row["reference"])} for row in rows]


def test_jsonl_parquet_and_huggingface_sources_give_the_same_requests(tmp_path, good_rows, tool_catalog):
    jsonl = tmp_path / "requests.jsonl"
    jsonl.write_text("".join(json.dumps(row) + "\n" for row in good_rows))
    parquet = tmp_path / "requests.parquet"
    pd.DataFrame(_columnar(good_rows)).to_parquet(parquet)
    datasets = pytest.importorskip("datasets")
    hf_dir = tmp_path / "hf_requests"
    datasets.Dataset.from_list(_columnar(good_rows)).save_to_disk(str(hf_dir))

    from_jsonl = _requests_from({"type": "supertiny.datasets.JSONLinesDataset", "filepath": str(jsonl)}, tool_catalog)
    from_parquet = _requests_from({"type": "pandas.ParquetDataset", "filepath": str(parquet)}, tool_catalog)
    from_hf = _requests_from({"type": "huggingface.ArrowDataset", "path": str(hf_dir)}, tool_catalog)

    assert len(from_jsonl) == 12
    assert from_parquet == from_jsonl
    assert from_hf == from_jsonl


def test_huggingface_datasetdict_needs_the_split_named(tmp_path, good_rows, tool_catalog):
    datasets = pytest.importorskip("datasets")
    hf_dir = tmp_path / "hf_dict"
    rows = _columnar(good_rows)
    datasets.DatasetDict({"train": datasets.Dataset.from_list(rows[:6]), "test": datasets.Dataset.from_list(rows[6:])}).save_to_disk(str(hf_dir))
    raw = DataCatalog.from_config({"raw": {"type": "huggingface.ArrowDataset", "path": str(hf_dir)}}).load("raw")
    with pytest.raises(ValueError, match="set data.source_split"):
        validate_requests(raw, tool_catalog, PARAMS)
    requests, _, _ = validate_requests(raw, tool_catalog, {**PARAMS, "source_split": "test"})
    assert [r["id"] for r in requests] == [f"r{n}" for n in range(6, 12)]
