"""The teacher pipeline's nodes: seed examples set aside, labels against an endpoint from params."""

from __future__ import annotations


import pytest

from supertiny.datasets import JSONLinesDataset, ModelDataset, ModelDirectory
from supertiny.errors import ConfigError
from supertiny.inference import sample_requests
from supertiny.pipelines.teacher import create_pipeline
from supertiny.pipelines.teacher.nodes import label_with_teacher, select_seed_examples, select_teacher_requests
from supertiny.teacher import TeacherConfig

import fake_openai  # tests/teacher/fake_openai.py, put on the import path by tests/conftest.py

DESIGN_FIELDS = {"request_id", "sample", "text", "calls", "parse_error", "prompt_tokens", "completion_tokens", "latency_ms", "model", "cached"}



@pytest.fixture
def teacher_with(teacher_settings):
    """``teacher_with(**changes)``: the project's teacher settings with ``changes``, a
    ``selection`` change merged into the project's selection settings."""
    def build(**changes):
        selection = {**teacher_settings["selection"], **changes.pop("selection", {})}
        return {**teacher_settings, "selection": selection, **changes}
    return build

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


def test_seed_examples_cover_every_answer_shape_and_are_kept_out(train, teacher_with):
    seeds, rest = select_seed_examples(train, teacher_with(seed_examples=6, seed=0))
    assert len(seeds) == 6 and len(rest) == len(train) - 6
    assert {s["id"] for s in seeds}.isdisjoint({r["id"] for r in rest})
    shapes = {tuple(sorted(c["name"] for c in s["reference"])) for s in seeds}
    assert len(shapes) == 4  # one of each shape before any second one
    assert all(s["reference"] is not None for s in seeds)
    assert select_seed_examples(train, teacher_with(seed_examples=6, seed=0)) == (seeds, rest)  # deterministic


def test_label_with_teacher_caps_requests_and_writes_design_records(train, tmp_path, teacher_with):
    params = {
        **teacher_with(), "base_url": None, "model": None, "strategy": "decomposed", "k_samples": 2, "few_shot": 2, "seed": 0,
        "cache_dir": str(tmp_path / "cache"), "max_retries": 0,
    }  # fmt: skip
    seeds, rest = select_seed_examples(train, teacher_with(seed_examples=8))
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


# Served answers under the grammar, a few tokens each (the evaluation's settings).
EVALUATION = {"max_new_tokens": 8, "constrained": True, "max_calls": 1, "batch_size": 2, "threads": 1}


def test_random_selection_is_the_seeded_budget_in_order(train, teacher_with):
    chosen, record = select_teacher_requests(train, teacher_with(max_requests=7, seed=3), "names", EVALUATION, {"device": "cpu"})
    assert chosen == sample_requests(train, 7, 3)
    assert [row["request_id"] for row in record] == [r["id"] for r in train]
    assert sum(row["selected"] for row in record) == 7 and all(row["confidence"] is None for row in record)


def test_least_confident_selection_labels_what_an_earlier_model_is_least_sure_of(train, tiny_model, tmp_path, teacher_with):
    ModelDataset(filepath=str(tmp_path / "round_1")).save(tiny_model)
    teacher = teacher_with(max_requests=6, seed=0, select="least_confident",
                           selection={"model_dir": str(tmp_path / "round_1"), "signal": "mean", "pool": 12})
    chosen, record = select_teacher_requests(train, teacher, "names", EVALUATION, {"device": "cpu"})
    scored = [row for row in record if row["confidence"] is not None]
    assert [row["request_id"] for row in scored] == [r["id"] for r in sample_requests(train, 12, 0)]  # the pool alone is answered
    assert len(chosen) == 6 and [r["id"] for r in chosen] == [row["request_id"] for row in record if row["selected"]]  # in order
    picked = [row["confidence"] for row in scored if row["selected"]]
    passed = [row["confidence"] for row in scored if not row["selected"]]
    assert all(0.0 <= c <= 1.0 for c in picked + passed) and max(picked) <= min(passed)
    assert len(set(picked + passed)) > 1  # a random model is not equally sure of every request


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"select": "uncertain"}, "teacher.select must be one of 'random' or 'least_confident'; got 'uncertain'"),
        ({"select": "least_confident"}, "needs teacher.selection.model_dir"),
        ({"select": "least_confident", "max_requests": None, "selection": {"model_dir": "x"}}, "set a budget"),
        ({"select": "least_confident", "selection": {"model_dir": "no/such/model"}}, "no/such/model is not a saved model directory"),
        ({"selection": {"signal": "max"}}, "teacher.selection.signal must be one of 'min' or 'mean'; got 'max'"),
        ({"selection": {"pol": 10}}, "teacher.selection.pol"),
        ({"selection": {"labelled": "no/such/selection.jsonl"}}, "no/such/selection.jsonl does not exist"),
    ],
)
def test_selection_settings_are_checked(settings, message, teacher_with):
    with pytest.raises(ConfigError, match=message):
        TeacherConfig.from_params(teacher_with(**{"max_requests": 10, **settings}))


def test_an_earlier_rounds_requests_are_kept_and_the_budget_goes_to_the_rest(train, tmp_path, teacher_with):
    first, record = select_teacher_requests(train, teacher_with(max_requests=5, seed=0), "names", EVALUATION, {"device": "cpu"})
    JSONLinesDataset(filepath=str(tmp_path / "round_1.jsonl")).save(record)
    teacher = teacher_with(max_requests=12, seed=0, selection={"labelled": str(tmp_path / "round_1.jsonl")})
    second, _ = select_teacher_requests(train, teacher, "names", EVALUATION, {"device": "cpu"})
    assert len(second) == 12 and {r["id"] for r in first} <= {r["id"] for r in second}
    with pytest.raises(ConfigError, match=r"teacher.max_requests \(4\) is below the 5 requests of teacher.selection.labelled"):
        select_teacher_requests(train, {**teacher, "max_requests": 4}, "names", EVALUATION, {"device": "cpu"})


def test_a_pool_smaller_than_the_budget_is_a_config_error(train, tiny_model, tmp_path, teacher_with):
    ModelDataset(filepath=str(tmp_path / "round_1")).save(tiny_model)
    teacher = teacher_with(max_requests=10, select="least_confident", selection={"model_dir": str(tmp_path / "round_1"), "pool": 5})
    with pytest.raises(ConfigError, match=r"teacher.selection.pool \(5 requests\) is smaller than the 10 requests to choose"):
        select_teacher_requests(train, teacher, "names", EVALUATION, {"device": "cpu"})


def test_pipeline_wires_the_catalog_names():
    pipeline = create_pipeline()
    assert {"train_requests", "val_requests", "base_model"} <= pipeline.inputs()
    assert {"teacher_candidates", "teacher_usage", "val_teacher_candidates", "teacher_seed_examples", "teacher_requests",
            "teacher_selected_requests", "teacher_selection"} <= pipeline.all_outputs()
