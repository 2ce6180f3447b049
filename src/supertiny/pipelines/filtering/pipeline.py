"""Filtering: teacher candidates -> verified training examples, rejections and a report.

The same steps filter the teacher's training labels (namespace ``filter_train``) and its
validation labels (``filter_val``: early stopping on teacher-quality data); each is a group
of its own in kedro-viz.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from kedro.pipeline import Pipeline, node, pipeline

from supertiny.formats import export_openai_chat
from supertiny.pipelines.filtering.nodes import (
    cap_functions,
    drop_duplicates,
    parse_candidates,
    plot_filter_report,
    report_filtering,
    select_answers,
    verify_candidates,
)

PARAMETERS = {"params:filtering", "params:teacher"}
RESULTS = ("examples", "rejections", "report", "summary")


def filtering_steps() -> Pipeline:
    """parse → verify → select → dedup → cap → report, on ``candidates`` of ``requests``."""
    return pipeline(
        [
            node(parse_candidates, ["candidates", "requests", "test_requests", "params:filtering"],
                 ["items", "no_call"], name="parse"),
            node(verify_candidates, ["items", "params:filtering", "params:teacher"],
                 ["accepted", "verifier_rejections", "verifier_rows", "verifier_reports"], name="verify"),
            node(select_answers, ["accepted", "params:filtering"], ["selected", "selection_rejections"], name="select"),
            node(drop_duplicates, "selected", ["unique", "duplicate_rejections"], name="dedup"),
            node(cap_functions, ["unique", "params:filtering"], ["kept", "cap_rejections"], name="cap"),
            node(report_filtering,
                 ["items", "accepted", "kept", "verifier_rows", "verifier_reports", "no_call", "params:filtering",
                  "verifier_rejections", "selection_rejections", "duplicate_rejections", "cap_rejections"],
                 list(RESULTS), name="report"),
        ]
    )


def _filtering(namespace: str, candidates: str, requests: str, outputs: dict[str, str]) -> Pipeline:
    return pipeline(
        filtering_steps(),
        namespace=namespace,
        inputs={"candidates": candidates, "requests": requests, "test_requests": "test_requests"},
        outputs=outputs,
        parameters=PARAMETERS,
    )


def create_pipeline(**kwargs) -> Pipeline:
    return pipeline(
        [
            _filtering("filter_train", "teacher_candidates", "teacher_requests",
                       {"examples": "distill_train", "rejections": "filter_rejections", "report": "filter_report",
                        "summary": "filter_summary"}),
            node(plot_filter_report, "filter_report", "filter_report_plot", name="plot_filter_report"),
            # The verified data for a hosted model's fine-tuning or another trainer.
            node(export_openai_chat, ["distill_train", "params:data.openai_export"], "distill_train_openai",
                 name="export_distill_train_openai"),
            _filtering("filter_val", "val_teacher_candidates", "val_requests",
                       {"examples": "distill_val", "rejections": "val_filter_rejections", "report": "val_filter_report",
                        "summary": "val_filter_summary"}),
        ]
    )


def run_filtering(candidates: list[dict], requests: list[dict], test_requests: list[dict], params: dict[str, Any],
                  teacher: dict[str, Any] | None = None) -> tuple[list[dict], list[dict], pd.DataFrame, dict[str, Any]]:
    """The filtering steps run by Kedro on in-memory data, as ``kedro run`` runs them: for the
    benchmarks and the tests. Returns (examples, rejections, report, summary)."""
    from kedro.io import DataCatalog, MemoryDataset
    from kedro.runner import SequentialRunner

    inputs = {"candidates": candidates, "requests": requests, "test_requests": test_requests,
              "params:filtering": params, "params:teacher": teacher or {}}
    catalog = DataCatalog({name: MemoryDataset(value) for name, value in inputs.items()}
                          | {name: MemoryDataset() for name in RESULTS})
    SequentialRunner().run(filtering_steps(), catalog)
    return tuple(catalog[name].load() for name in RESULTS)
