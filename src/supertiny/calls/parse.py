"""Turn model output (text or OpenAI-style tool_calls) into calls, and calls back into text."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

# Model output often has prose or code fences around the JSON. Each '{' or '[' is a
# candidate start; the cap bounds the work spent on junk full of brackets.
MAX_SCAN_ATTEMPTS = 64
_OPENING = re.compile(r"[\[{]")
_WRAPPER_KEYS = ("calls", "tool_calls")
# The item and key separators of an answer's canonical text: what the student learns to write,
# and what its grammar holds it to.
CALL_SEPARATORS = (", ", ": ")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


# NaN and Infinity are not JSON and would break equality of answers downstream.
_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


@dataclass(frozen=True, slots=True)
class ParseResult:
    """Parsed calls, or None with a human-readable `error` saying why parsing failed."""

    calls: list[dict] | None
    error: str | None = None

    @property
    def ok(self) -> bool:
        """True when parsing succeeded (`calls` may still be empty: no call needed)."""
        return self.error is None


def _fail(reason: str) -> ParseResult:
    return ParseResult(None, reason)


def parse_calls(text: str | None = None, tool_calls: list | None = None) -> ParseResult:
    """Parse an answer into normalised `{"name": str, "arguments": dict}` calls; never raises.

    `tool_calls` (OpenAI-style dicts or SDK objects with `.function.name/.arguments`)
    takes precedence over `text` when given; an empty list means no call. `text` may
    hold a list of calls, one call, a `{"calls": [...]}` / `{"tool_calls": [...]}`
    wrapper or OpenAI-style tool calls, optionally fenced or surrounded by prose;
    the first JSON value found there decides. `[]` means no call.
    """
    if tool_calls is not None:
        return _from_tool_calls(tool_calls)
    if text is None:
        return _fail("no text and no tool_calls")
    if not isinstance(text, str):
        return _fail(f"text is a {type(text).__name__}, not a string")
    return _from_text(text, unwrap_string=True)


def format_calls(calls: list[dict]) -> str:
    """Canonical compact JSON text of an answer (name before arguments); parses back equal."""
    ordered = [{"name": call["name"], "arguments": call["arguments"]} for call in calls]
    return json.dumps(ordered, ensure_ascii=False, separators=CALL_SEPARATORS)


def call_names(calls: list[dict]) -> list[str]:
    """Names of the calls in an answer, in order."""
    return [call["name"] for call in calls]


NO_CALL = "(no call)"  # the function label of an answer that calls nothing


def called_functions(calls: list[dict]) -> list[str]:
    """The functions an answer calls, sorted, each once: what reports group answers by;
    ``[NO_CALL]`` for an answer that calls none."""
    return sorted({call["name"] for call in calls}) or [NO_CALL]


def _from_text(text: str, unwrap_string: bool) -> ParseResult:
    stripped = text.strip()
    if not stripped:
        return _fail("empty text")
    try:
        value = _DECODER.decode(stripped)
    except (ValueError, RecursionError):
        return _scan(stripped)
    if isinstance(value, str) and unwrap_string:
        # Calls serialised twice arrive as one JSON string; undo one level only.
        return _from_text(value, unwrap_string=False)
    return _interpret(value)


def _scan(text: str) -> ParseResult:
    """Find the first JSON value inside `text` that decodes to calls."""
    first_error = None
    position = 0
    for _ in range(MAX_SCAN_ATTEMPTS):
        match = _OPENING.search(text, position)
        if match is None:
            break
        try:
            value, end = _DECODER.raw_decode(text, match.start())
        except (ValueError, RecursionError):
            position = match.start() + 1
            continue
        result = _interpret(value)
        if result.ok:
            return result
        first_error = first_error or result.error
        # Skip the whole value: a fragment of a bad answer must not pass as an answer.
        position = end
    return _fail(first_error or "no JSON found")


def _interpret(value: Any) -> ParseResult:
    """Read a decoded JSON value as an answer."""
    if isinstance(value, dict):
        if "name" not in value and "function" not in value:
            for key in _WRAPPER_KEYS:
                if key in value:
                    inner = value[key]
                    if not isinstance(inner, list):
                        return _fail(f"'{key}' is not a list")
                    return _calls_from_list(inner)
        return _calls_from_list([value])
    if isinstance(value, list):
        return _calls_from_list(value)
    return _fail(f"JSON {_json_kind(value)} is not a call or a list of calls")


def _json_kind(value: Any) -> str:
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    if value is None:
        return "null"
    return "number"


def _from_tool_calls(tool_calls: Any) -> ParseResult:
    if not isinstance(tool_calls, (list, tuple)):
        return _fail(f"tool_calls is a {type(tool_calls).__name__}, not a list")
    return _calls_from_list([_tool_call_as_dict(item) for item in tool_calls])


def _tool_call_as_dict(item: Any) -> Any:
    """SDK tool-call objects expose `.function.name` and `.function.arguments`."""
    if isinstance(item, dict):
        return item
    function = getattr(item, "function", None)
    if function is None:
        return item
    if isinstance(function, dict):
        return {"function": function}
    return {"name": getattr(function, "name", None), "arguments": getattr(function, "arguments", None)}


def _calls_from_list(items: list) -> ParseResult:
    calls = []
    for index, item in enumerate(items, start=1):
        call = _call(item, index)
        if isinstance(call, str):
            return _fail(call)
        calls.append(call)
    return ParseResult(calls)


def _call(item: Any, index: int) -> dict | str:
    """One normalised call, or the reason it is not one."""
    if not isinstance(item, dict):
        return f"call {index} is not an object"
    function = item.get("function")
    source = function if isinstance(function, dict) else item
    if "name" not in source:
        return f"call {index} has no 'name'"
    name = source["name"]
    if not isinstance(name, str) or not name:
        return f"name of call {index} is not a non-empty string"
    if "arguments" in source:
        arguments = source["arguments"]
    else:
        arguments = source.get("parameters")
    # Missing, null or blank arguments are how APIs write a call without arguments.
    if arguments is None or (isinstance(arguments, str) and not arguments.strip()):
        return {"name": name, "arguments": {}}
    if isinstance(arguments, str):
        try:
            arguments = _DECODER.decode(arguments)
        except (ValueError, RecursionError):
            return f"arguments of call '{name}' are not valid JSON"
    if not isinstance(arguments, dict):
        return f"arguments of call '{name}' is not an object"
    return {"name": name, "arguments": dict(arguments)}
