"""The one latency harness for local models: batch-1 greedy generation on this CPU.

Every model (student, pruned, quantised) is timed the same way: each prompt alone (batch 1),
greedy, exactly ``new_tokens`` new tokens (end-of-sequence is suppressed, so every model does
the same work), after warm-up, with a fixed number of CPU threads. Answers can also be timed as
they are written (``to_end``: each one stops at its end-of-sequence, under its grammar when
constrained), which is what a caller waits for. A streamer timestamps every generated token,
which separates prefill (prompt in, first token out) from decode (each further token): decode
tokens/s is what weight bandwidth bounds, prefill is what prompt length costs.

The physical bound: a decode step reads every weight of every matmul once (the output head
included, of an embedding table only one row), so tokens/s can never exceed memory bandwidth
divided by those bytes. ``measure_served_latency`` times the path ``supertiny serve`` answers
with (``decoding.Decoder``: its own loop, grammar jump-forward, a cached prompt prefix), which
is what the stage table reports. ``memory_bandwidth_gbs`` measures the bandwidth here;
``weight_bytes_per_token`` counts the bytes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from supertiny.runtime import torch_threads


def percentiles_ms(milliseconds: Sequence[float] | np.ndarray) -> dict[str, float | None]:
    """``p50_ms`` and ``p95_ms`` of request times, as every table shows them (None for no times)."""
    if len(milliseconds) == 0:
        return {"p50_ms": None, "p95_ms": None}
    return {f"p{q}_ms": round(float(np.percentile(milliseconds, q)), 1) for q in (50, 95)}


@dataclass(frozen=True)
class Latency:
    """Batch-1 timings over a set of prompts (milliseconds, tokens per second)."""

    p50_ms: float  # whole request: prompt in, all new tokens out
    p95_ms: float
    prefill_p50_ms: float  # prompt in, first new token out
    decode_tokens_per_s: float | None  # further tokens / time spent on them, over all requests
    tokens_per_s: float  # all new tokens / all request time (what a caller sees)
    new_tokens: int  # per request: exactly this many, or at most this many when timed to the end
    requests: int
    threads: int
    forward_calls_per_answer: float | None = None  # model steps per answer (fast path: fewer than its tokens)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class _TokenClock:
    """A generation streamer that records when each new token arrives."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self._prompt_seen = False

    def put(self, value: torch.Tensor) -> None:
        # generate() first puts the prompt, then one tensor per new token.
        if self._prompt_seen:
            self.times.append(time.perf_counter())
        self._prompt_seen = True

    def end(self) -> None:
        pass


@torch.inference_mode()
def measure_latency(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    *,
    new_tokens: int = 32,
    threads: int = 2,
    warmup: int = 1,
    to_end: bool = False,
    logits_processors: Callable[[int], list] | None = None,
) -> Latency:
    """Time greedy batch-1 generation of exactly ``new_tokens`` tokens for each prompt.

    ``prompts`` are finished prompt texts (``supertiny.prompt.prompt_text``), so the harness
    times any prompt format. The first ``warmup`` prompts are run once untimed first (lazy
    initialisation, weight unpacking, allocator growth). ``to_end``: each answer runs to its
    end-of-sequence instead, at most ``new_tokens``; tokens/s count the tokens generated.
    ``logits_processors`` (with ``to_end``: a grammar decides where an answer ends): prompt i's
    processors, made afresh for each generation (``inference.AnswerGrammars.processor``).
    """
    if not prompts:
        raise ValueError("measure_latency needs at least one prompt")
    if new_tokens < 2:
        raise ValueError("new_tokens must be at least 2 to separate prefill from decode")
    if logits_processors is not None and not to_end:
        raise ValueError("a grammar ends an answer where it is complete: time constrained answers with to_end=True")
    processors = logits_processors or (lambda index: [])
    with torch_threads(threads):
        model.eval()
        encoded = [tokenizer(text, return_tensors="pt", add_special_tokens=False).to(model.device) for text in prompts]
        for index, inputs in enumerate(encoded[:warmup]):
            _generate(model, tokenizer, inputs, new_tokens, _TokenClock(), to_end, processors(index))
        totals, prefills, decode_times, generated = [], [], [], []
        for index, inputs in enumerate(encoded):
            clock, answer_processors = _TokenClock(), processors(index)
            start = time.perf_counter()
            _generate(model, tokenizer, inputs, new_tokens, clock, to_end, answer_processors)
            end = time.perf_counter()
            totals.append(end - start)
            prefills.append(clock.times[0] - start)
            decode_times.append(clock.times[-1] - clock.times[0])
            generated.append(len(clock.times))
    decoded = sum(generated) - len(generated)  # every token after each answer's first
    return Latency(
        **percentiles_ms(np.array(totals) * 1000),
        prefill_p50_ms=percentiles_ms(np.array(prefills) * 1000)["p50_ms"],
        decode_tokens_per_s=round(decoded / sum(decode_times), 2) if decoded else None,
        tokens_per_s=round(sum(generated) / sum(totals), 2),
        new_tokens=new_tokens,
        requests=len(encoded),
        threads=threads,
    )


def _generate(
    model: Any, tokenizer: Any, inputs: dict, new_tokens: int, clock: _TokenClock, to_end: bool, logits_processors: list
) -> None:
    model.generate(
        **inputs,
        max_new_tokens=new_tokens,
        # Unless timed to the end: end-of-sequence suppressed, equal work for every model.
        min_new_tokens=None if to_end else new_tokens,
        do_sample=False,
        pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id,
        streamer=clock,
        logits_processor=logits_processors,
    )
    if not to_end and len(clock.times) != new_tokens:
        raise RuntimeError(f"generate produced {len(clock.times)} tokens, not {new_tokens}")


@torch.inference_mode()
def measure_served_latency(
    decoder: Any, prompts: Sequence[str], grammars: Sequence[Any | None], *, max_new_tokens: int, threads: int = 2, warmup: int = 1
) -> Latency:
    """Time each prompt's whole answer as ``supertiny serve`` writes it: batch 1, greedy, on the
    fast path (``decoding.Decoder``), under its grammar where one is given, to its end.

    Prefill is prompt in, first answer token out; decode tokens/s counts every answer token
    after the first (jump-forward's forced tokens included: they are what the caller gets) over
    the time after the first."""
    if not prompts:
        raise ValueError("measure_served_latency needs at least one prompt")
    with torch_threads(threads):
        for prompt, grammar in list(zip(prompts, grammars, strict=True))[:warmup]:
            decoder.generate(prompt, grammar, max_new_tokens)
        answers = [decoder.generate(prompt, grammar, max_new_tokens) for prompt, grammar in zip(prompts, grammars, strict=True)]
    totals_ms = np.array([answer.total_s for answer in answers]) * 1000
    decoded = sum(max(len(answer.token_ids) - 1, 0) for answer in answers)
    decode_s = sum(answer.token_times[-1] - answer.token_times[0] for answer in answers if len(answer.token_times) > 1)
    return Latency(
        **percentiles_ms(totals_ms),
        prefill_p50_ms=percentiles_ms([answer.prefill_s * 1000 for answer in answers])["p50_ms"],
        decode_tokens_per_s=round(decoded / decode_s, 2) if decoded and decode_s > 0 else None,
        tokens_per_s=round(sum(len(answer.token_ids) for answer in answers) / (totals_ms.sum() / 1000), 2),
        new_tokens=max_new_tokens,
        requests=len(answers),
        threads=threads,
        forward_calls_per_answer=round(float(np.mean([answer.forward_calls for answer in answers])), 2),
    )


def memory_bandwidth_gbs(megabytes: int = 256, repeats: int = 5, threads: int = 2) -> float:
    """Memory bandwidth in GB/s seen by ``threads`` threads: the best of ``repeats`` copies of a
    buffer far larger than the caches (a copy reads and writes every byte, so it counts twice)."""
    with torch_threads(threads):
        source = torch.ones(megabytes * 2**20 // 4, dtype=torch.float32)
        target = torch.empty_like(source)
        target.copy_(source)  # page in the target before timing
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            target.copy_(source)
            best = min(best, time.perf_counter() - start)
    return round(2 * source.numel() * source.element_size() / best / 1e9, 2)


def weight_bytes_per_token(model: torch.nn.Module) -> int:
    """Bytes of weights one decode step reads: each matmul's weights as they are stored when it
    runs (a quantised layer's int8 or packed int4 weights, or the float weights that a layer
    unpacks once and keeps), norms and biases; embedding tables count nothing (one row is read).
    A tensor shared by two modules (tied input and output embeddings) counts where it is read
    as a matmul, once. An ONNX Runtime model counts its graph's (``OnnxCausalLM.weight_bytes``)."""
    if not isinstance(model, torch.nn.Module):
        return model.weight_bytes()
    counted: list[torch.Tensor] = []  # by identity: a tied weight counts once

    def count(tensor: torch.Tensor | None) -> None:
        if isinstance(tensor, torch.Tensor) and all(tensor is not other for other in counted):
            counted.append(tensor)

    for module in model.modules():
        if isinstance(module, torch.nn.Embedding):
            continue
        packed = getattr(module, "_packed_params", None)
        if packed is not None and hasattr(packed, "_weight_bias"):
            # torch's dynamically quantised Linear: int8 weight (+ float bias) in a packed blob.
            weight, bias = packed._weight_bias()
            count(weight)
            count(bias)
        elif next(module.children(), None) is not None:
            # A container, or a wrapper (INC wraps quantised layers in graph modules that keep a
            # stale float weight attribute): the layers inside do the reading.
            continue
        elif isinstance(getattr(module, "weight", None), torch.Tensor):
            # An ordinary layer, or a weight-only quantised one that has unpacked its weight.
            count(module.weight)
            count(getattr(module, "bias", None))
        else:
            for tensor in [*module.parameters(recurse=False), *module.buffers(recurse=False)]:
                count(tensor)
    return sum(tensor.numel() * tensor.element_size() for tensor in counted)
