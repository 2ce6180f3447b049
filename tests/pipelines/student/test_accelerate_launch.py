"""`accelerate launch -m kedro run --pipelines student` (after a plain `--pipelines model`) with two processes on the CPU: data-parallel
training of every stage on the smoke model, with conf/accelerate/ddp.yaml as a GPU server uses it.

Without a GPU that configuration starts its processes with torchrun and they train over gloo.
(`accelerate launch --cpu --num_processes 2` starts one process: accelerate's multi-CPU launch
needs mpirun.) Each process runs every node; the catalog's model datasets here record every
load and save with the process that made it, which shows that both processes trained and read
the models, and that one wrote them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import mlflow
import pytest

# MLflow's SQLite store, on SQLAlchemy 2.1: a notice about MLflow's code, not the project's.
pytestmark = pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy is deprecated")

ACCELERATE = str(Path(sys.executable).with_name("accelerate"))
ENV = "smoke_launch"
MODELS = ("base_model", "student_sft", "student_rl", "student_kd", "student_model")
RECORDING = '''
    import os

    from supertiny.datasets import ModelDataset


    class RecordingModelDataset(ModelDataset):
        """A model dataset that notes "<load|save> <process> <name>" for every load and save."""

        def _note(self, action: str) -> None:
            with open(os.environ["SUPERTINY_IO_LOG"], "a") as log:
                log.write(f"{action} {os.environ.get('RANK', '0')} {self._filepath.name}\\n")

        def load(self):
            self._note("load")
            return super().load()

        def save(self, data):
            self._note("save")
            super().save(data)
'''


@pytest.fixture(scope="module")
def project(project_copy) -> Path:
    """The project copy with an environment that is conf/smoke plus recording model datasets."""
    env = project_copy / "conf" / ENV
    shutil.copytree(project_copy / "conf" / "smoke", env)
    (env / "catalog.yml").write_text("".join(
        f"{name}:\n  type: recording.RecordingModelDataset\n  filepath: ${{globals:output_root}}/06_models/{name}\n" for name in MODELS
    ))
    (project_copy / "support").mkdir()
    (project_copy / "support" / "recording.py").write_text(textwrap.dedent(RECORDING))
    return project_copy


def launch(project: Path, pipelines: str, processes: int = 2) -> subprocess.CompletedProcess:
    """`kedro run --env smoke_launch --pipelines <pipelines>`: with two processes an `accelerate
    launch` of it, with one a plain run."""
    (project / "tmp").mkdir(exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(project / "support"), "SUPERTINY_IO_LOG": str(project / "io.log"),
           "TMPDIR": str(project / "tmp"), "KEDRO_DISABLE_TELEMETRY": "true", "HF_HUB_OFFLINE": "1"}
    launcher = [ACCELERATE, "launch", "--config_file", "conf/accelerate/ddp.yaml", "--num_processes", "2", "-m"] if processes == 2 else [sys.executable, "-m"]
    command = [*launcher, "kedro", "run", "--env", ENV, "--pipelines", pipelines]
    return subprocess.run(command, cwd=project, env=env, capture_output=True, text=True, timeout=1800)


def test_two_processes_train_every_stage_and_one_writes_the_models(project, tool_catalog, write_examples):
    write_examples(project, tool_catalog, 4)
    prepared = launch(project, "model", processes=1)  # the base model, as the README's GPU steps prepare it
    assert prepared.returncode == 0, prepared.stderr[-6000:]
    result = launch(project, "student")
    assert result.returncode == 0, result.stderr[-6000:]

    notes = Counter(tuple(line.split()) for line in (project / "io.log").read_text().splitlines())
    assert {(action, process) for action, process, _ in notes} == {("save", "0"), ("load", "0"), ("load", "1")}
    assert sorted(name for action, _, name in notes if action == "save") == sorted(MODELS)
    assert all(count == 1 for count in notes.values()), notes
    # Both processes read every model a later stage starts from: the one the main process wrote.
    assert {name for action, process, name in notes if action == "load" and process == "1"} == set(MODELS[:-1])

    outputs = project / "data" / "smoke"
    summary = json.loads((outputs / "08_reporting" / "student_training_summary.json").read_text())
    assert {stage: entry["status"] for stage, entry in summary.items()} == {"sft": "trained", "rl": "trained", "kd": "trained"}
    assert "best_eval_loss" in summary["sft"], "early stopping's best checkpoint was shared by both processes"
    mlflow.set_tracking_uri(f"sqlite:///{outputs / 'mlflow.db'}")
    assert len(mlflow.search_runs(experiment_names=["supertiny"])) == 2, "the model's run and one for the launch, not one a process"
    assert not list((project / "tmp").glob("supertiny-*")), "the shared checkpoint folders are removed"


def test_a_launch_of_other_pipelines_is_stopped_with_one_message(project):
    result = launch(project, "data")
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "accelerate launch started 2 processes, and each of them would run [" in output
    assert "launch only `kedro run --pipelines student`, and run the other pipelines with a plain `kedro run`" in output
    assert "Running node" not in output
