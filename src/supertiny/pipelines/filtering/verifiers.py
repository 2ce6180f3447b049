"""Verifiers of teacher candidates: each says pass, fail with a reason, or not applicable.

A verifier sees every candidate still standing after the verifiers before it (so that the
consistency verifier can vote within a request's samples, and the judge can send its
questions concurrently) and returns one :class:`Verdict` per candidate, in order. Items are
frozen: a verifier that learns something about a candidate (the judge's judgement) says so in a
new item on its verdict, so no step changes what an earlier step handed on.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from supertiny.calls import canonical_key, exact_match, parse_calls, similarity, validate_calls


@dataclass(frozen=True)
class Item:
    """A candidate with its request, and its calls as parsed (None when they do not parse:
    ``parse_error`` says why)."""

    request: dict[str, Any]
    candidate: dict[str, Any]
    samples: int  # how many candidates the request has in all (its k)
    calls: list[dict] | None = None
    parse_error: str | None = None
    passed: tuple[str, ...] = ()  # verifiers that accepted it
    judgement: dict[str, str] | None = None  # the judge's verdict and reason, when it was asked

    @property
    def key(self) -> tuple[str, Any]:
        """Which candidate this is: its request and sample."""
        return self.request["id"], self.candidate.get("sample")


def parse_item(request: dict[str, Any], candidate: dict[str, Any], samples: int) -> Item:
    """The teacher's parsed calls, or its text parsed now (a hand-made candidates file may
    carry only text); a failed teacher request has no calls."""
    if candidate.get("error"):
        reason = f"teacher request failed ({candidate.get('error_kind') or 'error'}): {candidate['error']}"
        return Item(request, candidate, samples, parse_error=reason)
    has_calls = candidate.get("calls") is not None
    parsed = parse_calls(json.dumps(candidate["calls"]) if has_calls else candidate.get("text"))
    if parsed.ok:
        return Item(request, candidate, samples, calls=parsed.calls)
    return Item(request, candidate, samples, parse_error=candidate.get("parse_error") or parsed.error)


@dataclass(frozen=True)
class Verdict:
    passed: bool | None  # None: the verifier does not apply to this candidate
    reason: str = ""
    item: Item | None = None  # the candidate as the verifier leaves it, when it adds to it (the judge)


# A verifier returns a verdict per item, or (verdicts, a report for filter_summary) when it has
# more to say, as the judge does about what it cost.
Verifier = Callable[[list[Item], dict[str, Any]], "list[Verdict] | tuple[list[Verdict], dict[str, Any]]"]
NOT_APPLICABLE = Verdict(None, "not applicable")


def verify_format(items: list[Item], settings: dict[str, Any]) -> list[Verdict]:
    """The candidate is a list of calls (:func:`parse_item` parsed it)."""
    return [Verdict(True) if item.calls is not None else Verdict(False, item.parse_error or "no calls") for item in items]


def verify_schema(items: list[Item], settings: dict[str, Any]) -> list[Verdict]:
    """Every call names an offered tool and its arguments satisfy that tool's JSON Schema."""
    verdicts = []
    for item in items:
        problems = validate_calls(item.calls, item.request["tools"])
        verdicts.append(Verdict(not problems, "; ".join(problems)))
    return verdicts


def verify_reference(items: list[Item], settings: dict[str, Any]) -> list[Verdict]:
    """Against a labelled request's reference: exact match, or a similarity threshold."""
    threshold = settings.get("min_similarity")
    verdicts = []
    for item in items:
        reference, tools = item.request.get("reference"), item.request["tools"]
        if reference is None:
            verdicts.append(NOT_APPLICABLE)
        elif threshold is None:
            verdicts.append(Verdict(True) if exact_match(item.calls, reference, tools) else Verdict(False, "differs from the reference"))
        else:
            score = similarity(item.calls, reference, tools)
            verdicts.append(Verdict(score >= threshold, f"similarity {score:.2f} to the reference" + ("" if score >= threshold else f" < {threshold}")))
    return verdicts


def majority_verdicts(items: list[Item], min_share: float) -> list[Verdict]:
    """Agreement among a request's k samples: a candidate passes when its answer is the
    request's most common answer (no tie) and that answer has at least ``min_share`` of all samples."""
    by_request: dict[str, list[int]] = defaultdict(list)
    for position, item in enumerate(items):
        by_request[item.request["id"]].append(position)
    verdicts: list[Verdict] = [NOT_APPLICABLE] * len(items)
    for positions in by_request.values():
        request = items[positions[0]].request
        keys = [canonical_key(items[p].calls, request["tools"]) for p in positions]
        votes = Counter(keys).most_common()
        samples = items[positions[0]].samples
        top_key, top_votes = votes[0]
        tied = len(votes) > 1 and votes[1][1] == top_votes
        share = top_votes / samples
        for position, key in zip(positions, keys):
            if tied:
                verdicts[position] = Verdict(False, f"no majority among {samples} samples")
            elif key != top_key:
                verdicts[position] = Verdict(False, f"disagrees with the majority answer ({top_votes}/{samples} samples)")
            elif share < min_share:
                verdicts[position] = Verdict(False, f"majority share {share:.2f} < {min_share}")
            else:
                verdicts[position] = Verdict(True, f"majority answer ({top_votes}/{samples} samples)")
    return verdicts


def verify_consistency(items: list[Item], settings: dict[str, Any]) -> list[Verdict]:
    """For unlabelled requests (production logs), trust what most samples agree on."""
    unlabelled = [p for p, item in enumerate(items) if item.request.get("reference") is None]
    verdicts: list[Verdict] = [NOT_APPLICABLE] * len(items)
    for position, verdict in zip(unlabelled, majority_verdicts([items[p] for p in unlabelled], settings["min_share"])):
        verdicts[position] = verdict
    return verdicts


def verify_judge(items: list[Item], settings: dict[str, Any]) -> tuple[list[Verdict], dict[str, Any]]:
    """An LLM asked whether the calls fulfil the request (``supertiny.teacher.judge``): the
    teacher's endpoint, client, cache and accounting, with ``settings["teacher"]`` overriding
    teacher settings. On labelled requests its verdicts are also compared with the reference."""
    from supertiny.teacher import TeacherConfig
    from supertiny.teacher.judge import judge_calls

    config = TeacherConfig.from_params(
        {**settings["teacher_params"], "k_samples": 1, "temperature": 0.0, "max_tokens": settings.get("max_tokens", 64),
         **(settings.get("teacher") or {})}
    )
    only_unlabelled = bool(settings.get("only_unlabelled"))
    asked = [p for p, item in enumerate(items) if not (only_unlabelled and item.request.get("reference") is not None)]
    judgements, usage = judge_calls([(items[p].request, items[p].calls) for p in asked], config, settings.get("model_dir"))
    verdicts: list[Verdict] = [NOT_APPLICABLE] * len(items)
    agreement = Counter()
    for position, judgement in zip(asked, judgements):
        item = replace(items[position], judgement={"verdict": judgement.verdict, "reason": judgement.reason})
        verdicts[position] = Verdict(judgement.accepted, f"judge: {judgement.reason}" if judgement.accepted
                                     else f"judge said {judgement.verdict}: {judgement.reason}", item)
        reference = item.request.get("reference")
        if reference is not None:
            right = exact_match(item.calls, reference, item.request["tools"])
            agreement[("accepted" if judgement.accepted else "rejected", "right" if right else "wrong")] += 1
    accepted = agreement[("accepted", "right")] + agreement[("accepted", "wrong")]
    right = agreement[("accepted", "right")] + agreement[("rejected", "right")]
    on_labelled = {
        "judged": sum(agreement.values()),
        # How often an answer the judge accepts is exactly right, and how many right ones it lets through.
        "precision": round(agreement[("accepted", "right")] / accepted, 4) if accepted else None,
        "recall": round(agreement[("accepted", "right")] / right, 4) if right else None,
    }
    return verdicts, {"usage": usage, "on_labelled": on_labelled}


VERIFIERS: dict[str, Verifier] = {
    "format": verify_format,
    "schema": verify_schema,
    "reference": verify_reference,
    "consistency": verify_consistency,
    "judge": verify_judge,
}
