"""Common function-calling formats, read into the parts of a request record and written back.

``data.format`` picks the reader of a source row: ``canonical`` (the request record's own
columns, mapped by ``data.fields``), ``openai_chat`` (OpenAI chat fine-tuning JSON Lines),
``xlam`` (the APIGen / xLAM layout) or ``sharegpt_hermes`` (ShareGPT conversations with Hermes
``<tools>`` and ``<tool_call>`` tags). Every reader returns the same parts, ``{id, messages,
tools, reference, meta}``, which the data pipeline then validates the same way; a row a reader
cannot read raises :class:`RowError` naming the source's field.

In every format the last assistant turn is the reference (its calls, ``[]`` for a plain reply)
and the turns before it are the messages; a row without an assistant turn is unlabelled. An
earlier assistant turn's calls become its content in the call module's text form
(``format_calls``), the form the student learns, since a message is ``{role, content}``.

:func:`to_openai_chat` writes verified examples back as OpenAI chat fine-tuning rows.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Callable, Iterable
from typing import Any

from supertiny.calls import format_calls, parse_calls
from supertiny.errors import ConfigError


class RowError(ValueError):
    """A row that cannot become a request: which field, and why."""

    def __init__(self, field: str, reason: str):
        super().__init__(f"{field}: {reason}")
        self.field, self.reason = field, reason


def decoded(value: Any, field: str) -> Any:
    """Columnar sources often store nested fields as JSON text."""
    if isinstance(value, str) and value.strip()[:1] in ("[", "{"):
        try:
            return json.loads(value)
        except json.JSONDecodeError as error:
            raise RowError(field, f"not valid JSON ({error})") from None
    return value


def _meta(row: dict[str, Any], used: Iterable[str]) -> dict[str, Any]:
    """The source's other columns, kept with the request (a split may group or stratify by them)."""
    used = set(used)
    return {key: value for key, value in row.items() if key not in used}


def _as_list(value: Any, field: str, what: str) -> list:
    value = decoded(value, field)
    if not isinstance(value, list) or not value:
        raise RowError(field, f"missing or empty (expected {what})")
    return value


# ---- canonical ------------------------------------------------------------------------------
RECORD_FIELDS = ("id", "messages", "query", "tools", "reference")


def from_canonical(row: dict[str, Any], fields: dict[str, str]) -> dict[str, Any]:
    """The request record's own columns, under the names ``fields`` maps them to; a ``query``
    column (the user's text) stands in for ``messages``."""
    messages = decoded(row.get(fields["messages"]), "messages")
    if messages is None and row.get(fields["query"]) is not None:
        messages = [{"role": "user", "content": row[fields["query"]]}]
    return {
        "id": row.get(fields["id"]),
        "messages": messages,
        "tools": decoded(row.get(fields["tools"]), "tools"),
        "reference": decoded(row.get(fields["reference"]), "reference"),
        "meta": _meta(row, fields.values()),
    }


# ---- openai_chat ----------------------------------------------------------------------------
def _openai_text(content: Any, position: int) -> str | None:
    """Message content: a string, or OpenAI's list of content parts (their text joined)."""
    if content is None or isinstance(content, str):
        return content
    if isinstance(content, list) and all(isinstance(part, dict) for part in content):
        return "".join(part.get("text") or "" for part in content if part.get("type") == "text")
    raise RowError("messages", f"message {position} has content that is neither text nor a list of content parts")


def _openai_calls(message: dict[str, Any], position: int) -> list[dict] | None:
    """An assistant turn's calls (``tool_calls``, or the legacy ``function_call``); None when it has none."""
    tool_calls = message.get("tool_calls")
    if not tool_calls and message.get("function_call"):
        tool_calls = [{"type": "function", "function": message["function_call"]}]
    if not tool_calls:
        return None
    parsed = parse_calls(tool_calls=tool_calls)
    if not parsed.ok:
        raise RowError("messages", f"message {position} (assistant): tool_calls: {parsed.error}")
    return parsed.calls


def from_openai_chat(row: dict[str, Any], fields: dict[str, str]) -> dict[str, Any]:
    """``{messages, tools}``: OpenAI chat messages (assistant turns may carry ``tool_calls``
    with arguments as JSON text) and OpenAI tool schemas."""
    messages = _as_list(row.get("messages"), "messages", "a list of OpenAI chat messages")
    if not all(isinstance(message, dict) for message in messages):
        raise RowError("messages", "a message is not an object")
    assistant = [position for position, message in enumerate(messages) if message.get("role") == "assistant"]
    last = assistant[-1] if assistant else None
    turns = []
    for position, message in enumerate(messages[:last]):
        # OpenAI's newer name for the system role.
        role = "system" if message.get("role") == "developer" else message.get("role")
        content = _openai_text(message.get("content"), position)
        calls = _openai_calls(message, position) if role == "assistant" else None
        turns.append({"role": role, "content": format_calls(calls) if calls else content})
    reference = None
    if last is not None:
        answer = messages[last]
        reference = _openai_calls(answer, last)
        if reference is None:
            if _openai_text(answer.get("content"), last) is None:
                raise RowError("messages", f"message {last} (assistant) has neither tool_calls nor content")
            reference = []  # a plain reply: no call needed
    return {
        "id": row.get(fields["id"]),
        "messages": turns,
        "tools": decoded(row.get("tools"), "tools"),
        "reference": reference,
        "meta": _meta(row, ("messages", "tools", fields["id"])),
    }


def to_openai_chat(examples: Iterable[dict[str, Any]], no_call_reply: str) -> list[dict[str, Any]]:
    """Examples (a request with its verified ``calls``) as OpenAI chat fine-tuning rows: the
    request's messages, then the answer as an assistant turn with ``tool_calls`` (arguments as
    JSON text), or ``no_call_reply`` as its content when the answer is no call. Earlier
    assistant turns in the call module's text form become ``tool_calls`` again, and each tool
    turn after them answers the next of their ids, as the format requires."""
    rows = []
    for example in examples:
        messages, pending = [], []
        for turn, message in enumerate(example["messages"]):
            parsed = parse_calls(message["content"]) if message["role"] == "assistant" else None
            if parsed is not None and parsed.calls and format_calls(parsed.calls) == message["content"]:
                ids = [f"call_{turn}_{index}" for index in range(len(parsed.calls))]
                messages.append({"role": "assistant", "tool_calls": _tool_calls(parsed.calls, ids)})
                pending = ids
            elif message["role"] == "tool" and pending:
                messages.append({"role": "tool", "tool_call_id": pending.pop(0), "content": message["content"]})
            else:
                messages.append({"role": message["role"], "content": message["content"]})
        calls = example["calls"]
        if calls:
            answer = {"role": "assistant", "tool_calls": _tool_calls(calls, [f"call_{index}" for index in range(len(calls))])}
        else:
            answer = {"role": "assistant", "content": no_call_reply}
        rows.append({"messages": [*messages, answer], "tools": example["tools"]})
    return rows


def export_openai_chat(distill_train: list[dict], settings: dict[str, Any]) -> list[dict]:
    """distill_train_openai: the verified examples as OpenAI chat fine-tuning rows
    (``settings``: ``data.openai_export``)."""
    reply = settings.get("no_call_reply")
    if not isinstance(reply, str) or not reply.strip():
        raise ConfigError(f"data.openai_export.no_call_reply must be a non-empty text; got {reply!r}")
    return to_openai_chat(distill_train, reply)


def _tool_calls(calls: list[dict], ids: list[str]) -> list[dict]:
    return [{"id": call_id, "type": "function",
             "function": {"name": call["name"], "arguments": json.dumps(call["arguments"], ensure_ascii=False)}}
            for call, call_id in zip(calls, ids, strict=True)]


# ---- xlam -----------------------------------------------------------------------------------
# Python type names of xLAM tool parameters, as JSON Schema.
_PYTHON_TYPES: dict[str, dict[str, Any]] = {
    "str": {"type": "string"}, "string": {"type": "string"},
    "int": {"type": "integer"}, "integer": {"type": "integer"},
    "float": {"type": "number"}, "number": {"type": "number"},
    "bool": {"type": "boolean"}, "boolean": {"type": "boolean"},
    "list": {"type": "array"}, "array": {"type": "array"}, "tuple": {"type": "array"}, "set": {"type": "array"},
    "sequence": {"type": "array"},
    "dict": {"type": "object"}, "object": {"type": "object"}, "mapping": {"type": "object"},
    "any": {}, "none": {"type": "null"},
}
_ARRAYS = {"list", "tuple", "set", "sequence"}
_OBJECTS = {"dict", "mapping"}


def _split_arguments(text: str) -> list[str]:
    """``"int, List[str]"`` -> ``["int", "List[str]"]``: commas outside brackets."""
    parts, depth, start = [], 0, 0
    for position, char in enumerate(text):
        depth += {"[": 1, "]": -1}.get(char, 0)
        if char == "," and depth == 0:
            parts.append(text[start:position])
            start = position + 1
    return [part.strip() for part in [*parts, text[start:]]]


def python_type_schema(text: str) -> dict[str, Any]:
    """A Python type annotation (``str``, ``List[int]``, ``Dict[str, Any]``, ``Optional[int]``,
    ``Union[int, float]``) as JSON Schema; ValueError for a type it does not know."""
    text = text.strip()
    name, bracket, rest = text.partition("[")
    key = name.strip().lower()
    if not bracket:
        if key not in _PYTHON_TYPES:
            raise ValueError(f"unknown type {text!r}")
        return dict(_PYTHON_TYPES[key])
    if not rest.endswith("]"):
        raise ValueError(f"unbalanced brackets in type {text!r}")
    arguments = _split_arguments(rest[:-1])
    if key == "optional" and len(arguments) == 1:
        return python_type_schema(arguments[0])
    if key == "union":
        return {"anyOf": [python_type_schema(argument) for argument in arguments]}
    if key in _ARRAYS:
        items = [python_type_schema(argument) for argument in arguments if argument != "..."]
        if len(items) == 1:
            return {"type": "array", "items": items[0]}
        return {"type": "array", "items": {"anyOf": items}} if items else {"type": "array"}
    if key in _OBJECTS and len(arguments) == 2:
        return {"type": "object", "additionalProperties": python_type_schema(arguments[1])}
    raise ValueError(f"unknown type {text!r}")


def _xlam_tool(tool: Any, position: int) -> dict[str, Any]:
    """An xLAM tool, ``{name, description, parameters: {arg: {type, description, default}}}``,
    as an OpenAI tool schema: an argument is required unless its type says ``optional`` or it
    has a default. A tool whose parameters already are a JSON Schema object is kept as it is."""
    if not isinstance(tool, dict) or not isinstance(tool.get("name"), str):
        raise RowError("tools", f"tool {position} is not an object with a name")
    name, parameters = tool["name"], tool.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise RowError("tools", f"tool {name!r}: parameters is not an object")
    if parameters.get("type") == "object" and isinstance(parameters.get("properties"), dict):
        schema = parameters
    else:
        properties, required = {}, []
        for argument, spec in parameters.items():
            if not isinstance(spec, dict) or not isinstance(spec.get("type"), str):
                raise RowError("tools", f"tool {name!r}, argument {argument!r}: expected {{type, description, default}}")
            # "str, optional" / "int, default 10": the type, then how it may be left out.
            type_text, *qualifiers = _split_arguments(spec["type"])
            optional = any(q.lower().startswith(("optional", "default")) for q in qualifiers) or type_text.lower().startswith("optional[")
            try:
                property_schema = python_type_schema(type_text)
            except ValueError as error:
                raise RowError("tools", f"tool {name!r}, argument {argument!r}: {error}") from None
            if spec.get("description"):
                property_schema["description"] = spec["description"]
            if "default" in spec:
                property_schema["default"] = spec["default"]
            properties[argument] = property_schema
            if not optional and "default" not in spec:
                required.append(argument)
        schema = {"type": "object", "properties": properties, "required": required}
    function = {"name": name, "description": tool.get("description") or "", "parameters": schema}
    return {"type": "function", "function": function}


def from_xlam(row: dict[str, Any], fields: dict[str, str]) -> dict[str, Any]:
    """``{query, tools, answers}``, the last two as JSON text: xLAM tools and ``[{name, arguments}]``."""
    query = row.get("query")
    if not isinstance(query, str) or not query.strip():
        raise RowError("query", "missing or empty (expected the user's request as text)")
    tools = _as_list(row.get("tools"), "tools", "a list of xLAM tools")
    return {
        "id": row.get(fields["id"]),
        "messages": [{"role": "user", "content": query}],
        "tools": [_xlam_tool(tool, position) for position, tool in enumerate(tools)],
        "reference": decoded(row.get("answers"), "answers"),
        "meta": _meta(row, ("query", "tools", "answers", fields["id"])),
    }


# ---- sharegpt_hermes ------------------------------------------------------------------------
HERMES_ROLES = {"system": "system", "human": "user", "gpt": "assistant", "tool": "tool"}
_TOOLS_BLOCK = re.compile(r"<tools>(.*?)</tools>", re.DOTALL)
_TOOL_CALL = re.compile(r"<tool_call>(.*?)</tool_call>", re.DOTALL)


def _literals(text: str) -> list[Any]:
    """The values in a tag: JSON, a Python literal (some exports write them with repr), or
    several JSON values one after another; ValueError when it is none of these."""
    text = text.strip()
    for parse in (json.loads, ast.literal_eval):
        try:
            value = parse(text)
            return value if isinstance(value, list) else [value]
        except (ValueError, SyntaxError, RecursionError):
            pass
    values, position, decoder = [], 0, json.JSONDecoder()
    while position < len(text):
        value, position = decoder.raw_decode(text, position)  # ValueError when it is not JSON
        values.append(value)
        while position < len(text) and text[position] in " \t\r\n,":
            position += 1
    return values


def _hermes_tools(value: str, turn: int) -> list[dict]:
    tools = []
    for block in _TOOLS_BLOCK.findall(value):
        try:
            entries = _literals(block)
        except ValueError as error:
            raise RowError("conversations", f"turn {turn}: the <tools> block is not JSON ({error})") from None
        for entry in entries:
            if not isinstance(entry, dict):
                raise RowError("conversations", f"turn {turn}: a tool in <tools> is not an object")
            tools.append(entry if "function" in entry else {"type": "function", "function": entry})
    return tools


def _hermes_calls(value: str, turn: int) -> list[dict]:
    """The calls in ``<tool_call>`` tags of an assistant turn (none: a plain reply)."""
    blocks = _TOOL_CALL.findall(value)
    if value.count("<tool_call>") != len(blocks):
        raise RowError("conversations", f"turn {turn}: a <tool_call> tag is not closed")
    calls = []
    for block in blocks:
        try:
            calls.extend(_literals(block))
        except ValueError as error:
            raise RowError("conversations", f"turn {turn}: a <tool_call> is not JSON ({error})") from None
    parsed = parse_calls(tool_calls=calls)
    if not parsed.ok:
        raise RowError("conversations", f"turn {turn}: <tool_call>: {parsed.error}")
    return parsed.calls


def from_sharegpt_hermes(row: dict[str, Any], fields: dict[str, str]) -> dict[str, Any]:
    """``{conversations: [{from: system|human|gpt|tool, value}]}``: the tools in the system
    turn between ``<tools>`` tags, calls as ``<tool_call>{...}</tool_call>`` in ``gpt`` turns.
    The system turn that holds the tools is not kept as a message: the rest of its text tells
    a model how to write these tags, which the project's own prompt does instead."""
    conversations = _as_list(row.get("conversations"), "conversations", "a list of {from, value} turns")
    turns = []
    for position, turn in enumerate(conversations):
        if not isinstance(turn, dict) or not isinstance(turn.get("value"), str):
            raise RowError("conversations", f"turn {position} is not {{from, value: str}}")
        if turn.get("from") not in HERMES_ROLES:
            raise RowError("conversations", f"turn {position} is from {turn.get('from')!r} (expected one of {sorted(HERMES_ROLES)})")
        turns.append((HERMES_ROLES[turn["from"]], turn["value"]))
    tools, messages = None, []
    assistant = [position for position, (role, _) in enumerate(turns) if role == "assistant"]
    last = assistant[-1] if assistant else None
    for position, (role, value) in enumerate(turns[:last]):
        if role == "system" and "<tools>" in value:
            tools = (tools or []) + _hermes_tools(value, position)
            continue
        calls = _hermes_calls(value, position) if role == "assistant" else None
        messages.append({"role": role, "content": format_calls(calls) if calls else value})
    return {
        "id": row.get(fields["id"]),
        "messages": messages,
        "tools": tools if tools is not None else decoded(row.get("tools"), "tools"),
        "reference": None if last is None else _hermes_calls(turns[last][1], last),
        "meta": _meta(row, ("conversations", fields["id"])),
    }


# data.format -> the reader of a source row.
READERS: dict[str, Callable[[dict[str, Any], dict[str, str]], dict[str, Any]]] = {
    "canonical": from_canonical,
    "openai_chat": from_openai_chat,
    "xlam": from_xlam,
    "sharegpt_hermes": from_sharegpt_hermes,
}
# The source columns each format reads (canonical: data.fields), for messages about a source.
FORMAT_COLUMNS = {
    "openai_chat": ["messages", "tools"],
    "xlam": ["query", "tools", "answers"],
    "sharegpt_hermes": ["conversations"],
}
