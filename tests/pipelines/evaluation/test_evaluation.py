"""Evaluation nodes: one row per stage measured the same way, the table, plots, report, record."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from supertiny.quantized_model import RECIPE_FILE
from supertiny.datasets import ModelDataset, ModelDirectory
from supertiny.runtime import CPU, Device
from supertiny.errors import ConfigError
from supertiny.pipelines.evaluation import nodes
from supertiny.pipelines.evaluation.nodes import (
    METRIC_COLUMNS,
    answer_path,
    best_student,
    collect_predictions,
    collect_stage_metrics,
    evaluate_always_no_call,
    evaluate_local_model,
    evaluate_teacher,
    evaluate_trained_stage,
    evaluation_device,
    function_errors,
    per_function_accuracy,
    per_function_table,
    plot_accuracy_per_function,
    plot_accuracy_vs_latency,
    plot_size_per_stage,
    record_run,
    stage_table_markdown,
    summary_line,
    top_confusions,
    write_report,
)
from supertiny.pipelines.evaluation.cascade import plot_cascade_curve, plot_reliability
from supertiny.pipelines.evaluation.pipeline import create_pipeline
from supertiny.teacher import config as teacher_config

import fake_openai  # tests/teacher/fake_openai.py, put on the import path by tests/conftest.py

PARAMS = {"max_requests": None, "seed": 0, "max_new_tokens": 6, "constrained": False, "max_calls": 2, "batch_size": 2, "threads": 1,
          "latency": {"prompts": 2, "new_tokens": 3, "warmup": 1}, "price_per_hour_usd": 0.36}
RUNTIME = {"device": "cpu"}
LIGHTS_ON = [{"name": "set_lights", "arguments": {"room": "kitchen", "on": True}}]
TIMER = [{"name": "start_timer", "arguments": {"minutes": 5}}]


@pytest.fixture
def requests(tool_catalog):
    def request(number, reference):
        return {"id": f"r{number}", "messages": [{"role": "user", "content": f"request {number}"}], "tools": tool_catalog,
                "reference": reference, "meta": {}}
    return [request(0, LIGHTS_ON), request(1, []), request(2, LIGHTS_ON)]


def test_per_function_accuracy_counts_each_referenced_function(requests):
    predictions = [{"exact": True}, {"exact": False}, {"exact": False}]
    assert per_function_accuracy(requests, predictions) == {"(no call)": 0.0, "set_lights": 0.5}


def test_a_local_model_gets_a_full_row_and_its_predictions(tmp_path, tiny_model, requests):
    dataset = ModelDataset(filepath=str(tmp_path / "model"))
    dataset.save(tiny_model)
    row, predictions = evaluate_local_model(dataset.load(), requests, "none", PARAMS, RUNTIME, stage="base")
    assert set(METRIC_COLUMNS) - {"share_to_teacher"} <= set(row)  # only the cascade sends requests on
    assert row["stage"] == "base" and row["n"] == 3 and row["device"] == "cpu"
    assert row["tools_mode"] == "none" and row["constrained"] is False and row["unconstrained_fallbacks"] == 0
    assert row["params"] == sum(p.numel() for p in tiny_model.model.parameters())
    assert row["size_mb"] > 0 and row["p95_ms"] >= row["p50_ms"] > 0 and row["tokens_per_s"] > 0
    # A random model writes no valid calls: every answer scores zero and the cost is machine time.
    assert row["exact_match"] == 0.0 and row["valid_rate"] == 0.0 and row["call_exact_match"] == 0.0
    assert (row["exact_match_low"], row["exact_match_high"]) == (0.0, 0.5615)  # Wilson, 0 of 3
    assert row["cost_per_1k_requests"] == pytest.approx(1000 * (3 / row["requests_per_s"]) / 3 * 0.36 / 3600, rel=0.01)
    assert [p["request_id"] for p in predictions] == ["r0", "r1", "r2"]
    assert all(p["stage"] == "base" for p in predictions)
    # Served answers carry what the cascade routes on: their confidence and time.
    assert all(0 < p["confidence_min"] <= p["confidence_mean"] <= 1 and p["answer_ms"] > 0 for p in predictions)


def test_constrained_a_random_model_answers_valid_calls(tmp_path, tiny_model, requests):
    dataset = ModelDataset(filepath=str(tmp_path / "model"))
    dataset.save(tiny_model)
    # Batched: these tools have an unbounded integer, whose digits a random model may write until
    # max_new_tokens on any path (the served path's validity: tests/student/test_decoding.py).
    params = {**PARAMS, "constrained": True, "max_calls": 1, "max_new_tokens": 48, "answers": "batched"}
    row, predictions = evaluate_local_model(dataset.load(), requests, "signatures", params, RUNTIME, stage="student_sft")
    assert row["constrained"] is True and row["tools_mode"] == "signatures" and row["unconstrained_fallbacks"] == 0
    assert row["valid_rate"] == 1.0 and all(p["calls"] is not None and len(p["calls"]) <= 1 for p in predictions)


def test_answer_path_is_the_served_fast_path_unless_batched():
    assert answer_path({}) == {"jump_forward": True, "prefix_cache": True, "no_call_threshold": None}
    assert answer_path({"answers": "served", "fast_path": {"jump_forward": False}, "no_call_threshold": 0.2}) == {
        "jump_forward": False, "prefix_cache": True, "no_call_threshold": 0.2}
    assert answer_path({"answers": "batched"}) is None
    with pytest.raises(ConfigError, match="evaluation.answers"):
        answer_path({"answers": "fast"})


def test_models_are_evaluated_on_the_configured_device_a_quantized_one_on_the_cpu(tmp_path, monkeypatch):
    gpu = Device("cuda", "NVIDIA H200", bf16=True, fp16=True)
    monkeypatch.setattr(nodes, "resolve_device", lambda runtime: gpu if runtime["device"] == "cuda" else CPU)
    plain, quantized = tmp_path / "student", tmp_path / "quantized"
    plain.mkdir()
    quantized.mkdir()
    (quantized / RECIPE_FILE).write_text("{}")
    assert evaluation_device(ModelDirectory(plain), {"device": "cuda"}) == gpu
    assert evaluation_device(ModelDirectory(quantized), {"device": "cuda"}) == CPU
    assert evaluation_device(ModelDirectory(plain), {"device": "cpu"}) == CPU


def test_a_device_this_machine_lacks_stops_the_evaluation_with_its_setting(tmp_path, requests, monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    with pytest.raises(ConfigError, match="runtime.device is cuda, but torch .* sees no CUDA device"):
        evaluate_local_model(ModelDirectory(tmp_path), requests, "none", PARAMS, {"device": "cuda"}, stage="base")


@pytest.mark.parametrize("setting, value", [("constrained", "yes"), ("max_calls", 0)])
def test_decoding_settings_are_checked(tmp_path, requests, setting, value):
    with pytest.raises(ConfigError, match=f"evaluation.{setting}"):
        evaluate_local_model(SimpleNamespace(path=tmp_path), requests, "none", {**PARAMS, setting: value}, RUNTIME, stage="base")


def test_always_no_call_scores_the_empty_answer_everywhere(requests):
    row, predictions = evaluate_always_no_call(requests)
    assert row["stage"] == "always_no_call" and row["n"] == 3 and len(predictions) == 3
    assert row["exact_match"] == pytest.approx(1 / 3, abs=1e-4) and row["no_call_accuracy"] == 1.0
    assert row["call_exact_match"] == 0.0 and row["valid_rate"] == 1.0
    assert all(row.get(key) is None for key in ("model_path", "params", "size_mb", "p50_ms", "cost_per_1k_requests"))
    assert all(p["stage"] == "always_no_call" and p["calls"] == [] for p in predictions)


def test_student_kd_is_evaluated_only_when_it_trained(tmp_path, tiny_model, requests):
    dataset = ModelDataset(filepath=str(tmp_path / "model"))
    dataset.save(tiny_model)
    skipped = evaluate_trained_stage(dataset.load(), requests, "none", PARAMS, RUNTIME, ["sft", "rl"], stage="student_kd",
                                     training_stage="kd")
    assert skipped == ({}, [])
    row, predictions = evaluate_trained_stage(dataset.load(), requests, "none", PARAMS, RUNTIME, ["sft", "kd"], stage="student_kd",
                                              training_stage="kd")
    assert row["stage"] == "student_kd" and len(predictions) == 3
    assert list(collect_stage_metrics(_row("teacher", 0.5, 10.0, None), {}, row).stage) == ["teacher", "student_kd"]
    evaluate = next(n for n in create_pipeline().nodes if n.name == "student_kd.evaluate")
    assert evaluate.inputs == ["student_kd", "evaluation_requests", "params:student.tools_mode", "params:evaluation",
                               "params:runtime", "params:student.stages"]


def _row(stage, exact, p50, size, call_exact=None):
    call_exact = exact if call_exact is None else call_exact
    return {"stage": stage, "model_path": f"/m/{stage}", "device": "cpu", "tools_mode": "none", "constrained": True, "params": 1000,
            "size_mb": size, "exact_match": exact, "exact_match_low": max(exact - 0.1, 0), "exact_match_high": min(exact + 0.1, 1),
            "call_exact_match": call_exact, "similarity": exact, "valid_rate": 1.0, "no_call_accuracy": 1.0, "p50_ms": p50,
            "p95_ms": p50 * 1.2, "tokens_per_s": 10.0, "requests_per_s": 1.0, "cost_per_1k_requests": 0.01,
            "unconstrained_fallbacks": 0, "n": 3, "per_function": {"set_lights": exact, "(no call)": 1.0}}


def _floor(exact):
    return {"stage": "always_no_call", "exact_match": exact, "exact_match_low": 0.2, "exact_match_high": 0.5,
            "call_exact_match": 0.0, "similarity": exact, "valid_rate": 1.0, "no_call_accuracy": 1.0, "n": 3,
            "per_function": {"set_lights": 0.0, "(no call)": 1.0}}


def test_stages_that_do_not_beat_the_floor_or_get_no_call_right_are_not_learning():
    rows = [_row("teacher", 0.6, 2000.0, None), _floor(0.34), _row("base", 0.1, 900.0, 500.0),
            _row("student_sft", 0.34, 800.0, 500.0, call_exact=0.1),  # ties the floor
            _row("student_rl", 0.5, 800.0, 500.0, call_exact=0.0),  # above it, but never a call right
            _row("pruned", 0.45, 600.0, 300.0, call_exact=0.3)]
    table = collect_stage_metrics(*rows)
    lines = {line.split(" | ")[0].strip("| "): line for line in stage_table_markdown(table).splitlines()[2:]}
    flagged = {stage for stage, line in lines.items() if "not learning" in line}
    assert flagged == {"base", "student_sft", "student_rl"}
    assert "| 0.60 [0.50, 0.70] |" in lines["teacher"]  # exact match with its interval
    assert best_student(table)["stage"] == "student_rl"  # the highest exact match, flagged or not
    summary = summary_line(table)
    assert "Best student, student_rl: exact match 0.50 [0.40, 0.60], call exact match 0.00 (0.83x and 0.00x the teacher's)" in summary
    assert "Teacher: exact match 0.60 [0.50, 0.70], call exact match 0.60." in summary
    assert "Not learning: base, student_sft, student_rl." in summary


def test_error_analysis_puts_training_examples_next_to_each_function_and_counts_confusions(requests):
    function_accuracy = per_function_table(_row("teacher", 0.6, 1.0, None), _row("student_sft", 0.2, 1.0, 1.0))
    distill_train = [{"calls": LIGHTS_ON}, {"calls": LIGHTS_ON + TIMER}, {"calls": []}, {"calls": LIGHTS_ON + LIGHTS_ON}]
    table = function_errors(function_accuracy, "student_sft", distill_train)
    assert table.to_dict("records") == [
        {"function": "(no call)", "teacher": 1.0, "student_sft": 1.0, "training examples": 1},
        {"function": "set_lights", "teacher": 0.6, "student_sft": 0.2, "training examples": 3},  # rows, not calls
    ]
    predictions = [
        {"stage": "student_sft", "request_id": "r0", "calls": TIMER},  # set_lights -> start_timer
        {"stage": "student_sft", "request_id": "r1", "calls": LIGHTS_ON},  # (no call) -> set_lights
        {"stage": "student_sft", "request_id": "r2", "calls": None},  # set_lights -> (not parsed)
        {"stage": "student_sft", "request_id": "r3", "calls": TIMER},
        {"stage": "student_sft", "request_id": "r4", "calls": [{"name": "set_lights", "arguments": {"room": "bedroom", "on": True}}]},
        {"stage": "teacher", "request_id": "r0", "calls": []},  # another stage: not counted
    ]
    more = [{"id": "r3", "tools": [], "reference": LIGHTS_ON}, {"id": "r4", "tools": [], "reference": LIGHTS_ON}]
    confusions = top_confusions(requests + more, predictions, "student_sft", count=2)
    assert confusions.to_dict("records") == [
        {"reference": "set_lights", "predicted": "start_timer", "requests": 2},
        {"reference": "(no call)", "predicted": "set_lights", "requests": 1},
    ]
    assert len(top_confusions(requests + more, predictions, "student_sft", count=10)) == 3  # wrong arguments are no confusion


def test_table_plots_report_and_record_come_from_the_rows(tmp_path):
    teacher = {**_row("teacher", 0.6, 2000.0, None), "params": None}  # behind an endpoint: no size
    rows = [teacher, _floor(0.2), _row("base", 0.1, 900.0, 500.0), _row("student_sft", 0.8, 800.0, 500.0),
            _row("quantized", 0.75, 300.0, 120.0)]
    table = collect_stage_metrics(*rows)
    assert list(table.columns) == METRIC_COLUMNS
    assert list(table.stage) == ["teacher", "always_no_call", "base", "student_sft", "quantized"]
    functions = per_function_table(*rows)
    assert functions.loc["set_lights", "student_sft"] == 0.8
    figures = [plot_accuracy_vs_latency(table), plot_size_per_stage(table), plot_accuracy_per_function(functions)]
    assert list(figures[0].data[0].text) == ["teacher", "base", "student_sft", "quantized"]  # the floor is a line
    assert figures[0].layout.shapes[0].y0 == 0.2
    assert list(figures[0].data[0].marker.size) == [500.0, 500.0, 500.0, 120.0]  # unknown size: the largest marker
    record = record_run({"evaluation": PARAMS}, table)
    json.dumps(record)  # the record is plain JSON
    assert record["versions"]["torch"] and record["parameters"]["evaluation"]["seed"] == 0
    predictions = [{"stage": "student_sft", "request_id": "r0", "calls": TIMER}]
    requests = [{"id": "r0", "tools": [], "reference": LIGHTS_ON}]
    markdown, html = write_report(
        table, functions, predictions, requests, [{"calls": LIGHTS_ON}],
        {"requests": 10, "rejected": 1, "splits": {"train": 6, "val": 2, "test": 2}, "share_parallel": 0.2, "share_no_call": 0.1},
        {"candidates": 8, "accepted_candidates": 4, "acceptance_rate": 0.5, "requests": 4,
         "requests_without_accepted_answer": 1, "examples_kept": 3},
        {"model": "local", "strategy": "decomposed", "requests_sent": 16, "cost_usd": 0.0},
        record, *figures, {"signal": None, "threshold": None, "reason": "no labelled validation requests"},
        plot_cascade_curve(None, {"threshold": None, "reason": "x"}), plot_reliability([], {"threshold": None, "reason": "x"}),
        {"confusions": 10},
    )
    assert "| quantized | cpu | none | True | 1000 | 120 | 0.75 [0.65, 0.85] | 0.75 |" in markdown
    assert "## Summary\n\nTeacher: exact match 0.60 [0.50, 0.70]" in markdown and "Not learning: base." in markdown
    assert "## Errors of the best student (student_sft)" in markdown
    assert "| set_lights | 0.6 | 0.8 | 1 |" in markdown and "| set_lights | start_timer | 1 |" in markdown
    assert "<table>" in html and "plotly" in html.lower() and html.count("<script") >= 3
    assert "## Cascade\n\nNot measured: no labelled validation requests." in markdown


def test_predictions_of_all_stages_are_concatenated():
    assert collect_predictions([{"stage": "a"}], [{"stage": "b"}, {"stage": "b"}]) == [{"stage": "a"}, {"stage": "b"}, {"stage": "b"}]


def test_the_teacher_row_scores_its_greedy_answers_through_its_cache_and_prices(requests, tmp_path, monkeypatch, teacher_settings):
    # Priced as an endpoint elsewhere would be (the fake server is on this machine), which needs a key.
    monkeypatch.setattr(teacher_config, "is_loopback", lambda base_url: False)
    monkeypatch.setenv("SUPERTINY_TEST_KEY", "sk-test")
    answers = {"request 0": LIGHTS_ON, "request 1": [], "request 2": [{"name": "set_lights", "arguments": {"room": "hall", "on": True}}]}
    seen_temperatures, answer_tokens = [], []

    def reply(body):
        user = body["messages"][-1]["content"]
        if user == fake_openai.PROBE_TEXT:
            return {"role": "assistant", "content": "OK"}
        seen_temperatures.append(body["temperature"])
        content = json.dumps(next(calls for text, calls in answers.items() if text in user))
        answer_tokens.append((sum(len(m["content"] or "") for m in body["messages"]) // 4, max(len(content) // 4, 1)))
        return {"role": "assistant", "content": content}

    teacher = {**teacher_settings, "base_url": None, "model": "teacher", "api_key_env": "SUPERTINY_TEST_KEY", "strategy": "prompted", "k_samples": 4,
               "temperature": 0.9, "max_tokens": 64, "concurrency": 2, "timeout_s": 10, "max_retries": 0, "few_shot": 0,
               "cache_dir": str(tmp_path / "cache"), "prices": {"teacher": {"prompt": 1.0, "completion": 2.0}}}
    with fake_openai.FakeOpenAI(reply=reply) as server:
        teacher["base_url"] = server.base_url
        row, predictions, usage = evaluate_teacher(requests, [], SimpleNamespace(path=tmp_path), teacher, PARAMS)
        sent_first = len(server.chat_requests)
        again, _, usage_again = evaluate_teacher(requests, [], SimpleNamespace(path=tmp_path), teacher, PARAMS)
        sent_again = len(server.chat_requests) - sent_first

    # One greedy answer a request, whatever k and temperature the labelling uses, and the first
    # latency.prompts (2) requests once more, one at a time, for the batch-1 latency.
    assert set(seen_temperatures) == {0.0} and sent_first == len(requests) + 2
    assert row["stage"] == "teacher" and row["n"] == 3
    assert row["exact_match"] == pytest.approx(2 / 3, abs=1e-4) and row["no_call_accuracy"] == 1.0
    assert row["call_exact_match"] == 0.5 and row["exact_match_low"] < row["exact_match"] < row["exact_match_high"]
    assert [p["exact"] for p in predictions] == [True, True, False]
    # The answers' tokens (as the fake server counts them; the latency requests come after), priced.
    expected_cost = sum(prompt + 2.0 * completion for prompt, completion in answer_tokens[:3]) / 1e6
    assert row["cost_per_1k_requests"] == pytest.approx(1000 * expected_cost / 3, rel=1e-3)
    assert row["p50_ms"] is not None and row["p50_ms"] <= row["p95_ms"]
    # The re-run's answers come from the cache, with the same scores and cost; only the latency is measured afresh.
    assert sent_again == 2 and usage_again["cache_hits"] == 3
    assert again["exact_match"] == row["exact_match"] and again["cost_per_1k_requests"] == row["cost_per_1k_requests"]
    assert again["requests_per_s"] is None


@pytest.mark.parametrize("base_url", [None, "http://127.0.0.1:8000/v1"])
def test_a_teacher_on_this_machine_costs_its_machine_time(requests, tmp_path, monkeypatch, base_url, teacher_settings):
    """Embedded or on a loopback address: machine time at evaluation.price_per_hour_usd, from the
    answers' latencies (Little's law: concurrency 2 keeps two answers in flight)."""
    def fake_label_requests(asked, seed_examples, config, model_dir=None):
        candidates = [{"calls": LIGHTS_ON, "text": "", "prompt_tokens": 100, "completion_tokens": 10, "latency_ms": latency,
                       "error_kind": None} for latency in (1000.0, 3000.0, 2000.0)][: len(asked)]
        usage = {"model": "teacher", "endpoint": base_url or "embedded", "requests_sent": len(asked), "wall_s": 3.0,
                 "price_usd_per_1m_tokens": {"prompt": 1.0, "completion": 2.0}}
        return candidates, usage

    monkeypatch.setattr(nodes, "label_requests", fake_label_requests)
    teacher = {**teacher_settings, "base_url": base_url, "model": "teacher", "strategy": "prompted", "concurrency": 2, "cache_dir": str(tmp_path)}
    row, _, _ = evaluate_teacher(requests, [], SimpleNamespace(path=tmp_path), teacher, PARAMS)
    # (1 + 3 + 2) s of latency / 2 in flight = 3 s for 3 answers: 1 s an answer, at $0.36 an hour.
    assert row["cost_per_1k_requests"] == pytest.approx(1000 * 1.0 * 0.36 / 3600)
    remote = {**teacher, "base_url": "https://api.example.com/v1"}
    row, _, _ = evaluate_teacher(requests, [], SimpleNamespace(path=tmp_path), remote, PARAMS)
    assert row["cost_per_1k_requests"] == pytest.approx(1000 * (100 * 1.0 + 10 * 2.0) / 1e6)  # tokens x prices


def test_unlabelled_requests_log_n_a_not_zero(requests, tmp_path, caplog, teacher_settings):
    unlabelled = [{**request, "reference": None} for request in requests]
    teacher = {**teacher_settings, "model": "teacher", "api_key_env": None, "strategy": "prompted", "k_samples": 1, "max_tokens": 32,
               "concurrency": 2, "timeout_s": 10, "max_retries": 0, "few_shot": 0, "cache_dir": str(tmp_path / "cache")}
    with fake_openai.FakeOpenAI() as server, caplog.at_level("INFO", logger="supertiny"):
        row, _, _ = evaluate_teacher(unlabelled, [], SimpleNamespace(path=tmp_path), {**teacher, "base_url": server.base_url}, PARAMS)
    assert row["exact_match"] is None and row["p50_ms"] is not None
    line = next(record.getMessage() for record in caplog.records if record.getMessage().startswith("teacher: exact match"))
    assert line.startswith("teacher: exact match n/a, similarity n/a, p50 ") and "0.000" not in line


def test_metrics_line_shows_measured_numbers():
    assert nodes.metrics_line({"exact_match": 0.5, "similarity": float("nan"), "p50_ms": 12.4}) == "exact match 0.500, similarity n/a, p50 12 ms"
