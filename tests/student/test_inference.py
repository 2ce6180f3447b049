"""Scoring answers with the call module, the seeded subset, and generation in request order."""

from __future__ import annotations

import pytest

from supertiny.inference import evaluate_model, generate_answers, sample_requests, score_requests

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
    assert metrics == {
        "exact_match": 0.4,
        "similarity": round(sum(similarities) / 5, 4),
        "valid_rate": round(4 / 6, 4),
        "no_call_accuracy": 0.5,
        "n": 6,
        "n_labelled": 5,
    }


def test_sample_requests_is_seeded_and_keeps_order(requests_):
    first = sample_requests(requests_, 3, seed=1)
    assert first == sample_requests(requests_, 3, seed=1)
    assert len(first) == 3 and [requests_.index(r) for r in first] == sorted(requests_.index(r) for r in first)
    assert sample_requests(requests_, None) == requests_ == sample_requests(requests_, 100)


def test_generation_returns_one_answer_per_request_in_order(tiny_model, requests_):
    tokenizer = tiny_model.tokenizer
    texts = generate_answers(tiny_model.model, tokenizer, requests_[:3], "none", max_new_tokens=4, batch_size=2)
    alone = generate_answers(tiny_model.model, tokenizer, requests_[1:2], "none", max_new_tokens=4, batch_size=1)
    assert len(texts) == 3 and all(isinstance(text, str) for text in texts)
    assert texts[1] == alone[0]  # left padding in a batch does not change a greedy answer
    assert tokenizer.padding_side == "right"  # left as it was


def test_evaluate_model_scores_a_subset(tiny_model, requests_):
    predictions, metrics = evaluate_model(tiny_model, requests_, {"tools_mode": "none", "max_new_tokens": 4, "batch_size": 4, "max_requests": 4, "seed": 0})
    assert len(predictions) == metrics["n"] == 4
    assert metrics["exact_match"] is not None and metrics["wall_s"] > 0
