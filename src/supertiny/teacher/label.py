"""Labelling requests with the teacher: k candidates a request, a progress bar, an account.

This is the whole recipe top to bottom: pick the endpoint (the configured ``base_url``, or the
embedded server started on the first cache miss; the API key is read then, so a fully cached
run needs none), answer the first request that needs a call on its own and check that a call
came back (and log what the whole run may cost), run the strategy for every other (request,
sample) with at most ``concurrency`` requests in flight, and turn each answer into a candidate
record (DESIGN.md) and the run into ``teacher_usage``. A run that reached
``teacher.max_cost_usd`` ends with one line that says so and how to resume.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from supertiny.calls import tool_names
from supertiny.errors import ConfigError, SupertinyError
from supertiny.teacher.cache import ResponseCache
from supertiny.teacher.client import RUN_SPENDING, Endpoint, TeacherClient, api_key, rejection_message
from supertiny.teacher.config import LocalServerConfig, TeacherConfig
from supertiny.teacher.fewshot import FewShotIndex
from supertiny.teacher.server import model_fingerprint, served_dtype, shared_local_server
from supertiny.teacher.strategies import STRATEGIES, Answer, Prompting

log = logging.getLogger(__name__)

EMBEDDED_ENDPOINT = "embedded:{engine}"


def candidate_record(request_id: str, sample: int, strategy: str, model: str, answer: Answer) -> dict[str, Any]:
    """One teacher candidate: the DESIGN.md fields, plus the strategy, request count and error."""
    completions = answer.completions
    failed = answer.failed
    return {
        "request_id": request_id,
        "sample": sample,
        "text": answer.text,
        "calls": answer.calls,
        "parse_error": answer.parse_error,
        "prompt_tokens": sum(c.prompt_tokens for c in completions),
        "completion_tokens": sum(c.completion_tokens for c in completions),
        "latency_ms": round(sum(c.latency_ms for c in completions), 1),
        "model": model,
        "cached": all(c.cached for c in completions),
        "strategy": strategy,
        "requests": len(completions),
        "error_kind": failed.error_kind if failed else None,
        "error": failed.error if failed else None,
    }


def _cost(price: dict[str, float] | None, prompt_tokens: int, completion_tokens: int) -> float | None:
    if price is None:
        return None
    return round((prompt_tokens * price["prompt"] + completion_tokens * price["completion"]) / 1e6, 6)


def first_request_needing_a_call(requests: list[dict]) -> int | None:
    """The position of the first labelled request whose reference calls a function it offers."""
    for position, request in enumerate(requests):
        reference = request.get("reference")
        if reference and {call["name"] for call in reference} <= set(tool_names(request["tools"])):
            return position
    return None


def check_first_answers(request: dict, candidates: list[dict], config: TeacherConfig, client: TeacherClient) -> None:
    """The first request that needs a call, answered before the others: a 400 stops the run with
    what the endpoint said; no call in any sample is said out loud (a strategy the teacher does
    not follow, an endpoint that drops the tools), before the other requests are paid for."""
    rejected = next((c for c in candidates if c["error_kind"] == "bad_request"), None)
    if rejected is not None and client.endpoint is not None:
        raise ConfigError(rejection_message(rejected["error"] or "", client.endpoint, request=f"request {request['id']}",
                                            tools_sent=config.strategy == "native", embedded=config.embedded))
    answered = [c for c in candidates if c["error_kind"] is None]
    if answered and not any(c["calls"] for c in answered):
        needed = ", ".join(sorted({call["name"] for call in request["reference"]}))
        log.warning(
            "The teacher answered request %s, which needs a call (%s), with no call in %d of %d samples (first: %r). "
            "If most answers are like that, the %s strategy does not suit this endpoint or model; filtering stops "
            "when no-call answers far outnumber the labelled requests that need none (filtering.max_no_call_share)",
            request["id"], needed, len(answered), len(candidates), (answered[0]["text"] or "")[:80], config.strategy,
        )  # fmt: skip


def log_cost_estimate(candidates: list[dict], planned: int, config: TeacherConfig, client: TeacherClient) -> None:
    """With a priced model and no ``teacher.max_cost_usd``: what ``planned`` requests may cost, at
    the first request's tokens (cached responses cost nothing, so this is at most)."""
    price = config.price(config.model or client.model_label)
    if config.max_cost_usd is not None or price is None or not (price["prompt"] or price["completion"]):
        return
    prompt = sum(c["prompt_tokens"] for c in candidates)
    completion = sum(c["completion_tokens"] for c in candidates)
    each = _cost(price, prompt, completion) or 0.0
    log.warning(
        "Teacher cost estimate: up to $%.2f for %d requests x %d samples (the first took %d prompt + %d completion "
        "tokens, $%.5f); no teacher.max_cost_usd caps it",
        each * planned, planned, config.k_samples, prompt, completion, each,
    )  # fmt: skip


def stop_if_over_budget(config: TeacherConfig, client: TeacherClient, answered: int, planned: int, unit: str) -> None:
    """End the run with one line when ``teacher.max_cost_usd`` kept requests from being sent."""
    if not client.usage.not_sent:
        return
    raise SupertinyError(
        f"teacher.max_cost_usd (${config.max_cost_usd:g}) reached: this run's teacher responses cost about "
        f"${RUN_SPENDING.usd:.4f}; {answered} of {planned} {unit} were answered, every response received is cached in "
        f"{config.cache_dir}. To resume, run again: cached responses cost nothing, and the cap counts new spending "
        "(raise teacher.max_cost_usd to go further in one run)"
    )


async def _label_all(
    requests: list[dict], client: TeacherClient, config: TeacherConfig, prompting: Prompting, progress: tqdm
) -> list[dict]:
    """``k_samples`` candidates for every request, in request then sample order."""
    answer = STRATEGIES[config.strategy]
    samples = list(range(config.k_samples))
    results: list[list[dict]] = [[] for _ in requests]

    async def label(position: int, request: dict) -> None:
        replies = await answer(request, client.complete_samples, prompting, samples)
        results[position] = [
            candidate_record(request["id"], sample, config.strategy, client.model_label, reply) for sample, reply in zip(samples, replies)
        ]
        usage = client.usage
        progress.set_postfix(sent=usage.sent, hits=usage.cache_hits, errors=sum(usage.errors.values()), refresh=False)
        progress.update(len(samples))

    first = first_request_needing_a_call(requests)
    pending = iter((p, r) for p, r in enumerate(requests) if p != first)  # shared by the workers: each takes the next

    async def worker() -> None:
        for position, request in pending:
            await label(position, request)

    workers: list[asyncio.Task] = []
    try:
        if first is not None:
            await label(first, requests[first])
            check_first_answers(requests[first], results[first], config, client)
            log_cost_estimate(results[first], len(requests), config, client)
        # One worker per request slot: the client's semaphore keeps the slots full and no more.
        workers = [asyncio.create_task(worker()) for _ in range(min(config.concurrency, len(requests)))]
        await asyncio.gather(*workers)
    except BaseException:
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        raise
    finally:
        await client.aclose()
    return [candidate for request_candidates in results for candidate in request_candidates]


def local_server_settings(config: TeacherConfig) -> dict[str, Any]:
    """The embedded server's settings (``LocalServer`` arguments) from ``teacher.local_server``."""
    local = config.local_server
    settings: dict[str, Any] = dict(engine=local.engine, startup_timeout_s=local.startup_timeout_s, extra_args=local.extra_args)
    if local.engine == "vllm":
        return settings | dict(python=local.python, threads=local.threads, kv_cache_gib=local.kv_cache_gib, max_model_len=local.max_model_len,
                                dtype=local.dtype)
    # transformers serve samples at the temperature its generation config sets: one server per
    # temperature. vLLM takes each request's own.
    return settings | dict(temperature=config.temperature, continuous_batching=local.continuous_batching,
                           kv_cache_tokens=local.kv_cache_tokens, kv_page_tokens=local.kv_page_tokens)


def embedded_endpoint_label(local: LocalServerConfig) -> str:
    """The embedded server's part of the response cache key: its engine and, for vLLM, the dtype
    it computes in, so answers cached under one precision are not replayed under another."""
    label = EMBEDDED_ENDPOINT.format(engine=local.engine)
    return f"{label}/{served_dtype(local.dtype)}" if local.engine == "vllm" else label


def open_teacher_client(
    config: TeacherConfig, model_dir: str | Path | None, probe_tools: tuple[str, list[dict]] | None = None
) -> TeacherClient:
    """A client for the configured endpoint: ``teacher.base_url``, or the embedded server, which
    starts only on the first cache miss and is shared by the whole run (``shared_local_server``).

    ``model_dir`` is the model the embedded server serves when ``teacher.local_server.model_dir``
    is not set. The API key is read on connecting (the first cache miss): a missing one stops
    the run there, before anything is sent, and a fully cached run needs none.
    """
    if config.embedded:
        served = Path(config.local_server.model_dir or model_dir or "")
        if not (served / "config.json").exists():
            raise ConfigError(f"teacher.local_server.model_dir: {served} is not a model directory (no config.json)")
        endpoint_label, model_label = embedded_endpoint_label(config.local_server), f"{served.name}@{model_fingerprint(served)[:16]}"

        def connect() -> Endpoint:
            key = api_key(config)
            server = shared_local_server(served, **local_server_settings(config))
            return Endpoint(server.base_url, server.model_id, key)
    else:
        endpoint_label, model_label = config.base_url, config.model

        def connect() -> Endpoint:
            return Endpoint(config.base_url, config.model, api_key(config))

    return TeacherClient(config, ResponseCache(config.cache_dir), endpoint_label, model_label, connect, probe_tools)


def label_requests(
    requests: list[dict], seed_examples: list[dict], config: TeacherConfig, model_dir: str | Path | None = None
) -> tuple[list[dict], dict[str, Any]]:
    """``k_samples`` candidates for each request, and the run's usage record.

    ``model_dir`` is the model the embedded server serves when ``teacher.local_server.model_dir``
    is not set. Responses are cached under ``teacher.cache_dir`` as they arrive, so a killed
    run resumes where it stopped.
    """
    if config.temperature == 0 and config.k_samples > 1:
        log.warning("teacher.temperature is 0: the %d samples of a request will mostly be the same answer", config.k_samples)
    prompting = Prompting(FewShotIndex(seed_examples), config.few_shot, config.max_tokens, config.max_tokens_select)
    probe_tools = (requests[0]["id"], requests[0]["tools"]) if config.strategy == "native" and requests else None
    client = open_teacher_client(config, model_dir, probe_tools)
    log.info(
        "Teacher: %d requests x %d samples, strategy %s, model %s at %s",
        len(requests), config.k_samples, config.strategy, client.model_label, config.base_url or "the embedded server",
    )  # fmt: skip
    started = time.perf_counter()
    with tqdm(total=len(requests) * config.k_samples, desc="teacher", unit="sample", mininterval=1.0) as progress:
        candidates = asyncio.run(_label_all(requests, client, config, prompting, progress))
    wall_s = time.perf_counter() - started
    answered = sum(1 for c in candidates if c["error_kind"] is None)
    stop_if_over_budget(config, client, answered, len(candidates), "samples")
    usage = {
        "strategy": config.strategy,
        "engine": config.local_server.engine if config.embedded else None,
        # What actually ran, as the probe found the endpoint (nothing sent: what was asked for).
        "structured_outputs": _structured_mode(config, client),
        "samples_drawn": "n" if client.supports_n else ("requests" if config.k_samples > 1 else "single"),
        "structured_fallbacks": client.usage.structured_fallbacks,
        **usage_record(config, client, wall_s),
        "requests_labelled": len(requests),
        "k_samples": config.k_samples,
        "candidates": len(candidates),
        "candidates_answered": answered,
        "candidates_parsed": sum(1 for c in candidates if c["calls"] is not None),
        "candidates_failed": len(candidates) - answered,
        "candidates_per_s": round(len(candidates) / wall_s, 3) if wall_s > 0 else 0.0,
    }
    log.info(
        "Teacher done in %.1f s: %d requests sent (+%d probe), %d cache hits, %d retries, errors %s, "
        "tokens %d prompt + %d completion, %.2f requests/s, cost %s",
        wall_s, usage["requests_sent"], usage["probe_requests"], usage["cache_hits"], usage["retries"],
        usage["errors"] or "none", usage["prompt_tokens"], usage["completion_tokens"], usage["requests_per_s"],
        "unknown (no price)" if usage["cost_usd"] is None else f"${usage['cost_usd']:.4f}",
    )  # fmt: skip
    return candidates, usage


def _structured_mode(config: TeacherConfig, client: TeacherClient) -> str:
    if config.structured_outputs == "off" or config.strategy == "native":
        return "off"
    if client.usage.sent == 0:
        return f"{config.structured_outputs} (all cached)"
    return "json_schema" if client.supports_structured else "off (not supported)"


def usage_record(config: TeacherConfig, client: TeacherClient, wall_s: float) -> dict[str, Any]:
    """What the client's requests cost: the teacher's accounting, for labelling and judging alike."""
    usage = client.usage
    price = config.price(config.model or client.model_label)
    if price is None:
        log.warning("No price for model %r in teacher.prices: cost is reported as null", config.model)
    return {
        "endpoint": client.endpoint_label,
        "model": client.model_label,
        "requests_sent": usage.sent,  # responses (samples) that came from the endpoint
        "http_requests": usage.http_requests,
        "probe_requests": usage.probes,
        "cache_hits": usage.cache_hits,
        "cache_hit_rate": round(usage.cache_hits / max(usage.cache_hits + usage.sent, 1), 4),
        "retries": usage.retries,
        "errors": dict(sorted(usage.errors.items())),
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "cached_prompt_tokens": usage.cached_prompt_tokens,
        "cached_completion_tokens": usage.cached_completion_tokens,
        "wall_s": round(wall_s, 2),
        "requests_per_s": round(usage.sent / wall_s, 3) if wall_s > 0 else 0.0,
        "price_usd_per_1m_tokens": price,
        "cost_usd": _cost(price, usage.prompt_tokens, usage.completion_tokens),
        "cost_usd_with_cache": _cost(
            price, usage.prompt_tokens + usage.cached_prompt_tokens, usage.completion_tokens + usage.cached_completion_tokens
        ),
    }
