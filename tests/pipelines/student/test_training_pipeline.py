"""`kedro run --env smoke --pipelines student` in a copy of the project: every stage, as a user runs it.

The smoke teacher (a random tiny model) never writes a valid answer, so this test writes its own
distill_train and distill_val, as the filtering pipeline would with a working teacher.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml


@pytest.fixture(scope="module")
def project(project_copy) -> Path:
    return project_copy


def write_examples(project: Path, tools: list[dict], count: int) -> None:
    examples = [
        ("Kitchen lights on", [{"name": "set_lights", "arguments": {"room": "kitchen", "on": True}}]),
        ("start a 5 minute timer", [{"name": "start_timer", "arguments": {"minutes": 5}}]),
        ("how are you?", []),
        ("bedroom lights off", [{"name": "set_lights", "arguments": {"room": "bedroom", "on": False}}]),
    ][:count]
    rows = [
        {"id": f"d{n}", "messages": [{"role": "user", "content": text}], "tools": tools, "reference": calls, "meta": {},
         "calls": calls, "sample": 0, "verifiers_passed": ["reference"]}
        for n, (text, calls) in enumerate(examples)
    ]
    folder = project / "data" / "smoke" / "05_model_input"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "distill_train.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    (folder / "distill_val.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows[:2]))


def test_smoke_student_runs_every_stage(kedro, project, tool_catalog):
    write_examples(project, tool_catalog, 4)
    result = kedro(project, "run", "--env", "smoke", "--pipelines", "student")
    assert result.returncode == 0, result.stderr[-4000:]
    outputs = project / "data" / "smoke"
    for name in ("base_model", "student_sft", "student_rl", "student_kd", "student_model"):
        assert (outputs / "06_models" / name / "config.json").exists(), name
    for stage in ("sft", "rl", "kd"):
        log = pd.read_csv(outputs / "08_reporting" / f"student_{stage}_log.csv")
        assert set(log["status"]) == {"trained"} and log["tokens_per_s"].notna().any() and log["peak_rss_mb"].gt(0).all()
    summary = json.loads((outputs / "08_reporting" / "student_training_summary.json").read_text())
    assert {stage: entry["status"] for stage, entry in summary.items()} == {"sft": "trained", "rl": "trained", "kd": "trained"}


def test_an_empty_distill_train_stops_the_run_with_one_message(kedro, project, tool_catalog):
    write_examples(project, tool_catalog, 0)
    result = kedro(project, "run", "--env", "smoke", "--pipelines", "student")
    output = result.stderr + result.stdout
    assert result.returncode != 0
    assert "distill_train is empty: filtering kept no examples" in output
    assert "Traceback" not in output


def test_a_bad_setting_stops_the_run_with_one_message(kedro, project, tool_catalog):
    write_examples(project, tool_catalog, 4)
    broken = project / "conf" / "smoke_broken"
    shutil.copytree(project / "conf" / "smoke", broken, dirs_exist_ok=True)
    params = yaml.safe_load((broken / "parameters_student.yml").read_text())
    params["student"]["stages"] = ["sft", "dpo"]
    (broken / "parameters_student.yml").write_text(yaml.safe_dump(params))
    result = kedro(project, "run", "--env", "smoke_broken", "--pipelines", "student")
    output = result.stderr + result.stdout
    assert result.returncode != 0
    assert "student.stages: unknown stage(s) ['dpo']" in output
    assert "Traceback" not in output
