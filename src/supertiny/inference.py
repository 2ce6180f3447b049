"""Answer requests with a model in the shared prompt format, and score the answers with the call module.

Evaluation, benchmarks and serving use these functions; nothing here knows about training.
Generation is greedy, in left-padded batches of prompts of similar length (CPU time grows with
every padded token). Constrained, each answer is generated under the grammar of its request's
``calls.answer_schema`` (xgrammar, the engine vLLM guides the teacher with), so every finished
answer is a list of valid calls to the offered tools.
"""

from __future__ import annotations

import json
import logging
import math
import random
import re
import time
from dataclasses import dataclass
from statistics import fmean
from typing import Any

import torch
import xgrammar
import xgrammar.contrib.hf
from tqdm.auto import tqdm

from supertiny.calls import answer_schema, exact_match, parse_calls, similarity, validate_calls
from supertiny.calls.parse import CALL_SEPARATORS
from supertiny.datasets import ModelBundle, ModelDirectory
from supertiny.decoding import Decoded, build_decoder
from supertiny.prompt import end_of_turn, prompt_text

log = logging.getLogger(__name__)

Z_95 = 1.959963984540054  # the standard normal quantile of a two-sided 95% interval


class GrammarError(ValueError):
    """A request's answer schema that the grammar engine cannot compile (the message says why)."""


class AnswerGrammars:
    """The answer grammar of each request for one tokenizer, compiled once per distinct schema.

    The grammar is ``calls.answer_schema`` of the request's tools written the way the student was
    trained to write it (``format_calls``: its separators, no other whitespace), then the end of
    its turn (``prompt.end_of_turn``); the model's end-of-sequence token ends it.
    ``max_calls`` (None: no limit) caps the calls in an answer, so that a model repeating calls
    is made to close the list instead of running into ``max_new_tokens`` mid-call.
    """

    def __init__(self, tokenizer: Any, vocab_size: int, max_calls: int | None = None) -> None:
        info = xgrammar.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab_size)
        self._compiler = xgrammar.GrammarCompiler(info, max_threads=torch.get_num_threads())
        # The engine ends a grammar with the stop (end-of-sequence) token; what a chat template
        # writes before it is part of the answer the model was trained on.
        self._before_stop = end_of_turn(tokenizer).removesuffix(tokenizer.eos_token or "")
        self._max_calls = max_calls
        self._compiled: dict[str, Any] = {}  # schema JSON -> compiled grammar, or why it failed

    def compile(self, tools: list[dict]) -> Any:
        """The compiled grammar of an answer to these tools; GrammarError when it cannot be built."""
        schema = answer_schema(tools)
        if self._max_calls is not None and "items" in schema:
            schema["maxItems"] = self._max_calls
        key = json.dumps(schema, ensure_ascii=False)  # not sorted: the grammar keeps the schema's property order
        if key not in self._compiled:
            try:
                grammar = xgrammar.Grammar.from_json_schema(key, any_whitespace=False, separators=CALL_SEPARATORS)
                if self._before_stop:
                    literal = xgrammar.Grammar.from_ebnf(f"root ::= {json.dumps(self._before_stop, ensure_ascii=False)}")
                    grammar = xgrammar.Grammar.concat(grammar, literal)
                self._compiled[key] = self._compiler.compile_grammar(grammar)
            except RuntimeError as error:  # the engine reports every schema it cannot convert so
                self._compiled[key] = _engine_message(error)
        compiled = self._compiled[key]
        if isinstance(compiled, str):
            raise GrammarError(compiled)
        return compiled

    @staticmethod
    def processor(grammars: list[Any]) -> Any:
        """The logits processor of one ``generate`` call: one grammar per batch row, in row order.
        It serves that call only (its matchers hold each row's state)."""
        return xgrammar.contrib.hf.LogitsProcessor(grammars)


def _engine_message(error: Exception) -> str:
    """xgrammar's message without its C++ log prefix (``[12:00:00] /project/cpp/file.cc:123: ``)."""
    return re.sub(r"^\[[^\]]*\] \S+:\d+: ", "", str(error).strip())


def answer_grammars(
    model: Any, tokenizer: Any, requests: list[dict], max_calls: int | None, unconstrained: dict[str, str] | None = None
) -> list[Any]:
    """Each request's compiled answer grammar (``AnswerGrammars``), or None where its schema is
    not a grammar: that request is answered unconstrained, logged, and noted in
    ``unconstrained`` (request id -> why) when given."""
    compiler = AnswerGrammars(tokenizer, model.config.vocab_size, max_calls)
    grammars: list[Any] = []
    for request in requests:
        try:
            grammars.append(compiler.compile(request["tools"]))
        except GrammarError as error:
            grammars.append(None)
            if unconstrained is not None:
                unconstrained[request["id"]] = str(error)
            log.warning("Request %s answered unconstrained: its answer schema is not a grammar (%s)", request["id"], error)
    return grammars


@dataclass(frozen=True)
class GeneratedAnswers:
    """Each request's answer text, in request order, and the requests answered without their
    grammar although constrained decoding was asked for (request id -> why). On the served path
    also each answer as the decoder wrote it (``decoding.Decoded``: its confidence, time, no-call
    probability); batched answers have none."""

    texts: list[str]
    unconstrained: dict[str, str]
    decoded: list[Decoded] | None = None


def generate_answers(
    model: Any,
    tokenizer: Any,
    requests: list[dict],
    tools_mode: str,
    max_new_tokens: int = 96,
    batch_size: int = 16,
    *,
    constrained: bool,
    max_calls: int | None = None,
    fast_path: dict[str, bool] | None = None,
) -> GeneratedAnswers:
    """The model's answer to each request (special tokens removed).

    ``constrained``: each answer under its request's grammar (``AnswerGrammars``, ``max_calls``).
    A request whose schema the engine cannot compile is answered unconstrained, logged with the
    reason and listed in the result's ``unconstrained``; the other requests keep their grammars.
    ``fast_path`` (``jump_forward``, ``prefix_cache``): each request alone on the served path
    (``decoding.Decoder``), so the answers are the ones ``supertiny serve`` gives; None: in
    left-padded batches of ``batch_size`` through ``generate``.
    """
    prompts = [prompt_text(request, tokenizer, tools_mode) for request in requests]
    unconstrained: dict[str, str] = {}
    grammars = answer_grammars(model, tokenizer, requests, max_calls, unconstrained) if constrained else [None] * len(requests)
    if fast_path is None and not hasattr(model, "generate"):
        # An ONNX Runtime model (onnx_model.OnnxCausalLM) answers on the served path only.
        log.info("%s has no batched generate: each request is answered alone on the served path", type(model).__name__)
        fast_path = {}
    if fast_path is not None:
        decoder = build_decoder(model, tokenizer, tools_mode, **fast_path)
        decoded = [decoder.generate(prompt, grammar, max_new_tokens)
                   for prompt, grammar in tqdm(list(zip(prompts, grammars)), desc="answering", unit="request")]
        return GeneratedAnswers([answer.text for answer in decoded], unconstrained, decoded)
    # A batch shares one logits processor, so requests with and without a grammar go in separate
    # batches, each of prompts of similar length.
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    groups = [[i for i in order if grammars[i] is not None], [i for i in order if grammars[i] is None]]
    batches = [group[start : start + batch_size] for group in groups for start in range(0, len(group), batch_size)]
    texts: list[str] = [""] * len(prompts)
    pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    padding_side = tokenizer.padding_side
    tokenizer.padding_side = "left"  # every prompt ends where its answer starts
    try:
        with torch.inference_mode(), tqdm(total=len(prompts), desc="generating", unit="request") as progress:
            for batch in batches:
                inputs = tokenizer([prompts[i] for i in batch], return_tensors="pt", padding=True).to(model.device)
                processors = [AnswerGrammars.processor([grammars[i] for i in batch])] if grammars[batch[0]] is not None else []
                output = model.generate(
                    **inputs, do_sample=False, max_new_tokens=max_new_tokens, pad_token_id=pad_token_id, logits_processor=processors
                )
                for i, ids in zip(batch, output[:, inputs["input_ids"].shape[1] :]):
                    texts[i] = tokenizer.decode(ids, skip_special_tokens=True)
                progress.update(len(batch))
    finally:
        tokenizer.padding_side = padding_side
    return GeneratedAnswers(texts, unconstrained)


def wilson_interval(successes: int, trials: int, z: float = Z_95) -> tuple[float | None, float | None]:
    """The Wilson score interval of a proportion (95% by default); (None, None) without trials.
    Unlike the normal approximation it stays inside [0, 1] and is not empty at 0 or all successes."""
    if trials == 0:
        return None, None
    share = successes / trials
    centre = (share + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z * math.sqrt(share * (1 - share) / trials + z * z / (4 * trials * trials)) / (1 + z * z / trials)
    return round(max(0.0, centre - half), 4), round(min(1.0, centre + half), 4)


def score_requests(requests: list[dict], texts: list[str]) -> tuple[list[dict], dict[str, Any]]:
    """Each answer parsed, validated and compared with its request's reference; and the totals.

    Per request: ``{request_id, text, calls | None, parse_error, valid, exact, similarity}``
    (``valid``: parsed and valid against the request's tool schemas; ``exact`` and
    ``similarity`` are None for a request without a reference). Totals: ``exact_match``, its 95%
    Wilson interval (``exact_match_low``, ``exact_match_high``) and ``similarity`` over labelled
    requests, ``valid_rate`` over all, ``no_call_accuracy`` (exact match where the reference is
    "no call"), ``call_exact_match`` (exact match where the reference has at least one call: what
    answering ``[]`` everywhere cannot score) and the counts ``n``, ``n_labelled``.
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
    with_calls = [p for p, r in zip(predictions, requests) if r.get("reference")]
    low, high = wilson_interval(sum(p["exact"] for p in labelled), len(labelled))

    def mean(values: list) -> float | None:
        return round(fmean(values), 4) if values else None

    metrics = {
        "exact_match": mean([p["exact"] for p in labelled]),
        "exact_match_low": low,
        "exact_match_high": high,
        "call_exact_match": mean([p["exact"] for p in with_calls]),
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

    ``params``: ``tools_mode`` (the prompt format the model was trained with), ``constrained``
    and ``max_calls`` (see ``generate_answers``), ``max_new_tokens``, ``batch_size``,
    ``max_requests`` (null: all) and ``seed``. The metrics add the generation's wall time, requests
    per second (batched, so not a latency) and ``unconstrained_fallbacks`` (requests answered
    without their grammar although constrained).
    """
    chosen = sample_requests(requests, params.get("max_requests"), params.get("seed", 0))
    bundle = model.load() if isinstance(model, ModelDirectory) else model  # saved dtype; a quantised model loads as such
    bundle.model.eval()
    started = time.perf_counter()
    answers = generate_answers(
        bundle.model, bundle.tokenizer, chosen, params["tools_mode"], params.get("max_new_tokens", 96), params.get("batch_size", 16),
        constrained=params["constrained"], max_calls=params.get("max_calls"),
    )
    wall_s = time.perf_counter() - started
    predictions, metrics = score_requests(chosen, answers.texts)
    metrics |= {
        "wall_s": round(wall_s, 2),
        "requests_per_s": round(len(chosen) / wall_s, 3) if wall_s else None,
        "unconstrained_fallbacks": len(answers.unconstrained),
    }
    return predictions, metrics
