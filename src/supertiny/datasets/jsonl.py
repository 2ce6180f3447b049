"""JSON Lines: one record a line, the format of requests, candidates and rejections.

kedro-datasets has no JSON Lines dataset that survives a broken line (pandas' reader stops
at the first one), so this one reuses ``JSONDataset``'s filesystem and versioning handling
and only replaces reading and writing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from kedro.io.core import DatasetError, get_filepath_str
from kedro_datasets._typing import TablePreview
from kedro_datasets.json import JSONDataset


@dataclass(frozen=True)
class UnparsedLine:
    """A line that is not valid JSON, kept so that a node can reject it with its reason."""

    line: int
    text: str
    error: str


class JSONLinesDataset(JSONDataset):
    """Loads and saves a list of JSON records, one a line.

    ``on_bad_line``: ``raise`` (the default) stops with the file and line number;
    ``keep`` returns an :class:`UnparsedLine` in place of the record, so that a
    validating node can send it to a rejected dataset and the run goes on.
    """

    def __init__(self, *, on_bad_line: Literal["raise", "keep"] = "raise", **kwargs: Any) -> None:
        if on_bad_line not in ("raise", "keep"):
            raise DatasetError(f"on_bad_line must be 'raise' or 'keep', got {on_bad_line!r}")
        super().__init__(**kwargs)
        self._on_bad_line = on_bad_line

    def _describe(self) -> dict[str, Any]:
        return {"filepath": self._filepath, "protocol": self._protocol, "version": self._version, "on_bad_line": self._on_bad_line}

    def load(self) -> list[dict[str, Any] | UnparsedLine]:
        load_path = get_filepath_str(self._get_load_path(), self._protocol)
        records: list[dict[str, Any] | UnparsedLine] = []
        with self._fs.open(load_path, mode="r", encoding="utf-8") as handle:
            for number, text in enumerate(handle, start=1):
                if not text.strip():
                    continue
                try:
                    records.append(json.loads(text))
                except json.JSONDecodeError as error:
                    if self._on_bad_line == "raise":
                        raise DatasetError(f"{load_path}, line {number}: not valid JSON ({error})") from None
                    records.append(UnparsedLine(number, text.rstrip("\n"), str(error)))
        return records

    def save(self, data: list[dict[str, Any]]) -> None:
        save_path = get_filepath_str(self._get_save_path(), self._protocol)
        with self._fs.open(save_path, mode="w", encoding="utf-8") as handle:
            for record in data:
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._invalidate_cache()

    def preview(self, nrows: int = 20) -> TablePreview:
        """The first rows as a table, for kedro-viz."""
        load_path = get_filepath_str(self._get_load_path(), self._protocol)
        rows = []
        with self._fs.open(load_path, mode="r", encoding="utf-8") as handle:
            for text in handle:
                if len(rows) == nrows:
                    break
                if text.strip():
                    rows.append({key: json.dumps(value, ensure_ascii=False)[:200] for key, value in json.loads(text).items()})
        columns = sorted({key for row in rows for key in row})
        return TablePreview({"columns": columns, "index": list(range(len(rows))),
                             "data": [[row.get(column) for column in columns] for row in rows]})
