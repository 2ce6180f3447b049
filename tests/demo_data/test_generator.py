"""The demo dataset: the committed files are what the generator writes, and the gold labels
keep the promises the generator's docstring makes."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from supertiny.demo_data import generator
from supertiny.demo_data.generator import (
    DEFAULT_COUNT,
    DEFAULT_SEED,
    REQUESTS_FILE,
    TOOLS_FILE,
    dump_rows,
    dump_tools,
    duration_surfaces,
    generate,
    template_catalog,
    time_surfaces,
)

ROOT = Path(__file__).resolve().parents[2]
RAW = ROOT / "data" / "01_raw"
ROW_FIELDS = ["id", "messages", "tools", "reference", "template", "intent"]
# Free-text arguments: copied from the user's text, so they must appear in it verbatim.
FREE_TEXT = {
    "make_call": ["contact"], "send_message": ["contact", "message"], "navigate_to": ["destination"],
    "add_to_shopping_list": ["item"], "remove_from_shopping_list": ["item"], "set_timer": ["label"],
    "cancel_timer": ["label"], "set_alarm": ["label"], "set_reminder": ["text"], "get_weather": ["location"],
    "play_music": ["song", "artist", "playlist"],
}


@pytest.fixture(scope="module")
def data() -> tuple[list[dict], list[dict]]:
    return generate(DEFAULT_SEED, DEFAULT_COUNT)


@pytest.fixture(scope="module")
def tools(data) -> list[dict]:
    return data[0]


@pytest.fixture(scope="module")
def rows(data) -> list[dict]:
    return data[1]


@pytest.fixture(scope="module")
def schemas(tools) -> dict[str, dict]:
    return {tool["function"]["name"]: tool["function"]["parameters"] for tool in tools}


def _kind(row: dict) -> str:
    return "no_call" if not row["reference"] else "single" if len(row["reference"]) == 1 else "parallel"


# ---------------------------------------------------------------- reproducibility


def test_committed_files_are_what_the_default_seed_writes(data):
    tools, rows = data
    assert (RAW / TOOLS_FILE).read_bytes() == dump_tools(tools).encode("utf-8"), "regenerate: see generator docstring"
    assert (RAW / REQUESTS_FILE).read_bytes() == dump_rows(rows).encode("utf-8"), "regenerate: see generator docstring"


def test_cli_writes_the_committed_bytes(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    subprocess.run(
        [sys.executable, "-m", "supertiny.demo_data.generator", "--seed", "0", "--out", str(tmp_path)],
        check=True, cwd=ROOT, env=env, capture_output=True,
    )
    for name in (TOOLS_FILE, REQUESTS_FILE):
        assert (tmp_path / name).read_bytes() == (RAW / name).read_bytes(), name


def test_same_seed_same_rows_other_seed_other_rows():
    _, first = generate(3, 300)
    _, again = generate(3, 300)
    _, other = generate(4, 300)
    assert dump_rows(first) == dump_rows(again)
    assert dump_rows(first) != dump_rows(other)


def test_requests_file_stays_small():
    assert (RAW / REQUESTS_FILE).stat().st_size < 1_500_000


# ---------------------------------------------------------------- size and mix


def test_sizes_and_unique_ids(tools, rows):
    assert len(tools) >= 22
    assert len({tool["function"]["name"] for tool in tools}) == len(tools)
    assert len(rows) >= 2200
    ids = [row["id"] for row in rows]
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"demo-\d{5}", row_id) for row_id in ids)


def test_mix_of_single_parallel_and_no_call(rows):
    kinds = Counter(_kind(row) for row in rows)
    assert 0.15 <= kinds["parallel"] / len(rows) <= 0.20
    assert kinds["no_call"] / len(rows) >= 0.12
    assert all(2 <= len(row["reference"]) <= 3 for row in rows if _kind(row) == "parallel")


def test_every_no_call_kind_is_present(rows):
    kind_of = {entry["id"]: entry["kind"] for entry in template_catalog()}
    present = Counter(kind_of[row["template"]] for row in rows if row["intent"] == "no_call")
    assert set(present) == {"chitchat", "out_of_scope", "missing_value"}
    assert min(present.values()) >= 0.03 * len(rows)


def test_missing_value_rows_offer_the_tool_they_ask_for(rows):
    target_of = {entry["id"]: entry["target"] for entry in template_catalog() if entry["kind"] == "missing_value"}
    missing = [row for row in rows if row["template"] in target_of]
    assert missing
    for row in missing:
        assert row["reference"] == []
        assert set(target_of[row["template"]]) <= set(row["tools"]), row["id"]


# ---------------------------------------------------------------- schemas and gold calls


def test_tool_schemas_are_valid_json_schema(tools):
    for tool in tools:
        assert tool["type"] == "function"
        function = tool["function"]
        assert set(function) == {"name", "description", "parameters"}
        assert function["description"].strip() and "\n" not in function["description"]
        parameters = function["parameters"]
        Draft202012Validator.check_schema(parameters)
        assert parameters["type"] == "object" and parameters["additionalProperties"] is False
        assert set(parameters["required"]) <= set(parameters["properties"])
        for name, spec in parameters["properties"].items():
            assert spec.get("description"), f"{function['name']}.{name}"
            if "default" in spec:
                assert name not in parameters["required"]
                Draft202012Validator(spec).validate(spec["default"])


def test_schemas_use_enums_ranges_booleans_and_defaults(tools):
    specs = [spec for tool in tools for spec in tool["function"]["parameters"]["properties"].values()]
    assert sum("enum" in spec for spec in specs) >= 10
    assert sum(spec.get("type") in ("integer", "number") and "minimum" in spec and "maximum" in spec for spec in specs) >= 8
    assert sum(spec.get("type") == "boolean" for spec in specs) >= 5
    assert sum("default" in spec for spec in specs) >= 8


def test_every_reference_call_validates_and_is_offered(rows, schemas):
    validators = {name: Draft202012Validator(schema) for name, schema in schemas.items()}
    for row in rows:
        for call in row["reference"]:
            assert set(call) == {"name", "arguments"}
            assert call["name"] in row["tools"], row["id"]
            errors = [error.message for error in validators[call["name"]].iter_errors(call["arguments"])]
            assert not errors, (row["id"], errors)


def test_offered_tools_are_relevant_plus_three_to_five_distractors(rows, schemas):
    for row in rows:
        assert len(set(row["tools"])) == len(row["tools"]) and set(row["tools"]) <= set(schemas)
        relevant = {call["name"] for call in row["reference"]}
        if row["intent"] == "no_call":
            target = next(e["target"] for e in template_catalog() if e["id"] == row["template"])
            relevant = set(target)
        assert 3 <= len(set(row["tools"]) - relevant) <= 5, row["id"]


def test_free_text_values_are_copied_from_the_text(rows):
    checked = 0
    for row in rows:
        content = row["messages"][0]["content"]
        for call in row["reference"]:
            for argument in FREE_TEXT.get(call["name"], []):
                if argument in call["arguments"]:
                    assert call["arguments"][argument] in content, (row["id"], argument)
                    checked += 1
    assert checked > 500


def test_optional_arguments_appear_only_when_said(rows):
    """Spot checks of the annotation conventions on the text itself."""
    for row in rows:
        text = row["messages"][0]["content"].lower()
        for call in row["reference"]:
            arguments = call["arguments"]
            if "unit" in arguments:
                assert ("fahrenheit" in text or "°f" in text or re.search(r"\d ?f\b", text)) if arguments["unit"] == "fahrenheit" \
                    else ("celsius" in text or "°c" in text or re.search(r"\d degrees c\b", text)), row["id"]
            elif "temperature" in arguments:
                assert "fahrenheit" not in text and "°f" not in text and "celsius" not in text, row["id"]
            if call["name"] == "send_message":
                apps = {"whatsapp": "whatsapp", "telegram": "telegram", "signal": "signal", "sms": "sms"}
                said = {app for app, word in apps.items() if word in text}
                assert said == ({arguments["app"]} if "app" in arguments else set()), row["id"]


# ---------------------------------------------------------------- templates and strata


def test_templates_per_intent_and_one_intent_per_template(rows, schemas):
    intents_of = defaultdict(set)
    for row in rows:
        intents_of[row["template"]].add(row["intent"])
    assert all(len(intents) == 1 for intents in intents_of.values())
    templates = defaultdict(set)
    for template, intents in intents_of.items():
        templates[next(iter(intents))].add(template)
    singles = {intent for intent in templates if intent not in ("parallel", "no_call")}
    assert singles == set(schemas), "every function has single-call templates"
    assert all(len(templates[intent]) >= 5 for intent in singles), {i: len(templates[i]) for i in singles}
    assert len(templates["parallel"]) >= 25
    assert len(templates["no_call"]) >= 20


def test_intent_matches_the_reference(rows):
    for row in rows:
        kind = _kind(row)
        if kind == "single":
            assert row["intent"] == row["reference"][0]["name"], row["id"]
        else:
            assert row["intent"] == kind, row["id"]
        assert row["template"].startswith(row["intent"] + "/"), row["id"]


def test_every_catalogued_template_is_used(rows):
    used = {row["template"] for row in rows}
    assert used == {entry["id"] for entry in template_catalog()}


def test_templates_do_not_share_texts(rows):
    """A text made by two templates would leak across a by-template split; here no text repeats at all."""
    seen = {}
    for row in rows:
        key = row["messages"][0]["content"].casefold()
        assert key not in seen, (row["id"], seen.get(key))
        seen[key] = row["id"]


# ---------------------------------------------------------------- rows


def test_row_shape_and_messages(rows):
    for row in rows:
        assert list(row) == ROW_FIELDS
        assert len(row["messages"]) == 1
        message = row["messages"][0]
        assert message["role"] == "user" and set(message) == {"role", "content"}
        assert message["content"].strip() == message["content"] and message["content"]
        assert not re.search(r"[\x00-\x1f]", message["content"]), "no slot markers leak"
        assert "  " not in message["content"]


def test_committed_file_is_one_json_object_per_line():
    lines = (RAW / REQUESTS_FILE).read_text(encoding="utf-8").splitlines()
    assert len(lines) >= 2200
    for line in lines:
        assert list(json.loads(line)) == ROW_FIELDS


# ---------------------------------------------------------------- surfaces


@pytest.mark.parametrize("text, seconds", [
    ("an hour and a half", 5400), ("90 minutes", 5400), ("a minute and a half", 90), ("half an hour", 1800),
    ("two and a half minutes", 150), ("45 secs", 45), ("three quarters of an hour", 2700), ("2.5 hours", 9000),
])
def test_duration_surfaces(text, seconds):
    assert text in duration_surfaces(seconds)


@pytest.mark.parametrize("text, hour, minute", [
    ("7:30 am", 7, 30), ("half past seven in the morning", 7, 30), ("quarter to nine in the evening", 20, 45),
    ("19:30", 19, 30), ("noon", 12, 0), ("seven oh five am", 7, 5), ("11 at night", 23, 0),
])
def test_time_surfaces(text, hour, minute):
    assert text in time_surfaces(hour, minute)


def test_time_surfaces_are_never_bare_twelve_hour_times():
    for hour in range(24):
        for minute in (0, 5, 15, 30, 45):
            for text in time_surfaces(hour, minute):
                if re.fullmatch(r"\d{1,2}:\d\d", text):
                    assert len(text) == 5 and (text[0] == "0" or int(text[:2]) >= 13), text


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(min_value=0, max_value=10_000))
def test_any_seed_gives_valid_rows(seed):
    tools, rows = generate(seed, 400)
    validators = {t["function"]["name"]: Draft202012Validator(t["function"]["parameters"]) for t in tools}
    assert len(rows) == 400
    for row in rows:
        for call in row["reference"]:
            assert call["name"] in row["tools"]
            assert not list(validators[call["name"]].iter_errors(call["arguments"]))
            for argument in FREE_TEXT.get(call["name"], []):
                if argument in call["arguments"]:
                    assert call["arguments"][argument] in row["messages"][0]["content"]


def test_module_docstring_says_how_to_regenerate():
    assert "python -m supertiny.demo_data.generator --seed 0 --out data/01_raw" in generator.__doc__


def test_template_ids_are_written_out_and_checked():
    from supertiny.demo_data import generator

    with pytest.raises(AssertionError, match="used twice"):
        generator.template("set_lights/01", "set_lights")
    with pytest.raises(AssertionError, match="must be set_lights/NN"):
        generator.template("set_light/99", "set_lights")
    # The ids do not follow the order of registration: removing one would rename none.
    assert len({t.id for t in generator.TEMPLATES}) == len(generator.TEMPLATES)
