"""JSON Lines: one record a line, the format of requests, candidates and rejections.

kedro-datasets has no JSON Lines dataset that survives a broken line (pandas' reader stops
at the first one), so this one reuses ``JSONDataset``'s filesystem and versioning handling
and only replaces reading and writing.

Lines are read as bytes and decoded one at a time, so that a byte that is not UTF-8 spoils
only its own line, and a reader can refuse a line longer than a limit without holding it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

from kedro.io.core import DatasetError, get_filepath_str
from kedro_datasets._typing import TablePreview
from kedro_datasets.json import JSONDataset

BLOCK_BYTES = 1 << 20  # how much of the file is read at a time
HEAD_BYTES = 200  # how much of a line too long to load is kept to show
UTF8_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True)
class UnparsedLine:
    """A line that could not be read as a record, kept so that a node can reject it with its
    reason. ``kind``: ``json`` (not valid JSON), ``encoding`` (not UTF-8) or ``too_long``
    (over the reader's ``max_line_bytes``: not loaded, ``text`` is its start). ``text`` shows
    bytes that are not UTF-8 as ``\\xff`` escapes; ``offset`` is the byte offset in the file of
    the line's start, or for ``encoding`` of the first bad byte; ``size`` the line's bytes."""

    line: int
    text: str
    error: str
    kind: Literal["json", "encoding", "too_long"] = "json"
    offset: int | None = None
    size: int | None = None


def _shown(data: bytes) -> str:
    """Bytes as text that is safe to print and to write as JSON: bad bytes as \\x escapes."""
    return data.decode("utf-8", errors="backslashreplace")


def _raw_lines(handle: Any, max_line_bytes: int | None) -> Iterator[tuple[int, int, bytes, int, bool]]:
    """``(line number, start offset, bytes, size, complete)`` for each line, its ending not
    counted; a line over ``max_line_bytes`` is not kept whole: its bytes are only its start and
    ``complete`` is False. Reads blocks, so memory stays bounded by the limit whatever the file."""
    number, offset, line, size = 0, 0, bytearray(), 0
    while True:
        block = handle.read(BLOCK_BYTES)
        start = 0
        while True:
            end = block.find(b"\n", start) if block else -1
            piece = block[start:] if end < 0 else block[start:end]
            size += len(piece)
            if max_line_bytes is None or size <= max_line_bytes + 1:  # + 1: a "\r" before the "\n"
                line += piece
            elif len(line) < HEAD_BYTES:
                line += piece[: HEAD_BYTES - len(line)]
            if end < 0:
                break
            yield from _finished(number := number + 1, offset, line, size, max_line_bytes)
            offset += size + 1
            line, size, start = bytearray(), 0, end + 1
        if not block:
            if size:
                yield from _finished(number + 1, offset, line, size, max_line_bytes)
            return


def _finished(number: int, offset: int, line: bytearray, size: int, max_line_bytes: int | None):
    if line.endswith(b"\r") and len(line) == size:
        line, size = line[:-1], size - 1
    complete = max_line_bytes is None or size <= max_line_bytes
    yield number, offset, bytes(line if complete else line[:HEAD_BYTES]), size, complete


class JSONLinesReader:
    """A JSON Lines file, read one line at a time when iterated (what ``lazy: true`` loads).

    ``numbered(max_line_bytes)`` yields ``(line number, record)``; a line that is not JSON or
    not UTF-8, or that is longer than ``max_line_bytes``, is an :class:`UnparsedLine` with
    ``on_bad_line: keep`` and a ``DatasetError`` naming the file and line with ``raise``.
    """

    def __init__(self, fs: Any, path: str, on_bad_line: Literal["raise", "keep"]) -> None:
        self.fs, self.path, self.on_bad_line = fs, path, on_bad_line

    def __iter__(self) -> Iterator[dict[str, Any] | UnparsedLine]:
        return (record for _, record in self.numbered())

    def numbered(self, max_line_bytes: int | None = None) -> Iterator[tuple[int, Any]]:
        with self.fs.open(self.path, mode="rb") as handle:
            for number, offset, data, size, complete in _raw_lines(handle, max_line_bytes):
                if number == 1 and data.startswith(UTF8_BOM):
                    data, offset = data[len(UTF8_BOM):], offset + len(UTF8_BOM)
                if not complete:
                    bad = UnparsedLine(number, _shown(data) + "…", f"{size:,} bytes, over the limit of {max_line_bytes:,}",
                                       "too_long", offset, size)
                elif not data.strip():
                    continue
                else:
                    try:
                        text = data.decode("utf-8")
                    except UnicodeDecodeError as error:
                        bad = UnparsedLine(
                            number, _shown(data),
                            f"byte 0x{data[error.start]:02x} at byte offset {offset + error.start:,} is not UTF-8 ({error.reason})",
                            "encoding", offset + error.start, size)
                    else:
                        try:
                            yield number, json.loads(text)
                            continue
                        except json.JSONDecodeError as error:
                            bad = UnparsedLine(number, text, str(error), "json", offset, size)
                if self.on_bad_line == "raise":
                    problem = "not valid JSON" if bad.kind == "json" else "not UTF-8" if bad.kind == "encoding" else "too long"
                    raise DatasetError(f"{self.path}, line {number}: {problem} ({bad.error})")
                yield number, bad


class JSONLinesDataset(JSONDataset):
    """Loads and saves a list of JSON records, one a line.

    ``on_bad_line``: ``raise`` (the default) stops with the file and line number;
    ``keep`` returns an :class:`UnparsedLine` in place of the record, so that a
    validating node can send it to a rejected dataset and the run goes on.
    ``lazy: true`` loads a :class:`JSONLinesReader` instead of the list: a node reads the
    records one at a time (a source of any size streams) and may give a line-size limit.
    """

    def __init__(self, *, on_bad_line: Literal["raise", "keep"] = "raise", lazy: bool = False, **kwargs: Any) -> None:
        if on_bad_line not in ("raise", "keep"):
            raise DatasetError(f"on_bad_line must be 'raise' or 'keep', got {on_bad_line!r}")
        super().__init__(**kwargs)
        self._on_bad_line = on_bad_line
        self._lazy = lazy

    def _describe(self) -> dict[str, Any]:
        return {"filepath": self._filepath, "protocol": self._protocol, "version": self._version,
                "on_bad_line": self._on_bad_line, "lazy": self._lazy}

    def load(self) -> list[dict[str, Any] | UnparsedLine] | JSONLinesReader:
        reader = JSONLinesReader(self._fs, get_filepath_str(self._get_load_path(), self._protocol), self._on_bad_line)
        if self._lazy:
            if not self._fs.exists(reader.path):  # fail at load, as an eager load does, not in the node
                raise DatasetError(f"No such file: {reader.path}")
            return reader
        return list(reader)

    def save(self, data: list[dict[str, Any]]) -> None:
        save_path = get_filepath_str(self._get_save_path(), self._protocol)
        with self._fs.open(save_path, mode="w", encoding="utf-8") as handle:
            for record in data:
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._invalidate_cache()

    def preview(self, nrows: int = 20) -> TablePreview:
        """The first rows as a table, for kedro-viz."""
        reader = JSONLinesReader(self._fs, get_filepath_str(self._get_load_path(), self._protocol), "keep")
        rows = []
        for record in reader:
            if len(rows) == nrows:
                break
            if isinstance(record, dict):
                rows.append({key: json.dumps(value, ensure_ascii=False)[:200] for key, value in record.items()})
        columns = sorted({key for row in rows for key in row})
        return TablePreview({"columns": columns, "index": list(range(len(rows))),
                             "data": [[row.get(column) for column in columns] for row in rows]})
