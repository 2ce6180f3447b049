"""Answer requests with a model in the shared prompt format, and score the answers with the call module.

Evaluation, benchmarks and serving use these functions; nothing here knows about training.
Generation is greedy, in left-padded batches of prompts of similar length (CPU time grows with
every padded token).
"""

from __future__ import annotations

import random
import time
from statistics import fmean
from typing import Any

import torch
from tqdm.auto import tqdm

from supertiny.calls import exact_match, parse_calls, similarity, validate_calls
from supertiny.datasets import ModelBundle, ModelDirectory
from supertiny.prompt import prompt_text


def generate_answers(
    model: Any, tokenizer: Any, requests: list[dict], tools_mode: str, max_new_tokens: int = 96, batch_size: int = 16
) -> list[str]:
    """The model's answer text to each request, in request order (special tokens removed)."""
    prompts = [prompt_text(request, tokenizer, tools_mode) for request in requests]
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    texts: list[str] = [""] * len(prompts)
    pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    padding_side = tokenizer.padding_side
    tokenizer.padding_side = "left"  # every prompt ends where its answer starts
    try:
        with torch.inference_mode(), tqdm(total=len(prompts), desc="generating", unit="request") as progress:
            for start in range(0, len(order), batch_size):
                batch = order[start : start + batch_size]
                inputs = tokenizer([prompts[i] for i in batch], return_tensors="pt", padding=True).to(model.device)
                output = model.generate(**inputs, do_sample=False, max_new_tokens=max_new_tokens, pad_token_id=pad_token_id)
                for i, ids in zip(batch, output[:, inputs["input_ids"].shape[1] :]):
                    texts[i] = tokenizer.decode(ids, skip_special_tokens=True)
                progress.update(len(batch))
    finally:
        tokenizer.padding_side = padding_side
    return texts


def score_requests(requests: list[dict], texts: list[str]) -> tuple[list[dict], dict[str, Any]]:
    """Each answer parsed, validated and compared with its request's reference; and the totals.

    Per request: ``{request_id, text, calls | None, parse_error, valid, exact, similarity}``
    (``valid``: parsed and valid against the request's tool schemas; ``exact`` and
    ``similarity`` are None for a request without a reference). Totals: ``exact_match`` and
    ``similarity`` over labelled requests, ``valid_rate`` over all, ``no_call_accuracy`` (exact
    match where the reference is "no call") and the counts ``n``, ``n_labelled``.
    """
    predictions = []
    for request, text in zip(requests, texts, strict=True):
        parsed = parse_calls(text)
        reference, tools = request.get("reference"), request["tools"]
        predictions.append(
            {
                "request_id": request["id"],
                "text": text,
                "calls": parsed.calls,
                "parse_error": parsed.error,
                "valid": parsed.ok and not validate_calls(parsed.calls, tools),
                "exact": exact_match(parsed.calls, reference, tools) if reference is not None else None,
                "similarity": similarity(parsed.calls, reference, tools) if reference is not None else None,
            }
        )
    labelled = [p for p, r in zip(predictions, requests) if r.get("reference") is not None]
    no_call = [p for p, r in zip(predictions, requests) if r.get("reference") == []]

    def mean(values: list) -> float | None:
        return round(fmean(values), 4) if values else None

    metrics = {
        "exact_match": mean([p["exact"] for p in labelled]),
        "similarity": mean([p["similarity"] for p in labelled]),
        "valid_rate": mean([p["valid"] for p in predictions]),
        "no_call_accuracy": mean([p["exact"] for p in no_call]),
        "n": len(predictions),
        "n_labelled": len(labelled),
    }
    return predictions, metrics


def sample_requests(requests: list[dict], max_requests: int | None, seed: int = 0) -> list[dict]:
    """At most ``max_requests`` requests, a seeded random subset kept in the original order (None: all)."""
    if max_requests is None or max_requests >= len(requests):
        return list(requests)
    keep = set(random.Random(seed).sample(range(len(requests)), max_requests))
    return [request for position, request in enumerate(requests) if position in keep]


def evaluate_model(
    model: ModelDirectory | ModelBundle, requests: list[dict], params: dict[str, Any]
) -> tuple[list[dict], dict[str, Any]]:
    """Generate answers to (a seeded subset of) ``requests`` and score them.

    ``params``: ``tools_mode`` (the prompt format the model was trained with), ``max_new_tokens``,
    ``batch_size``, ``max_requests`` (null: all) and ``seed``. The metrics add the generation's
    wall time and requests per second (batched, so not a latency).
    """
    chosen = sample_requests(requests, params.get("max_requests"), params.get("seed", 0))
    bundle = model.load() if isinstance(model, ModelDirectory) else model  # saved dtype; a quantised model loads as such
    bundle.model.eval()
    started = time.perf_counter()
    texts = generate_answers(
        bundle.model, bundle.tokenizer, chosen, params["tools_mode"], params.get("max_new_tokens", 96), params.get("batch_size", 16)
    )
    wall_s = time.perf_counter() - started
    predictions, metrics = score_requests(chosen, texts)
    metrics |= {"wall_s": round(wall_s, 2), "requests_per_s": round(len(chosen) / wall_s, 3) if wall_s else None}
    return predictions, metrics
