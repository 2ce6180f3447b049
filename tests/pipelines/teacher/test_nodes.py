"""The teacher pipeline's nodes: seed examples set aside, labels against an endpoint from params."""

from __future__ import annotations


import pytest

from supertiny.datasets import ModelDirectory
from supertiny.pipelines.teacher import create_pipeline
from supertiny.pipelines.teacher.nodes import label_with_teacher, select_seed_examples

import fake_openai  # tests/teacher/fake_openai.py, put on the import path by tests/conftest.py

DESIGN_FIELDS = {"request_id", "sample", "text", "calls", "parse_error", "prompt_tokens", "completion_tokens", "latency_ms", "model", "cached"}


@pytest.fixture
def train(tool_catalog) -> list[dict]:
    """Forty labelled requests of four answer shapes, and two unlabelled ones."""
    shapes = [
        [{"name": "set_lights", "arguments": {"room": "kitchen", "on": True}}],
        [{"name": "start_timer", "arguments": {"minutes": 5}}],
        [],
        [{"name": "set_lights", "arguments": {"room": "bedroom", "on": False}}, {"name": "start_timer", "arguments": {"minutes": 2}}],
    ]
    rows = [
        {"id": f"t{n}", "messages": [{"role": "user", "content": f"request {n}"}], "tools": tool_catalog, "reference": shapes[n % 4], "meta": {}}
        for n in range(40)
    ]
    rows += [{"id": f"u{n}", "messages": [{"role": "user", "content": f"unlabelled {n}"}], "tools": tool_catalog, "reference": None, "meta": {}} for n in range(2)]
    return rows


def test_seed_examples_cover_every_answer_shape_and_are_kept_out(train):
    seeds, rest = select_seed_examples(train, {"seed_examples": 6, "seed": 0})
    assert len(seeds) == 6 and len(rest) == len(train) - 6
    assert {s["id"] for s in seeds}.isdisjoint({r["id"] for r in rest})
    shapes = {tuple(sorted(c["name"] for c in s["reference"])) for s in seeds}
    assert len(shapes) == 4  # one of each shape before any second one
    assert all(s["reference"] is not None for s in seeds)
    assert select_seed_examples(train, {"seed_examples": 6, "seed": 0}) == (seeds, rest)  # deterministic


def test_label_with_teacher_caps_requests_and_writes_design_records(train, tmp_path):
    params = {
        "base_url": None, "model": None, "strategy": "decomposed", "k_samples": 2, "few_shot": 2, "seed": 0,
        "cache_dir": str(tmp_path / "cache"), "max_retries": 0,
    }  # fmt: skip
    seeds, rest = select_seed_examples(train, {"seed_examples": 8})
    with fake_openai.FakeOpenAI(models=None) as server:
        params.update(base_url=server.base_url, model="remote-model", prices={"remote-model": {"prompt": 1.0, "completion": 2.0}})
        candidates, usage = label_with_teacher(rest, seeds, ModelDirectory(tmp_path / "unused"), params, 5)
    assert len(candidates) == 10 and len({c["request_id"] for c in candidates}) == 5
    assert {c["request_id"] for c in candidates} <= {r["id"] for r in rest}
    for candidate in candidates:
        assert DESIGN_FIELDS <= set(candidate)
        assert candidate["model"] == "remote-model" and candidate["cached"] is False and candidate["error_kind"] is None
    assert usage["requests_labelled"] == 5 and usage["candidates"] == 10
    expected_cost = (usage["prompt_tokens"] * 1.0 + usage["completion_tokens"] * 2.0) / 1e6
    assert usage["cost_usd"] == pytest.approx(expected_cost, abs=1e-6) and usage["cost_usd"] > 0
    for key in ("requests_sent", "cache_hits", "errors", "prompt_tokens", "completion_tokens", "wall_s", "requests_per_s"):
        assert key in usage


def test_pipeline_wires_the_catalog_names():
    pipeline = create_pipeline()
    assert {"train_requests", "val_requests", "base_model"} <= pipeline.inputs()
    assert {"teacher_candidates", "teacher_usage", "val_teacher_candidates", "teacher_seed_examples", "teacher_requests"} <= pipeline.all_outputs()
