"""Tool schemas: their names, their own sanity, and validating calls against them."""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from jsonschema.protocols import Validator
from jsonschema.validators import validator_for


def tool_function(tool: Any) -> dict | None:
    """The function part of a tool: `tool["function"]`, or the tool itself in the bare form."""
    if not isinstance(tool, dict):
        return None
    function = tool.get("function", tool)
    return function if isinstance(function, dict) else None


def tool_names(tools: list[dict]) -> list[str]:
    """Names of the functions the tools declare, in order."""
    names = []
    for tool in tools:
        function = tool_function(tool)
        if function is not None and isinstance(function.get("name"), str):
            names.append(function["name"])
    return names


def check_tool_schema(tool: dict) -> list[str]:
    """Problems that make a tool unusable (no name, parameters not a JSON Schema object); empty = fine."""
    function = tool_function(tool)
    if function is None:
        return ["tool is not an object with a 'function' object"]
    errors = []
    name = function.get("name")
    if isinstance(name, str) and name.strip():
        label = f"tool '{name}'"
    else:
        errors.append("tool has no name")
        label = "tool"
    if "parameters" not in function:
        return errors  # a function without arguments
    parameters = function["parameters"]
    if not isinstance(parameters, dict):
        return errors + [f"{label}: parameters is not an object"]
    problem = _compiled(_schema_key(parameters))[1]
    if problem is not None:
        return errors + [f"{label}: parameters is not a valid JSON Schema: {problem}"]
    if parameters.get("type", "object") != "object":
        errors.append(f"{label}: parameters must describe an object, not {parameters['type']!r}")
    properties = parameters.get("properties")
    if isinstance(properties, dict):
        errors.extend(
            f"{label}: required argument {arg!r} is not in properties"
            for arg in parameters.get("required", [])
            if arg not in properties
        )
    return errors


def validate_calls(calls: list[dict], tools: list[dict]) -> list[str]:
    """Errors of the calls against the tools' parameter schemas; empty = valid.

    Arguments not declared in `properties` are errors unless the schema opens them
    with `additionalProperties` or `patternProperties`: an undeclared argument is
    a hallucination the real function would reject.
    """
    schemas: dict[str, dict] = {}
    for tool in tools:
        function = tool_function(tool)
        if function is not None and isinstance(function.get("name"), str):
            schemas.setdefault(function["name"], function.get("parameters") or {})
    errors = []
    for index, call in enumerate(calls, start=1):
        if not isinstance(call, dict) or not isinstance(call.get("name"), str):
            errors.append(f"call {index}: not a call object with a name")
            continue
        label = f"call {index} {call['name']!r}"
        if call["name"] not in schemas:
            errors.append(f"{label}: unknown function")
            continue
        arguments = call.get("arguments", {})
        if not isinstance(arguments, dict):
            errors.append(f"{label}: arguments is not an object")
            continue
        errors.extend(f"{label}: {error}" for error in _argument_errors(arguments, schemas[call["name"]]))
    return errors


def _schema_key(schema: dict) -> str:
    return json.dumps(schema, sort_keys=True)


@lru_cache(maxsize=4096)
def _compiled(schema_key: str) -> tuple[Validator | None, str | None]:
    """A validator for the schema, or None and why the schema is invalid (cached per schema)."""
    schema = json.loads(schema_key)
    cls = validator_for(schema, default=Draft202012Validator)
    try:
        cls.check_schema(schema)
    except SchemaError as error:
        return None, error.message
    return cls(schema), None


def _argument_errors(arguments: dict, schema: dict) -> list[str]:
    validator, problem = _compiled(_schema_key(schema))
    if validator is None:
        return [f"tool parameters are not a valid JSON Schema: {problem}"]
    errors = []
    declared = _closed_properties(schema)
    if declared is not None:
        errors.extend(f"unknown argument {arg!r}" for arg in arguments if arg not in declared)
    try:
        for error in validator.iter_errors(arguments):
            path = list(error.absolute_path)
            if error.validator == "additionalProperties" and not path and declared is not None:
                continue  # already reported as unknown arguments
            if error.validator == "required" and isinstance(error.instance, dict):
                errors.extend(
                    f"missing required argument {_path(path + [arg])!r}"
                    for arg in error.validator_value
                    if arg not in error.instance
                )
            elif path:
                errors.append(f"argument {_path(path)!r}: {error.message}")
            else:
                errors.append(error.message)
    except Exception as error:  # a valid schema can still fail at use, e.g. an unresolvable $ref
        errors.append(f"could not validate arguments: {error}")
    # `required` reports once per missing key, each time listing all of them.
    return list(dict.fromkeys(errors))


def _closed_properties(schema: dict) -> dict | None:
    """Declared properties when undeclared arguments count as errors, else None."""
    properties = schema.get("properties")
    if not isinstance(properties, dict) or "patternProperties" in schema:
        return None
    return properties if schema.get("additionalProperties", False) is False else None


def _path(parts: list) -> str:
    """`["rooms", 0, "name"]` -> `rooms[0].name`."""
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


# ---- guiding schemas: what constrained decoding (the teacher's structured outputs, the student's
# grammar) keeps an answer to. One builder, so the teacher and the student are held to the same shape.

# JSON Schema keywords that grammar engines cannot turn into a grammar: vLLM's (xgrammar) answers
# 400 "Unimplemented keys" for them. They are dropped from the guiding schema only; the schema
# verifier still checks every answer against the tool's full schema.
GRAMMAR_UNSUPPORTED_KEYWORDS = frozenset({"uniqueItems", "contains", "minContains", "maxContains", "dependentSchemas",
                                          "dependentRequired", "if", "then", "else", "not", "unevaluatedProperties",
                                          "unevaluatedItems", "propertyNames", "multipleOf", "$schema", "$id"})
# Keywords whose value is a map of names to subschemas, and those whose value is a subschema
# or a list of them: where the walk goes on (elsewhere a key such as a property's name is data).
_SCHEMA_MAPS = ("properties", "patternProperties", "$defs", "definitions")
_SUBSCHEMAS = ("items", "additionalProperties", "anyOf", "oneOf", "allOf", "prefixItems")


def guiding_schema(schema: Any) -> Any:
    """``schema`` without the keywords a grammar engine cannot enforce (GRAMMAR_UNSUPPORTED_KEYWORDS)."""
    if not isinstance(schema, dict):
        return schema
    guided = {}
    for key, value in schema.items():
        if key in GRAMMAR_UNSUPPORTED_KEYWORDS:
            continue
        if key in _SCHEMA_MAPS and isinstance(value, dict):
            value = {name: guiding_schema(sub) for name, sub in value.items()}
        elif key in _SUBSCHEMAS:
            value = [guiding_schema(sub) for sub in value] if isinstance(value, list) else guiding_schema(value)
        guided[key] = value
    return guided


def unsupported_keywords(schema: Any) -> list[str]:
    """The GRAMMAR_UNSUPPORTED_KEYWORDS a schema uses (what a guided answer is not held to)."""
    found: set[str] = set()

    def walk(node: Any) -> None:
        if not isinstance(node, dict):
            return
        for key, value in node.items():
            if key in GRAMMAR_UNSUPPORTED_KEYWORDS:
                found.add(key)
            if key in _SCHEMA_MAPS and isinstance(value, dict):
                for sub in value.values():
                    walk(sub)
            elif key in _SUBSCHEMAS:
                for sub in value if isinstance(value, list) else [value]:
                    walk(sub)

    walk(schema)
    return sorted(found)


def call_schema(tool: dict) -> dict:
    """One call to this tool: ``{"name": <its name>, "arguments": <its parameters>}``, nothing else."""
    function = tool_function(tool) or {}
    parameters = function.get("parameters") or {"type": "object", "properties": {}, "additionalProperties": False}
    return {
        "type": "object",
        "properties": {"name": {"const": function.get("name")}, "arguments": guiding_schema(parameters)},
        "required": ["name", "arguments"],
        "additionalProperties": False,
    }


def answer_schema(tools: list[dict], names: list[str] | None = None) -> dict:
    """An answer: a JSON array of calls, each to one of ``tools`` (only those in ``names`` when
    given) with that tool's arguments; ``[]`` is the no-call answer."""
    offered = [tool for tool in tools if names is None or (tool_function(tool) or {}).get("name") in names]
    if not offered:
        return {"type": "array", "maxItems": 0}
    return {"type": "array", "items": {"anyOf": [call_schema(tool) for tool in offered]}}


def selection_schema(tools: list[dict]) -> dict:
    """The decomposed teacher's first step: a JSON array of ``{"name": <an offered function>}``."""
    names = tool_names(tools)
    if not names:
        return {"type": "array", "maxItems": 0}
    return {
        "type": "array",
        "items": {"type": "object", "properties": {"name": {"enum": names}}, "required": ["name"], "additionalProperties": False},
    }
