"""LLM-as-a-judge: does a list of calls fulfil the request? Asked through the teacher's client.

The judge is the teacher's endpoint (or another, by overriding teacher settings), reached by
the same client, response cache and accounting as labelling: a re-run asks nothing twice,
and what judging cost is in its usage record. It answers ``{"verdict": "yes"|"no", "reason":
...}``; an answer that is not that, or a request that failed, is a verdict of its own kind
(``unparsed`` or ``error``) that the verifier rejects with the judge's text as the reason.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from supertiny.calls.schema import tool_function
from supertiny.teacher.client import TeacherClient
from supertiny.teacher.config import TeacherConfig
from supertiny.teacher.label import open_teacher_client, stop_if_over_budget, usage_record
from supertiny.teacher.strategies import describe_function

JUDGE_SYSTEM = (
    "You check the function calls an assistant made for a user's request. Answer with one JSON object, "
    '{"verdict": "yes" or "no", "reason": "<a short sentence>"}. Say "yes" only if the calls do exactly what '
    "the user asked: the right functions, every argument value taken from the request, nothing missing, "
    'nothing extra. An empty list of calls is right when no function fits the request or a required value is missing.'
)
VERDICT = re.compile(r'"verdict"\s*:\s*"(yes|no)"', re.IGNORECASE)
REASON = re.compile(r'"reason"\s*:\s*"((?:[^"\\]|\\.)*)"')
# Small models answer the question in words ("Yes." / "No, the room is wrong."): that counts too.
LEADING = re.compile(r"^\W*(yes|no)\b[\s,.:;!-]*(.*)", re.IGNORECASE | re.DOTALL)


@dataclass(frozen=True)
class Judgement:
    verdict: str  # yes | no | unparsed | error
    reason: str

    @property
    def accepted(self) -> bool:
        return self.verdict == "yes"


def judge_messages(request: dict, calls: list[dict]) -> list[dict]:
    """The question: the conversation, the functions it offers (the called ones in full, the
    rest by name, to keep the prompt short) and the calls."""
    called = {call["name"] for call in calls}
    functions = [tool_function(tool) or {} for tool in request["tools"]]
    described = [describe_function(tool) for tool, function in zip(request["tools"], functions) if function.get("name") in called]
    others = [function.get("name") for function in functions if function.get("name") not in called]
    conversation = "\n".join(f"{m['role']}: {m['content']}" for m in request["messages"] if m.get("content"))
    user = (
        f"Conversation:\n{conversation}\n\n"
        + ("Functions called:\n" + "\n".join(described) + "\n\n" if described else "")
        + f"Other functions available: {', '.join(others) or 'none'}\n\n"
        + f"Calls made: {json.dumps(calls, ensure_ascii=False)}\n\nIs this right?"
    )
    return [{"role": "system", "content": JUDGE_SYSTEM}, {"role": "user", "content": user}]


def read_judgement(text: str | None) -> Judgement:
    """The verdict in the judge's answer: the JSON asked for (prose and code fences around it
    are fine), or an answer that starts with yes or no."""
    text = text or ""
    verdict = VERDICT.search(text)
    if verdict is None:
        leading = LEADING.match(text)
        if leading:
            return Judgement(leading.group(1).lower(), " ".join(leading.group(2).split())[:300])
        return Judgement("unparsed", f"the judge gave no verdict: {text[:200]!r}")
    reason = REASON.search(text)
    return Judgement(verdict.group(1).lower(), json.loads(f'"{reason.group(1)}"') if reason else "")


async def _judge_all(questions: list[list[dict]], client: TeacherClient, max_tokens: int, progress: tqdm) -> list[Judgement]:
    async def ask(messages: list[dict]) -> Judgement:
        completion = await client.complete(messages, sample=0, max_tokens=max_tokens)
        progress.update()
        if not completion.ok:
            return Judgement("error", f"judge request failed ({completion.error_kind}): {completion.error}")
        return read_judgement(completion.text)

    try:
        # The client's semaphore bounds what is in flight; the tasks only wait for a slot.
        return list(await asyncio.gather(*(ask(messages) for messages in questions)))
    finally:
        await client.aclose()


def judge_calls(
    questions: list[tuple[dict, list[dict]]], config: TeacherConfig, model_dir: str | Path | None = None
) -> tuple[list[Judgement], dict[str, Any]]:
    """A judgement for each (request, calls), in order, and the judging's usage record."""
    if not questions:
        return [], {}
    client = open_teacher_client(config, model_dir)
    started = time.perf_counter()
    with tqdm(total=len(questions), desc="judge", unit="answer", mininterval=1.0) as progress:
        judgements = asyncio.run(
            _judge_all([judge_messages(request, calls) for request, calls in questions], client, config.max_tokens, progress)
        )
    stop_if_over_budget(config, client, sum(j.verdict != "error" for j in judgements), len(questions), "judgements")
    usage = {**usage_record(config, client, time.perf_counter() - started), "answers_judged": len(questions),
             "verdicts": {kind: sum(j.verdict == kind for j in judgements) for kind in ("yes", "no", "unparsed", "error")}}
    return judgements, usage
