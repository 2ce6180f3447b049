from __future__ import annotations

import pytest
from kedro.io import DatasetError
from kedro.io.core import Version

from supertiny.datasets import JSONLinesDataset, UnparsedLine


def test_round_trip_keeps_unicode_and_nesting(tmp_path):
    dataset = JSONLinesDataset(filepath=str(tmp_path / "sub" / "rows.jsonl"))
    rows = [{"id": "a", "text": "Grüße 👋", "calls": [{"name": "x", "arguments": {"n": 1.5}}]}, {"id": "b"}]
    dataset.save(rows)
    assert dataset.load() == rows
    assert "Grüße" in (tmp_path / "sub" / "rows.jsonl").read_text(encoding="utf-8")


def test_broken_line_raises_with_file_and_line_by_default(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text('{"id": 1}\n\n{"id": 2,\n')
    with pytest.raises(DatasetError, match=r"rows.jsonl, line 3: not valid JSON"):
        JSONLinesDataset(filepath=str(path)).load()


def test_broken_line_is_kept_as_unparsed_when_asked(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text('{"id": 1}\n{"id": 2,\n{"id": 3}\n')
    rows = JSONLinesDataset(filepath=str(path), on_bad_line="keep").load()
    assert rows[0] == {"id": 1} and rows[2] == {"id": 3}
    assert isinstance(rows[1], UnparsedLine)
    assert rows[1].line == 2 and rows[1].text == '{"id": 2,'


def test_unknown_on_bad_line_value_is_refused(tmp_path):
    with pytest.raises(DatasetError, match="on_bad_line"):
        JSONLinesDataset(filepath=str(tmp_path / "x.jsonl"), on_bad_line="ignore")


def test_versioned_saves_keep_every_version(tmp_path):
    path = str(tmp_path / "rows.jsonl")
    JSONLinesDataset(filepath=path, version=Version(None, "2026-01-01T00.00.00.000Z")).save([{"v": 1}])
    JSONLinesDataset(filepath=path, version=Version(None, "2026-01-02T00.00.00.000Z")).save([{"v": 2}])
    assert JSONLinesDataset(filepath=path, version=Version(None, None)).load() == [{"v": 2}]
    assert JSONLinesDataset(filepath=path, version=Version("2026-01-01T00.00.00.000Z", None)).load() == [{"v": 1}]


def test_preview_is_a_table_of_the_first_rows(tmp_path):
    dataset = JSONLinesDataset(filepath=str(tmp_path / "rows.jsonl"))
    dataset.save([{"id": n, "messages": [{"role": "user", "content": "hi"}]} for n in range(30)])
    preview = dataset.preview(nrows=5)
    assert preview["columns"] == ["id", "messages"]
    assert len(preview["data"]) == 5
