"""The data pipeline's nodes: every bad row kind is rejected with its reason, the rest go on."""

from __future__ import annotations

import json

import pytest

from supertiny.datasets import UnparsedLine
from supertiny.pipelines.data.nodes import split_requests, summarise_data, validate_requests

PARAMS = {"fields": {}, "default_tools": None, "source_split": None}
SPLIT = {"group_by": "template", "stratify_by": "intent", "val_fraction": 0.34, "test_fraction": 0.34, "seed": 0}


def test_valid_rows_become_request_records(good_rows, tool_catalog):
    requests, rejected = validate_requests(good_rows, tool_catalog, PARAMS)
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
    requests, rejected = validate_requests(rows, tool_catalog, PARAMS)
    assert len(requests) == 11, "the other rows go on"
    assert len(rejected) == 1
    assert rejected[0]["row"] == 4
    assert rejected[0]["field"] == field
    assert reason_part in rejected[0]["reason"]
    assert rejected[0]["raw"], "the rejected row keeps its original content"


def test_invalid_tool_schema_is_reported_as_a_schema_problem(good_rows, tool_catalog):
    rows = list(good_rows)
    rows[0] = {**rows[0], "tools": [{"type": "function", "function": {"name": "bad", "parameters": {"type": "objekt"}}}], "reference": None}
    _, rejected = validate_requests(rows, tool_catalog, PARAMS)
    assert rejected[0]["field"] == "tools"
    assert "objekt" in rejected[0]["reason"]


def test_duplicates_are_removed_and_recorded(good_rows, tool_catalog):
    same_id = {**good_rows[1], "messages": [{"role": "user", "content": "something else"}]}
    same_content = {**good_rows[2], "id": "another-id"}
    requests, rejected = validate_requests(good_rows + [same_id, same_content], tool_catalog, PARAMS)
    assert len(requests) == 12
    assert [(r["row"], r["field"]) for r in rejected] == [(13, "id"), (14, "messages")]
    assert "first at row 2" in rejected[0]["reason"]
    assert "duplicate of request 'r2'" in rejected[1]["reason"]


def test_field_mapping_query_column_and_default_tools(tool_catalog):
    rows = [{"uid": 1, "text": "kitchen lights on", "label": json.dumps([{"name": "set_lights", "arguments": {"room": "kitchen", "on": True}}])},
            {"uid": 2, "text": "hello there", "label": None}]
    params = {"fields": {"id": "uid", "query": "text", "reference": "label"}, "default_tools": "all"}
    requests, rejected = validate_requests(rows, tool_catalog, params)
    assert rejected == []
    assert requests[0]["id"] == "1"
    assert requests[0]["messages"] == [{"role": "user", "content": "kitchen lights on"}]
    assert len(requests[0]["tools"]) == 2
    assert requests[0]["reference"][0]["arguments"] == {"room": "kitchen", "on": True}
    assert requests[1]["reference"] is None, "a row without a label is an unlabelled request, not an error"


def test_missing_tools_without_default_is_rejected(tool_catalog):
    _, rejected = validate_requests([{"id": "a", "query": "hi"}], tool_catalog, PARAMS)
    assert rejected[0]["field"] == "tools"
    assert "default_tools" in rejected[0]["reason"]


def test_split_keeps_templates_whole_and_every_intent_in_every_split(good_rows, tool_catalog):
    requests, _ = validate_requests(good_rows, tool_catalog, PARAMS)
    train, val, test = split_requests(requests, SPLIT)
    assert len(train) + len(val) + len(test) == len(requests)
    templates = [{r["meta"]["template"] for r in part} for part in (train, val, test)]
    assert not (templates[0] & templates[1] or templates[0] & templates[2] or templates[1] & templates[2])
    for part in (train, val, test):
        assert {r["meta"]["intent"] for r in part} == {"set_lights", "start_timer", "no_call", "parallel"}


def test_split_is_deterministic_and_changes_with_the_seed(good_rows, tool_catalog):
    requests, _ = validate_requests(good_rows * 1, tool_catalog, PARAMS)
    ids = lambda parts: [[r["id"] for r in part] for part in parts]  # noqa: E731
    assert ids(split_requests(requests, SPLIT)) == ids(split_requests(requests, SPLIT))
    seeds = {json.dumps(ids(split_requests(requests, {**SPLIT, "seed": seed}))) for seed in range(6)}
    assert len(seeds) > 1


def test_split_rejects_fractions_out_of_range(good_rows, tool_catalog):
    requests, _ = validate_requests(good_rows, tool_catalog, PARAMS)
    with pytest.raises(ValueError, match="data.split fractions"):
        split_requests(requests, {**SPLIT, "test_fraction": 0.7, "val_fraction": 0.5})


def test_summary_counts_kinds_and_splits(good_rows, tool_catalog):
    requests, _ = validate_requests(good_rows, tool_catalog, PARAMS)
    train, val, test = split_requests(requests, SPLIT)
    report = summarise_data(train, val, test, [{"field": "line"}], tool_catalog)
    assert report["requests"] == 12
    assert report["answer_kinds"] == {"single": 6, "no_call": 3, "parallel": 3}
    assert report["share_no_call"] == 0.25
    assert report["rejected_by_field"] == {"line": 1}
    assert report["splits"] == {"train": len(train), "val": len(val), "test": len(test)}
