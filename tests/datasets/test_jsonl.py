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


def test_a_line_that_is_not_utf8_names_its_line_and_byte_offset(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_bytes(b'{"id": 1}\n{"id": "\xff"}\n{"id": 3}\n')
    with pytest.raises(DatasetError, match=r"rows.jsonl, line 2: not UTF-8 \(byte 0xff at byte offset 18 is not UTF-8"):
        JSONLinesDataset(filepath=str(path)).load()
    rows = JSONLinesDataset(filepath=str(path), on_bad_line="keep").load()
    assert rows[0] == {"id": 1} and rows[2] == {"id": 3}
    bad = rows[1]
    assert (bad.line, bad.kind, bad.offset, bad.text) == (2, "encoding", 18, '{"id": "\\xff"}')


def test_lazy_load_reads_lines_one_at_a_time_and_refuses_long_ones(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + b'{"id": 1}\r\n' + b'{"id": "' + b"x" * 500 + b'"}\n\n{"id": 4}')
    reader = JSONLinesDataset(filepath=str(path), on_bad_line="keep", lazy=True).load()
    assert [row for row in reader][0] == {"id": 1}, "a byte order mark and CRLF endings are read"
    numbered = list(reader.numbered(max_line_bytes=100))
    assert [number for number, _ in numbered] == [1, 2, 4], "line numbers count blank lines"
    long = numbered[1][1]
    assert isinstance(long, UnparsedLine) and long.kind == "too_long" and long.size == 510 and long.offset == 14
    assert len(long.text) < 210
    assert numbered[2][1] == {"id": 4}, "the line after a long one is read, and a last line without a newline"
    with pytest.raises(DatasetError, match="line 2: too long"):
        list(JSONLinesDataset(filepath=str(path), lazy=True).load().numbered(max_line_bytes=100))


def test_lazy_load_of_a_missing_file_fails_at_load(tmp_path):
    with pytest.raises(DatasetError, match="No such file"):
        JSONLinesDataset(filepath=str(tmp_path / "nowhere.jsonl"), lazy=True).load()


def test_lines_span_read_blocks(tmp_path, monkeypatch):
    from supertiny.datasets import jsonl

    monkeypatch.setattr(jsonl, "BLOCK_BYTES", 5)
    rows = [{"id": n, "text": "é" * n} for n in range(20)]
    dataset = JSONLinesDataset(filepath=str(tmp_path / "rows.jsonl"))
    dataset.save(rows)
    assert dataset.load() == rows
