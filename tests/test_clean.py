"""`make clean-outputs` removes what the pipelines wrote and nothing else; the teacher's cache of
paid responses has its own target, which asks first."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / ".venv"

pytestmark = pytest.mark.e2e


@pytest.fixture
def project(tmp_path):
    """A copy of the project's configuration and Makefile with a run's worth of files in data/."""
    root = tmp_path / "project"
    root.mkdir()
    for name in ("Makefile", "pyproject.toml"):
        shutil.copy(ROOT / name, root / name)
    shutil.copytree(ROOT / "conf", root / "conf", ignore=shutil.ignore_patterns("local"))
    (root / "conf" / "local").mkdir()
    # The README's own example: a user's source in data/01_raw.
    (root / "conf" / "local" / "catalog.yml").write_text(
        "raw_requests:\n  type: pandas.ParquetDataset\n  filepath: data/01_raw/my_requests.parquet\n")
    files = {
        "data/01_raw/demo_requests.jsonl": "kept", "data/01_raw/demo_tools.json": "kept", "data/01_raw/my_requests.parquet": "kept",
        "data/02_intermediate/teacher_cache/ab/ab01.json": "kept", "data/smoke/02_intermediate/teacher_cache/cd/cd01.json": "kept",
        "data/03_primary/my_notes.txt": "kept", "data/mlflow.db": "kept",
        "data/02_intermediate/requests.jsonl": "removed", "data/05_model_input/train_requests.jsonl": "removed",
        "data/06_models/base_model/config.json": "removed", "data/06_models/student_sft.partial/config.json": "removed",
        "data/07_model_output/teacher_candidates.jsonl": "removed", "data/08_reporting/report.md": "removed",
        "data/smoke/05_model_input/distill_train.jsonl": "removed", "data/smoke/06_models/quantized_model/config.json": "removed",
    }
    for name in files:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("{}")
    (root / "data" / "08_reporting" / ".gitkeep").write_text("")
    return root, files


def make(root: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess:
    # -o: the set-up stamp counts as made, whatever the copied Makefile's time.
    return subprocess.run(["make", "-s", "-o", str(VENV / ".setup-done"), f"VENV={VENV}", *args], cwd=root, input=stdin,
                          capture_output=True, text=True, timeout=600)


def test_clean_outputs_removes_only_what_the_pipelines_write(project):
    root, files = project
    result = make(root, "clean-outputs")
    assert result.returncode == 0, result.stderr[-3000:]
    for name, fate in files.items():
        assert (root / name).exists() == (fate == "kept"), (name, result.stdout)
    assert (root / "data" / "08_reporting" / ".gitkeep").exists() and (root / "data" / "06_models").is_dir()
    assert "8 pipeline outputs removed" in result.stdout


def test_the_teacher_cache_is_removed_only_when_confirmed(project):
    root, _ = project
    caches = [root / "data/02_intermediate/teacher_cache/ab/ab01.json", root / "data/smoke/02_intermediate/teacher_cache/cd/cd01.json"]
    asked = make(root, "clean-teacher-cache")  # no terminal to answer: nothing removed
    assert asked.returncode == 0 and "FORCE=1" in asked.stdout
    assert all(cache.exists() for cache in caches)
    forced = make(root, "clean-teacher-cache", "FORCE=1")
    assert forced.returncode == 0 and "Removed 2 cached teacher responses" in forced.stdout
    assert not any(cache.exists() for cache in caches)
    assert (root / "data/01_raw/my_requests.parquet").exists()
