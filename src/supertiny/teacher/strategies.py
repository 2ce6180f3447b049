"""How the teacher is asked: the messages each strategy sends and how answers become calls.

- ``native``: the request's tools go as OpenAI ``tools``; calls are read from ``tool_calls``.
- ``prompted``: the tools are described in the system message, with few-shot examples, and the
  answer text is parsed by the call module (for servers without native tool calling).
- ``decomposed``: the function-call pipeline. One request chooses the functions from their
  names and descriptions only; then one request per chosen function fills its arguments with
  only that function's schema in view. Both steps get few-shot examples. Short, focused prompts
  are what make a small local teacher usable.

Few-shot examples come most similar last, nearest to the question, where a small model copies
from best.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Awaitable, Callable, Protocol

from supertiny.calls import format_calls, parse_calls, tool_names
from supertiny.calls.schema import tool_function
from supertiny.teacher.client import Completion
from supertiny.teacher.fewshot import FewShotIndex, request_text

PROMPTED_SYSTEM = (
    "You turn the user's request into function calls.\nFunctions (? = optional argument):\n{functions}\n"
    'Reply with only a JSON list of calls: [{{"name": ..., "arguments": {{...}}}}]. '
    "Reply [] if no function fits or a required value is missing."
)
SELECT_SYSTEM = (
    "Pick the functions that the user's request needs.\nFunctions:\n{functions}\n"
    'Reply with only a JSON list: [{{"name": ...}}]. Reply [] if no function fits.'
)
FILL_SYSTEM = (
    "Call {name} for the user's request (? = optional argument).\n{function}\n"
    "Reply with only a JSON list of calls to {name}, one per action asked for. "
    "Reply [] if a required value is missing."
)


class Ask(Protocol):
    """Sends one chat completion for the current sample (``TeacherClient.complete`` with ``sample`` bound)."""

    def __call__(self, messages: list[dict], *, max_tokens: int, tools: list[dict] | None = None) -> Awaitable[Completion]: ...


@dataclass
class Answer:
    """A strategy's answer to one request: its calls (None with ``parse_error`` when unreadable)
    and every completion it took."""

    text: str | None
    calls: list[dict] | None
    parse_error: str | None
    completions: list[Completion] = field(default_factory=list)

    @property
    def failed(self) -> Completion | None:
        """The first completion that failed, if any."""
        return next((completion for completion in self.completions if not completion.ok), None)


@dataclass(frozen=True)
class Prompting:
    """What every strategy needs besides the request: examples and token budgets."""

    examples: FewShotIndex
    few_shot: int
    max_tokens: int
    max_tokens_select: int


def describe_function(tool: dict) -> str:
    """A tool in a few compact lines: ``name: description``, then one line per argument with its
    type or allowed values, range, default and description; ``?`` marks an optional argument.
    About a third fewer tokens than the JSON schema, and prompt length is what a CPU pays for."""
    function = tool_function(tool) or {}
    parameters = function.get("parameters") or {}
    required = set(parameters.get("required") or ())
    lines = [f"{function.get('name')}: {function.get('description') or ''}".rstrip()]
    for name, spec in (parameters.get("properties") or {}).items():
        spec = spec if isinstance(spec, dict) else {}
        if "enum" in spec:
            kind = "|".join(json.dumps(v, ensure_ascii=False) if not isinstance(v, str) else v for v in spec["enum"])
        elif spec.get("type") in ("object", "array"):
            kind = json.dumps({k: v for k, v in spec.items() if k != "description"}, ensure_ascii=False, separators=(",", ":"))
        else:
            kind = str(spec.get("type", "any"))
        if "minimum" in spec or "maximum" in spec:
            kind += f" {spec.get('minimum', '')}..{spec.get('maximum', '')}"
        if "pattern" in spec:
            kind += f" /{spec['pattern']}/"
        line = f"  {name}{'' if name in required else '?'}: {kind}"
        if "default" in spec:
            line += f" = {json.dumps(spec['default'], ensure_ascii=False)}"
        if spec.get("description"):
            line += f"  # {spec['description']}"
        lines.append(line)
    return "\n".join(lines)


def _names_json(calls: list[dict]) -> str:
    names = list(dict.fromkeys(call["name"] for call in calls))
    return json.dumps([{"name": name} for name in names], ensure_ascii=False, separators=(", ", ": "))


def _conversation(system: str, examples: list[dict], answer: Callable[[dict], str], request: dict) -> list[dict]:
    """System message (with the request's own system text), example turns, then the request."""
    own_system = [message["content"] for message in request["messages"] if message["role"] == "system"]
    messages = [{"role": "system", "content": "\n".join([system, *own_system])}]
    for example in reversed(examples):
        messages.append({"role": "user", "content": request_text(example)})
        messages.append({"role": "assistant", "content": answer(example)})
    messages.extend(message for message in request["messages"] if message["role"] != "system")
    return messages


def _answerable(request: dict) -> Callable[[dict], bool]:
    """Examples whose answer uses only the request's functions (so it can be copied)."""
    available = set(tool_names(request["tools"]))
    return lambda example: all(call["name"] in available for call in example["reference"])


def prompted_messages(request: dict, prompting: Prompting) -> list[dict]:
    examples = prompting.examples.nearest(request, prompting.few_shot, _answerable(request))
    functions = "\n".join(describe_function(tool) for tool in request["tools"])
    return _conversation(PROMPTED_SYSTEM.format(functions=functions), examples, lambda e: format_calls(e["reference"]), request)


def select_messages(request: dict, prompting: Prompting) -> list[dict]:
    examples = prompting.examples.nearest(request, prompting.few_shot, _answerable(request))
    lines = []
    for tool in request["tools"]:
        function = tool_function(tool) or {}
        description = function.get("description")
        lines.append(f"- {function.get('name')}: {description}" if description else f"- {function.get('name')}")
    return _conversation(SELECT_SYSTEM.format(functions="\n".join(lines)), examples, lambda e: _names_json(e["reference"]), request)


def fill_messages(request: dict, tool: dict, prompting: Prompting) -> list[dict]:
    name = tool_function(tool)["name"]

    def calls_of(example: dict) -> list[dict]:
        return [call for call in example["reference"] if call["name"] == name]

    examples = prompting.examples.nearest(request, prompting.few_shot, lambda e: bool(calls_of(e)))
    system = FILL_SYSTEM.format(name=name, function=describe_function(tool))
    return _conversation(system, examples, lambda e: format_calls(calls_of(e)), request)


async def answer_native(request: dict, ask: Ask, prompting: Prompting) -> Answer:
    completion = await ask(request["messages"], max_tokens=prompting.max_tokens, tools=request["tools"])
    if not completion.ok:
        return Answer(None, None, None, [completion])
    if completion.tool_calls:
        parsed = parse_calls(tool_calls=completion.tool_calls)
        text = json.dumps(completion.tool_calls, ensure_ascii=False)
    else:
        parsed = parse_calls(tool_calls=[])  # a text reply is the model choosing no call
        text = completion.text
    return Answer(text, parsed.calls, parsed.error, [completion])


async def answer_prompted(request: dict, ask: Ask, prompting: Prompting) -> Answer:
    completion = await ask(prompted_messages(request, prompting), max_tokens=prompting.max_tokens)
    if not completion.ok:
        return Answer(None, None, None, [completion])
    parsed = parse_calls(completion.text)
    return Answer(completion.text, parsed.calls, parsed.error, [completion])


async def answer_decomposed(request: dict, ask: Ask, prompting: Prompting) -> Answer:
    select = await ask(select_messages(request, prompting), max_tokens=prompting.max_tokens_select)
    if not select.ok:
        return Answer(None, None, None, [select])
    steps: dict = {"select": select.text}
    chosen = parse_calls(select.text)
    if not chosen.ok:
        return Answer(json.dumps(steps, ensure_ascii=False), None, f"select: {chosen.error}", [select])
    by_name = {tool_function(tool)["name"]: tool for tool in request["tools"]}
    # Names the request has no tool for cannot be filled; they are dropped here and the
    # candidate answers with the rest.
    names = [name for name in dict.fromkeys(call["name"] for call in chosen.calls) if name in by_name]
    fills = await asyncio.gather(
        *(ask(fill_messages(request, by_name[name], prompting), max_tokens=prompting.max_tokens) for name in names)
    )
    completions = [select, *fills]
    if any(not fill.ok for fill in fills):
        return Answer(None, None, None, completions)
    steps["fill"] = {name: fill.text for name, fill in zip(names, fills)}
    text = json.dumps(steps, ensure_ascii=False)
    calls: list[dict] = []
    for name, fill in zip(names, fills):
        parsed = parse_calls(fill.text)
        if not parsed.ok:
            return Answer(text, None, f"fill {name}: {parsed.error}", completions)
        calls.extend(call for call in parsed.calls if call["name"] == name)
    return Answer(text, calls, None, completions)


STRATEGIES: dict[str, Callable[[dict, Ask, Prompting], Awaitable[Answer]]] = {
    "native": answer_native,
    "prompted": answer_prompted,
    "decomposed": answer_decomposed,
}
