"""`kedro run --env smoke` in a copy of the project: every pipeline, as a user runs it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

PROJECT = Path(__file__).resolve().parents[1]
KEDRO = str(Path(sys.executable).with_name("kedro"))


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """The project's config and committed inputs in a fresh folder (outputs land there)."""
    root = tmp_path_factory.mktemp("project")
    shutil.copy(PROJECT / "pyproject.toml", root)
    # Kedro puts the project's own src/ first on the path (a symlink it would resolve away).
    shutil.copytree(PROJECT / "src", root / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    shutil.copytree(PROJECT / "conf", root / "conf", ignore=shutil.ignore_patterns("local"))
    (root / "conf" / "local").mkdir()
    shutil.copytree(PROJECT / "data" / "01_raw", root / "data" / "01_raw")
    return root


def kedro(project: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "true", "HF_HUB_OFFLINE": "1"}
    return subprocess.run([KEDRO, *args], cwd=project, env=env, capture_output=True, text=True, timeout=900)


def write_distill_data(outputs: Path) -> None:
    """distill_train / distill_val from the teacher requests' own references.

    The smoke teacher is a random tiny model: it never writes a valid answer, so filtering
    (rightly) keeps nothing and the student would have nothing to learn. The later pipelines
    get what filtering writes when a working teacher agrees with the references.
    """
    for split, source in (("distill_train", "teacher_requests"), ("distill_val", "val_requests")):
        rows = [json.loads(line) for line in (outputs / "05_model_input" / f"{source}.jsonl").read_text().splitlines()]
        labelled = [{**row, "calls": row["reference"], "sample": 0, "verifiers_passed": ["reference"]}
                    for row in rows if row["reference"] is not None][:8]
        (outputs / "05_model_input" / f"{split}.jsonl").write_text("".join(json.dumps(row) + "\n" for row in labelled))


@pytest.fixture(scope="module")
def smoke_outputs(project) -> Path:
    """The smoke environment through every pipeline: up to filtering (data, base model, teacher), then (on
    verified examples, see write_distill_data) student, compression and evaluation."""
    result = kedro(project, "run", "--env", "smoke", "--to-nodes", "summarise_data,filter_train_candidates,filter_val_candidates,plot_filter_report")
    assert result.returncode == 0, result.stderr[-4000:]
    outputs = project / "data" / "smoke"
    write_distill_data(outputs)
    result = kedro(project, "run", "--env", "smoke", "--pipelines", "student,compression,evaluation")
    assert result.returncode == 0, result.stderr[-4000:]
    assert "supertiny: every stage on the same test requests" in result.stdout
    return outputs


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
    metrics = pd.read_parquet(outputs / "08_reporting" / "stage_metrics.parquet")
    assert list(metrics.stage[:5]) == ["base", "student_sft", "student_rl", "pruned", "pruned_recovered"]
    assert metrics.stage.iloc[5].startswith("quantized_")
    assert (metrics.n == 4).all() and (metrics.p50_ms > 0).all()
    report = (outputs / "08_reporting" / "report.md").read_text()
    assert "| student_sft |" in report and "## Filtering" in report


def run_broken(project: Path, file: str, yaml: str, pipeline: str = "data") -> str:
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


def test_a_missing_input_file_is_named(project):
    output = run_broken(
        project, "catalog.yml", "raw_requests:\n  type: supertiny.datasets.JSONLinesDataset\n  filepath: data/01_raw/nowhere.jsonl\n"
    )
    assert "raw_requests" in output and "No such file" in output and "data/01_raw/nowhere.jsonl" in output


def test_an_unknown_dataset_type_is_named(project):
    output = run_broken(project, "catalog.yml", "raw_requests:\n  type: pandas.NoSuchDataset\n  filepath: x\n")
    assert "dataset 'raw_requests'" in output and "NoSuchDataset" in output


def test_a_model_source_that_does_not_exist_is_named(project):
    output = run_broken(project, "parameters_student.yml", "base_model:\n  source:\n    path: /models/missing.gguf\n", "student")
    assert "base_model.source: no GGUF file at /models/missing.gguf" in output


def test_filtering_runs_on_a_hand_made_candidates_file(project, smoke_outputs):
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
    result = kedro(project, "run", "--env", "handmade", "--pipelines", "filtering", "--nodes", "filter_train_candidates,plot_filter_report")
    assert result.returncode == 0, result.stderr[-3000:]
    kept = [json.loads(line) for line in (smoke / "05_model_input" / "distill_train.jsonl").read_text().splitlines()]
    assert [(row["id"], row["sample"]) for row in kept] == [(labelled[0]["id"], 0)]
    rejected = [json.loads(line) for line in (smoke / "02_intermediate" / "filter_rejections.jsonl").read_text().splitlines()]
    assert sorted(row["step"] for row in rejected) == ["format", "schema"]
    summary = json.loads((smoke / "08_reporting" / "filter_summary.json").read_text())
    assert summary["candidates"] == 3 and summary["examples_kept"] == 1


def test_an_unknown_verifier_stops_the_run_before_any_node(project):
    output = run_broken(project, "parameters_filtering.yml", "filtering:\n  verifiers: [format, vibes]\n", "filtering")
    assert "filtering.verifiers: unknown verifier(s) ['vibes']" in output
    assert "Running node" not in output
