"""Unlabelled test requests are scored against the teacher's greedy answer, and the table says so."""

from __future__ import annotations

import pytest

from supertiny.errors import ConfigError
from supertiny.pipelines.evaluation.nodes import (
    collect_stage_metrics,
    evaluate_always_no_call,
    reference_source,
    stage_table_markdown,
    summary_line,
    with_teacher_references,
)
from supertiny.pipelines.evaluation.pipeline import create_pipeline


@pytest.fixture
def requests(tool_catalog) -> list[dict]:
    lights = [{"name": "set_lights", "arguments": {"room": "kitchen", "on": True}}]
    return [
        {"id": "labelled", "messages": [{"role": "user", "content": "kitchen lights on"}], "tools": tool_catalog,
         "reference": lights, "meta": {}},
        {"id": "log-1", "messages": [{"role": "user", "content": "a timer for 5 minutes"}], "tools": tool_catalog,
         "reference": None, "meta": {}},
        {"id": "log-2", "messages": [{"role": "user", "content": "thanks"}], "tools": tool_catalog, "reference": None, "meta": {}},
        {"id": "log-3", "messages": [{"role": "user", "content": "bedroom lights"}], "tools": tool_catalog, "reference": None, "meta": {}},
    ]


def _teacher(request_id: str, calls: list[dict] | None, valid: bool) -> dict:
    return {"stage": "teacher", "request_id": request_id, "text": "", "calls": calls, "parse_error": None, "valid": valid,
            "exact": None, "similarity": None}


TEACHER = [
    _teacher("labelled", [], True),
    _teacher("log-1", [{"name": "start_timer", "arguments": {"minutes": 5}}], True),
    _teacher("log-2", [], True),
    _teacher("log-3", [{"name": "set_lights", "arguments": {"room": "garage"}}], False),
]


def test_unlabelled_requests_take_the_teachers_valid_answer(requests):
    scored = with_teacher_references(requests, TEACHER, {"unlabelled_reference": "teacher"})
    assert scored[0] == requests[0], "a labelled request keeps its own reference"
    assert scored[1]["reference"] == [{"name": "start_timer", "arguments": {"minutes": 5}}]
    assert scored[1]["meta"]["reference_source"] == "teacher"
    assert scored[2]["reference"] == [], "'no call' is an answer too"
    assert scored[3]["reference"] is None, "an invalid teacher answer is no reference"
    assert requests[1]["reference"] is None, "the input is not changed"
    assert reference_source(scored) == "labels+teacher"
    assert reference_source(scored[1:]) == "teacher" and reference_source(requests[:1]) == "labels"
    assert reference_source(requests[1:]) is None


def test_null_leaves_unlabelled_requests_unscored_and_other_values_are_refused(requests):
    assert with_teacher_references(requests, TEACHER, {"unlabelled_reference": None}) == requests
    with pytest.raises(ConfigError, match="evaluation.unlabelled_reference"):
        with_teacher_references(requests, TEACHER, {"unlabelled_reference": "judge"})


def test_the_table_says_what_the_scores_are_against(requests):
    scored = with_teacher_references(requests[1:], TEACHER, {"unlabelled_reference": "teacher"})
    row, predictions = evaluate_always_no_call(scored)
    assert row["reference"] == "teacher" and row["n"] == 3
    assert row["exact_match"] == 0.5, "[] is right where the teacher answered [] (log-2), wrong on log-1; log-3 unscored"
    teacher_row = {"stage": "teacher", "exact_match": None, "call_exact_match": None, "reference": reference_source(requests[1:])}
    table = stage_table_markdown(collect_stage_metrics(teacher_row, row))
    assert "| reference |" in table.splitlines()[0] and "| always_no_call |" in table and "| teacher |" in table
    assert "exact match None" not in summary_line(collect_stage_metrics(teacher_row, row))


def test_every_stage_is_scored_on_the_referenced_requests():
    nodes = {node.name: node for node in create_pipeline().nodes}
    assert nodes["evaluate_teacher"].inputs[0] == "sampled_test_requests"
    assert nodes["reference_unlabelled_requests"].outputs == ["evaluation_requests"]
    evaluated = [name for name in nodes if "evaluate" in name.split(".")[-1] and name != "evaluate_teacher"]
    assert {"base.evaluate", "student_sft.evaluate", "student_kd.evaluate", "evaluate_quantized", "evaluate_cascade"} <= set(evaluated)
    for name in evaluated:
        assert "evaluation_requests" in nodes[name].inputs, name
