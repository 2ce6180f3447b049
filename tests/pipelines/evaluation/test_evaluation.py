"""Evaluation nodes: one row per stage measured the same way, the table, plots, report, record."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from supertiny.datasets import ModelDataset
from supertiny.pipelines.evaluation.nodes import (
    METRIC_COLUMNS,
    collect_predictions,
    collect_stage_metrics,
    evaluate_local_model,
    evaluate_teacher,
    per_function_accuracy,
    per_function_table,
    plot_accuracy_per_function,
    plot_accuracy_vs_latency,
    plot_size_per_stage,
    record_run,
    write_report,
)

_spec = importlib.util.spec_from_file_location("fake_openai", Path(__file__).parents[2] / "teacher" / "fake_openai.py")
fake_openai = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fake_openai)

PARAMS = {"max_requests": None, "seed": 0, "max_new_tokens": 6, "batch_size": 2, "threads": 1,
          "latency": {"prompts": 2, "new_tokens": 3, "warmup": 1}, "price_per_hour_usd": 0.36}
LIGHTS_ON = [{"name": "set_lights", "arguments": {"room": "kitchen", "on": True}}]


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
    row, predictions = evaluate_local_model(dataset.load(), requests, "none", PARAMS, stage="base")
    assert set(METRIC_COLUMNS) <= set(row)
    assert row["stage"] == "base" and row["n"] == 3
    assert row["params"] == sum(p.numel() for p in tiny_model.model.parameters())
    assert row["size_mb"] > 0 and row["p95_ms"] >= row["p50_ms"] > 0 and row["tokens_per_s"] > 0
    # A random model writes no valid calls: every answer scores zero and the cost is machine time.
    assert row["exact_match"] == 0.0 and row["valid_rate"] == 0.0
    assert row["cost_per_1k_requests"] == pytest.approx(1000 * (3 / row["requests_per_s"]) / 3 * 0.36 / 3600, rel=0.01)
    assert [p["request_id"] for p in predictions] == ["r0", "r1", "r2"]
    assert all(p["stage"] == "base" for p in predictions)


def _row(stage, exact, p50, size):
    return {"stage": stage, "model_path": f"/m/{stage}", "params": 1000, "size_mb": size, "exact_match": exact,
            "similarity": exact, "valid_rate": 1.0, "no_call_accuracy": 1.0, "p50_ms": p50, "p95_ms": p50 * 1.2,
            "tokens_per_s": 10.0, "requests_per_s": 1.0, "cost_per_1k_requests": 0.01, "n": 3,
            "per_function": {"set_lights": exact, "(no call)": 1.0}}


def test_table_plots_report_and_record_come_from_the_rows(tmp_path):
    teacher = {**_row("teacher", 0.6, 2000.0, None), "params": None}  # behind an endpoint: no size
    rows = [teacher, _row("base", 0.1, 900.0, 500.0), _row("student_sft", 0.8, 800.0, 500.0), _row("quantized", 0.75, 300.0, 120.0)]
    table = collect_stage_metrics(*rows)
    assert list(table.columns) == METRIC_COLUMNS and list(table.stage) == ["teacher", "base", "student_sft", "quantized"]
    functions = per_function_table(*rows)
    assert functions.loc["set_lights", "student_sft"] == 0.8
    figures = [plot_accuracy_vs_latency(table), plot_size_per_stage(table), plot_accuracy_per_function(functions)]
    assert list(figures[0].data[0].text) == ["teacher", "base", "student_sft", "quantized"]
    assert list(figures[0].data[0].marker.size) == [500.0, 500.0, 500.0, 120.0]  # unknown size: the largest marker
    record = record_run({"evaluation": PARAMS}, table)
    json.dumps(record)  # the record is plain JSON
    assert record["versions"]["torch"] and record["parameters"]["evaluation"]["seed"] == 0
    markdown, html = write_report(
        table, functions,
        {"requests": 10, "rejected": 1, "splits": {"train": 6, "val": 2, "test": 2}, "share_parallel": 0.2, "share_no_call": 0.1},
        {"candidates": 8, "accepted_candidates": 4, "acceptance_rate": 0.5, "requests": 4,
         "requests_without_accepted_answer": 1, "examples_kept": 3},
        {"model": "local", "strategy": "decomposed", "requests_sent": 16, "cost_usd": 0.0},
        record, *figures,
    )
    assert "| quantized | 1000 | 120 | 0.75 |" in markdown
    assert "<table>" in html and "plotly" in html.lower() and html.count("<script") >= 3


def test_predictions_of_all_stages_are_concatenated():
    assert collect_predictions([{"stage": "a"}], [{"stage": "b"}, {"stage": "b"}]) == [{"stage": "a"}, {"stage": "b"}, {"stage": "b"}]


def test_the_teacher_row_scores_its_greedy_answers_through_its_cache_and_prices(requests, tmp_path):
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

    teacher = {"base_url": None, "model": "teacher", "api_key_env": None, "strategy": "prompted", "k_samples": 4,
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
    assert [p["exact"] for p in predictions] == [True, True, False]
    # The answers' tokens (as the fake server counts them; the latency requests come after), priced.
    expected_cost = sum(prompt + 2.0 * completion for prompt, completion in answer_tokens[:3]) / 1e6
    assert row["cost_per_1k_requests"] == pytest.approx(1000 * expected_cost / 3, rel=1e-3)
    assert row["p50_ms"] is not None and row["p50_ms"] <= row["p95_ms"]
    # The re-run's answers come from the cache, with the same scores and cost; only the latency is measured afresh.
    assert sent_again == 2 and usage_again["cache_hits"] == 3
    assert again["exact_match"] == row["exact_match"] and again["cost_per_1k_requests"] == row["cost_per_1k_requests"]
    assert again["requests_per_s"] is None
