"""The fast path (supertiny.decoding): the same answers as greedy generation, in fewer model steps."""

from __future__ import annotations

import pytest
import torch

from supertiny.calls import format_calls, parse_calls, validate_calls
from supertiny.decoding import Decoder, build_decoder, decoder_settings
from supertiny.errors import ConfigError
from supertiny.inference import AnswerGrammars
from supertiny.latency import measure_served_latency
from supertiny.prompt import prompt_text, shared_prefix_ids, target_text

LOCK = {"type": "function", "function": {"name": "lock_door", "parameters": {
    "type": "object", "properties": {"door": {"type": "string", "enum": ["front", "back"]}, "locked": {"type": "boolean"}},
    "required": ["door", "locked"], "additionalProperties": False}}}


@pytest.fixture
def requests_(tool_catalog) -> list[dict]:
    tool_sets = [tool_catalog, [LOCK], [*tool_catalog, LOCK], []]
    return [{"id": f"d{n}", "messages": [{"role": "user", "content": "please " * (n + 1)}], "tools": tools} for n, tools in enumerate(tool_sets)]


def _generate_reference(model, tokenizer, prompt: str, grammar) -> str:
    """Greedy under the grammar through transformers' generate: what the fast path must equal."""
    inputs = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
    with torch.inference_mode():
        output = model.generate(**inputs, do_sample=False, max_new_tokens=64, pad_token_id=tokenizer.eos_token_id,
                                logits_processor=[AnswerGrammars.processor([grammar])] if grammar is not None else [])
    return tokenizer.decode(output[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)


@pytest.mark.parametrize("constrained", [True, False])
def test_stepping_without_jump_forward_is_greedy_generation(tiny_model, requests_, constrained):
    model, tokenizer = tiny_model.model, tiny_model.tokenizer
    grammars = AnswerGrammars(tokenizer, model.config.vocab_size, max_calls=2)
    decoder = Decoder(model, tokenizer, jump_forward=False)
    for request in requests_:
        prompt = prompt_text(request, tokenizer, "names")
        grammar = grammars.compile(request["tools"]) if constrained else None
        answer = decoder.generate(prompt, grammar, max_new_tokens=64)
        assert answer.text == _generate_reference(model, tokenizer, prompt, grammar), request["id"]
        assert answer.forced_tokens == 0 and answer.forward_calls == len(answer.token_ids) + answer.finished


def test_jump_forward_writes_valid_calls_in_the_trained_tokens_with_fewer_steps(tiny_model, requests_, tool_catalog):
    model, tokenizer = tiny_model.model, tiny_model.tokenizer
    # Bounded arguments only: a random model writes an unbounded integer's digits until max_new_tokens.
    requests_ = [{**request, "tools": tools} for request, tools in zip(requests_, [[tool_catalog[0], LOCK], [LOCK], [LOCK, tool_catalog[0]], []])]
    grammars = AnswerGrammars(tokenizer, model.config.vocab_size, max_calls=2)
    decoder = Decoder(model, tokenizer, jump_forward=True)
    steps = tokens = 0
    for request in requests_:
        answer = decoder.generate(prompt_text(request, tokenizer, "names"), grammars.compile(request["tools"]), max_new_tokens=96)
        parsed = parse_calls(answer.text)
        assert answer.finished and parsed.ok and validate_calls(parsed.calls, request["tools"]) == [], (request["id"], answer.text)
        assert answer.text == format_calls(parsed.calls)
        # The answer's tokens are the tokenizer's own for its text, as in training.
        assert answer.token_ids == tokenizer(target_text(parsed.calls, tokenizer), add_special_tokens=False)["input_ids"][: len(answer.token_ids)]
        steps, tokens = steps + answer.forward_calls, tokens + len(answer.token_ids)
    no_tools = decoder.generate(prompt_text(requests_[3], tokenizer, "names"), grammars.compile([]), 96)
    # All of "[]" and the end of its turn is forced: the prompt's step is the only one, and the
    # answer ends where the grammar leaves only the stop token, without a step to read it.
    assert no_tools.text == "[]" and no_tools.finished and no_tools.forward_calls == 1
    assert steps < tokens / 2, (steps, tokens)  # keys, names and brackets are forced: most tokens need no step


def test_the_text_every_answer_opens_with_goes_in_with_the_prompt(tiny_model, requests_):
    model, tokenizer = tiny_model.model, tiny_model.tokenizer
    request = requests_[1]
    prompt, grammar = prompt_text(request, tokenizer, "names"), AnswerGrammars(tokenizer, model.config.vocab_size, max_calls=2).compile(request["tools"])
    decoder = Decoder(model, tokenizer, jump_forward=True)
    fed: list[list[int]] = []
    step = decoder._forward
    decoder._forward = lambda ids, cache: (fed.append(list(ids)), step(ids, cache))[1]
    answer = decoder.generate(prompt, grammar, max_new_tokens=96)
    opening = tokenizer("[", add_special_tokens=False)["input_ids"]
    # The grammar forces "[": the first step reads it after the prompt instead of choosing it.
    assert fed[0] == tokenizer(prompt, add_special_tokens=False)["input_ids"] + opening
    assert answer.token_ids[: len(opening)] == opening and answer.text.startswith("[")
    assert answer.forward_calls == len(fed) and answer.forced_tokens >= len(opening)
    assert len(answer.token_times) == len(answer.token_ids)


def test_the_shared_prefix_cache_changes_nothing_but_the_work(tiny_model, requests_):
    model, tokenizer = tiny_model.model, tiny_model.tokenizer
    grammars = AnswerGrammars(tokenizer, model.config.vocab_size, max_calls=2)
    prefix = shared_prefix_ids(tokenizer, "names")
    assert len(prefix) > 5
    for request in requests_:
        assert tokenizer(prompt_text(request, tokenizer, "names"), add_special_tokens=False)["input_ids"][: len(prefix)] == prefix
    plain, cached = Decoder(model, tokenizer), build_decoder(model, tokenizer, "names", prefix_cache=True)
    for request in requests_:
        prompt, grammar = prompt_text(request, tokenizer, "names"), grammars.compile(request["tools"])
        assert cached.generate(prompt, grammar).text == plain.generate(prompt, grammar).text
    # A prompt that does not start with the prefix is answered from scratch, not wrongly.
    other = "<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\n"
    assert cached.generate(other, None, 8).text == plain.generate(other, None, 8).text


def test_served_latency_counts_every_answer_and_its_steps(tiny_model, requests_):
    model, tokenizer = tiny_model.model, tiny_model.tokenizer
    grammars = AnswerGrammars(tokenizer, model.config.vocab_size, max_calls=1)
    prompts = [prompt_text(request, tokenizer, "names") for request in requests_]
    result = measure_served_latency(build_decoder(model, tokenizer, "names"), prompts, [grammars.compile(r["tools"]) for r in requests_],
                                    max_new_tokens=64, threads=1)
    assert result.requests == 4 and 0 < result.prefill_p50_ms <= result.p50_ms <= result.p95_ms
    assert result.forward_calls_per_answer is not None and result.forward_calls_per_answer >= 1


def test_the_no_call_threshold_answers_no_call_once_its_probability_reaches_it(tiny_model, tool_catalog):
    model, tokenizer = tiny_model.model, tiny_model.tokenizer
    grammars = AnswerGrammars(tokenizer, model.config.vocab_size, max_calls=2)
    requests = [{"id": f"n{n}", "messages": [{"role": "user", "content": text}], "tools": [tool_catalog[0], LOCK]}
                for n, text in enumerate(["lock the front door", "kitchen lights", "what time is it"])]
    greedy = Decoder(model, tokenizer)
    for request in requests:
        prompt, grammar = prompt_text(request, tokenizer, "names"), grammars.compile(request["tools"])
        plain = greedy.generate(prompt, grammar)
        probability = plain.no_call_probability
        assert probability is not None and 0 < probability < 1, request["id"]
        # At or below its no-call probability the answer is [], above it the greedy answer stands.
        assert Decoder(model, tokenizer, no_call_threshold=probability).generate(prompt, grammar).text == "[]"
        above = Decoder(model, tokenizer, no_call_threshold=min(probability * 1.01, 0.999)).generate(prompt, grammar)
        assert above.text == plain.text


def test_decoder_settings_are_checked():
    assert decoder_settings({}) == {"jump_forward": True, "prefix_cache": True, "no_call_threshold": None}
    assert decoder_settings({"fast_path": {"jump_forward": False}, "no_call_threshold": 0.2}) == {
        "jump_forward": False, "prefix_cache": True, "no_call_threshold": 0.2}
    for bad in (0, 1, 1.5, True, "0.2"):
        with pytest.raises(ConfigError, match=rf"evaluation.no_call_threshold( must be greater than 0| must be less than 1|: input should be a valid number); got {bad!r}"):
            decoder_settings({"no_call_threshold": bad})
    with pytest.raises(ConfigError, match="evaluation.fast_path.prefix_cache"):
        decoder_settings({"fast_path": {"prefix_cache": "yes"}})
    with pytest.raises(ConfigError, match="jump_froward"):
        decoder_settings({"fast_path": {"jump_froward": True}})
