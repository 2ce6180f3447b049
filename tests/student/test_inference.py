"""Scoring answers with the call module, the seeded subset, generation in request order, and
constrained generation under each request's grammar."""

from __future__ import annotations

import logging

import pytest
import xgrammar

from supertiny.calls import format_calls, parse_calls, validate_calls
from supertiny.inference import AnswerGrammars, GrammarError, evaluate_model, generate_answers, sample_requests, score_requests, wilson_interval
from supertiny.latency import measure_latency
from supertiny.prompt import prompt_text, target_text

LIGHTS_ON = [{"name": "set_lights", "arguments": {"room": "kitchen", "on": True}}]
TIMER = [{"name": "start_timer", "arguments": {"minutes": 5, "label": "tea"}}]


@pytest.fixture
def requests_(tool_catalog) -> list[dict]:
    def request(number: int, reference):
        return {"id": f"r{number}", "messages": [{"role": "user", "content": f"request {number}"}], "tools": tool_catalog, "reference": reference}

    return [request(1, LIGHTS_ON), request(2, TIMER), request(3, LIGHTS_ON), request(4, []), request(5, []), request(6, None)]


def test_scores_and_metrics_of_hand_made_answers(requests_):
    texts = [
        '[{"name": "set_lights", "arguments": {"room": "kitchen", "on": true}}]',  # exact
        '[{"name": "start_timer", "arguments": {"minutes": 5, "label": "coffee"}}]',  # near: one word differs
        "I cannot do that",  # unparseable
        "[]",  # right: no call
        '[{"name": "start_timer", "arguments": {"minutes": 0}}]',  # wrong: a call, and invalid (minimum 1)
        "[]",  # unlabelled: counted for validity only
    ]
    predictions, metrics = score_requests(requests_, texts)
    assert [p["exact"] for p in predictions] == [True, False, False, True, False, None]
    assert [p["valid"] for p in predictions] == [True, True, False, True, False, True]
    assert predictions[2]["calls"] is None and predictions[2]["parse_error"]
    assert predictions[0] | {"similarity": None} == {
        "request_id": "r1", "text": texts[0], "calls": LIGHTS_ON, "parse_error": None, "valid": True, "exact": True, "similarity": None,
    }
    similarities = [p["similarity"] for p in predictions[:5]]
    assert similarities[0] == 1.0 and 0.1 < similarities[1] < 1.0 and similarities[2] == 0.0 and similarities[3] == 1.0
    low, high = wilson_interval(2, 5)
    assert metrics == {
        "exact_match": 0.4,
        "exact_match_low": low,
        "exact_match_high": high,
        "call_exact_match": round(1 / 3, 4),  # r1 right, r2 and r3 wrong; the no-call requests do not count
        "similarity": round(sum(similarities) / 5, 4),
        "valid_rate": round(4 / 6, 4),
        "no_call_accuracy": 0.5,
        "n": 6,
        "n_labelled": 5,
    }


def test_wilson_interval_against_hand_computed_values():
    # 3 of 10: centre (0.3 + z²/20) / (1 + z²/10) = 0.3555, half width 0.2477 (z = 1.96).
    assert wilson_interval(3, 10) == (0.1078, 0.6032)
    assert wilson_interval(0, 10) == (0.0, 0.2775)  # not empty at zero, unlike the normal approximation
    assert wilson_interval(10, 10) == (0.7225, 1.0)
    assert wilson_interval(0, 0) == (None, None)


def test_call_exact_match_is_none_without_requests_that_need_a_call(requests_):
    no_call = [r for r in requests_ if r["reference"] == []]
    _, metrics = score_requests(no_call, ["[]"] * len(no_call))
    assert metrics["exact_match"] == metrics["no_call_accuracy"] == 1.0 and metrics["call_exact_match"] is None


def test_sample_requests_is_seeded_and_keeps_order(requests_):
    first = sample_requests(requests_, 3, seed=1)
    assert first == sample_requests(requests_, 3, seed=1)
    assert len(first) == 3 and [requests_.index(r) for r in first] == sorted(requests_.index(r) for r in first)
    assert sample_requests(requests_, None) == requests_ == sample_requests(requests_, 100)


def test_generation_returns_one_answer_per_request_in_order(tiny_model, requests_):
    tokenizer = tiny_model.tokenizer
    texts = generate_answers(tiny_model.model, tokenizer, requests_[:3], "none", max_new_tokens=4, batch_size=2, constrained=False).texts
    alone = generate_answers(tiny_model.model, tokenizer, requests_[1:2], "none", max_new_tokens=4, batch_size=1, constrained=False).texts
    assert len(texts) == 3 and all(isinstance(text, str) for text in texts)
    assert texts[1] == alone[0]  # left padding in a batch does not change a greedy answer
    assert tokenizer.padding_side == "right"  # left as it was


def test_evaluate_model_scores_a_subset(tiny_model, requests_):
    params = {"tools_mode": "none", "constrained": False, "max_new_tokens": 4, "batch_size": 4, "max_requests": 4, "seed": 0}
    predictions, metrics = evaluate_model(tiny_model, requests_, params)
    assert len(predictions) == metrics["n"] == 4
    assert metrics["exact_match"] is not None and metrics["wall_s"] > 0 and metrics["unconstrained_fallbacks"] == 0


# Tools whose every argument is bounded (enums, booleans, ranges): under its grammar any model,
# even a random one, writes a complete answer within a few tokens a call.
LOCK = {"type": "function", "function": {"name": "lock_door", "parameters": {
    "type": "object", "properties": {"door": {"type": "string", "enum": ["front", "back"]}, "locked": {"type": "boolean"}},
    "required": ["door"], "additionalProperties": False}}}
STOP = {"type": "function", "function": {"name": "stop_charging", "description": "Stop charging the car."}}
# A $ref to nowhere: valid enough to offer, but no grammar engine can compile it.
BROKEN = {"type": "function", "function": {"name": "broken", "parameters": {
    "type": "object", "properties": {"x": {"$ref": "#/$defs/missing"}}}}}


@pytest.fixture
def bounded_requests(tool_catalog) -> list[dict]:
    lights = tool_catalog[0]
    tool_sets = [[lights, LOCK], [LOCK], [STOP], [lights, STOP, LOCK], [], [LOCK, STOP]]
    return [{"id": f"b{number}", "messages": [{"role": "user", "content": "please " * number}], "tools": tools, "reference": []}
            for number, tools in enumerate(tool_sets)]


def test_constrained_answers_of_a_random_model_are_valid_calls_in_the_trained_format(tiny_model, bounded_requests):
    unconstrained = generate_answers(tiny_model.model, tiny_model.tokenizer, bounded_requests, "none", max_new_tokens=96, batch_size=4,
                                     constrained=False)
    assert not any(parse_calls(text).ok for text in unconstrained.texts), "a random model writes no calls by itself"
    answers = generate_answers(tiny_model.model, tiny_model.tokenizer, bounded_requests, "none", max_new_tokens=96, batch_size=4,
                               constrained=True, max_calls=2)
    assert answers.unconstrained == {}
    for request, text in zip(bounded_requests, answers.texts):
        parsed = parse_calls(text)
        assert parsed.ok and validate_calls(parsed.calls, request["tools"]) == [], (request["id"], text)
        assert text == format_calls(parsed.calls), "the grammar writes what the student is trained to write"
        assert len(parsed.calls) <= 2
    assert answers.texts[4] == "[]"  # no tools offered: the only answer is no call
    # Each row of a batch keeps to its own request's tools, whatever the padding.
    assert {call["name"] for call in parse_calls(answers.texts[1]).calls} <= {"lock_door"}
    assert {call["name"] for call in parse_calls(answers.texts[2]).calls} <= {"stop_charging"}


def test_a_schema_the_engine_cannot_compile_falls_back_for_that_request_only(tiny_model, bounded_requests, caplog):
    requests = [*bounded_requests[:2], {**bounded_requests[2], "id": "bad", "tools": [BROKEN]}]
    with caplog.at_level(logging.WARNING, logger="supertiny.inference"):
        answers = generate_answers(tiny_model.model, tiny_model.tokenizer, requests, "none", max_new_tokens=48, batch_size=4,
                                   constrained=True, max_calls=2)
    assert list(answers.unconstrained) == ["bad"] and "$defs" in answers.unconstrained["bad"]
    assert "bad" in caplog.text and "$defs" in caplog.text
    assert all(parse_calls(text).ok for text in answers.texts[:2])  # the others keep their grammars
    params = {"tools_mode": "none", "constrained": True, "max_calls": 2, "max_new_tokens": 48, "batch_size": 4}
    _, metrics = evaluate_model(tiny_model, requests, params)
    assert metrics["unconstrained_fallbacks"] == 1


@pytest.mark.parametrize("calls", [LIGHTS_ON, TIMER, [], LIGHTS_ON + TIMER])
def test_the_grammar_accepts_the_tokens_the_student_is_trained_to_write(tiny_model, tool_catalog, calls):
    tokenizer = tiny_model.tokenizer
    matcher = xgrammar.GrammarMatcher(AnswerGrammars(tokenizer, tiny_model.model.config.vocab_size, max_calls=2).compile(tool_catalog))
    trained = tokenizer(target_text(calls, tokenizer), add_special_tokens=False)["input_ids"]
    assert all(matcher.accept_token(token) for token in trained) and matcher.is_terminated()


def test_grammars_are_compiled_once_per_distinct_schema(tiny_model, tool_catalog):
    grammars = AnswerGrammars(tiny_model.tokenizer, tiny_model.model.config.vocab_size)
    assert grammars.compile(tool_catalog) is grammars.compile(list(tool_catalog))
    assert grammars.compile(tool_catalog) is not grammars.compile(tool_catalog[:1])
    with pytest.raises(GrammarError, match="defs"):
        grammars.compile([BROKEN])


def test_constrained_latency_runs_each_answer_to_the_end_of_its_grammar(tiny_model, bounded_requests):
    tokenizer = tiny_model.tokenizer
    grammars = AnswerGrammars(tokenizer, tiny_model.model.config.vocab_size, max_calls=1)
    prompts = [prompt_text(request, tokenizer, "none") for request in bounded_requests[:3]]
    result = measure_latency(tiny_model.model, tokenizer, prompts, new_tokens=64, threads=1, to_end=True,
                             logits_processors=lambda i: [grammars.processor([grammars.compile(bounded_requests[i]["tools"])])])
    assert result.requests == 3 and 0 < result.prefill_p50_ms <= result.p50_ms and result.tokens_per_s > 0
    with pytest.raises(ValueError, match="to_end"):
        measure_latency(tiny_model.model, tokenizer, prompts, new_tokens=4, logits_processors=lambda i: [])
