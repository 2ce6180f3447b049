"""The cascade: the threshold swept on validation answers sends the least confident ones to the
teacher, stops at the cheapest point that reaches the teacher, and the test row follows that rule."""

from __future__ import annotations

import pytest

from supertiny.decoding import Decoded
from supertiny.errors import ConfigError
from supertiny.pipelines.evaluation.cascade import (
    cascade_curve,
    evaluate_cascade,
    fallback_settings,
    plot_cascade_curve,
    plot_reliability,
)

RIGHT = [{"name": "set_lights", "arguments": {"room": "kitchen", "on": True}}]
WRONG = [{"name": "start_timer", "arguments": {"minutes": 5}}]
AUTO = {"fallback": {"threshold": "auto", "signal": "auto"}}
FINAL_ROW = {"stage": "quantized_inc_dynamic_int8", "p50_ms": 100.0, "cost_per_1k_requests": 0.01, "device": "cpu"}
TEACHER_ROW = {"stage": "teacher", "p50_ms": 1000.0, "cost_per_1k_requests": 0.1}


def _final(request_id: str, exact: bool, low: float, mean: float) -> dict:
    return {"stage": "quantized", "request_id": request_id, "text": "", "exact": exact, "confidence_min": low,
            "confidence_mean": mean, "answer_ms": 100.0}


@pytest.fixture
def make_request(tool_catalog):
    def request(number: int, reference: list[dict]) -> dict:
        return {"id": f"r{number}", "messages": [{"role": "user", "content": f"request {number}"}], "tools": tool_catalog,
                "reference": reference, "meta": {}}
    return request


def _teacher(request_id: str, exact: bool) -> dict:
    return {"stage": "teacher", "request_id": request_id, "text": "", "exact": exact}


@pytest.fixture
def validation():
    """Ten requests: the final model is wrong on the three it is least sure of by `min` (the
    teacher is right there), and `mean` ranks them no better than chance; the teacher is right on 7."""
    final = [_final(f"v{i}", exact=i >= 3, low=0.1 * (i + 1), mean=0.5 + 0.01 * ((i * 7) % 10)) for i in range(10)]
    teacher = [_teacher(f"v{i}", exact=i < 7) for i in range(10)]
    return final, teacher


def test_the_sweep_routes_the_least_confident_and_stops_where_the_teacher_is_reached(validation):
    final, teacher = validation
    curve, choice, kept = cascade_curve(final, teacher, FINAL_ROW, TEACHER_ROW, AUTO)
    assert choice["signal"] == "min"  # its ranking puts the wrong answers first
    assert choice["signal_areas"]["min"] > choice["signal_areas"]["mean"]
    # Final alone 0.7 = teacher 0.7 on validation: the cheapest point that reaches it sends nothing.
    assert choice["threshold"] == 0.0 and choice["validation"]["share_to_teacher"] == 0.0 and choice["reaches_teacher"]
    row = curve[(curve.signal == "min") & (curve.share_to_teacher == 0.3)].iloc[0]
    assert row.exact_match == 1.0  # the three wrong ones went to a teacher that is right on them
    assert row.cost_per_1k_requests == pytest.approx(0.01 + 0.3 * 0.1)
    assert row.p95_ms == pytest.approx(1100.0)
    assert curve[curve.signal == "min"].share_to_teacher.max() == 1.0  # the teacher-alone end
    assert len(kept) == 20


def test_when_the_final_model_is_behind_the_threshold_rises_to_the_teacher(validation):
    final, teacher = validation
    teacher = [_teacher(f"v{i}", exact=True) for i in range(10)]  # the teacher is right on all
    _, choice, _ = cascade_curve(final, teacher, FINAL_ROW, TEACHER_ROW, AUTO)
    assert choice["reaches_teacher"] and choice["validation"]["exact_match"] == 1.0
    assert choice["validation"]["share_to_teacher"] == 0.3  # the three wrong ones, and no more
    assert 0.3 < choice["threshold"] <= 0.4


def test_the_test_row_sends_below_the_threshold_to_the_teacher(make_request):
    requests = [make_request(i, RIGHT) for i in range(4)]
    final = [{**_final(r["id"], False, confidence, confidence), "text": '[{"name": "start_timer", "arguments": {"minutes": 5}}]'}
             for r, confidence in zip(requests, (0.2, 0.9, 0.9, 0.1))]
    teacher = [{**_teacher(r["id"], True), "text": '[{"name": "set_lights", "arguments": {"room": "kitchen", "on": true}}]'} for r in requests]
    final_row = {**FINAL_ROW, "unconstrained_fallbacks": 1, "constrained": True}
    row, predictions = evaluate_cascade(requests, final, teacher, final_row, TEACHER_ROW, {"signal": "min", "threshold": 0.5})
    assert row["stage"] == "cascade" and row["share_to_teacher"] == 0.5 and row["exact_match"] == 0.5
    assert row["constrained"] is True and row["unconstrained_fallbacks"] == 1  # the final model's answers, all of them first
    assert [p["answered_by"] for p in predictions] == ["teacher", "final", "final", "teacher"]
    assert row["cost_per_1k_requests"] == pytest.approx(0.01 + 0.5 * 0.1)
    assert row["p50_ms"] == pytest.approx(600.0)
    assert row["per_function"] == {"set_lights": 0.5}


def test_without_labelled_validation_requests_the_cascade_is_not_measured(validation):
    final, teacher = validation
    unlabelled = [{**p, "exact": None} for p in final]
    curve, choice, _ = cascade_curve(unlabelled, teacher, FINAL_ROW, TEACHER_ROW, AUTO)
    assert curve.empty and choice["threshold"] is None
    assert evaluate_cascade([], [], [], FINAL_ROW, TEACHER_ROW, choice) == ({}, [])
    assert "not measured" in plot_cascade_curve(curve, choice).layout.title.text
    assert "not measured" in plot_reliability([], choice).layout.title.text


def test_batched_answers_have_no_confidence_and_give_no_row(make_request):
    requests = [make_request(0, RIGHT)]
    final = [{"request_id": "r0", "text": "[]", "exact": False}]
    assert evaluate_cascade(requests, final, [_teacher("r0", True)], FINAL_ROW, TEACHER_ROW, {"signal": "min", "threshold": 0.5}) == ({}, [])


def test_the_reliability_plot_bins_the_chosen_confidence(validation):
    final, teacher = validation
    _, choice, kept = cascade_curve(final, teacher, FINAL_ROW, TEACHER_ROW, AUTO)
    figure = plot_reliability(kept, choice)
    bars = figure.data[0]
    assert sum(int(text.removeprefix("n=")) for text in bars.text) == 10  # only the final model's answers
    assert list(bars.y[:3]) == [0.0, 0.0, 0.0] and list(bars.y[3:]) == [1.0] * (len(bars.y) - 3)


@pytest.mark.parametrize(
    ("fallback", "message"),
    [({"threshold": 1.5}, r"serving.fallback.threshold must be at most 1; got 1.5"), ({"threshold": -0.1}, "serving.fallback.threshold"),
     ({"signal": "max"}, "serving.fallback.signal must be one of 'auto', 'min' or 'mean'"),
     ({"treshold": 0.5}, r"serving.fallback.treshold is not a serving setting \(did you mean serving.fallback.threshold\?\)")],
)
def test_fallback_settings_outside_their_range_are_config_errors(fallback, message):
    with pytest.raises(ConfigError, match=message):
        fallback_settings({"fallback": fallback})


def test_an_answers_confidence_is_its_least_sure_choice_or_their_geometric_mean():
    import math

    answer = Decoded([1, 2], "x", 2, 0, 0.0, 0.0, True, choice_logprobs=[math.log(0.5), math.log(0.8)])
    assert answer.confidence("min") == pytest.approx(0.5)
    assert answer.confidence("mean") == pytest.approx(math.sqrt(0.4))
    assert Decoded([1], "x", 1, 1, 0.0, 0.0, True).confidence() == 1.0  # every token forced: certain
    with pytest.raises(ConfigError, match="confidence signal"):
        answer.confidence("max")


def test_a_threshold_outside_its_range_stops_the_run_before_any_node():
    from kedro.io import DataCatalog, MemoryDataset
    from kedro.pipeline import node, pipeline

    from supertiny import hooks

    uses_serving = pipeline([node(lambda settings: settings, "params:serving", "out", name="n")])
    catalog = DataCatalog({"params:serving": MemoryDataset({"fallback": {"threshold": 2}})})
    with pytest.raises(ConfigError, match=r"serving.fallback.threshold must be at most 1; got 2"):
        hooks.ParameterChecks().before_pipeline_run({}, uses_serving, catalog)


def test_a_bad_no_call_threshold_stops_the_run_before_any_node():
    from kedro.io import DataCatalog, MemoryDataset
    from kedro.pipeline import node, pipeline

    from supertiny import hooks

    uses_evaluation = pipeline([node(lambda settings: settings, "params:evaluation", "out", name="n")])
    for settings, message in (({"no_call_threshold": 1.2}, "no_call_threshold must be less than 1; got 1.2"),
                              ({"no_call_threshold": 0.2, "answers": "batched"}, "no_call_threshold applies to served answers")):
        catalog = DataCatalog({"params:evaluation": MemoryDataset(settings)})
        with pytest.raises(ConfigError, match=f"evaluation.{message}"):
            hooks.ParameterChecks().before_pipeline_run({}, uses_evaluation, catalog)
