"""Nodes of the filtering pipeline: rejection sampling of teacher candidates, one step a node.

parse (each candidate joined to its request, its calls parsed) → verify (the configured
verifiers in order) → select (one, or every distinct, accepted answer per request) → dedup
(across requests) → cap (frequent functions) → report. Nothing is lost: every candidate that
is not kept is in the rejections with the step that dropped it and why.
"""

from __future__ import annotations

import logging
import random
from collections import Counter, defaultdict
from dataclasses import replace
from typing import Any

import pandas as pd

from supertiny.calls import called_functions, canonical_key, exact_match, tool_names
from supertiny.errors import ConfigError, SupertinyError
from supertiny.pipelines.filtering.verifiers import VERIFIERS, Item, majority_verdicts, parse_item

log = logging.getLogger(__name__)

SELECTIONS = ("first", "majority", "all_distinct")


def check_params(params: dict[str, Any]) -> None:
    """Fail at the start of a run, not after the teacher's hour, on a setting that cannot work:
    the parameters model's checks (known verifiers, ranges), then the verifiers' order."""
    from supertiny.parameters import check_section  # the parameters models import this module's SELECTIONS

    check_section("filtering", params)
    if len(set(params["verifiers"])) != len(params["verifiers"]):
        raise ConfigError(f"filtering.verifiers: a verifier is listed twice: {params['verifiers']}")
    if params["verifiers"] and params["verifiers"][0] != "format":
        raise ConfigError(f"filtering.verifiers must start with format: the others check the calls it parses; got {params['verifiers']}")


def check_no_call_share(items: list[Item], params: dict[str, Any], source: str) -> dict[str, Any]:
    """The share of the teacher's answers that are "no call", against the share of the labelled
    requests whose reference needs none. Far above it (``filtering.no_call_margin``), the teacher
    is likely not calling functions at all (an endpoint that ignores ``tools``, a strategy the
    model does not follow): a warning; and when even the low end of the share's 95% interval is
    above ``filtering.max_no_call_share`` too, the run stops here, before any example is kept."""
    from supertiny.inference import wilson_interval

    answered = [item.candidate["calls"] for item in items if item.candidate.get("calls") is not None]
    labelled = {item.request["id"]: item.request["reference"] for item in items if item.request.get("reference") is not None}
    no_calls = sum(not calls for calls in answered)
    share = round(no_calls / len(answered), 4) if answered else None
    expected = round(sum(not reference for reference in labelled.values()) / len(labelled), 4) if labelled else None
    low, _ = wilson_interval(no_calls, len(answered))
    shares = {"answers": len(answered), "no_call_answers": no_calls, "share": share, "share_low": low,
              "labelled_requests": len(labelled), "labelled_share": expected}
    margin, max_share = params.get("no_call_margin"), params.get("max_no_call_share")
    if share is None or margin is None:
        return shares
    if expected is not None and share <= expected + margin:
        return shares
    if expected is None and (max_share is None or share <= max_share):
        return shares  # nothing to compare with: only a share above the maximum is worth a word
    against = f"{expected:.0%} of the {len(labelled)} labelled requests" if expected is not None else "no labelled request to compare with"
    said = (f"{source}: {share:.0%} of the teacher's answers are 'no call' ({no_calls} of {len(answered)}), against {against}: "
            "the teacher is likely not calling functions (an endpoint that ignores `tools`? try teacher.strategy: prompted "
            "or decomposed)")
    if max_share is not None and low > max_share and (expected is None or low > expected + margin):
        raise SupertinyError(f"{said}; stopped above filtering.max_no_call_share ({max_share:g}): raise it to go on anyway")
    log.warning("%s", said)
    return shares


def _items(candidates: list[dict], requests: list[dict], test_requests: list[dict], source: str) -> list[Item]:
    by_id = {request["id"]: request for request in requests}
    test_ids = {request["id"] for request in test_requests}
    leaked = sorted({c.get("request_id") for c in candidates} & test_ids)
    if leaked:
        raise SupertinyError(f"{source}: {len(leaked)} candidates answer test requests (e.g. {leaked[:3]}); test requests are never used for training")
    unknown = sorted({str(c.get("request_id")) for c in candidates if c.get("request_id") not in by_id})
    if unknown:
        raise SupertinyError(f"{source}: {len(unknown)} request ids are not among the requests given to the teacher (e.g. {unknown[:5]})")
    samples = Counter(c["request_id"] for c in candidates)
    return [parse_item(by_id[c["request_id"]], c, samples[c["request_id"]]) for c in candidates]


def _functions(item: Item) -> list[str]:
    """What a candidate is about, for per-function statistics: the reference's functions when
    the request is labelled, else the candidate's own."""
    calls = item.request.get("reference")
    if calls is None:
        calls = item.calls
    if calls is None:
        return ["(unparsed)"]
    return called_functions(calls)


def _rejection(item: Item, step: str, reason: str) -> dict[str, Any]:
    candidate = item.candidate
    return {
        "request_id": candidate["request_id"],
        "sample": candidate.get("sample"),
        "step": step,
        "reason": reason,
        "text": candidate.get("text"),
        "calls": item.calls if item.calls is not None else candidate.get("calls"),
    }


def _keep(items: list[Item], chosen: set[int], kept: list[Item], rejections: list[dict], step: str, reason: str) -> None:
    """The items at the ``chosen`` positions to ``kept``, the others to ``rejections``."""
    for position, item in enumerate(items):
        if position in chosen:
            kept.append(item)
        else:
            rejections.append(_rejection(item, step, reason))


def _user_text(request: dict) -> str:
    return " ".join(" ".join(m["content"] for m in request["messages"] if m["role"] == "user").split()).casefold()


# ---- the steps, one node each (pipeline.py wires them) ---------------------------------------

def parse_candidates(candidates: list[dict], requests: list[dict], test_requests: list[dict],
                     params: dict[str, Any]) -> tuple[list[Item], dict[str, Any]]:
    """Each candidate joined to its request and its calls parsed; the teacher's no-call share
    checked before anything is kept. Returns (items, the no-call figures)."""
    check_params(params)
    items = _items(candidates, requests, test_requests, "filtering")
    return items, check_no_call_share(items, params, "filtering")


def verify_candidates(items: list[Item], params: dict[str, Any], teacher: dict[str, Any] | None = None,
                      ) -> tuple[list[Item], list[dict], list[dict], dict[str, Any]]:
    """The configured verifiers in order, each on the candidates the ones before it accepted.
    Returns (accepted items, rejections, a report row per verifier, the verifiers' own reports).
    ``teacher`` (the teacher's settings) is what the judge verifier talks through."""
    rejections: list[dict] = []
    rows: list[dict] = []
    reports: dict[str, Any] = {}
    alive = items
    for name in params["verifiers"]:
        settings = dict(params.get(name) or {})
        if name == "judge":
            if not teacher:
                raise ConfigError("filtering.verifiers: the judge needs the teacher's settings (params:teacher)")
            settings["teacher_params"] = teacher
        result = VERIFIERS[name](alive, settings)
        verdicts, report = result if isinstance(result, tuple) else (result, None)
        if report is not None:
            reports[name] = report
        passed = []
        for item, verdict in zip(alive, verdicts):
            item = verdict.item or item
            if verdict.passed is False:
                rejections.append(_rejection(item, name, verdict.reason))
                continue
            passed.append(replace(item, passed=(*item.passed, name)) if verdict.passed else item)
        applicable = sum(verdict.passed is not None for verdict in verdicts)
        rows.append({"group": "verifier", "name": name, "candidates": applicable,
                     "accepted": sum(bool(v.passed) for v in verdicts), "not_applicable": len(alive) - applicable})
        alive = passed
    return alive, rejections, rows, reports


def select_answers(accepted: list[Item], params: dict[str, Any]) -> tuple[list[Item], list[dict]]:
    """Per request (``filtering.selection``): the first accepted sample, the most common accepted
    answer, or every distinct accepted answer. Returns (kept, rejections)."""
    selection = params["selection"]
    by_request: dict[str, list[Item]] = defaultdict(list)
    for item in accepted:
        by_request[item.request["id"]].append(item)
    kept, rejections = [], []
    for items in by_request.values():
        items.sort(key=lambda item: item.candidate.get("sample", 0))
        keys = [canonical_key(item.calls, item.request["tools"]) for item in items]
        if selection == "first":
            chosen = {0}
        elif selection == "majority":
            votes = Counter(keys)
            chosen = {keys.index(max(votes, key=lambda key: (votes[key], -keys.index(key))))}
        else:
            chosen = {keys.index(key) for key in dict.fromkeys(keys)}
        _keep(items, chosen, kept, rejections, "selection", f"another accepted answer of this request was kept ({selection})")
    return kept, rejections


def drop_duplicates(selected: list[Item]) -> tuple[list[Item], list[dict]]:
    """The same request text with the same answer twice teaches nothing new: the first stays.
    Returns (kept, rejections)."""
    unique: dict[tuple[str, str], Item] = {}
    rejections = []
    for item in selected:
        key = (_user_text(item.request), canonical_key(item.calls, item.request["tools"]))
        if key in unique:
            rejections.append(_rejection(item, "dedup", f"same request and answer as request {unique[key].request['id']!r}"))
        else:
            unique[key] = item
    return list(unique.values()), rejections


def cap_functions(unique: list[Item], params: dict[str, Any]) -> tuple[list[Item], list[dict]]:
    """At most ``filtering.max_per_function`` examples of each combination of called functions,
    a seeded sample of them, so that a frequent function does not crowd out the rest.
    Returns (kept, rejections)."""
    cap = params.get("max_per_function")
    if not cap:
        return unique, []
    groups: dict[tuple, list[Item]] = defaultdict(list)
    for item in unique:
        groups[tuple(called_functions(item.calls))].append(item)
    rng = random.Random(params.get("seed", 0))
    kept, rejections = [], []
    for group, members in sorted(groups.items()):
        chosen = set(range(len(members))) if len(members) <= cap else set(rng.sample(range(len(members)), cap))
        _keep(members, chosen, kept, rejections, "cap", f"over max_per_function={cap} for {'+'.join(group)}")
    return kept, rejections


def report_filtering(
    items: list[Item],
    accepted: list[Item],
    kept: list[Item],
    verifier_rows: list[dict],
    verifier_reports: dict[str, Any],
    no_call: dict[str, Any],
    params: dict[str, Any],
    *step_rejections: list[dict],
) -> tuple[list[dict], list[dict], pd.DataFrame, dict[str, Any]]:
    """The kept candidates as training examples, every step's rejections in one table, the
    acceptance report (by verifier, by function, overall) and the summary."""
    rejections = [rejection for rejected in step_rejections for rejection in rejected]
    accepted_keys = {item.key for item in accepted}
    by_function_total: Counter = Counter()
    by_function_accepted: Counter = Counter()
    for item in items:
        for function in _functions(item):
            by_function_total[function] += 1
            by_function_accepted[function] += item.key in accepted_keys
    table = [*verifier_rows]
    table += [{"group": "function", "name": f, "candidates": n, "accepted": by_function_accepted[f], "not_applicable": 0}
              for f, n in sorted(by_function_total.items())]
    table.append({"group": "overall", "name": "all verifiers", "candidates": len(items), "accepted": len(accepted), "not_applicable": 0})

    examples = [
        {**item.request, "calls": item.calls, "sample": item.candidate.get("sample"), "verifiers_passed": list(item.passed),
         **({"judge": item.judgement} if item.judgement else {})}
        for item in sorted(kept, key=lambda item: (item.request["id"], item.candidate.get("sample", 0)))
    ]
    from_references = []
    if params.get("fill_from_references"):
        # A labelled request the teacher never got right still teaches its (human) reference.
        covered = {example["id"] for example in examples}
        labelled = {item.request["id"]: item.request for item in items if item.request.get("reference") is not None}
        from_references = [
            {**request, "calls": request["reference"], "sample": None, "verifiers_passed": ["reference_label"]}
            for request_id, request in sorted(labelled.items()) if request_id not in covered
        ]
        examples = sorted(examples + from_references, key=lambda example: example["id"])
    report = pd.DataFrame(table)
    report["rate"] = (report["accepted"] / report["candidates"].where(report["candidates"] > 0)).round(4)
    request_ids = {item.request["id"] for item in items}
    accepted_requests = {item.request["id"] for item in accepted}
    # Functions the requests offer that no kept example calls: the student is taught nothing about them.
    offered = {name for item in items for name in tool_names(item.request["tools"])}
    taught = {call["name"] for example in examples for call in example["calls"]}
    summary = {
        "candidates": len(items),
        "requests": len(request_ids),
        "accepted_candidates": len(accepted),
        "acceptance_rate": round(len(accepted) / max(len(items), 1), 4),
        "requests_with_accepted_answer": len(accepted_requests),
        "requests_without_accepted_answer": len(request_ids - accepted_requests),
        "examples_kept": len(examples),
        "examples_from_references": len(from_references),
        "functions_without_examples": sorted(offered - taught),
        "rejections_by_step": dict(Counter(r["step"] for r in rejections)),
        # null (not NaN, which is not JSON) for a verifier that applied to no candidate
        "by_verifier": {row["name"]: None if pd.isna(row["rate"]) else row["rate"]
                        for row in report[report.group == "verifier"].to_dict("records")},
        "consistency_alone_on_labelled": _consistency_precision(items, params["consistency"]["min_share"]),
        "no_call": no_call,
        **({"verifier_reports": verifier_reports} if verifier_reports else {}),
    }
    log.info(
        "Filtering: %d of %d candidates accepted (%.1f%%); %d examples kept (%d of them references); "
        "%d requests without an accepted answer",
        len(accepted), len(items), 100 * summary["acceptance_rate"], len(examples), len(from_references),
        summary["requests_without_accepted_answer"],
    )
    if summary["functions_without_examples"]:
        log.warning("No kept example calls %d offered functions: %s", len(summary["functions_without_examples"]),
                    ", ".join(summary["functions_without_examples"]))
    return examples, rejections, report, summary


def _consistency_precision(items: list[Item], min_share: float) -> dict[str, Any]:
    """How often the consistency verifier alone, used on labelled requests as if they had no
    label, accepts an exactly right answer: what it is worth on production logs."""
    valid = [item for item in items if item.request.get("reference") is not None and item.calls is not None]
    verdicts = majority_verdicts(valid, min_share)
    accepted = [item for item, verdict in zip(valid, verdicts) if verdict.passed]
    right = sum(exact_match(item.calls, item.request["reference"], item.request["tools"]) for item in accepted)
    return {"parsed_candidates": len(valid), "accepted": len(accepted), "exactly_right": right,
            "precision": round(right / len(accepted), 4) if accepted else None}


def plot_filter_report(report: pd.DataFrame) -> Any:
    """Acceptance by verifier and by function, as a plotly figure kedro-viz can preview."""
    import plotly.express as px

    shown = report[report.group != "overall"].copy()
    figure = px.bar(
        shown, x="name", y="rate", color="group", facet_col="group", facet_col_spacing=0.04,
        hover_data=["candidates", "accepted"], title="Teacher candidates accepted, by verifier and by function",
        labels={"rate": "acceptance rate", "name": ""},
    )
    figure.update_xaxes(matches=None, tickangle=-45)
    figure.update_yaxes(range=[0, 1])
    return figure
