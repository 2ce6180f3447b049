"""Evaluation nodes: one row per stage measured the same way, the table, plots, report, record."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from supertiny.datasets import ModelDataset
from supertiny.pipelines.evaluation.nodes import (
    METRIC_COLUMNS,
    collect_predictions,
    collect_stage_metrics,
    evaluate_local_model,
    per_function_accuracy,
    per_function_table,
    plot_accuracy_per_function,
    plot_accuracy_vs_latency,
    plot_size_per_stage,
    record_run,
    write_report,
)

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
    rows = [_row("base", 0.1, 900.0, 500.0), _row("student_sft", 0.8, 800.0, 500.0), _row("quantized", 0.75, 300.0, 120.0)]
    table = collect_stage_metrics(*rows)
    assert list(table.columns) == METRIC_COLUMNS and list(table.stage) == ["base", "student_sft", "quantized"]
    functions = per_function_table(*rows)
    assert functions.loc["set_lights", "student_sft"] == 0.8
    figures = [plot_accuracy_vs_latency(table), plot_size_per_stage(table), plot_accuracy_per_function(functions)]
    assert list(figures[0].data[0].text) == ["base", "student_sft", "quantized"]
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
