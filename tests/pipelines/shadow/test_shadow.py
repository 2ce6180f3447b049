"""The shadow report: the same requests answered by a (scripted) teacher endpoint and by the
served model through the openai SDK, side by side."""

from __future__ import annotations


import pytest

from supertiny.calls import exact_match, validate_calls
from supertiny.datasets import ModelDataset
from supertiny.errors import ConfigError
from supertiny.pipelines.shadow.nodes import shadow_compare
from supertiny.teacher.client import RUN_SPENDING

import fake_openai  # tests/teacher/fake_openai.py, put on the import path by tests/conftest.py
from project_fixtures import project_teacher_settings  # so is this

LOCK = {"type": "function", "function": {"name": "lock_door", "parameters": {
    "type": "object", "properties": {"door": {"type": "string", "enum": ["front", "back"]}}, "required": ["door"],
    "additionalProperties": False}}}
EVALUATION = {"seed": 0, "max_new_tokens": 32, "threads": 1, "constrained": True, "max_calls": 2, "price_per_hour_usd": 0.36}


@pytest.fixture
def final_model(tiny_model, tmp_path):
    dataset = ModelDataset(filepath=str(tmp_path / "final"))
    dataset.save(tiny_model)
    return dataset.load()


def _teacher(server, tmp_path) -> dict:
    return {**project_teacher_settings(tmp_path / "cache"), "base_url": server.base_url, "model": "teacher", "api_key_env": None, "strategy": "native", "k_samples": 3,
            "temperature": 0.7, "max_tokens": 32, "concurrency": 4, "timeout_s": 10, "max_retries": 0, "few_shot": 0,
            "cache_dir": str(tmp_path / "cache")}


def test_both_sides_answer_every_request_and_the_report_says_where_they_differ(final_model, tmp_path):
    RUN_SPENDING.reset()
    requests = [{"id": f"s{n}", "messages": [{"role": "user", "content": text}], "tools": [LOCK],
                 "reference": reference} for n, (text, reference) in enumerate([
                     ("lock the front door", [{"name": "lock_door", "arguments": {"door": "front"}}]),
                     ("lock the back door", [{"name": "lock_door", "arguments": {"door": "back"}}]),
                     ("what a day", []), ("lock it", None)])]
    with fake_openai.FakeOpenAI() as server:
        report = shadow_compare(requests, [], final_model, final_model, "names", _teacher(server, tmp_path), EVALUATION,
                                {"max_requests": None})
        # The teacher was asked greedily, once per request, and afresh (not from its run cache).
        answers = [body for body in server.bodies if not fake_openai.is_probe(body)]
        assert len(answers) == 4 and all(body.get("temperature") == 0.0 for body in answers)
    rows = report["requests"]
    assert [row["request_id"] for row in rows] == ["s0", "s1", "s2", "s3"]
    for row, request in zip(rows, requests):
        assert row["teacher_calls"] == [{"name": "lock_door", "arguments": {}}]  # what the scripted endpoint answers
        assert row["served_calls"] is not None and validate_calls(row["served_calls"], [LOCK]) == []
        assert row["agree"] == exact_match(row["served_calls"], row["teacher_calls"], [LOCK])
        assert row["teacher_ms"] > 0 and row["served_ms"] > 0
        if request["reference"] is None:
            assert row["teacher_exact"] is None and row["served_exact"] is None
    summary = report["summary"]
    assert summary["requests"] == 4 and summary["teacher"]["exact_match"] == 0.0  # never the right door, never no call
    assert summary["disagreements"] == len(report["disagreements"]) == sum(not row["agree"] for row in rows)
    for side in ("teacher", "served"):
        assert 0 < summary[side]["p50_ms"] <= summary[side]["p95_ms"] and summary[side]["cost_per_1k_requests"] > 0
    assert summary["served"]["model"] == "quantized_model"


def test_a_bad_request_count_is_a_config_error(final_model, tmp_path):
    with pytest.raises(ConfigError, match="shadow.max_requests"):
        shadow_compare([], [], final_model, final_model, "names", {}, EVALUATION, {"max_requests": 0})
