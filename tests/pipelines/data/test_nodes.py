"""The data pipeline's nodes: every bad row kind is rejected with its reason, the rest go on."""

from __future__ import annotations

import json

import pytest

from supertiny.datasets import UnparsedLine
from supertiny.errors import ConfigError, DataError
from supertiny.pipelines.data.nodes import check_rejections, split_requests, summarise_data, validate_requests

PARAMS = {"fields": {}, "default_tools": None, "source_split": None}
SPLIT = {"group_by": "template", "stratify_by": "intent", "val_fraction": 0.34, "test_fraction": 0.34, "seed": 0}


def test_valid_rows_become_request_records(good_rows, tool_catalog):
    requests, rejected, _ = validate_requests(good_rows, tool_catalog, PARAMS)
    assert rejected == []
    assert len(requests) == 12
    first = requests[0]
    assert first["id"] == "r0"
    assert [tool["function"]["name"] for tool in first["tools"]] == ["set_lights", "start_timer"]
    assert first["tools"][0]["function"]["parameters"]["required"] == ["room", "on"]
    assert first["reference"] == [{"name": "set_lights", "arguments": {"room": "kitchen", "on": True}}]
    assert first["meta"] == {"template": "set_lights/0", "intent": "set_lights"}


@pytest.mark.parametrize(
    ("mutate", "field", "reason_part"),
    [
        (lambda row: UnparsedLine(7, '{"id": "x", ', "Expecting value"), "line", "line 7 is not valid JSON"),
        (lambda row: {**row, "messages": [{"role": "robot", "content": "hi"}]}, "messages", "unknown role 'robot'"),
        (lambda row: {**row, "messages": []}, "messages", "missing or empty"),
        (lambda row: {**row, "messages": [{"role": "system", "content": "be nice"}]}, "messages", "no non-empty user message"),
        (lambda row: {**row, "tools": ["set_lights", "fly_to_moon"]}, "tools", "unknown tool 'fly_to_moon'"),
        (
            lambda row: {**row, "tools": [{"type": "function", "function": {"name": "bad", "parameters": {"type": "objekt"}}}]},
            "tools",
            "bad",
        ),
        (
            lambda row: {**row, "reference": [{"name": "start_engine", "arguments": {}}]},
            "reference",
            "start_engine",
        ),
        (
            lambda row: {**row, "reference": [{"name": "set_lights", "arguments": {"room": "garage", "on": True}}]},
            "reference",
            "garage",
        ),
        (lambda row: {**row, "reference": "[{not json"}, "reference", "not valid JSON"),
        (lambda row: ["not", "an", "object"], "row", "expected an object"),
    ],
)
def test_bad_rows_are_rejected_with_field_and_reason(good_rows, tool_catalog, mutate, field, reason_part):
    rows = list(good_rows)
    rows[3] = mutate(rows[3])
    requests, rejected, _ = validate_requests(rows, tool_catalog, PARAMS)
    assert len(requests) == 11, "the other rows go on"
    assert len(rejected) == 1
    assert rejected[0]["row"] == 4
    assert rejected[0]["field"] == field
    assert reason_part in rejected[0]["reason"]
    assert rejected[0]["raw"], "the rejected row keeps its original content"


def test_invalid_tool_schema_is_reported_as_a_schema_problem(good_rows, tool_catalog):
    rows = list(good_rows)
    rows[0] = {**rows[0], "tools": [{"type": "function", "function": {"name": "bad", "parameters": {"type": "objekt"}}}], "reference": None}
    _, rejected, _ = validate_requests(rows, tool_catalog, PARAMS)
    assert rejected[0]["field"] == "tools"
    assert "objekt" in rejected[0]["reason"]


def test_duplicates_are_removed_and_recorded(good_rows, tool_catalog):
    same_id = {**good_rows[1], "messages": [{"role": "user", "content": "something else"}]}
    same_content = {**good_rows[2], "id": "another-id"}
    requests, rejected, _ = validate_requests(good_rows + [same_id, same_content], tool_catalog, PARAMS)
    assert len(requests) == 12
    assert [(r["row"], r["field"]) for r in rejected] == [(13, "id"), (14, "messages")]
    assert "first at row 2" in rejected[0]["reason"]
    assert "duplicate of request 'r2'" in rejected[1]["reason"]


def test_field_mapping_query_column_and_default_tools(tool_catalog):
    rows = [{"uid": 1, "text": "kitchen lights on", "label": json.dumps([{"name": "set_lights", "arguments": {"room": "kitchen", "on": True}}])},
            {"uid": 2, "text": "hello there", "label": None}]
    params = {"fields": {"id": "uid", "query": "text", "reference": "label"}, "default_tools": "all"}
    requests, rejected, _ = validate_requests(rows, tool_catalog, params)
    assert rejected == []
    assert requests[0]["id"] == "1"
    assert requests[0]["messages"] == [{"role": "user", "content": "kitchen lights on"}]
    assert len(requests[0]["tools"]) == 2
    assert requests[0]["reference"][0]["arguments"] == {"room": "kitchen", "on": True}
    assert requests[1]["reference"] is None, "a row without a label is an unlabelled request, not an error"


def test_missing_tools_without_default_is_rejected(tool_catalog):
    _, rejected, _ = validate_requests([{"id": "a", "query": "hi"}], tool_catalog, PARAMS)
    assert rejected[0]["field"] == "tools"
    assert "default_tools" in rejected[0]["reason"]


def test_split_keeps_templates_whole_and_every_intent_in_every_split(good_rows, tool_catalog):
    requests, _, _ = validate_requests(good_rows, tool_catalog, PARAMS)
    train, val, test = split_requests(requests, SPLIT)
    assert len(train) + len(val) + len(test) == len(requests)
    templates = [{r["meta"]["template"] for r in part} for part in (train, val, test)]
    assert not (templates[0] & templates[1] or templates[0] & templates[2] or templates[1] & templates[2])
    for part in (train, val, test):
        assert {r["meta"]["intent"] for r in part} == {"set_lights", "start_timer", "no_call", "parallel"}


def test_split_is_deterministic_and_changes_with_the_seed(good_rows, tool_catalog):
    requests, _, _ = validate_requests(good_rows * 1, tool_catalog, PARAMS)
    ids = lambda parts: [[r["id"] for r in part] for part in parts]  # noqa: E731
    assert ids(split_requests(requests, SPLIT)) == ids(split_requests(requests, SPLIT))
    seeds = {json.dumps(ids(split_requests(requests, {**SPLIT, "seed": seed}))) for seed in range(6)}
    assert len(seeds) > 1


def test_split_rejects_fractions_out_of_range(good_rows, tool_catalog):
    requests, _, _ = validate_requests(good_rows, tool_catalog, PARAMS)
    with pytest.raises(ConfigError, match=r"data.split: val_fraction \+ test_fraction must be below 1 \(the rest trains\); got 0.5 \+ 0.7"):
        split_requests(requests, {**SPLIT, "test_fraction": 0.7, "val_fraction": 0.5})
    with pytest.raises(ConfigError, match=r"data.split.test_fraction must be less than 1; got 1.2"):
        split_requests(requests, {**SPLIT, "test_fraction": 1.2, "val_fraction": 0})


def test_summary_counts_kinds_and_splits(good_rows, tool_catalog):
    requests, _, _ = validate_requests(good_rows, tool_catalog, PARAMS)
    train, val, test = split_requests(requests, SPLIT)
    report = summarise_data(train, val, test, [{"field": "line"}], tool_catalog)
    assert report["requests"] == 12
    assert report["answer_kinds"] == {"single": 6, "no_call": 3, "parallel": 3}
    assert report["share_no_call"] == 0.25
    assert report["rejected_by_field"] == {"line": 1}
    assert report["splits"] == {"train": len(train), "val": len(val), "test": len(test)}


def _jsonl_source(path, data: bytes):
    from kedro.io import DataCatalog

    path.write_bytes(data)
    entry = {"type": "supertiny.datasets.JSONLinesDataset", "filepath": str(path), "on_bad_line": "keep", "lazy": True}
    return DataCatalog.from_config({"raw_requests": entry}).load("raw_requests")


def _lines(rows: list[dict]) -> list[bytes]:
    return [json.dumps(row).encode() + b"\n" for row in rows]


def test_a_line_that_is_not_utf8_is_rejected_with_its_line_and_byte_offset(tmp_path, good_rows, tool_catalog):
    lines = _lines(good_rows)
    bad = b'{"id": "latin1", "messages": [{"role": "user", "content": "caf\xe9 \xff"}]}\n'
    offset_of_bad_byte = sum(map(len, lines[:5])) + bad.index(b"\xe9")
    raw = _jsonl_source(tmp_path / "requests.jsonl", b"".join(lines[:5]) + bad + b"".join(lines[5:]))
    requests, rejected, _ = validate_requests(raw, tool_catalog, PARAMS)
    assert len(requests) == 12, "only the bad line is lost"
    [row] = rejected
    assert (row["row"], row["field"]) == (6, "line")
    assert "line 6 is not UTF-8" in row["reason"] and f"byte offset {offset_of_bad_byte:,}" in row["reason"] and "0xe9" in row["reason"]
    assert "caf\\xe9 \\xff" in row["raw"], "the raw bytes are shown as escapes"
    json.dumps(rejected, ensure_ascii=False).encode("utf-8")  # and the rejected row can be written


def test_a_line_over_max_line_bytes_is_rejected_unread(tmp_path, good_rows, tool_catalog):
    lines = _lines(good_rows)
    huge = json.dumps({**good_rows[0], "id": "huge", "messages": [{"role": "user", "content": "x" * 5000}]}).encode() + b"\n"
    raw = _jsonl_source(tmp_path / "requests.jsonl", b"".join(lines[:2]) + huge + b"".join(lines[2:]))
    requests, rejected, _ = validate_requests(raw, tool_catalog, {**PARAMS, "max_line_bytes": 1000})
    assert len(requests) == 12
    [row] = rejected
    assert row["row"] == 3 and row["field"] == "line"
    assert f"{len(huge) - 1:,} bytes, over data.max_line_bytes (1,000)" in row["reason"]
    assert len(row["raw"]) < 300, "only the start of the line is kept"


def test_rejected_rows_name_the_format(good_rows, tool_catalog):
    rows = [*good_rows[:3], {"id": "x"}]
    _, rejected, source = validate_requests(rows, tool_catalog, PARAMS)
    assert rejected[0]["format"] == "canonical" and rejected[0]["field"] == "messages"
    assert source["rows"] == 4 and "template" in source["columns"]


def test_an_empty_source_stops_with_one_line(tmp_path, tool_catalog):
    raw = _jsonl_source(tmp_path / "empty.jsonl", b"\n\n")
    with pytest.raises(DataError, match="raw_requests has no rows"):
        validate_requests(raw, tool_catalog, PARAMS)


def _renamed(rows: list[dict]) -> list[dict]:
    """The rows under column names that data.fields does not map."""
    return [{"uid": row["id"], "prompt": row["messages"][0]["content"], "label": row["reference"], "tools": row["tools"]} for row in rows]


def test_a_source_that_does_not_match_its_fields_stops_in_the_data_step(tmp_path, good_rows, tool_catalog):
    """Every row would be rejected as "messages: missing or empty"; the run stops there, after
    rejected_requests is written, naming the source's columns and the mapping used."""
    from kedro.io import DataCatalog, MemoryDataset
    from kedro.runner import SequentialRunner

    from supertiny.datasets import JSONLinesDataset
    from supertiny.pipelines.data.pipeline import create_pipeline

    params = {**PARAMS, "split": SPLIT}
    rejected_path = tmp_path / "rejected_requests.jsonl"
    catalog = DataCatalog({
        "raw_requests": MemoryDataset(_renamed(good_rows)),
        "tool_catalog": MemoryDataset(tool_catalog),
        "params:data": MemoryDataset(params),
        "params:data.split": MemoryDataset(SPLIT),
        "rejected_requests": JSONLinesDataset(filepath=str(rejected_path)),
        "train_requests": JSONLinesDataset(filepath=str(tmp_path / "train.jsonl")),
    })
    with pytest.raises(DataError) as stopped:
        SequentialRunner().run(create_pipeline(), catalog)
    message = str(stopped.value)
    assert "12 of 12 rows rejected" in message and "none left" in message
    assert "['label', 'prompt', 'tools', 'uid']" in message, "the columns the source has"
    assert '"messages": "messages"' in message and "data.format canonical" in message, "the mapping that was used"
    assert "\n" not in message
    assert len(rejected_path.read_text().splitlines()) == 12, "the rejected rows are written before the stop"
    assert not (tmp_path / "train.jsonl").exists(), "nothing after the data step's check ran"


def test_more_than_max_rejected_share_stops_and_less_goes_on(good_rows, tool_catalog):
    rows = good_rows[:4] + _renamed(good_rows[4:])  # 8 of 12 unreadable
    requests, rejected, source = validate_requests(rows, tool_catalog, PARAMS)
    with pytest.raises(DataError, match=r"8 of 12 rows rejected \(67%, more than data.max_rejected_share 0.5\)"):
        check_rejections(requests, rejected, source, PARAMS)
    assert check_rejections(requests, rejected, source, {**PARAMS, "max_rejected_share": 0.7}) == requests


def test_a_source_in_another_format_names_the_columns_it_reads(good_rows, tool_catalog):
    params = {**PARAMS, "format": "xlam"}
    requests, rejected, source = validate_requests(good_rows, tool_catalog, params)
    with pytest.raises(DataError, match=r"data.format xlam, which reads \['query', 'tools', 'answers'\]"):
        check_rejections(requests, rejected, source, params)


@pytest.mark.parametrize(
    ("setting", "value"),
    [("format", "csv_chat"), ("max_rejected_share", 1.5), ("max_line_bytes", 0), ("fields", {"text": "prompt"})],
)
def test_bad_data_settings_are_named(good_rows, tool_catalog, setting, value):
    with pytest.raises(ConfigError, match=f"data.{setting}"):
        validate_requests(good_rows, tool_catalog, {**PARAMS, setting: value})


def test_the_same_tool_schema_in_many_rows_is_checked_once_and_shared(good_rows, tool_catalog):
    rows = [{**row, "tools": json.loads(json.dumps(tool_catalog))} for row in good_rows]  # every row its own copy
    requests, rejected, _ = validate_requests(rows, [], PARAMS)
    assert rejected == []
    assert requests[0]["tools"] == tool_catalog
    assert all(request["tools"][0] is requests[0]["tools"][0] for request in requests), "one schema object, not one a row"
    bad = {"type": "function", "function": {"name": "bad", "parameters": {"type": "objekt"}}}
    _, rejected, _ = validate_requests([{**row, "tools": [dict(bad)], "reference": None} for row in good_rows[:3]], [], PARAMS)
    assert [row["field"] for row in rejected] == ["tools"] * 3, "a bad schema seen before is still rejected"


def test_a_template_added_to_the_source_moves_no_template_of_another_stratum_and_at_most_one_at_each_boundary():
    """Groups are placed by their own names (a hash), not by a shuffle of the whole list."""
    def rows(templates):
        return [{"id": f"{t}-{n}", "meta": {"template": t, "intent": t.split("/")[0]}} for t in templates for n in range(2)]

    def split_of(requests):
        parts = split_requests(requests, {**SPLIT, "val_fraction": 0.1, "test_fraction": 0.2})  # the default's shares
        return {r["meta"]["template"]: name for name, part in zip(("train", "val", "test"), parts) for r in part}

    before = [f"{intent}/{n:02d}" for intent in ("lights", "timer", "music") for n in range(1, 11)]
    was = split_of(rows(before))
    moved_counts = set()
    for added in ("lights/11", "lights/12", "lights/13"):
        now = split_of(rows([*before, added]))
        assert {t: s for t, s in now.items() if not t.startswith("lights")} == {t: s for t, s in was.items() if not t.startswith("lights")}
        moved = [t for t in before if t.startswith("lights") and now[t] != was[t]]
        moved_counts.add(len(moved))
        assert len(moved) <= 2, moved  # 10 or 11 groups: 2 test, 1 val either way, so one over each boundary at most
    assert 0 in moved_counts, "where the counts stay, adding a template moves nothing"
