"""The student's prompt format: one definition for training, RL, distillation, evaluation and serving.

A prompt is a short system message, then the request's own messages, rendered with the
tokenizer's chat template and its generation prompt. The system message describes the tools
as configured by ``tools_mode``:

- ``none``: no tools at all, one fixed instruction. The student learns its fixed tool set
  during training, which makes the prompt short, and prompt length dominates CPU latency.
- ``names``: the instruction and the names of the offered functions.
- ``signatures``: the instruction and one line per offered function, its arguments as a call
  signature derived from the JSON Schema (``set_lights(room: kitchen|bedroom, on: boolean,
  brightness?: integer 0..100)``): names, types, enum values, ``?`` for optional, ranges and
  patterns, no descriptions. What the function needs, at a fraction of ``full``'s tokens.
- ``full``: the instruction and each offered function's compact JSON schema.

The target is the answer in the call module's canonical text (``format_calls``) followed by
the end-of-turn text the chat template writes after an assistant message.
"""

from __future__ import annotations

import json
from typing import Any

from supertiny.calls import format_calls
from supertiny.calls.schema import tool_function, tool_names

TOOLS_MODES = ("none", "names", "signatures", "full")
INSTRUCTION = "Answer with a JSON list of function calls, or [] when no function applies."
_SENTINEL = "\u2063ANSWER\u2063"  # text no request contains, to find where the template puts an answer


def system_message(tools: list[dict], tools_mode: str) -> str:
    """The instruction, with the offered tools described as ``tools_mode`` says."""
    if tools_mode == "none":
        return INSTRUCTION
    if tools_mode == "names":
        return f"{INSTRUCTION} Functions: {', '.join(tool_names(tools))}."
    if tools_mode == "signatures":
        return INSTRUCTION + " Functions:\n" + "\n".join(signature(tool) for tool in tools)
    if tools_mode == "full":
        schemas = []
        for tool in tools:
            function = tool_function(tool) or {}
            compact = {key: function[key] for key in ("name", "description", "parameters") if key in function}
            schemas.append(json.dumps(compact, ensure_ascii=False, separators=(",", ":")))
        return INSTRUCTION + " Functions:\n" + "\n".join(schemas)
    raise ValueError(f"tools_mode must be one of {TOOLS_MODES}; got {tools_mode!r}")


def signature(tool: dict) -> str:
    """A tool as one compact line: ``name(argument: type, optional?: type)``."""
    function = tool_function(tool) or {}
    return f"{function.get('name')}({_arguments(function.get('parameters') or {})})"


def _arguments(schema: dict) -> str:
    """An object schema's properties as ``name: type``, ``name?: type`` when not required."""
    required = set(schema.get("required") or ())
    properties = schema.get("properties") or {}
    return ", ".join(f"{name}{'' if name in required else '?'}: {argument_type(sub)}" for name, sub in properties.items())


def argument_type(schema: Any) -> str:
    """A value's schema in a few characters (the student's signatures and the teacher's tool
    descriptions both write types so): enum values joined by ``|``, ``[item]`` for an array,
    ``{...}`` for an object with properties, a range or a pattern after a number's or string's type."""
    if not isinstance(schema, dict):
        return "any"
    if "enum" in schema:
        return "|".join(_value(value) for value in schema["enum"])
    if "const" in schema:
        return _value(schema["const"])
    alternatives = schema.get("anyOf") or schema.get("oneOf")
    if alternatives:
        return "|".join(argument_type(alternative) for alternative in alternatives)
    kind = schema.get("type")
    if isinstance(kind, list):
        return "|".join(argument_type({**schema, "type": one}) for one in kind)
    if kind == "array":
        return f"[{argument_type(schema.get('items'))}]"
    if schema.get("properties"):
        return "{" + _arguments(schema) + "}"
    if kind in ("integer", "number"):
        return kind + _range(schema)
    if kind == "string" and "pattern" in schema:
        return f"string /{schema['pattern']}/"
    return kind or "any"


def _range(schema: dict) -> str:
    """`` 1..100``, `` >=1``, `` <100`` or nothing: a number's bounds as the schema states them."""
    low, high = schema.get("minimum"), schema.get("maximum")
    if low is not None and high is not None:
        return f" {_value(low)}..{_value(high)}"
    bounds = []
    if low is not None:
        bounds.append(f">={_value(low)}")
    elif isinstance(schema.get("exclusiveMinimum"), (int, float)):
        bounds.append(f">{_value(schema['exclusiveMinimum'])}")
    if high is not None:
        bounds.append(f"<={_value(high)}")
    elif isinstance(schema.get("exclusiveMaximum"), (int, float)):
        bounds.append(f"<{_value(schema['exclusiveMaximum'])}")
    return "".join(f" {bound}" for bound in bounds)


def _value(value: Any) -> str:
    """An enum value or bound as written in a signature: a string bare, anything else as JSON."""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def build_messages(request: dict[str, Any], tools_mode: str) -> list[dict[str, str]]:
    """The chat messages of a request's prompt: the system message, then the request's messages.

    A request that brings its own system message keeps it, after the instruction: chat
    templates expect at most one system message, first.
    """
    system = system_message(request["tools"], tools_mode)
    messages = [{"role": m["role"], "content": m["content"]} for m in request["messages"]]
    if messages and messages[0]["role"] == "system":
        return [{"role": "system", "content": f"{system}\n\n{messages[0]['content']}"}, *messages[1:]]
    return [{"role": "system", "content": system}, *messages]


def prompt_text(request: dict[str, Any], tokenizer: Any, tools_mode: str) -> str:
    """The prompt as text, ending where the model starts its answer."""
    return tokenizer.apply_chat_template(build_messages(request, tools_mode), tokenize=False, add_generation_prompt=True)


def prompt_tokens(request: dict[str, Any], tokenizer: Any, tools_mode: str) -> int:
    """How many tokens the model reads before it answers (what generation feeds it)."""
    return len(tokenizer(prompt_text(request, tokenizer, tools_mode))["input_ids"])


def end_of_turn(tokenizer: Any) -> str:
    """What the chat template writes right after an assistant message, up to the end-of-sequence
    token: generation stops there, so anything the template writes after it is never generated."""
    messages = [{"role": "user", "content": "x"}]
    prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    full = tokenizer.apply_chat_template([*messages, {"role": "assistant", "content": _SENTINEL}], tokenize=False)
    if not full.startswith(prompt) or _SENTINEL not in full:
        raise ValueError("the tokenizer's chat template does not render an assistant answer after its generation prompt")
    suffix = full[full.index(_SENTINEL) + len(_SENTINEL):]
    eos = tokenizer.eos_token
    if eos and eos in suffix:
        return suffix[: suffix.index(eos) + len(eos)]
    return suffix.rstrip() or (eos or "")


def target_text(calls: list[dict], tokenizer: Any) -> str:
    """The answer the student learns to write: the canonical calls and the end of its turn."""
    return format_calls(calls) + end_of_turn(tokenizer)


def shared_prefix_ids(tokenizer: Any, tools_mode: str) -> list[int]:
    """The token ids every prompt of this format starts with (the template's system part and the
    instruction), whatever the request: a server computes their KV cache once.

    Found as the common start of two prompts that share nothing but the format, less its last
    token, which a request's own text can merge with (byte-level BPE joins a space to the next
    word)."""
    def tool(name: str) -> dict:
        return {"type": "function", "function": {"name": name, "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}}}

    first = {"messages": [{"role": "user", "content": "alpha"}], "tools": [tool("aaa")]}
    second = {"messages": [{"role": "user", "content": "Zulu 9"}], "tools": [tool("zzz_other")]}
    ids = [tokenizer(prompt_text(request, tokenizer, tools_mode), add_special_tokens=False)["input_ids"] for request in (first, second)]
    common = 0
    while common < min(map(len, ids)) and ids[0][common] == ids[1][common]:
        common += 1
    return ids[0][: max(common - 1, 0)]
