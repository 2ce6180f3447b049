"""The shared prompt format: each tools mode, the target text, and prompt/answer token boundaries."""

from __future__ import annotations

import json

import pytest

from supertiny.calls import parse_calls
from supertiny.prompt import INSTRUCTION, TOOLS_MODES, build_messages, end_of_turn, prompt_text, prompt_tokens, signature, target_text

CALLS = [{"name": "set_lights", "arguments": {"room": "kitchen", "on": True}}]


@pytest.fixture
def request_(tool_catalog) -> dict:
    return {"id": "r1", "messages": [{"role": "user", "content": "Kitchen lights on, please"}], "tools": tool_catalog, "reference": CALLS}


def test_none_is_one_fixed_instruction_without_tools(request_):
    messages = build_messages(request_, "none")
    assert messages == [{"role": "system", "content": INSTRUCTION}, {"role": "user", "content": "Kitchen lights on, please"}]


def test_names_lists_the_offered_functions_only(request_):
    system = build_messages(request_, "names")[0]["content"]
    assert system.startswith(INSTRUCTION) and "set_lights, start_timer" in system
    assert "Turn lights on" not in system  # no descriptions, no schemas


def test_full_gives_each_schema_as_compact_json(request_, tool_catalog):
    lines = build_messages(request_, "full")[0]["content"].splitlines()[1:]
    assert [json.loads(line) for line in lines] == [tool["function"] for tool in tool_catalog]


def test_signatures_give_one_line_per_function_without_descriptions(request_):
    system = build_messages(request_, "signatures")[0]["content"]
    assert system.splitlines() == [
        f"{INSTRUCTION} Functions:",
        "set_lights(room: kitchen|bedroom, on: boolean, brightness?: integer 0..100)",
        "start_timer(minutes: integer >=1, label?: string)",
    ]
    assert "Turn lights" not in system and "default" not in system


def test_a_signature_without_parameters_is_an_empty_call():
    assert signature({"type": "function", "function": {"name": "stop_charging", "description": "Stop."}}) == "stop_charging()"
    empty = {"name": "ping", "parameters": {"type": "object", "properties": {}}}  # the bare form, no "function" wrapper
    assert signature(empty) == "ping()"


def test_a_signature_shows_nested_arrays_unions_bounds_and_patterns_compactly():
    tool = {"type": "function", "function": {"name": "plan", "parameters": {
        "type": "object",
        "properties": {
            "days": {"type": "array", "items": {"type": "string", "enum": ["mon", "tue"]}, "uniqueItems": True},
            "stops": {"type": "array", "items": {"type": "object", "properties": {
                "place": {"type": "string"}, "minutes": {"type": "integer", "exclusiveMinimum": 0}}, "required": ["place"]}},
            "speed": {"type": "number", "maximum": 1.5},
            "note": {"type": ["string", "null"]},
            "level": {"anyOf": [{"type": "integer", "minimum": 1, "maximum": 3}, {"const": "max"}]},
            "at": {"type": "string", "pattern": "^[0-2][0-9]:[0-5][0-9]$"},
            "extra": {"type": "object"},
            "flags": {"enum": [1, True, None]},
        },
        "required": ["days"],
    }}}
    assert signature(tool) == (
        "plan(days: [mon|tue], stops?: [{place: string, minutes?: integer >0}], speed?: number <=1.5, note?: string|null, "
        "level?: integer 1..3|max, at?: string /^[0-2][0-9]:[0-5][0-9]$/, extra?: object, flags?: 1|true|null)"
    )


def test_an_unknown_mode_is_refused(request_):
    with pytest.raises(ValueError, match="tools_mode must be one of"):
        build_messages(request_, "some")


def test_the_request_system_message_follows_the_instruction(request_):
    request_["messages"] = [{"role": "system", "content": "You live in a car."}, *request_["messages"]]
    messages = build_messages(request_, "none")
    assert [m["role"] for m in messages] == ["system", "user"]
    assert messages[0]["content"] == f"{INSTRUCTION}\n\nYou live in a car."


@pytest.mark.parametrize("mode", TOOLS_MODES)
def test_prompt_text_ends_with_the_generation_prompt(request_, tiny_model, mode):
    text = prompt_text(request_, tiny_model.tokenizer, mode)
    assert text.startswith("<|im_start|>system\n" + INSTRUCTION)
    assert text.endswith("<|im_start|>user\nKitchen lights on, please<|im_end|>\n<|im_start|>assistant\n")


def test_prompt_lengths_grow_with_the_tools_shown(request_, tiny_model):
    tokenizer = tiny_model.tokenizer
    tokens = {mode: prompt_tokens(request_, tokenizer, mode) for mode in TOOLS_MODES}
    assert tokens["none"] == len(tokenizer(prompt_text(request_, tokenizer, "none"))["input_ids"])
    assert tokens["none"] < tokens["names"] < tokens["signatures"] < tokens["full"]


def test_target_is_the_canonical_answer_and_the_end_of_turn(tiny_model):
    tokenizer = tiny_model.tokenizer
    assert end_of_turn(tokenizer) == "<|im_end|>" == tokenizer.eos_token
    target = target_text(CALLS, tokenizer)
    assert target == '[{"name": "set_lights", "arguments": {"room": "kitchen", "on": true}}]<|im_end|>'
    assert parse_calls(target.removesuffix("<|im_end|>")).calls == CALLS
    assert target_text([], tokenizer) == "[]<|im_end|>"


def test_prompt_tokens_are_a_prefix_of_prompt_and_answer_tokens(request_, tiny_model):
    """Training tokenises prompt + answer; generation continues the prompt alone: same tokens."""
    tokenizer = tiny_model.tokenizer
    prompt = prompt_text(request_, tokenizer, "none")
    prompt_ids = tokenizer(prompt)["input_ids"]
    full_ids = tokenizer(prompt + target_text(CALLS, tokenizer))["input_ids"]
    assert full_ids[: len(prompt_ids)] == prompt_ids
    assert full_ids[-1] == tokenizer.eos_token_id
