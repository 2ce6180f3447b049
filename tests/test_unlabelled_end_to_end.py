"""Unlabelled logs end to end: an OpenAI chat source with no assistant turn at all, labelled by a
teacher endpoint, decided by the consistency verifier and the judge, every stage scored against
the teacher's greedy answer; `kedro run` of every pipeline on the smoke settings, in a copy of
the project, with a scripted OpenAI-compatible teacher on 127.0.0.1."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

from fake_openai import FakeOpenAI  # tests/teacher/fake_openai.py, put on the import path by tests/conftest.py

WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Current weather in a city.", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"], "additionalProperties": False}}}
TIMER = {"type": "function", "function": {"name": "set_timer", "description": "Start a timer.", "parameters": {
    "type": "object", "properties": {"minutes": {"type": "integer", "minimum": 1}}, "required": ["minutes"], "additionalProperties": False}}}
VALID_ARGUMENTS = {"get_weather": {"city": "Paris"}, "set_timer": {"minutes": 1}}
CITIES = ["Paris", "Oslo", "Rome", "Lisbon", "Berlin", "Vienna", "Madrid", "Prague", "Dublin", "Athens"]


def production_logs() -> list[dict]:
    """What a deployed assistant logged: system and user turns and the tools offered, no answers."""
    rows = []
    for n, city in enumerate(CITIES):
        for text in (f"What's the weather in {city}?", f"Set a timer for {n + 2} minutes, I'm in {city}",
                     f"weather in {city} please", f"Start a {n + 12} minutes timer"):
            rows.append({"messages": [{"role": "system", "content": "You are a car assistant."}, {"role": "user", "content": text}],
                         "tools": [WEATHER, TIMER]})
    return rows


def teacher_reply(body: dict) -> dict:
    """A teacher that answers these requests right (as native tool_calls), and a judge that agrees."""
    system = next((m["content"] for m in body["messages"] if m["role"] == "system"), "")
    if system.startswith("You check the function calls"):
        return {"role": "assistant", "content": json.dumps({"verdict": "yes", "reason": "the calls do what was asked"})}
    text = body["messages"][-1]["content"]
    minutes, city = re.search(r"(\d+) minutes", text), re.search(r"weather in (\w+)", text)
    if minutes:
        name, arguments = "set_timer", {"minutes": int(minutes.group(1))}
    elif city:
        name, arguments = "get_weather", {"city": city.group(1)}
    elif named := [name for name in VALID_ARGUMENTS if name in text]:  # the client's probe asks for a call by name
        name, arguments = named[0], VALID_ARGUMENTS[named[0]]
    else:
        return {"role": "assistant", "content": "[]"}
    return {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_0", "type": "function", "function": {"name": name, "arguments": json.dumps(arguments)}}]}


def _overlay(path: Path, overrides: dict) -> None:
    """The smoke file's settings with ``overrides`` merged in, one level deep."""
    settings = yaml.safe_load(path.read_text()) if path.exists() else {}
    for section, values in overrides.items():
        settings[section] = {**settings.get(section, {}), **values}
    path.write_text(yaml.safe_dump(settings, sort_keys=False))


@pytest.fixture(scope="module")
def unlabelled_run(project_copy, kedro):
    project = project_copy
    source = project / "data" / "01_raw" / "production_logs.jsonl"
    source.write_text("".join(json.dumps(row) + "\n" for row in production_logs()))
    env = project / "conf" / "unlabelled"
    shutil.copytree(project / "conf" / "smoke", env)
    (env / "globals.yml").write_text("output_root: data/unlabelled\n")
    (env / "catalog.yml").write_text(
        "raw_requests:\n  type: supertiny.datasets.JSONLinesDataset\n  filepath: data/01_raw/production_logs.jsonl\n"
        "  on_bad_line: keep\n  lazy: true\n"
    )
    _overlay(env / "parameters_data.yml", {"data": {"format": "openai_chat", "split": {"group_by": None, "stratify_by": None,
                                                                                     "val_fraction": 0.1, "test_fraction": 0.2, "seed": 0}}})
    _overlay(env / "parameters_filtering.yml", {"filtering": {"verifiers": ["format", "schema", "reference", "consistency", "judge"],
                                                              "fill_from_references": False}})
    with FakeOpenAI(reply=teacher_reply) as teacher:
        _overlay(env / "parameters_teacher.yml", {"teacher": {"base_url": teacher.base_url, "model": "teacher", "api_key_env": None,
                                                              "strategy": "native", "structured_outputs": "off"}})
        result = kedro(project, "run", "--env", "unlabelled")
    assert result.returncode == 0, result.stderr[-4000:]
    return project / "data" / "unlabelled", result.stdout


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_the_teacher_labels_and_the_verifiers_decide(unlabelled_run):
    outputs, _ = unlabelled_run
    assert all(request["reference"] is None for request in _jsonl(outputs / "02_intermediate" / "requests.jsonl"))
    assert _jsonl(outputs / "05_model_input" / "teacher_seed_examples.jsonl") == [], "no labelled request to set aside"
    examples = _jsonl(outputs / "05_model_input" / "distill_train.jsonl")
    assert examples and all({"consistency", "judge"} <= set(example["verifiers_passed"]) for example in examples)
    exported = _jsonl(outputs / "05_model_input" / "distill_train_openai.jsonl")
    assert len(exported) == len(examples)
    assert all(row["messages"][-1]["role"] == "assistant" and row["messages"][-1]["tool_calls"] for row in exported)


def test_every_stage_is_scored_against_the_teachers_greedy_answer(unlabelled_run):
    outputs, stdout = unlabelled_run
    scored = _jsonl(outputs / "05_model_input" / "evaluation_requests.jsonl")
    assert scored and all(r["reference"] is not None and r["meta"]["reference_source"] == "teacher" for r in scored)
    metrics = pd.read_parquet(outputs / "08_reporting" / "stage_metrics.parquet").set_index("stage")
    assert pd.isna(metrics.loc["teacher", "exact_match"]), "the teacher is not scored against itself"
    students = metrics.drop(index="teacher")
    assert (students["reference"] == "teacher").all() and students["exact_match"].notna().all()
    for table in (stdout, (outputs / "08_reporting" / "report.md").read_text()):
        assert "| reference |" in table
        assert "| teacher |" in next(line for line in table.splitlines() if line.startswith("| student_sft |"))
