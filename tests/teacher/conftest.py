"""Fixtures of the teacher tests: a scripted OpenAI-compatible server, requests, a config."""

from __future__ import annotations

import pytest

from supertiny.teacher import TeacherConfig
from supertiny.teacher.client import RUN_SPENDING

from fake_openai import FakeOpenAI  # put on the import path by tests/conftest.py
from project_fixtures import LIGHTS, TIMER  # so is this

TOOLS = [LIGHTS, TIMER]


def request(number: int, text: str, reference: list[dict] | None = None) -> dict:
    return {"id": f"r{number}", "messages": [{"role": "user", "content": text}], "tools": TOOLS, "reference": reference, "meta": {}}


@pytest.fixture(autouse=True)
def fresh_spending():
    """Each test is a run of its own: its spending starts at zero (a kedro run's hook does this)."""
    RUN_SPENDING.reset()
    yield RUN_SPENDING
    RUN_SPENDING.reset()


@pytest.fixture
def make_request():
    """``make_request(number, text, reference=None)``: a request with the two test tools."""
    return request


@pytest.fixture
def requests() -> list[dict]:
    """Six labelled requests of three kinds."""
    lights = [{"name": "set_lights", "arguments": {"room": "kitchen", "on": True}}]
    timer = [{"name": "start_timer", "arguments": {"minutes": 5}}]
    return [
        request(1, "turn on the kitchen lights", lights),
        request(2, "kitchen lights on please", lights),
        request(3, "set a timer for five minutes", timer),
        request(4, "start a 5 minute timer", timer),
        request(5, "book me a flight to Boston", []),
        request(6, "what is the meaning of life", []),
    ]


@pytest.fixture
def make_config(tmp_path, teacher_settings):
    """``make_config(server, **overrides)``: a TeacherConfig against a fake server, caching in
    tmp_path: the project's teacher settings, small and fast."""

    def make(server: FakeOpenAI | None = None, **overrides) -> TeacherConfig:
        params = {
            **teacher_settings,
            "base_url": server.base_url if server else "http://127.0.0.1:9/v1",
            "model": "teacher",
            "api_key_env": None,
            "strategy": "prompted",
            "k_samples": 1,
            "temperature": 0.5,
            "max_tokens": 32,
            "concurrency": 4,
            "timeout_s": 10,
            "max_retries": 2,
            "few_shot": 1,
            "cache_dir": str(tmp_path / "cache"),
            **overrides,
        }
        return TeacherConfig.from_params(params)

    return make
