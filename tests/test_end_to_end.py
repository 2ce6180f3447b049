"""`kedro run --env smoke` in a copy of the project: every pipeline, as a user runs it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest


@pytest.fixture(scope="module")
def project(project_copy) -> Path:
    return project_copy


@pytest.fixture(scope="module")
def smoke_outputs(project, kedro) -> Path:
    """`kedro run --env smoke`: every pipeline in one run, as `make smoke` does it.

    The smoke teacher is a tiny random model that never writes a valid answer, so the smoke
    filtering keeps the references of the labelled requests it was given
    (``filtering.fill_from_references``) and the student stages have examples to learn from.
    """
    result = kedro(project, "run", "--env", "smoke")
    assert result.returncode == 0, result.stderr[-4000:]
    assert "supertiny: every stage on the same test requests" in result.stdout
    return project / "data" / "smoke"


def test_smoke_run_produces_every_output(smoke_outputs):
    outputs = smoke_outputs
    split_sizes = {}
    for split in ("train", "val", "test"):
        lines = (outputs / "05_model_input" / f"{split}_requests.jsonl").read_text().splitlines()
        split_sizes[split] = len(lines)
        assert all(json.loads(line)["tools"][0]["function"]["name"] for line in lines)
    report = json.loads((outputs / "08_reporting" / "data_report.json").read_text())
    assert report["splits"] == split_sizes
    assert report["rejected"] == 0, "the committed demo data is clean"
    assert (outputs / "06_models" / "base_model" / "config.json").exists()
    info = json.loads((outputs / "06_models" / "base_model_info.json").read_text())
    assert info["random_init"] and info["layers"] == 2
    for model in ("student_sft", "student_rl", "student_model", "pruned_model", "pruned_recovered", "quantized_model"):
        assert (outputs / "06_models" / model / "config.json").exists(), model
    summary = json.loads((outputs / "08_reporting" / "filter_summary.json").read_text())
    distill = (outputs / "05_model_input" / "distill_train.jsonl").read_text().splitlines()
    assert summary["examples_kept"] == len(distill) > 0 and summary["examples_from_references"] > 0
    metrics = pd.read_parquet(outputs / "08_reporting" / "stage_metrics.parquet")
    # The smoke run trains kd too (student.stages), so student_kd has its row.
    assert list(metrics.stage[:8]) == ["teacher", "always_no_call", "base", "student_sft", "student_rl", "student_kd", "pruned",
                                       "pruned_recovered"]
    assert metrics.stage.iloc[8].startswith("quantized_")
    # Quantisation stores the recovered model's parameters differently; it has as many.
    assert metrics.params.iloc[8] == metrics.params.iloc[7] > 0
    models = metrics[metrics.stage != "always_no_call"]
    assert (metrics.n == 4).all() and (models.p50_ms > 0).all() and pd.isna(metrics.p50_ms.iloc[1])  # no model, no latency
    local = metrics.iloc[2:]
    assert local.constrained.all() and (local.unconstrained_fallbacks == 0).all() and (local.tools_mode == "names").all()  # student.tools_mode, unchanged by conf/smoke
    report = (outputs / "08_reporting" / "report.md").read_text()
    assert "| student_sft |" in report and "## Filtering" in report and "## Errors of the best student" in report


def run_broken(kedro, project: Path, file: str, yaml: str, pipeline: str = "data") -> str:
    """Run a pipeline in an environment whose ``file`` overrides the base config."""
    env = project / "conf" / "broken"
    shutil.rmtree(env, ignore_errors=True)
    env.mkdir()
    (env / file).write_text(yaml)
    result = kedro(project, "run", "--env", "broken", "--pipelines", pipeline)
    assert result.returncode != 0
    output = result.stderr + result.stdout
    assert "Traceback" not in output, "a fixable error is one message, not a stack trace"
    return output


def test_a_missing_input_file_is_named(kedro, project):
    output = run_broken(
        kedro, project, "catalog.yml", "raw_requests:\n  type: supertiny.datasets.JSONLinesDataset\n  filepath: data/01_raw/nowhere.jsonl\n"
    )
    assert "raw_requests" in output and "No such file" in output and "data/01_raw/nowhere.jsonl" in output


def test_an_unknown_dataset_type_is_named(kedro, project):
    output = run_broken(kedro, project, "catalog.yml", "raw_requests:\n  type: pandas.NoSuchDataset\n  filepath: x\n")
    assert "dataset 'raw_requests'" in output and "NoSuchDataset" in output


def test_a_model_source_that_does_not_exist_is_named(kedro, project):
    output = run_broken(kedro, project, "parameters_student.yml", "base_model:\n  source:\n    path: /models/missing.gguf\n", "model")
    assert "base_model.source: no GGUF file at /models/missing.gguf" in output


def test_filtering_runs_on_a_hand_made_candidates_file(kedro, project, smoke_outputs):
    """A team's own candidates (text only, as a person would write them) through the filter."""
    smoke = smoke_outputs
    requests = [json.loads(line) for line in (smoke / "05_model_input" / "teacher_requests.jsonl").read_text().splitlines()]
    labelled = [r for r in requests if r["reference"] is not None][:2]
    handmade = project / "data" / "01_raw" / "handmade_candidates.jsonl"
    rows = [
        {"request_id": labelled[0]["id"], "sample": 0, "text": "```json\n" + json.dumps(labelled[0]["reference"]) + "\n```"},
        {"request_id": labelled[0]["id"], "sample": 1, "text": "I am not sure."},
        {"request_id": labelled[1]["id"], "sample": 0, "text": json.dumps([{"name": "no_such_function", "arguments": {}}])},
    ]
    handmade.write_text("".join(json.dumps(row) + "\n" for row in rows))
    env = project / "conf" / "handmade"
    env.mkdir(exist_ok=True)
    (env / "globals.yml").write_text("output_root: data/smoke\n")
    (env / "catalog.yml").write_text(
        "teacher_candidates:\n  type: supertiny.datasets.JSONLinesDataset\n  filepath: data/01_raw/handmade_candidates.jsonl\n"
    )
    result = kedro(project, "run", "--env", "handmade", "--pipelines", "filtering", "--namespaces", "filter_train")
    assert result.returncode == 0, result.stderr[-3000:]
    kept = [json.loads(line) for line in (smoke / "05_model_input" / "distill_train.jsonl").read_text().splitlines()]
    assert [(row["id"], row["sample"]) for row in kept] == [(labelled[0]["id"], 0)]
    rejected = [json.loads(line) for line in (smoke / "02_intermediate" / "filter_rejections.jsonl").read_text().splitlines()]
    assert sorted(row["step"] for row in rejected) == ["format", "schema"]
    summary = json.loads((smoke / "08_reporting" / "filter_summary.json").read_text())
    assert summary["candidates"] == 3 and summary["examples_kept"] == 1


def test_a_misspelt_key_in_a_section_the_pipeline_does_not_read_stops_the_run_before_any_node(kedro, project):
    output = run_broken(kedro, project, "parameters_compression.yml", "compression:\n  recovery:\n    kl_wieght: 0.5\n", "data")
    assert "compression.recovery.kl_wieght is not a compression setting (did you mean compression.recovery.kl_weight?)" in output
    assert "Running node" not in output
