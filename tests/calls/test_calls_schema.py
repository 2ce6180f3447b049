"""validate_calls, check_tool_schema and tool_names."""

import copy

import pytest

from supertiny.calls import check_tool_schema, tool_names, validate_calls
from supertiny.calls.schema import _compiled


def call(name: str, **arguments) -> dict:
    return {"name": name, "arguments": arguments}


def test_valid_calls_pass(tools):
    calls = [
        call("set_lights", room="kitchen", brightness=40, on=True),
        call("set_thermostat", mode="heat", temperature=21.5),
        call("send_message", to="bob", body="hi", attachments=[{"url": "http://x"}]),
    ]
    assert validate_calls(calls, tools) == []
    assert validate_calls([], tools) == []


def test_unknown_function(tools):
    assert validate_calls([call("open_door", door="front")], tools) == ["call 1 'open_door': unknown function"]


def test_missing_required(tools):
    assert validate_calls([call("set_lights", on=True, brightness=3)], tools) == [
        "call 1 'set_lights': missing required argument 'room'"
    ]


def test_each_missing_required_argument_reported_once(tools):
    assert validate_calls([call("set_thermostat")], tools) == [
        "call 1 'set_thermostat': missing required argument 'mode'",
        "call 1 'set_thermostat': missing required argument 'temperature'",
    ]


def test_wrong_type(tools):
    assert validate_calls([call("set_lights", room="kitchen", on=True, brightness="high")], tools) == [
        "call 1 'set_lights': argument 'brightness': 'high' is not of type 'integer'"
    ]


def test_boolean_is_not_an_integer(tools):
    assert validate_calls([call("set_lights", room="kitchen", on=True, brightness=True)], tools) == [
        "call 1 'set_lights': argument 'brightness': True is not of type 'integer'"
    ]


def test_enum(tools):
    assert validate_calls([call("set_thermostat", mode="turbo", temperature=20)], tools) == [
        "call 1 'set_thermostat': argument 'mode': 'turbo' is not one of ['heat', 'cool', 'auto']"
    ]


def test_unknown_argument(tools):
    assert validate_calls([call("set_lights", room="kitchen", on=True, colour="red")], tools) == [
        "call 1 'set_lights': unknown argument 'colour'"
    ]


def test_undeclared_arguments_allowed_when_schema_opens_them():
    tool = {"type": "function", "function": {"name": "f", "parameters": {
        "type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": {"type": "integer"}}}}
    assert validate_calls([call("f", a="x", b=2)], [tool]) == []
    assert validate_calls([call("f", a="x", b="two")], [tool]) == ["call 1 'f': argument 'b': 'two' is not of type 'integer'"]


def test_explicitly_closed_schema_reports_unknown_argument_once():
    tool = {"type": "function", "function": {"name": "f", "parameters": {
        "type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": False}}}
    assert validate_calls([call("f", a="x", b=2)], [tool]) == ["call 1 'f': unknown argument 'b'"]


def test_nested_errors_name_the_path(tools):
    calls = [call("send_message", to="bob", body="hi", attachments=[{"url": "a"}, {"uri": 3}])]
    assert validate_calls(calls, tools) == ["call 1 'send_message': missing required argument 'attachments[1].url'"]


def test_errors_name_the_call_index(tools):
    calls = [call("set_fan", speed="low speed"), call("set_fan", speed="warp"), call("nope")]
    assert validate_calls(calls, tools) == [
        "call 2 'set_fan': argument 'speed': 'warp' is not one of ['low speed', 'high speed']",
        "call 3 'nope': unknown function",
    ]


def test_malformed_call_records_are_errors_not_exceptions(tools):
    assert validate_calls([{"arguments": {}}, {"name": "set_fan", "arguments": "x"}], tools) == [
        "call 1: not a call object with a name",
        "call 2 'set_fan': arguments is not an object",
    ]


def test_bare_tool_form_and_tool_without_parameters():
    tools = [{"name": "now"}, {"name": "echo", "parameters": {"type": "object", "properties": {"x": {}}}}]
    assert tool_names(tools) == ["now", "echo"]
    assert validate_calls([call("now"), call("echo", x=[1])], tools) == []


def test_invalid_tool_schema_is_reported_by_validate_calls():
    tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "objekt"}}}
    (message,) = validate_calls([call("f")], [tool])
    assert message.startswith("call 1 'f': tool parameters are not a valid JSON Schema:")


def test_validators_are_cached_per_schema(tools):
    validate_calls([call("set_lights", room="a")], tools)
    hits = _compiled.cache_info().hits
    # An equal schema in another dict, keys reordered, reuses the compiled validator.
    reordered = copy.deepcopy(tools)
    reordered[0]["function"]["parameters"] = dict(reversed(list(reordered[0]["function"]["parameters"].items())))
    validate_calls([call("set_lights", room="a")], reordered)
    assert _compiled.cache_info().hits == hits + 1


def test_tool_names(tools):
    assert tool_names(tools) == ["set_lights", "set_thermostat", "set_fan", "send_message"]
    assert tool_names([]) == []


def test_check_tool_schema_accepts_good_tools(tools):
    for tool in tools:
        assert check_tool_schema(tool) == []
    assert check_tool_schema({"type": "function", "function": {"name": "now"}}) == []


@pytest.mark.parametrize(
    ("tool", "errors"),
    [
        ("set_lights", ["tool is not an object with a 'function' object"]),
        ({"type": "function", "function": "f"}, ["tool is not an object with a 'function' object"]),
        ({"type": "function", "function": {"parameters": {"type": "object"}}}, ["tool has no name"]),
        ({"type": "function", "function": {"name": " ", "parameters": {"type": "object"}}}, ["tool has no name"]),
        ({"type": "function", "function": {"name": "f", "parameters": []}}, ["tool 'f': parameters is not an object"]),
        ({"type": "function", "function": {"name": "f", "parameters": {"type": "string"}}},
         ["tool 'f': parameters must describe an object, not 'string'"]),
        ({"type": "function", "function": {"name": "f", "parameters": {
            "type": "object", "properties": {"a": {}}, "required": ["a", "b"]}}},
         ["tool 'f': required argument 'b' is not in properties"]),
    ],
)
def test_check_tool_schema_rejects_bad_tools(tool, errors):
    assert check_tool_schema(tool) == errors


@pytest.mark.parametrize(
    "parameters",
    [{"type": "objekt"}, {"type": "object", "properties": {"a": {"type": 5}}}, {"type": "object", "required": "a"}],
)
def test_check_tool_schema_rejects_invalid_json_schema(parameters):
    (message,) = check_tool_schema({"type": "function", "function": {"name": "f", "parameters": parameters}})
    assert message.startswith("tool 'f': parameters is not a valid JSON Schema: ")
