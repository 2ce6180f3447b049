"""`kedro run --env smoke --pipelines model,student` in a copy of the project: every stage, as a user runs it.

The smoke teacher (a random tiny model) never writes a valid answer, so these tests write their
own distill_train and distill_val (``write_examples``), as the filtering pipeline would with a
working teacher.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest


@pytest.fixture(scope="module")
def project(project_copy) -> Path:
    return project_copy


def test_smoke_student_runs_every_stage(kedro, project, tool_catalog, write_examples):
    write_examples(project, tool_catalog, 4)
    result = kedro(project, "run", "--env", "smoke", "--pipelines", "model,student")
    assert result.returncode == 0, result.stderr[-4000:]
    outputs = project / "data" / "smoke"
    for name in ("base_model", "student_sft", "student_rl", "student_kd", "student_model"):
        assert (outputs / "06_models" / name / "config.json").exists(), name
    for stage in ("sft", "rl", "kd"):
        log = pd.read_csv(outputs / "08_reporting" / f"student_{stage}_log.csv")
        assert set(log["status"]) == {"trained"} and log["tokens_per_s"].notna().any() and log["peak_rss_mb"].gt(0).all()
    summary = json.loads((outputs / "08_reporting" / "student_training_summary.json").read_text())
    assert {stage: entry["status"] for stage, entry in summary.items()} == {"sft": "trained", "rl": "trained", "kd": "trained"}


def test_an_empty_distill_train_stops_the_run_with_one_message(kedro, project, tool_catalog, write_examples):
    write_examples(project, tool_catalog, 0)
    result = kedro(project, "run", "--env", "smoke", "--pipelines", "model,student")
    output = result.stderr + result.stdout
    assert result.returncode != 0
    assert "distill_train is empty: filtering kept no examples" in output
    assert "Traceback" not in output
