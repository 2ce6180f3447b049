"""parse_calls: every accepted form, every error reason, and no exceptions on junk."""

import json
import time
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from supertiny.calls import ParseResult, call_names, format_calls, parse_calls

LIGHTS_CALL = {"name": "set_lights", "arguments": {"room": "kitchen", "brightness": 40}}
FAN_CALL = {"name": "set_fan", "arguments": {"speed": "low speed"}}


def parsed(text=None, tool_calls=None) -> list[dict]:
    result = parse_calls(text, tool_calls=tool_calls)
    assert result.ok, result.error
    return result.calls


def error(text=None, tool_calls=None) -> str:
    result = parse_calls(text, tool_calls=tool_calls)
    assert not result.ok and result.calls is None
    return result.error


def test_list_of_calls():
    assert parsed(json.dumps([LIGHTS_CALL, FAN_CALL])) == [LIGHTS_CALL, FAN_CALL]


def test_single_call_object():
    assert parsed(json.dumps(LIGHTS_CALL)) == [LIGHTS_CALL]


@pytest.mark.parametrize("key", ["calls", "tool_calls"])
def test_wrappers(key):
    assert parsed(json.dumps({key: [LIGHTS_CALL, FAN_CALL]})) == [LIGHTS_CALL, FAN_CALL]


def test_empty_list_is_no_call():
    assert parsed("[]") == []
    assert parsed(' {"calls": []} ') == []


def test_code_fence():
    text = "```json\n" + json.dumps([LIGHTS_CALL], indent=2) + "\n```"
    assert parsed(text) == [LIGHTS_CALL]


def test_prose_around_json():
    text = f"Sure, here you go: {json.dumps(LIGHTS_CALL)} Let me know {{if}} that helps!"
    assert parsed(text) == [LIGHTS_CALL]


def test_prose_with_braces_and_non_call_json_before_the_calls():
    text = "Options {a, b} and [1, 2] were considered; final: " + json.dumps([FAN_CALL])
    assert parsed(text) == [FAN_CALL]


def test_string_arguments_and_parameters_alias():
    text = json.dumps([
        {"name": "set_lights", "arguments": json.dumps(LIGHTS_CALL["arguments"])},
        {"name": "set_fan", "parameters": {"speed": "low speed"}},
    ])
    assert parsed(text) == [LIGHTS_CALL, FAN_CALL]


def test_openai_tool_calls_inside_text():
    text = json.dumps([
        {"id": "call_1", "type": "function",
         "function": {"name": "set_lights", "arguments": json.dumps(LIGHTS_CALL["arguments"])}},
    ])
    assert parsed(text) == [LIGHTS_CALL]


def test_openai_tool_calls_argument_as_dicts():
    tool_calls = [{"id": "c1", "type": "function",
                   "function": {"name": "set_fan", "arguments": '{"speed": "low speed"}'}}]
    assert parsed(tool_calls=tool_calls) == [FAN_CALL]


def test_openai_tool_calls_argument_as_sdk_objects():
    tool_calls = [
        SimpleNamespace(id="c1", type="function",
                        function=SimpleNamespace(name="set_lights", arguments=json.dumps(LIGHTS_CALL["arguments"]))),
        SimpleNamespace(id="c2", type="function", function=SimpleNamespace(name="set_fan", arguments='{"speed": "low speed"}')),
    ]
    assert parsed(tool_calls=tool_calls) == [LIGHTS_CALL, FAN_CALL]


def test_tool_calls_take_precedence_and_empty_means_no_call():
    assert parsed("not json at all", tool_calls=[]) == []
    assert parsed(json.dumps([LIGHTS_CALL]), tool_calls=[FAN_CALL]) == [FAN_CALL]


def test_missing_null_or_blank_arguments_mean_no_arguments():
    text = '[{"name": "a"}, {"name": "b", "arguments": null}, {"name": "c", "arguments": ""}]'
    assert parsed(text) == [{"name": n, "arguments": {}} for n in "abc"]


def test_doubly_encoded_json_string():
    assert parsed(json.dumps(json.dumps([LIGHTS_CALL]))) == [LIGHTS_CALL]


def test_output_is_normalised_and_extra_keys_dropped():
    calls = parsed('{"id": 7, "type": "function", "name": "f", "arguments": {"x": 1}}')
    assert calls == [{"name": "f", "arguments": {"x": 1}}]
    assert list(calls[0]) == ["name", "arguments"]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty text"),
        ("  \n\t ", "empty text"),
        ("I would turn on the lights.", "no JSON found"),
        ('{"arguments": {"room": "x"}}', "call 1 has no 'name'"),
        ('[{"name": "a", "arguments": {}}, {"arguments": {}}]', "call 2 has no 'name'"),
        ('[{"name": "a", "arguments": {}}, 3]', "call 2 is not an object"),
        ('[{"name": 5, "arguments": {}}]', "name of call 1 is not a non-empty string"),
        ('{"name": "x", "arguments": 5}', "arguments of call 'x' is not an object"),
        ('{"name": "x", "arguments": [1]}', "arguments of call 'x' is not an object"),
        ('{"name": "x", "arguments": "{oops"}', "arguments of call 'x' are not valid JSON"),
        ('{"name": "x", "arguments": "[1, 2]"}', "arguments of call 'x' is not an object"),
        ('{"calls": {"name": "x"}}', "'calls' is not a list"),
        ("42", "JSON number is not a call or a list of calls"),
        ('"just a string"', "no JSON found"),
        ('{"name": "x", "arguments": {"t": NaN}}', "no JSON found"),
    ],
)
def test_errors_with_reasons(text, reason):
    assert error(text) == reason


def test_error_inside_prose_reports_the_bad_call():
    assert error('Calling: {"name": "x", "arguments": 5} now') == "arguments of call 'x' is not an object"


def test_fragment_of_a_bad_answer_is_not_accepted():
    # The inner object is a valid call, but the answer around it is not.
    assert error('[{"name": "a", "arguments": {"b": {"name": "c"}}}, {"arguments": {}}]') == "call 2 has no 'name'"


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({}, "no text and no tool_calls"),
        ({"text": 42}, "text is a int, not a string"),
        ({"text": b"[]"}, "text is a bytes, not a string"),
        ({"tool_calls": "[]"}, "tool_calls is a str, not a list"),
        ({"tool_calls": [object()]}, "call 1 is not an object"),
        ({"tool_calls": [SimpleNamespace(function=SimpleNamespace(name=None, arguments="{}"))]},
         "name of call 1 is not a non-empty string"),
        ({"tool_calls": [SimpleNamespace(function=SimpleNamespace(name="f", arguments="{bad"))]},
         "arguments of call 'f' are not valid JSON"),
    ],
)
def test_non_text_errors(kwargs, reason):
    assert error(**kwargs) == reason


@pytest.mark.parametrize(
    "junk",
    ["[" * 100_000, "{" * 50_000 + "}" * 50_000, "[" * 3000 + "]" * 3000, '{"a":' * 5000,
     "[1," * 30_000, "```json\n```", "1" * 10_000, '{"name": "f", "arguments": {"x": ' + "9" * 5000 + "}}"],
)
def test_pathological_junk_is_an_error_and_fast(junk):
    start = time.perf_counter()
    result = parse_calls(junk)
    assert isinstance(result, ParseResult) and not result.ok
    assert time.perf_counter() - start < 1.0


@settings(max_examples=300)
@given(st.one_of(st.text(), st.binary().map(lambda b: b.decode("utf-8", "replace"))))
def test_garbage_never_raises(text):
    result = parse_calls(text)
    assert result.ok == (result.error is None) == (result.calls is not None)


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5),
                    lambda children: st.lists(children) | st.dictionaries(st.text(max_size=5), children)))
def test_any_json_value_never_raises(value):
    result = parse_calls(json.dumps(value))
    assert result.ok or result.error
    result = parse_calls(tool_calls=value if isinstance(value, list) else [value])
    assert result.ok or result.error


def test_format_calls_is_compact_canonical_json():
    calls = [{"arguments": {"room": "café", "brightness": 40}, "name": "set_lights"}]
    assert format_calls(calls) == '[{"name": "set_lights", "arguments": {"room": "café", "brightness": 40}}]'
    assert format_calls([]) == "[]"
    assert parsed(format_calls(calls)) == [{"name": "set_lights", "arguments": {"room": "café", "brightness": 40}}]


def test_call_names():
    assert call_names([LIGHTS_CALL, FAN_CALL, LIGHTS_CALL]) == ["set_lights", "set_fan", "set_lights"]


def test_parse_result_is_frozen():
    result = parse_calls("[]")
    with pytest.raises(AttributeError):
        result.calls = None
