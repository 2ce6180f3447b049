"""What a team looks at before switching: the same requests sent to the teacher endpoint and to
``supertiny serve``, each one at a time, through each one's real client.

The teacher answers through its own client and strategy (``label_requests``, greedy, a fresh
cache so every answer is really sent and timed). The served model answers through the
``openai`` SDK, the way the user's system would call it: at ``shadow.served_url`` when a
``supertiny serve`` is running there, else a server of the final model started for the replay
on a loopback port. Both are priced as the stage table prices them.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import openai
from tqdm.auto import tqdm

from supertiny.calls import exact_match, parse_calls
from supertiny.datasets import ModelDirectory
from supertiny.errors import ConfigError
from supertiny.inference import sample_requests
from supertiny.latency import percentiles_ms
from supertiny.pipelines.evaluation.nodes import machine_cost_per_1k, token_cost_per_1k
from supertiny.serving import BackgroundServer, ServedModel, create_app
from supertiny.teacher import TeacherConfig, label_requests

log = logging.getLogger(__name__)


def shadow_compare(
    test_requests: list[dict], teacher_seed_examples: list[dict], base_model: ModelDirectory, final_model: ModelDirectory,
    tools_mode: str, teacher: dict[str, Any], evaluation: dict[str, Any], shadow: dict[str, Any],
) -> dict[str, Any]:
    """The shadow report: per request, both answers, whether they agree and whether each matches
    the reference; and for each side exact match, p50/p95 latency and cost per 1,000 requests."""
    max_requests = shadow.get("max_requests")
    if max_requests is not None and (isinstance(max_requests, bool) or not isinstance(max_requests, int) or max_requests < 1):
        raise ConfigError(f"shadow.max_requests must be a positive integer or null (all); got {max_requests!r}")
    requests = sample_requests(test_requests, max_requests, evaluation.get("seed", 0))
    greedy = {**teacher, "k_samples": 1, "temperature": 0.0}
    with tempfile.TemporaryDirectory(prefix="supertiny-shadow-") as fresh_cache:
        config = TeacherConfig.from_params({**greedy, "concurrency": 1, "cache_dir": fresh_cache})
        teacher_answers, usage = label_requests(requests, teacher_seed_examples, config, model_dir=base_model.path)
    with served_endpoint(shadow.get("served_url"), final_model, tools_mode, evaluation) as (client, name):
        served_answers = [_ask_served(client, name, request) for request in tqdm(requests, desc="served", unit="request")]

    rows = []
    for request, taught, served in zip(requests, teacher_answers, served_answers, strict=True):
        reference, tools = request.get("reference"), request["tools"]
        teacher_calls = taught["calls"]
        rows.append({
            "request_id": request["id"],
            "request": next((m["content"] for m in reversed(request["messages"]) if m["role"] == "user"), ""),
            "teacher_calls": teacher_calls,
            "served_calls": served["calls"],
            "agree": teacher_calls is not None and served["calls"] is not None and exact_match(served["calls"], teacher_calls, tools),
            "teacher_exact": exact_match(teacher_calls, reference, tools) if reference is not None else None,
            "served_exact": exact_match(served["calls"], reference, tools) if reference is not None else None,
            "teacher_ms": taught["latency_ms"],
            "served_ms": served["latency_ms"],
        })
    price = evaluation["price_per_hour_usd"]
    summary = {
        "requests": len(rows),
        "agreement": _mean([row["agree"] for row in rows]),
        "disagreements": sum(not row["agree"] for row in rows),
        "teacher": _side(rows, "teacher", config, usage, teacher_answers, price),
        "served": _side(rows, "served", None, None, None, price) | {"model": served_answers[0]["model"] if served_answers else None},
    }
    log.info("Shadow of %d requests: agreement %s; exact match teacher %s, served %s; p50 teacher %s ms, served %s ms",
             summary["requests"], summary["agreement"], summary["teacher"]["exact_match"], summary["served"]["exact_match"],
             summary["teacher"]["p50_ms"], summary["served"]["p50_ms"])
    return {"summary": summary, "disagreements": [row for row in rows if not row["agree"]], "requests": rows}


def _mean(values: list) -> float | None:
    known = [value for value in values if value is not None]
    return round(float(np.mean(known)), 4) if known else None


def _side(rows: list[dict], side: str, config: TeacherConfig | None, usage: dict | None, answers: list[dict] | None, price_per_hour: float) -> dict:
    latencies = [row[f"{side}_ms"] for row in rows if row[f"{side}_ms"] is not None]
    seconds = float(np.mean(latencies)) / 1000 if latencies else 0.0
    if config is not None and not config.on_this_machine:
        cost = token_cost_per_1k([a for a in answers if a["error_kind"] is None], usage["price_usd_per_1m_tokens"])
    else:
        cost = machine_cost_per_1k(seconds, price_per_hour)  # one request at a time: its latency is its machine time
    return {
        "exact_match": _mean([row[f"{side}_exact"] for row in rows]),
        **percentiles_ms(latencies),
        "cost_per_1k_requests": cost,
    }


def _ask_served(client: openai.OpenAI, model: str, request: dict) -> dict[str, Any]:
    started = time.perf_counter()
    completion = client.chat.completions.create(model=model, messages=request["messages"], tools=request["tools"])
    latency_ms = round((time.perf_counter() - started) * 1000, 1)
    message = completion.choices[0].message
    parsed = parse_calls(tool_calls=message.tool_calls) if message.tool_calls else parse_calls(message.content or "[]")
    return {"calls": parsed.calls, "latency_ms": latency_ms, "model": completion.model}


@contextmanager
def served_endpoint(served_url: str | None, final_model: ModelDirectory, tools_mode: str, evaluation: dict[str, Any]) -> Iterator[tuple[openai.OpenAI, str]]:
    """An openai client of the served model and its name: ``served_url``'s, or a server of
    ``final_model`` started on a free loopback port for the replay."""
    if served_url:
        client = openai.OpenAI(base_url=served_url, api_key="unused", max_retries=0, timeout=120)
        yield client, client.models.list().data[0].id
        return
    served = ServedModel.from_evaluation("quantized_model", final_model.load(), tools_mode, evaluation)
    with BackgroundServer(create_app(served)) as server:
        client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=120)
        # One untimed answer first (lazy initialisation), as the evaluation's latency harness does.
        _ask_served(client, served.name, {"messages": [{"role": "user", "content": "hello"}], "tools": []})
        yield client, served.name
