"""Nodes of the data pipeline: any source's rows -> validated request records -> splits.

A request record (DESIGN.md) is ``{id, messages, tools, reference, meta}``: ``tools`` are full
OpenAI tool schemas, ``reference`` is a list of calls or None when unlabelled, and ``meta``
keeps the source's other columns (the demo data's ``template`` and ``intent``). ``data.format``
picks the reader of a source row (``supertiny.formats``); every format is validated the same way.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter, defaultdict
from collections.abc import Iterator
from typing import Any

import numpy as np

from supertiny.calls import check_tool_schema, parse_calls, validate_calls
from supertiny.datasets import JSONLinesReader, UnparsedLine
from supertiny.errors import ConfigError, DataError
from supertiny.formats import FORMAT_COLUMNS, READERS, RECORD_FIELDS, RowError
from supertiny.parameters import check_section

log = logging.getLogger(__name__)

ROLES = {"system", "user", "assistant", "tool"}


def _plain(value: Any) -> Any:
    """Parquet and Hugging Face sources hand back numpy arrays and scalars; make plain Python."""
    if isinstance(value, np.ndarray):
        return [_plain(item) for item in value.tolist()]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, float) and value != value:  # NaN is how pandas says "missing"
        return None
    return value


def source_settings(params: dict[str, Any]) -> dict[str, Any]:
    """``data.format``, ``data.fields``, ``data.max_line_bytes`` and ``data.max_rejected_share``, checked."""
    check_section("data", params)  # keys, types, ranges, a known format: the parameters model's
    fields = params.get("fields") or {}
    return {
        "format": params.get("format") or "canonical",
        "fields": {name: fields.get(name) or name for name in RECORD_FIELDS},
        "max_line_bytes": params.get("max_line_bytes"),
        "max_rejected_share": params.get("max_rejected_share", 0.5),
    }


def check_params(params: dict[str, Any]) -> None:
    """The data settings, checked before a run starts (``supertiny.hooks``): the model's checks,
    and what the split's two fractions must be together."""
    source_settings(params)
    split = params.get("split") or {}
    if split.get("val_fraction", 0) + split.get("test_fraction", 0) >= 1:
        raise ConfigError(f"data.split: val_fraction + test_fraction must be below 1 (the rest trains); "
                          f"got {split.get('val_fraction')} + {split.get('test_fraction')}")


def _source_rows(raw: Any, source_split: str | None, max_line_bytes: int | None) -> Iterator[tuple[int, Any]]:
    """``(row number, row)`` of a JSON Lines source (lazy: the line number; a list: its
    position), a pandas DataFrame or a Hugging Face (Dataset|DatasetDict), one at a time."""
    if isinstance(raw, JSONLinesReader):
        return raw.numbered(max_line_bytes)
    if isinstance(raw, list):
        return enumerate(raw, start=1)
    if hasattr(raw, "to_dict") and hasattr(raw, "columns"):  # pandas
        return enumerate((_plain(row) for row in raw.to_dict(orient="records")), start=1)
    if hasattr(raw, "keys") and hasattr(raw, "column_names"):  # datasets.DatasetDict
        splits = list(raw.keys())
        if source_split is None and len(splits) == 1:
            source_split = splits[0]
        if source_split not in raw:
            raise ConfigError(f"raw_requests has splits {splits}: set data.source_split to one of them")
        raw = raw[source_split]
    if hasattr(raw, "column_names") and hasattr(raw, "__iter__"):  # datasets.Dataset: rows off its Arrow table
        return enumerate((_plain(row) for row in raw), start=1)
    raise TypeError(f"raw_requests loaded as {type(raw).__name__}; expected JSON Lines, a DataFrame or a datasets.Dataset")


def _messages(messages: Any) -> list[dict[str, str]]:
    if not isinstance(messages, list) or not messages:
        raise RowError("messages", "missing or empty (expected a list of {role, content})")
    for position, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("content"), str):
            raise RowError("messages", f"message {position} is not {{role, content: str}}")
        if message.get("role") not in ROLES:
            raise RowError("messages", f"message {position} has unknown role {message.get('role')!r} (expected one of {sorted(ROLES)})")
    if not any(m["role"] == "user" and m["content"].strip() for m in messages):
        raise RowError("messages", "no non-empty user message")
    return [{"role": m["role"], "content": m["content"]} for m in messages]


def _tools(value: Any, tool_catalog: dict[str, dict], default_tools: Any, checked: dict[str, tuple[dict, list[str]]]) -> list[dict]:
    """The row's tools as schemas. ``checked`` holds every schema seen so far by its JSON text:
    rows of a log repeat the same tools, which are checked once and then shared, not copied."""
    if value is None:
        value = default_tools
    if value == "all":
        value = sorted(tool_catalog)
    if not isinstance(value, list):
        raise RowError("tools", "missing (set data.default_tools for sources without a tools column)")
    tools = []
    for entry in value:
        if isinstance(entry, str):
            if entry not in tool_catalog:
                raise RowError("tools", f"unknown tool {entry!r} (not in tool_catalog)")
            tool = tool_catalog[entry]
        elif isinstance(entry, dict):
            tool = entry
        else:
            raise RowError("tools", f"entry {entry!r} is neither a tool name nor a tool schema")
        key = entry if isinstance(entry, str) else json.dumps(tool, sort_keys=True, default=str)  # a name, or an object's text
        if key not in checked:
            checked[key] = (tool, check_tool_schema(tool))
        tool, problems = checked[key]
        if problems:
            raise RowError("tools", "; ".join(problems))
        tools.append(tool)
    return tools


def _reference(value: Any, tools: list[dict]) -> list[dict] | None:
    if value is None:
        return None
    parsed = parse_calls(json.dumps(value))
    if not parsed.ok:
        raise RowError("reference", parsed.error)
    problems = validate_calls(parsed.calls, tools)
    if problems:
        raise RowError("reference", "; ".join(problems))
    return parsed.calls


def _content_id(messages: list[dict], tools: list[dict]) -> str:
    names = sorted(tool["function"]["name"] for tool in tools)
    return hashlib.sha1(json.dumps([messages, names], sort_keys=True).encode()).hexdigest()[:16]


def _unparsed(line: UnparsedLine, max_line_bytes: int | None) -> RowError:
    if line.kind == "encoding":
        return RowError("line", f"line {line.line} is not UTF-8: {line.error}")
    if line.kind == "too_long":
        return RowError("line", f"line {line.line} is {line.size:,} bytes, over data.max_line_bytes ({max_line_bytes:,}): not loaded")
    return RowError("line", f"line {line.line} is not valid JSON ({line.error})")


def to_request(
    row: Any, tool_catalog: dict[str, dict], settings: dict[str, Any], default_tools: Any, checked_tools: dict | None = None
) -> dict[str, Any]:
    """One source row as a request record (``settings``: :func:`source_settings`), or RowError
    naming the field at fault. ``checked_tools``: the tool schemas checked so far (see ``_tools``)."""
    if isinstance(row, UnparsedLine):
        raise _unparsed(row, settings["max_line_bytes"])
    if not isinstance(row, dict):
        raise RowError("row", f"expected an object, got {type(row).__name__}")
    parts = READERS[settings["format"]](row, settings["fields"])
    messages = _messages(parts["messages"])
    tools = _tools(parts["tools"], tool_catalog, default_tools, {} if checked_tools is None else checked_tools)
    reference = _reference(parts["reference"], tools)
    request_id = parts["id"]
    return {
        "id": str(request_id) if request_id not in (None, "") else _content_id(messages, tools),
        "messages": messages,
        "tools": tools,
        "reference": reference,
        "meta": parts["meta"],
    }


def validate_requests(
    raw_requests: Any, tool_catalog: list[dict], params: dict[str, Any]
) -> tuple[list[dict], list[dict], dict[str, Any]]:
    """Map every source row to a request record; bad rows and duplicates go to the rejected
    list with the row number, format, field and reason, and the run goes on. Also returns what
    the source looked like (rows, columns, how they were read), for :func:`check_rejections`.
    An empty source stops here: there is nothing to reject."""
    settings = source_settings(params)
    catalog = {tool.get("function", {}).get("name"): tool for tool in tool_catalog or []}
    requests: list[dict] = []
    rejected: list[dict] = []
    columns: Counter[str] = Counter()
    seen_ids: dict[str, int] = {}
    seen_content: dict[str, str] = {}
    checked_tools: dict[str, tuple[dict, list[str]]] = {}
    rows = 0
    for number, row in _source_rows(raw_requests, params.get("source_split"), settings["max_line_bytes"]):
        rows += 1
        if isinstance(row, dict):
            columns.update(row.keys())
        try:
            request = to_request(row, catalog, settings, params.get("default_tools"), checked_tools)
            if request["id"] in seen_ids:
                raise RowError("id", f"duplicate id {request['id']!r} (first at row {seen_ids[request['id']]})")
            content = _content_id(request["messages"], request["tools"])
            if content in seen_content:
                raise RowError("messages", f"duplicate of request {seen_content[content]!r}")
        except RowError as error:
            raw = row.text if isinstance(row, UnparsedLine) else json.dumps(row, ensure_ascii=False, default=str)
            row_id = row.get(settings["fields"]["id"]) if isinstance(row, dict) else None
            rejected.append({"row": number, "id": row_id, "format": settings["format"], "field": error.field,
                             "reason": error.reason, "raw": raw})
            continue
        seen_ids[request["id"]] = number
        seen_content[content] = request["id"]
        requests.append(request)
    if not rows:
        raise DataError("raw_requests has no rows: the source is empty (check its path in the catalog)")
    if rejected:
        log.warning("Rejected %d of %d rows (by field: %s); see rejected_requests", len(rejected), rows,
                    dict(Counter(r["field"] for r in rejected)))
    log.info("Validated %d requests (data.format %s)", len(requests), settings["format"])
    source = {"rows": rows, "columns": sorted(columns), "format": settings["format"], "fields": settings["fields"]}
    return requests, rejected, source


def check_rejections(
    requests: list[dict], rejected_requests: list[dict], source: dict[str, Any], params: dict[str, Any]
) -> list[dict]:
    """The requests, when the source was mostly readable. Stops the run (after
    ``rejected_requests`` is written) when none is left or more than
    ``data.max_rejected_share`` of the rows were rejected: a source that does not match its
    settings is named here, not steps later as a filter that kept nothing."""
    settings = source_settings(params)
    share = len(rejected_requests) / source["rows"]
    if requests and share <= settings["max_rejected_share"]:
        return requests
    by_field = dict(Counter(row["field"] for row in rejected_requests).most_common())
    first = rejected_requests[0]
    if source["format"] == "canonical":
        read = f"data.format canonical with data.fields {json.dumps(source['fields'])}"
    else:
        read = f"data.format {source['format']}, which reads {FORMAT_COLUMNS[source['format']]}"
    raise DataError(
        f"raw_requests: {len(rejected_requests)} of {source['rows']} rows rejected ({share:.0%}"
        + (f", more than data.max_rejected_share {settings['max_rejected_share']}" if requests else ", none left")
        + f"), by field {by_field}; row {first['row']}: {first['field']}: {first['reason']}. "
        f"The source's columns are {source['columns']}, read as {read}: set data.format or map the columns with "
        "data.fields. Every rejected row and its reason is in rejected_requests."
    )


def split_requests(requests: list[dict], split: dict[str, Any]) -> tuple[list[dict], list[dict], list[dict]]:
    """Train / validation / test by whole groups (the demo's phrasing templates), so that test
    phrasings never appear in training; each stratum (intent) gives groups to every split."""
    group_by, stratify_by = split.get("group_by"), split.get("stratify_by")
    check_params({"split": split})
    val_fraction, test_fraction = split["val_fraction"], split["test_fraction"]
    strata: dict[str, set[str]] = defaultdict(set)
    group_of = {}
    for request in requests:
        group = str(request["meta"].get(group_by, request["id"])) if group_by else request["id"]
        stratum = str(request["meta"].get(stratify_by, "")) if stratify_by else ""
        group_of[request["id"]] = group
        strata[stratum].add(group)
    split_of_group: dict[str, str] = {}
    for stratum, groups in sorted(strata.items()):
        ordered = sorted(groups, key=lambda group: _rank(split["seed"], stratum, group))
        n_test = round(len(ordered) * test_fraction)
        n_val = round(len(ordered) * val_fraction)
        if len(ordered) >= 3:  # a stratum with enough groups appears in every split
            n_test = max(n_test, 1 if test_fraction > 0 else 0)
            n_val = max(n_val, 1 if val_fraction > 0 else 0)
        for position, group in enumerate(ordered):
            split_of_group[group] = "test" if position < n_test else "val" if position < n_test + n_val else "train"
    parts: dict[str, list[dict]] = {"train": [], "val": [], "test": []}
    for request in requests:
        parts[split_of_group[group_of[request["id"]]]].append(request)
    log.info("Split: %s", {name: len(rows) for name, rows in parts.items()})
    return parts["train"], parts["val"], parts["test"]


def _rank(seed: Any, stratum: str, group: str) -> str:
    """A group's place in its stratum's order, from its own name: a group added to the source
    takes its place without reordering the others (a shuffle of the whole list would), so at
    most the groups at a split's boundary move over, and only where the counts call for it."""
    return hashlib.sha256(f"{seed}:{stratum}:{group}".encode()).hexdigest()


def _answer_kind(request: dict) -> str:
    reference = request["reference"]
    return "unlabelled" if reference is None else "no_call" if not reference else "single" if len(reference) == 1 else "parallel"


def summarise_data(
    train: list[dict], val: list[dict], test: list[dict], rejected: list[dict], tool_catalog: list[dict]
) -> dict[str, Any]:
    """What the data pipeline produced, for the report and the logs."""
    everything = train + val + test
    kinds = Counter(_answer_kind(r) for r in everything)
    functions = Counter(call["name"] for r in everything for call in (r["reference"] or []))
    return {
        "functions_in_catalog": len(tool_catalog or []),
        "functions_referenced": len(functions),
        "requests": len(everything),
        "rejected": len(rejected),
        "rejected_by_field": dict(Counter(r["field"] for r in rejected)),
        "answer_kinds": dict(kinds),
        "share_parallel": round(kinds["parallel"] / max(len(everything), 1), 4),
        "share_no_call": round(kinds["no_call"] / max(len(everything), 1), 4),
        "splits": {"train": len(train), "val": len(val), "test": len(test)},
        "calls_per_function": dict(sorted(functions.items())),
    }
