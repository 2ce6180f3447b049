"""The fast path: batch-1 greedy decoding of one answer, under its grammar, as it is served.

``supertiny serve`` answers with it, and the evaluation's latency harness times it, so the stage
table measures what is served. Batch-1 decoding of a model this small is bound by per-step
overhead, not by reading the weights (``latency.weight_bytes_per_token``), so the path takes as
few model steps as it can:

- **Its own loop**, not ``generate``: one forward call a step on a KV cache, an argmax, the
  grammar's mask. ``generate`` adds per-step work (stopping criteria, processors, streamers,
  cache bookkeeping) that costs as much as a layer of this model.
- **Jump-forward** (as in SGLang and vLLM's xgrammar backend): where the grammar leaves only one
  way on (``{"name":"``, the rest of a function name once its prefix is unique, an argument's
  key), that text is appended in one forward call instead of one step per token. The forced
  text is tokenized together with the answer so far, as the model saw it in training; where
  that re-tokenizes the last tokens differently, they are rolled back from the cache and the
  grammar, so the answer's tokens are the tokenizer's own for its text.
- **A shared prompt prefix** (the chat template's system part, the instruction) is run once and
  its KV cache copied for every request (``prefix_ids``).

**The no-call threshold** (``evaluation.no_call_threshold``): a student trained on few no-call
answers gives ``[]`` a real but minority probability where no call applies, and greedy decoding
never writes it. With a threshold, the answer is ``[]`` once the probability of closing the list
right after its ``[`` reaches it (a decision threshold on the one choice between calling and not,
chosen on validation requests by ``benchmarks/no_call_threshold.py``). Each answer records that
probability (``Decoded.no_call_probability``).

Unconstrained, it is plain greedy decoding to end-of-sequence. Outputs are the same calls as
greedy decoding under the same grammar; jump-forward changes only how the forced text is
tokenized, which ``benchmarks/decode_paths.py`` measures in exact match.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import xgrammar
from transformers import DynamicCache

from supertiny.errors import ConfigError
from supertiny.parameters import CONFIDENCE_SIGNALS, check_section
from supertiny.prompt import shared_prefix_ids


@dataclass
class Decoded:
    """One answer: its token ids and text, and what it took."""

    token_ids: list[int]
    text: str
    forward_calls: int  # model steps, the prompt's included
    forced_tokens: int  # tokens appended by jump-forward, without a step of their own
    prefill_s: float  # prompt in, first answer token out
    total_s: float
    finished: bool  # ended by end-of-sequence or its grammar, not by max_new_tokens
    token_times: list[float] = field(default_factory=list)  # perf_counter() when each answer token was known
    # The log-probability of each token the model chose where the grammar left it a choice
    # (a forced token is certain), over the tokens the grammar allowed; the stop token included.
    choice_logprobs: list[float] = field(default_factory=list)
    # The probability of ``[]`` where the answer chose between calling and not (None: it never did).
    no_call_probability: float | None = None

    def confidence(self, signal: str = "min") -> float:
        """How sure the model was of this answer, in [0, 1]: ``min``, the probability of its
        least sure choice; ``mean``, the geometric mean of its choices' probabilities. An answer
        without a choice (every token forced) is certain."""
        if signal not in CONFIDENCE_SIGNALS:
            raise ConfigError(f"the confidence signal must be one of {CONFIDENCE_SIGNALS}; got {signal!r}")
        if not self.choice_logprobs:
            return 1.0
        value = min(self.choice_logprobs) if signal == "min" else sum(self.choice_logprobs) / len(self.choice_logprobs)
        return float(math.exp(value))


class Decoder:
    """Batch-1 greedy decoding of ``model`` (a causal LM, float or quantised, in torch or in ONNX
    Runtime: ``onnx_model.OnnxCausalLM``) on its device.

    ``jump_forward``: append grammar-forced text without model steps (constrained answers only).
    ``prefix_ids``: token ids every prompt starts with (``prompt.shared_prefix_ids``); their KV
    cache is computed once and copied for each prompt that starts with them.
    Not thread-safe: a server runs one answer at a time on a decoder (the model's threads
    already use the cores).
    """

    def __init__(
        self, model: Any, tokenizer: Any, *, jump_forward: bool = True, prefix_ids: list[int] | None = None,
        no_call_threshold: float | None = None,
    ) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.jump_forward = jump_forward
        self.no_call_threshold = no_call_threshold
        # "[]" as this tokenizer writes it: the answer so far before its last token, and that token.
        no_call_ids = tokenizer("[]", add_special_tokens=False)["input_ids"]
        self._no_call_prefix, self._no_call_token = no_call_ids[:-1], no_call_ids[-1]
        self.stop_ids = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
        self._device = getattr(model, "device", torch.device("cpu"))
        self._vocab_size = model.config.vocab_size
        self._bitmask = xgrammar.allocate_token_bitmask(1, self._vocab_size)
        self._prefix_ids: list[int] = []
        self._prefix_cache: DynamicCache | None = None
        if prefix_ids:
            self._prefix_ids = list(prefix_ids)
            with torch.inference_mode():
                cache = self._new_cache()
                self._forward(self._prefix_ids, cache)
            self._prefix_cache = cache

    def encode(self, prompt: str) -> list[int]:
        return self.tokenizer(prompt, add_special_tokens=False)["input_ids"]

    @torch.inference_mode()
    def generate(self, prompt: str, grammar: Any | None = None, max_new_tokens: int = 64) -> Decoded:
        """The greedy answer to a finished prompt text (``prompt.prompt_text``), under ``grammar``
        (an xgrammar compiled grammar, ``inference.AnswerGrammars.compile``) when given."""
        started = time.perf_counter()
        prompt_ids = self.encode(prompt)
        cache, pending = self._start(prompt_ids)
        matcher = xgrammar.GrammarMatcher(grammar) if grammar is not None else None
        answer: list[int] = []
        token_times: list[float] = []
        choice_logprobs: list[float] = []
        no_call_probability = None
        forward_calls = forced_tokens = 0
        prefill_s = 0.0
        finished = False
        if matcher is not None and self.jump_forward:
            # The text every answer opens with ("[") goes in with the prompt: one step fewer.
            opening, forced_tokens = self._jump_forward(matcher, answer, 0, cache, max_new_tokens)
            pending = pending + opening
        while len(answer) < max_new_tokens:
            logits = self._forward(pending, cache)
            forward_calls += 1
            if forward_calls == 1:
                token_times.extend([time.perf_counter()] * len(answer))  # the opening arrives with the first token
            if matcher is not None:
                matcher.fill_next_token_bitmask(self._bitmask)
                xgrammar.apply_token_bitmask_inplace(logits, self._bitmask.to(logits.device))
            token = int(torch.argmax(logits))
            logprobs = torch.log_softmax(logits[0], dim=-1)  # masked tokens are -inf: over the allowed ones
            if no_call_probability is None and answer == self._no_call_prefix:
                no_call_probability = float(logprobs[self._no_call_token].exp())
                if self.no_call_threshold is not None and no_call_probability >= self.no_call_threshold:
                    token = self._no_call_token
            if logprobs[token] < 0:  # a choice, not the only token allowed
                choice_logprobs.append(float(logprobs[token]))
            if forward_calls == 1:
                prefill_s = time.perf_counter() - started
            if token in self.stop_ids:
                finished = True
                break
            answer.append(token)
            token_times.append(time.perf_counter())
            if matcher is not None:
                if not matcher.accept_token(token):
                    raise RuntimeError(f"the grammar refused token {token} that its own mask allowed")
                if matcher.is_terminated():
                    finished = True
                    break
            pending = [token]
            if matcher is not None and self.jump_forward:
                pending, forced = self._jump_forward(matcher, answer, len(answer) - 1, cache, max_new_tokens)
                forced_tokens += forced
                token_times.extend([time.perf_counter()] * forced)
                if self._only_stop_allowed(matcher):
                    finished = True  # the answer is complete: no step needed to learn that it ends
                    break
        return Decoded(
            token_ids=answer,
            text=self.tokenizer.decode(answer, skip_special_tokens=True),
            forward_calls=forward_calls,
            forced_tokens=forced_tokens,
            prefill_s=prefill_s,
            total_s=time.perf_counter() - started,
            finished=finished,
            token_times=token_times,
            choice_logprobs=choice_logprobs,
            no_call_probability=no_call_probability,
        )

    def _start(self, prompt_ids: list[int]) -> tuple[DynamicCache, list[int]]:
        """A cache holding the shared prefix when the prompt starts with it, and the ids still to feed."""
        prefix = self._prefix_ids
        if self._prefix_cache is not None and len(prompt_ids) > len(prefix) and prompt_ids[: len(prefix)] == prefix:
            return copy.deepcopy(self._prefix_cache), prompt_ids[len(prefix) :]
        return self._new_cache(), prompt_ids

    def _new_cache(self) -> Any:
        # An ONNX Runtime model (supertiny.onnx_model) keeps its cache in arrays of its own.
        new_cache = getattr(self.model, "new_cache", None)
        return new_cache() if new_cache is not None else DynamicCache(config=self.model.config)

    def _forward(self, ids: list[int], cache: DynamicCache) -> torch.Tensor:
        """Feed ``ids`` after what ``cache`` holds; the next token's logits (float32, 1 x vocab)."""
        input_ids = torch.tensor([ids], dtype=torch.long, device=self._device)
        output = self.model(input_ids=input_ids, past_key_values=cache, use_cache=True, logits_to_keep=1)
        return output.logits[:, -1, :].float()

    def _jump_forward(self, matcher: Any, answer: list[int], fed: int, cache: DynamicCache, max_new_tokens: int) -> tuple[list[int], int]:
        """Append the grammar's forced text to ``answer`` (in place); the answer ids the next step
        feeds and how many tokens were appended. ``cache`` holds the prompt and the first ``fed``
        tokens of ``answer`` (all but the last one after a step, none before the first);
        rolled-back tokens are cropped from it and from ``matcher``."""
        pending = answer[fed:]
        forced = matcher.find_jump_forward_string()
        if not forced:
            return pending, 0
        text = self.tokenizer.decode(answer) + forced
        retokenized = self.encode(text)
        if self.tokenizer.decode(retokenized) != text:
            return pending, 0  # the answer so far does not round-trip (a split character): step on
        keep = 0
        while keep < min(len(answer), len(retokenized)) and answer[keep] == retokenized[keep]:
            keep += 1
        new = retokenized[keep:max_new_tokens]  # the answer stays within max_new_tokens
        if not new:
            return pending, 0
        rolled_back = len(answer) - keep
        if rolled_back:
            matcher.rollback(rolled_back)
        accepted = 0
        for token in new:
            if not matcher.accept_token(token):
                break
            accepted += 1
        if accepted < len(new):
            # The grammar does not take this spelling: undo it, and take the forced text by steps.
            matcher.rollback(accepted)
            for token in answer[keep:]:
                matcher.accept_token(token)
            return pending, 0
        if keep < fed:
            cache.crop(-(fed - keep))  # transformers' crop takes the number of tokens to drop, negated
            fed = keep
        grown = keep + len(new) - len(answer)
        del answer[keep:]
        answer.extend(new)
        return answer[fed:], grown

    def _only_stop_allowed(self, matcher: Any) -> bool:
        """True when the grammar is complete and allows nothing but a stop token next."""
        if not matcher.is_completed():
            return False
        matcher.fill_next_token_bitmask(self._bitmask)
        # The mask's bits (token i is bit i % 32 of word i // 32), read directly: masking a
        # vocabulary-sized tensor and searching it took a few ms an answer.
        bits = np.unpackbits(self._bitmask[0].numpy().view(np.uint8), bitorder="little")[: self._vocab_size]
        return set(np.flatnonzero(bits).tolist()) <= self.stop_ids


def decoder_settings(evaluation: dict[str, Any]) -> dict[str, Any]:
    """How the served decoder is built (``build_decoder``'s keywords), checked:
    ``evaluation.fast_path`` (``jump_forward``, ``prefix_cache``; both on by default) and
    ``evaluation.no_call_threshold`` (a probability in (0, 1), or null: greedy)."""
    settings = evaluation.get("fast_path") or {}
    threshold = evaluation.get("no_call_threshold")
    # Keys, types and the threshold's range: the parameters model's.
    check_section("evaluation", {"fast_path": settings, "no_call_threshold": threshold})
    checked = {key: settings.get(key, True) for key in ("jump_forward", "prefix_cache")}
    checked["no_call_threshold"] = None if threshold is None else float(threshold)
    return checked


def build_decoder(
    model: Any, tokenizer: Any, tools_mode: str, *, jump_forward: bool = True, prefix_cache: bool = True,
    no_call_threshold: float | None = None,
) -> Decoder:
    """The fast-path decoder of a model trained on ``tools_mode`` prompts, as served and timed."""
    prefix = shared_prefix_ids(tokenizer, tools_mode) if prefix_cache else None
    return Decoder(model, tokenizer, jump_forward=jump_forward, prefix_ids=prefix, no_call_threshold=no_call_threshold)
