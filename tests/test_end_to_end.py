"""`kedro run --env smoke` in a copy of the project: every pipeline, as a user runs it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

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


def test_smoke_run_produces_every_output(project):
    result = kedro(project, "run", "--env", "smoke")
    assert result.returncode == 0, result.stderr[-4000:]
    outputs = project / "data" / "smoke"
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
