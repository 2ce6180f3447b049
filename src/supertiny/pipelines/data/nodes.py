"""Nodes of the data pipeline: any source's rows -> validated request records -> splits.

A request record (DESIGN.md) is ``{id, messages, tools, reference, meta}``: ``tools`` are full
OpenAI tool schemas, ``reference`` is a list of calls or None when unlabelled, and ``meta``
keeps the source's other columns (the demo data's ``template`` and ``intent``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
from collections import Counter, defaultdict
from typing import Any

import numpy as np

from supertiny.calls import check_tool_schema, parse_calls, validate_calls
from supertiny.datasets import UnparsedLine

log = logging.getLogger(__name__)

ROLES = {"system", "user", "assistant", "tool"}
RECORD_FIELDS = ("id", "messages", "query", "tools", "reference")


class RowError(ValueError):
    """A row that cannot become a request: which field, and why."""

    def __init__(self, field: str, reason: str):
        super().__init__(f"{field}: {reason}")
        self.field, self.reason = field, reason


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


def _source_rows(raw: Any, source_split: str | None) -> list[Any]:
    """Rows of a JSON Lines list, a pandas DataFrame or a Hugging Face (Dataset|DatasetDict)."""
    if isinstance(raw, list):
        return raw
    if hasattr(raw, "to_dict") and hasattr(raw, "columns"):  # pandas
        return [_plain(row) for row in raw.to_dict(orient="records")]
    if hasattr(raw, "keys") and hasattr(raw, "column_names"):  # datasets.DatasetDict
        splits = list(raw.keys())
        if source_split is None and len(splits) == 1:
            source_split = splits[0]
        if source_split not in raw:
            raise ValueError(f"raw_requests has splits {splits}: set data.source_split to one of them")
        raw = raw[source_split]
    if hasattr(raw, "to_list"):  # datasets.Dataset
        return [_plain(row) for row in raw.to_list()]
    raise TypeError(f"raw_requests loaded as {type(raw).__name__}; expected JSON Lines, a DataFrame or a datasets.Dataset")


def _decoded(value: Any, field: str) -> Any:
    """Columnar sources often store nested fields as JSON text."""
    if isinstance(value, str) and value.strip()[:1] in ("[", "{"):
        try:
            return json.loads(value)
        except json.JSONDecodeError as error:
            raise RowError(field, f"not valid JSON ({error})") from None
    return value


def _messages(row: dict[str, Any], fields: dict[str, str]) -> list[dict[str, str]]:
    messages = _decoded(row.get(fields["messages"]), "messages")
    if messages is None and row.get(fields["query"]) is not None:
        messages = [{"role": "user", "content": row[fields["query"]]}]
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


def _tools(value: Any, tool_catalog: dict[str, dict], default_tools: Any) -> list[dict]:
    value = _decoded(value, "tools")
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
        problems = check_tool_schema(tool)
        if problems:
            raise RowError("tools", "; ".join(problems))
        tools.append(tool)
    return tools


def _reference(value: Any, tools: list[dict]) -> list[dict] | None:
    value = _decoded(value, "reference")
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


def to_request(row: Any, tool_catalog: dict[str, dict], params: dict[str, Any]) -> dict[str, Any]:
    """One source row as a request record, or RowError naming the field at fault."""
    if isinstance(row, UnparsedLine):
        raise RowError("line", f"line {row.line} is not valid JSON ({row.error})")
    if not isinstance(row, dict):
        raise RowError("row", f"expected an object, got {type(row).__name__}")
    fields = {name: (params.get("fields") or {}).get(name, name) for name in RECORD_FIELDS}
    messages = _messages(row, fields)
    tools = _tools(row.get(fields["tools"]), tool_catalog, params.get("default_tools"))
    reference = _reference(row.get(fields["reference"]), tools)
    request_id = row.get(fields["id"])
    meta = {key: value for key, value in row.items() if key not in fields.values()}
    return {
        "id": str(request_id) if request_id not in (None, "") else _content_id(messages, tools),
        "messages": messages,
        "tools": tools,
        "reference": reference,
        "meta": meta,
    }


def validate_requests(
    raw_requests: Any, tool_catalog: list[dict], params: dict[str, Any]
) -> tuple[list[dict], list[dict]]:
    """Map every source row to a request record; bad rows and duplicates go to the rejected
    list with the row number, field and reason, and the run goes on."""
    catalog = {tool.get("function", {}).get("name"): tool for tool in tool_catalog or []}
    requests: list[dict] = []
    rejected: list[dict] = []
    seen_ids: dict[str, int] = {}
    seen_content: dict[str, str] = {}
    for number, row in enumerate(_source_rows(raw_requests, params.get("source_split")), start=1):
        try:
            request = to_request(row, catalog, params)
            if request["id"] in seen_ids:
                raise RowError("id", f"duplicate id {request['id']!r} (first at row {seen_ids[request['id']]})")
            content = _content_id(request["messages"], request["tools"])
            if content in seen_content:
                raise RowError("messages", f"duplicate of request {seen_content[content]!r}")
        except RowError as error:
            raw = row.text if isinstance(row, UnparsedLine) else json.dumps(row, ensure_ascii=False, default=str)
            row_id = row.get("id") if isinstance(row, dict) else None
            rejected.append({"row": number, "id": row_id, "field": error.field, "reason": error.reason, "raw": raw})
            continue
        seen_ids[request["id"]] = number
        seen_content[content] = request["id"]
        requests.append(request)
    if rejected:
        reasons = Counter(r["field"] for r in rejected)
        log.warning("Rejected %d of %d rows (by field: %s); see rejected_requests", len(rejected), number, dict(reasons))
    log.info("Validated %d requests", len(requests))
    return requests, rejected


def split_requests(requests: list[dict], split: dict[str, Any]) -> tuple[list[dict], list[dict], list[dict]]:
    """Train / validation / test by whole groups (the demo's phrasing templates), so that test
    phrasings never appear in training; each stratum (intent) gives groups to every split."""
    group_by, stratify_by = split.get("group_by"), split.get("stratify_by")
    val_fraction, test_fraction = split["val_fraction"], split["test_fraction"]
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ValueError(f"data.split fractions must be in [0, 1) and sum below 1; got val {val_fraction}, test {test_fraction}")
    strata: dict[str, set[str]] = defaultdict(set)
    group_of = {}
    for request in requests:
        group = str(request["meta"].get(group_by, request["id"])) if group_by else request["id"]
        stratum = str(request["meta"].get(stratify_by, "")) if stratify_by else ""
        group_of[request["id"]] = group
        strata[stratum].add(group)
    split_of_group: dict[str, str] = {}
    for stratum, groups in sorted(strata.items()):
        ordered = sorted(groups)
        random.Random(f"{split['seed']}:{stratum}").shuffle(ordered)
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
