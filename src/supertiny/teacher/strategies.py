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

from supertiny.calls import answer_schema, format_calls, parse_calls, selection_schema, tool_names
from supertiny.calls.schema import tool_function
from supertiny.prompt import argument_type
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
    """One completion for each sample index (``TeacherClient.complete_samples``); ``schema`` is the
    JSON Schema the answer must follow where the endpoint has structured outputs."""

    def __call__(
        self, messages: list[dict], *, samples: list[int], max_tokens: int, tools: list[dict] | None = None, schema: dict | None = None
    ) -> Awaitable[list[Completion]]: ...


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
    """A tool in a few compact lines for the teacher: ``name: description``, then one line per
    argument with its type as the student's signatures write it (``supertiny.prompt``), its
    default and description; ``?`` marks an optional argument. About a third fewer tokens than
    the JSON schema, and prompt length is what a CPU pays for."""
    function = tool_function(tool) or {}
    parameters = function.get("parameters") or {}
    required = set(parameters.get("required") or ())
    lines = [f"{function.get('name')}: {function.get('description') or ''}".rstrip()]
    for name, spec in (parameters.get("properties") or {}).items():
        spec = spec if isinstance(spec, dict) else {}
        line = f"  {name}{'' if name in required else '?'}: {argument_type(spec)}"
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


def _parsed(completion: Completion) -> Answer:
    if not completion.ok:
        return Answer(None, None, None, [completion])
    parsed = parse_calls(completion.text)
    return Answer(completion.text, parsed.calls, parsed.error, [completion])


async def answer_native(request: dict, ask: Ask, prompting: Prompting, samples: list[int]) -> list[Answer]:
    answers = []
    for completion in await ask(request["messages"], samples=samples, max_tokens=prompting.max_tokens, tools=request["tools"]):
        if not completion.ok:
            answers.append(Answer(None, None, None, [completion]))
        elif completion.tool_calls:
            parsed = parse_calls(tool_calls=completion.tool_calls)
            answers.append(Answer(json.dumps(completion.tool_calls, ensure_ascii=False), parsed.calls, parsed.error, [completion]))
        else:  # a text reply is the model choosing no call
            answers.append(Answer(completion.text, [], None, [completion]))
    return answers


async def answer_prompted(request: dict, ask: Ask, prompting: Prompting, samples: list[int]) -> list[Answer]:
    completions = await ask(
        prompted_messages(request, prompting), samples=samples, max_tokens=prompting.max_tokens, schema=answer_schema(request["tools"])
    )
    return [_parsed(completion) for completion in completions]


async def answer_decomposed(request: dict, ask: Ask, prompting: Prompting, samples: list[int]) -> list[Answer]:
    selects = await ask(
        select_messages(request, prompting), samples=samples, max_tokens=prompting.max_tokens_select, schema=selection_schema(request["tools"])
    )
    by_name = {tool_function(tool)["name"]: tool for tool in request["tools"]}
    chosen: dict[int, list[str]] = {}  # sample -> the functions its selection names
    for sample, select in zip(samples, selects):
        parsed = parse_calls(select.text) if select.ok else None
        if parsed is not None and parsed.ok:
            # Names the request has no tool for cannot be filled; they are dropped here and the
            # candidate answers with the rest.
            chosen[sample] = [name for name in dict.fromkeys(call["name"] for call in parsed.calls) if name in by_name]
    # One fill request per function, for every sample that chose it (one prefill with `n`).
    names = list(dict.fromkeys(name for picked in chosen.values() for name in picked))
    wanting = {name: [sample for sample in samples if name in chosen.get(sample, ())] for name in names}
    fills = await asyncio.gather(
        *(
            ask(fill_messages(request, by_name[name], prompting), samples=wanting[name], max_tokens=prompting.max_tokens,
                schema=answer_schema([by_name[name]]))
            for name in names
        )
    )  # fmt: skip
    fill_of = {(sample, name): fill for name, name_fills in zip(names, fills) for sample, fill in zip(wanting[name], name_fills)}
    answers = []
    for sample, select in zip(samples, selects):
        if not select.ok:
            answers.append(Answer(None, None, None, [select]))
            continue
        steps: dict = {"select": select.text}
        if sample not in chosen:
            error = parse_calls(select.text).error
            answers.append(Answer(json.dumps(steps, ensure_ascii=False), None, f"select: {error}", [select]))
            continue
        sample_fills = [(name, fill_of[(sample, name)]) for name in chosen[sample]]
        completions = [select, *(fill for _, fill in sample_fills)]
        if any(not fill.ok for _, fill in sample_fills):
            answers.append(Answer(None, None, None, completions))
            continue
        steps["fill"] = {name: fill.text for name, fill in sample_fills}
        text = json.dumps(steps, ensure_ascii=False)
        calls: list[dict] = []
        error = None
        for name, fill in sample_fills:
            parsed = parse_calls(fill.text)
            if not parsed.ok:
                error = f"fill {name}: {parsed.error}"
                break
            calls.extend(call for call in parsed.calls if call["name"] == name)
        answers.append(Answer(text, None if error else calls, error, completions))
    return answers


STRATEGIES: dict[str, Callable[[dict, Ask, Prompting, list[int]], Awaitable[list[Answer]]]] = {
    "native": answer_native,
    "prompted": answer_prompted,
    "decomposed": answer_decomposed,
}
