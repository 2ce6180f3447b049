"""Rejection sampling: each verifier accepts and rejects, selection, dedup, caps, the report."""

from __future__ import annotations

import json

import pytest

from supertiny.errors import ConfigError, SupertinyError
from supertiny.pipelines.filtering.nodes import check_params, plot_filter_report
from supertiny.pipelines.filtering.pipeline import run_filtering
from supertiny.pipelines.filtering.verifiers import (
    Item,
    parse_item,
    verify_consistency,
    verify_format,
    verify_reference,
    verify_schema,
)

PARAMS = {
    "verifiers": ["format", "schema", "reference", "consistency"],
    "reference": {"min_similarity": None},
    "consistency": {"min_share": 0.5},
    "selection": "first",
    "max_per_function": None,
    "seed": 0,
}
KITCHEN_ON = [{"name": "set_lights", "arguments": {"room": "kitchen", "on": True}}]
BEDROOM_ON = [{"name": "set_lights", "arguments": {"room": "bedroom", "on": True}}]


@pytest.fixture
def request_of(tool_catalog):
    def build(request_id: str, reference=KITCHEN_ON, text: str | None = None) -> dict:
        return {"id": request_id, "messages": [{"role": "user", "content": text or f"lights please ({request_id})"}],
                "tools": tool_catalog, "reference": reference, "meta": {}}
    return build


def candidate(request_id: str, sample: int, calls=None, text: str | None = None, **extra) -> dict:
    return {"request_id": request_id, "sample": sample, "text": text if text is not None else json.dumps(calls),
            "calls": calls, "parse_error": None, **extra}


def items_for(request: dict, candidates: list[dict]) -> list[Item]:
    return [parse_item(request, c, len(candidates)) for c in candidates]


# ---- each verifier --------------------------------------------------------------------------

def test_format_accepts_parsed_calls_and_text_and_rejects_the_rest(request_of):
    request = request_of("a")
    items = items_for(request, [
        candidate("a", 0, KITCHEN_ON),
        {"request_id": "a", "sample": 1, "text": "Sure! ```json\n" + json.dumps(KITCHEN_ON) + "\n```"},  # hand-made: text only
        candidate("a", 2, None, text="I think the lights should go on", parse_error="no JSON found"),
        candidate("a", 3, None, text=None, error="HTTP 500 after 4 retries", error_kind="server_error"),
    ])
    verdicts = verify_format(items, {})
    assert [v.passed for v in verdicts] == [True, True, False, False]
    assert items[1].calls == KITCHEN_ON
    assert verdicts[2].reason == "no JSON found"
    assert "teacher request failed (server_error)" in verdicts[3].reason


def test_schema_rejects_unknown_functions_and_bad_values(request_of):
    request = request_of("a")
    items = items_for(request, [candidate("a", 0, KITCHEN_ON), candidate("a", 1, [{"name": "open_garage", "arguments": {}}]),
                                candidate("a", 2, [{"name": "set_lights", "arguments": {"room": "garage", "on": True}}])])
    verdicts = verify_schema(items, {})
    assert [v.passed for v in verdicts] == [True, False, False]
    assert "open_garage" in verdicts[1].reason and "garage" in verdicts[2].reason


def test_reference_exact_or_by_similarity_and_not_applicable_without_one(request_of):
    labelled, unlabelled = request_of("a"), request_of("b", reference=None)
    items = [Item(labelled, candidate("a", 0), 2, KITCHEN_ON), Item(labelled, candidate("a", 1), 2, BEDROOM_ON),
             Item(unlabelled, candidate("b", 0), 1, BEDROOM_ON)]
    assert [v.passed for v in verify_reference(items, {})] == [True, False, None]
    lenient = verify_reference(items, {"min_similarity": 0.5})
    assert [v.passed for v in lenient] == [True, True, None], "one wrong enum of two arguments still scores above 0.5"
    strict = verify_reference(items, {"min_similarity": 0.95})
    assert strict[1].passed is False and "< 0.95" in strict[1].reason


def test_consistency_accepts_the_majority_of_unlabelled_samples(request_of):
    request = request_of("u", reference=None)
    items = [Item(request, candidate("u", n), 4, calls) for n, calls in enumerate([KITCHEN_ON, KITCHEN_ON, BEDROOM_ON, KITCHEN_ON])]
    verdicts = verify_consistency(items, {"min_share": 0.5})
    assert [v.passed for v in verdicts] == [True, True, False, True]
    assert "3/4" in verdicts[0].reason


def test_consistency_rejects_ties_and_small_majorities_and_skips_labelled(request_of):
    unlabelled, labelled = request_of("u", reference=None), request_of("l")
    tie = [Item(unlabelled, candidate("u", n), 4, calls) for n, calls in enumerate([KITCHEN_ON, KITCHEN_ON, BEDROOM_ON, BEDROOM_ON])]
    assert all(v.passed is False and "no majority" in v.reason for v in verify_consistency(tie, {"min_share": 0.5}))
    # Two of five samples agree, three failed to parse: most common, but only 40% of the samples.
    weak = [Item(unlabelled, candidate("u", n), 5, KITCHEN_ON) for n in range(2)]
    assert all(v.passed is False and "0.40 < 0.5" in v.reason for v in verify_consistency(weak, {"min_share": 0.5}))
    assert [v.passed for v in verify_consistency([Item(labelled, candidate("l", 0), 1, KITCHEN_ON)], {"min_share": 0.5})] == [None]


# ---- the whole filter -------------------------------------------------------------------------

def test_filter_keeps_one_verified_answer_per_request_and_records_every_rejection(request_of):
    requests = [request_of("a"), request_of("b", reference=[]), request_of("c"), request_of("u", reference=None)]
    candidates = [
        candidate("a", 0, BEDROOM_ON), candidate("a", 1, KITCHEN_ON), candidate("a", 2, KITCHEN_ON),
        candidate("b", 0, []), candidate("b", 1, KITCHEN_ON),
        candidate("c", 0, None, text="no idea", parse_error="no JSON found"), candidate("c", 1, [{"name": "x", "arguments": {}}]),
        candidate("u", 0, BEDROOM_ON), candidate("u", 1, BEDROOM_ON), candidate("u", 2, KITCHEN_ON),
    ]
    examples, rejections, report, summary = run_filtering(candidates, requests, [], PARAMS)
    assert [(e["id"], e["sample"], e["calls"]) for e in examples] == [("a", 1, KITCHEN_ON), ("b", 0, []), ("u", 0, BEDROOM_ON)]
    assert examples[1]["calls"] == [], "a no-call answer is a real example"
    assert examples[0]["verifiers_passed"] == ["format", "schema", "reference"]
    assert examples[2]["verifiers_passed"] == ["format", "schema", "consistency"]
    steps = sorted((r["request_id"], r["sample"], r["step"]) for r in rejections)
    assert steps == [("a", 0, "reference"), ("a", 2, "selection"), ("b", 1, "reference"), ("c", 0, "format"),
                     ("c", 1, "schema"), ("u", 1, "selection"), ("u", 2, "consistency")]
    assert len(examples) + len(rejections) == len(candidates), "nothing is lost"
    assert summary["requests_without_accepted_answer"] == 1
    assert summary["acceptance_rate"] == round(5 / 10, 4)
    verifier_rows = report[report.group == "verifier"].set_index("name")
    assert verifier_rows.loc["format", "candidates"] == 10 and verifier_rows.loc["format", "accepted"] == 9
    assert verifier_rows.loc["reference", "candidates"] == 5 and verifier_rows.loc["reference", "not_applicable"] == 3
    functions = report[report.group == "function"].set_index("name")
    assert functions.loc["(no call)", "accepted"] == 1 and functions.loc["(no call)", "candidates"] == 2


def test_selection_majority_and_all_distinct(request_of):
    requests = [request_of("u", reference=None)]
    candidates = [candidate("u", 0, BEDROOM_ON), candidate("u", 1, KITCHEN_ON), candidate("u", 2, KITCHEN_ON)]
    params = {**PARAMS, "verifiers": ["format", "schema"]}
    first, *_ = run_filtering(candidates, requests, [], {**params, "selection": "first"})
    majority, *_ = run_filtering(candidates, requests, [], {**params, "selection": "majority"})
    distinct, *_ = run_filtering(candidates, requests, [], {**params, "selection": "all_distinct"})
    assert [e["calls"] for e in first] == [BEDROOM_ON]
    assert [e["calls"] for e in majority] == [KITCHEN_ON]
    assert sorted(e["sample"] for e in distinct) == [0, 1]


def test_duplicates_across_requests_are_dropped_and_functions_capped(request_of, tool_catalog):
    timer = [{"name": "start_timer", "arguments": {"minutes": 5}}]
    requests = [request_of("a", text="Lights ON"), request_of("b", text="lights   on"), request_of("c"), request_of("d"),
                request_of("t", reference=timer)]
    candidates = [candidate(r, 0, KITCHEN_ON) for r in "abcd"] + [candidate("t", 0, timer)]
    examples, rejections, _, _ = run_filtering(candidates, requests, [], {**PARAMS, "max_per_function": 2})
    assert [r["step"] for r in rejections].count("dedup") == 1
    assert [r["step"] for r in rejections].count("cap") == 1
    assert sorted(e["calls"][0]["name"] for e in examples) == ["set_lights", "set_lights", "start_timer"]


def test_unknown_request_ids_and_test_requests_stop_the_run(request_of):
    with pytest.raises(SupertinyError, match=r"1 request ids are not among the requests .*'ghost'"):
        run_filtering([candidate("ghost", 0, [])], [request_of("a")], [], PARAMS)
    with pytest.raises(SupertinyError, match="test requests are never used for training"):
        run_filtering([candidate("t1", 0, [])], [request_of("t1")], [request_of("t1")], PARAMS)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"verifiers": ["format", "spellcheck"]}, "filtering.verifiers[1] must be one of 'format', 'schema', 'reference', 'consistency' or 'judge'; got 'spellcheck'"),
        ({"verifiers": ["format", "format"]}, "listed twice"),
        ({"verifiers": ["schema"]}, "filtering.verifiers must start with format: the others check the calls it parses"),
        ({"verifiers": ["reference", "format"]}, "filtering.verifiers must start with format"),
        ({"selection": "best"}, "filtering.selection"),
        ({"reference": {"min_similarity": 1.5}}, "filtering.reference.min_similarity"),
        ({"consistency": {"min_share": 0}}, "filtering.consistency.min_share"),
        ({"max_per_function": 0}, "filtering.max_per_function"),
    ],
)
def test_bad_settings_are_refused_by_name(change, message):
    with pytest.raises(ConfigError) as error:
        check_params({**PARAMS, **change})
    assert message in str(error.value)


def test_consistency_precision_on_labelled_requests_is_measured(request_of):
    requests = [request_of("a"), request_of("b")]
    candidates = [candidate("a", n, KITCHEN_ON) for n in range(3)] + [candidate("b", n, KITCHEN_ON) for n in range(2)] + [candidate("b", 2, BEDROOM_ON)]
    requests[1]["reference"] = BEDROOM_ON  # b's majority (kitchen) is wrong
    _, _, _, summary = run_filtering(candidates, requests, [], PARAMS)
    assert summary["consistency_alone_on_labelled"] == {"parsed_candidates": 6, "accepted": 5, "exactly_right": 3, "precision": 0.6}


def test_report_plot_has_a_bar_per_verifier_and_function(request_of):
    _, _, report, _ = run_filtering([candidate("a", 0, KITCHEN_ON)], [request_of("a")], [], PARAMS)
    figure = plot_filter_report(report)
    names = {name for trace in figure.data for name in trace.x}
    assert {"format", "schema", "reference", "consistency", "set_lights"} <= names


def test_fill_from_references_keeps_the_reference_of_labelled_requests_the_teacher_missed(request_of):
    answered, missed, unlabelled = request_of("a"), request_of("b", reference=BEDROOM_ON), request_of("c", reference=None)
    requests = [answered, missed, unlabelled]
    candidates = [candidate("a", 0, KITCHEN_ON), candidate("b", 0, KITCHEN_ON), candidate("c", 0, None, text="no idea")]

    examples, _, _, summary = run_filtering(candidates, requests, [], PARAMS)
    assert [e["id"] for e in examples] == ["a"] and summary["examples_from_references"] == 0

    examples, rejections, _, summary = run_filtering(candidates, requests, [], {**PARAMS, "fill_from_references": True})
    by_id = {e["id"]: e for e in examples}
    assert sorted(by_id) == ["a", "b"]  # the unlabelled request has nothing to fall back on
    assert by_id["b"]["calls"] == BEDROOM_ON and by_id["b"]["verifiers_passed"] == ["reference_label"]
    assert by_id["a"]["verifiers_passed"] == ["format", "schema", "reference"]
    assert summary["examples_from_references"] == 1
    # The teacher's wrong answer is still reported as rejected.
    assert any(r["request_id"] == "b" and r["step"] == "reference" for r in rejections)


def test_a_verifier_that_applies_to_nothing_has_a_null_rate_in_the_json_summary(request_of):
    candidates = [candidate("a", 0, KITCHEN_ON)]
    _, _, _, summary = run_filtering(candidates, [request_of("a")], [], PARAMS)
    assert summary["by_verifier"]["consistency"] is None  # every request is labelled
    assert "NaN" not in json.dumps(summary)


# ---- a teacher that never calls ----------------------------------------------------------------

NO_CALL_CHECK = {**PARAMS, "no_call_margin": 0.25, "max_no_call_share": 0.9}


def test_an_all_no_call_teacher_stops_filtering_and_names_the_setting(request_of):
    # 30 requests, 24 of which need a call; the teacher answered [] to every sample (tools ignored).
    requests = [request_of(f"r{i}", KITCHEN_ON if i % 5 else []) for i in range(30)]
    candidates = [candidate(f"r{i}", sample, []) for i in range(30) for sample in range(2)]
    with pytest.raises(SupertinyError, match=r"100% of the teacher's answers are 'no call' \(60 of 60\), against 20% of the 30 "
                                             r"labelled requests.*filtering.max_no_call_share \(0.9\)"):
        run_filtering(candidates, requests, [], NO_CALL_CHECK)


def test_a_no_call_share_far_above_the_labels_but_below_the_maximum_warns(request_of, caplog):
    requests = [request_of(f"r{i}", KITCHEN_ON if i % 5 else []) for i in range(30)]
    candidates = [candidate(f"r{i}", 0, [] if i % 3 else KITCHEN_ON) for i in range(30)]  # two thirds []
    with caplog.at_level("WARNING", logger="supertiny"):
        _, _, _, summary = run_filtering(candidates, requests, [], NO_CALL_CHECK)
    assert any("67% of the teacher's answers are 'no call'" in r.getMessage() for r in caplog.records)
    assert summary["no_call"] == {"answers": 30, "no_call_answers": 20, "share": 0.6667, "share_low": pytest.approx(0.488, abs=1e-3),
                                  "labelled_requests": 30, "labelled_share": 0.2}


def test_a_source_that_mostly_needs_no_call_is_not_flagged(request_of, caplog):
    requests = [request_of(f"r{i}", [] if i % 10 else KITCHEN_ON) for i in range(40)]  # 90% need none
    candidates = [candidate(f"r{i}", 0, []) for i in range(40)]
    with caplog.at_level("WARNING", logger="supertiny"):
        run_filtering(candidates, requests, [], NO_CALL_CHECK)
    assert not any("'no call'" in r.getMessage() for r in caplog.records)


def test_a_few_no_call_answers_are_not_enough_to_stop(request_of, caplog):
    # Two answers, both []: far above the labels, but the share's interval reaches well below 0.9.
    requests = [request_of("a"), request_of("b")]
    with caplog.at_level("WARNING", logger="supertiny"):
        run_filtering([candidate("a", 0, []), candidate("b", 0, [])], requests, [], NO_CALL_CHECK)
    assert any("100% of the teacher's answers are 'no call' (2 of 2)" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("key", ["max_no_call_share", "no_call_margin"])
def test_no_call_settings_are_checked(key):
    with pytest.raises(ConfigError, match=f"filtering.{key} must be at most 1; got 1.5"):
        check_params({**PARAMS, key: 1.5})


def test_the_pipeline_runs_each_step_as_its_own_node_for_train_and_val_labels():
    from supertiny.pipelines.filtering.pipeline import create_pipeline

    filtering = create_pipeline()
    steps = ["parse", "verify", "select", "dedup", "cap", "report"]
    names = {node.name for node in filtering.nodes}
    assert {f"filter_train.{step}" for step in steps} <= names and {f"filter_val.{step}" for step in steps} <= names
    produced = {"distill_train", "filter_rejections", "filter_report", "filter_summary", "distill_val",
                "val_filter_rejections", "val_filter_report", "val_filter_summary"}
    assert produced <= filtering.all_outputs()
    assert {"teacher_candidates", "teacher_requests", "val_teacher_candidates", "val_requests", "test_requests",
            "params:filtering", "params:teacher"} <= filtering.inputs()
    # Each step hands the next its own output: the train and val steps never share an intermediate.
    intermediates = filtering.all_outputs() - produced - {"filter_report_plot", "distill_train_openai"}
    assert intermediates and all(name.startswith(("filter_train.", "filter_val.")) for name in intermediates), sorted(intermediates)
