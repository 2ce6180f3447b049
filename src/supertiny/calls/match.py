"""The one normalisation of answers, and the exact comparisons built on it."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from supertiny.calls.schema import tool_function

# A normalised call: its name and its normalised arguments (defaults removed).
NormalCall = tuple[str, dict[str, Any]]


def normalise_value(value: Any) -> Any:
    """Strings case-folded with whitespace collapsed, integral floats as ints, recursively."""
    if isinstance(value, str):
        return " ".join(value.split()).casefold()
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {key: normalise_value(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [normalise_value(item) for item in value]
    return value


def value_key(value: Any) -> str:
    """Exact text of a normalised value; equal keys iff equal values (and True is not 1)."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


@dataclass(frozen=True)
class ToolHints:
    """What the tools say about comparing arguments: defaults and enum-valued arguments."""

    defaults: dict[str, dict[str, str]] = field(default_factory=dict)  # function -> argument -> value_key
    enums: dict[str, frozenset[str]] = field(default_factory=dict)  # function -> arguments with an enum

    @classmethod
    def from_tools(cls, tools: list[dict] | None) -> ToolHints:
        """Read defaults and enums from the top-level properties of each tool."""
        defaults: dict[str, dict[str, str]] = {}
        enums: dict[str, frozenset[str]] = {}
        for tool in tools or ():
            function = tool_function(tool)
            if function is None or not isinstance(function.get("name"), str):
                continue
            parameters = function.get("parameters")
            properties = parameters.get("properties") if isinstance(parameters, dict) else None
            if not isinstance(properties, dict):
                continue
            specs = {arg: spec for arg, spec in properties.items() if isinstance(spec, dict)}
            name = function["name"]
            defaults.setdefault(
                name,
                {arg: value_key(normalise_value(spec["default"])) for arg, spec in specs.items() if "default" in spec},
            )
            enums.setdefault(name, frozenset(arg for arg, spec in specs.items() if "enum" in spec))
        return cls(defaults, enums)


def normalise_call(call: dict, hints: ToolHints) -> NormalCall:
    """Normalise the argument values and drop arguments left at their schema default."""
    name = call["name"]
    arguments = {key: normalise_value(value) for key, value in call.get("arguments", {}).items()}
    defaults = hints.defaults.get(name)
    if defaults:
        arguments = {
            key: value
            for key, value in arguments.items()
            if key not in defaults or defaults[key] != value_key(value)
        }
    return name, arguments


def call_key(call: NormalCall) -> str:
    """Exact text of a normalised call."""
    return value_key(list(call))


def canonical_key(calls: list[dict], tools: list[dict] | None = None) -> str:
    """Deterministic text of an answer: equal keys iff `exact_match` holds (order-free, duplicates kept)."""
    hints = ToolHints.from_tools(tools)
    return "[" + ",".join(sorted(call_key(normalise_call(call, hints)) for call in calls)) + "]"


def exact_match(predicted: list[dict] | None, reference: list[dict], tools: list[dict] | None = None) -> bool:
    """Same calls after normalisation, as multisets; a parse failure (None) never matches."""
    if predicted is None or len(predicted) != len(reference):
        return False
    return canonical_key(predicted, tools) == canonical_key(reference, tools)
