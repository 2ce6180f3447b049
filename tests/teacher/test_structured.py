"""Structured outputs and k samples through `n`: what each strategy sends, and the fallbacks."""

from __future__ import annotations

import pytest
from fake_openai import FakeOpenAI

from supertiny.calls import answer_schema, guiding_schema, selection_schema
from supertiny.calls.schema import unsupported_keywords
from supertiny.errors import ConfigError
from supertiny.teacher import label_requests


def _schemas(server: FakeOpenAI) -> list[dict | None]:
    return [(body.get("response_format") or {}).get("json_schema", {}).get("schema") for body in server.chat_requests]


def test_prompted_answers_are_held_to_the_schema_of_the_offered_tools(requests, make_config):
    with FakeOpenAI(structured=True) as server:
        candidates, usage = label_requests(requests[:2], [], make_config(server, strategy="prompted"))
    assert _schemas(server) == [answer_schema(requests[0]["tools"])] * 2
    assert usage["structured_outputs"] == "json_schema" and usage["structured_fallbacks"] == 0
    # The fake's prose ("Sure: ...") is gone under the grammar: the answer is only the JSON.
    assert all(c["text"].startswith("[") and c["calls"] is not None for c in candidates)


def test_decomposed_selects_from_the_offered_names_then_fills_one_function(requests, make_config):
    with FakeOpenAI(structured=True) as server:
        candidates, _ = label_requests(requests[:1], [], make_config(server, strategy="decomposed"))
    select, fill = _schemas(server)
    assert select == selection_schema(requests[0]["tools"])
    assert select["items"]["properties"]["name"]["enum"] == ["set_lights", "start_timer"]
    assert fill == answer_schema([requests[0]["tools"][0]])  # only the chosen function
    assert candidates[0]["calls"] == [{"name": "set_lights", "arguments": {}}]


@pytest.mark.parametrize("strategy", ["prompted", "decomposed"])
def test_structured_off_or_unsupported_sends_free_text(requests, make_config, strategy):
    with FakeOpenAI(structured=True) as server:
        _, usage = label_requests(requests[:1], [], make_config(server, strategy=strategy, structured_outputs="off"))
    assert _schemas(server) and all(schema is None for schema in _schemas(server))
    assert usage["structured_outputs"] == "off"
    with FakeOpenAI(structured=False) as plain:  # ignores response_format, as transformers serve does
        _, usage = label_requests(requests[:1], [], make_config(plain, strategy=strategy))
    assert all(schema is None for schema in _schemas(plain)) and usage["structured_outputs"] == "off (not supported)"


def test_structured_on_against_an_endpoint_without_it_stops_before_any_request(requests, make_config):
    with FakeOpenAI(structured=False) as server:
        with pytest.raises(ConfigError, match="teacher.structured_outputs is on"):
            label_requests(requests[:1], [], make_config(server, structured_outputs="on"))
        assert server.chat_requests == []


def test_a_rejected_schema_falls_back_to_free_text_and_is_counted(requests, make_config):
    # The endpoint follows the probe's schema but rejects the tools' (e.g. a keyword its grammar lacks).
    rejects_tools = lambda schema: schema.get("type") == "array"  # noqa: E731
    with FakeOpenAI(structured=True, reject_schema=rejects_tools) as server:
        candidates, usage = label_requests(requests[:2], [], make_config(server, strategy="prompted"))
    assert usage["structured_fallbacks"] == 2 and usage["errors"] == {}
    assert all(c["calls"] is not None for c in candidates)
    assert _schemas(server)[1] is None  # each rejected request went again without a schema


def test_k_samples_go_in_one_request_with_n_and_are_cached_per_sample(requests, make_config, tmp_path):
    with FakeOpenAI(structured=True, honour_n=True) as server:
        config = make_config(server, strategy="prompted", k_samples=3)
        candidates, usage = label_requests(requests[:2], [], config)
        assert [body.get("n") for body in server.chat_requests] == [3, 3]
        assert usage["samples_drawn"] == "n" and len(candidates) == 6
        assert [c["sample"] for c in candidates] == [0, 1, 2, 0, 1, 2]
        # The prompt is paid once per request, on its first sample.
        assert [c["prompt_tokens"] > 0 for c in candidates[:3]] == [True, False, False]
        sent = len(server.bodies)
        again, usage = label_requests(requests[:2], [], config)
        assert len(server.bodies) == sent and usage["cache_hits"] == 6
    assert [c["text"] for c in again] == [c["text"] for c in candidates]


def test_an_endpoint_that_ignores_n_gets_one_request_per_sample(requests, make_config):
    with FakeOpenAI(structured=True, honour_n=False) as server:
        candidates, usage = label_requests(requests[:1], [], make_config(server, strategy="prompted", k_samples=3))
    assert len(server.chat_requests) == 3 and all("n" not in body for body in server.chat_requests)
    assert usage["samples_drawn"] == "requests" and all(c["calls"] is not None for c in candidates)


def test_guiding_schema_drops_what_a_grammar_engine_cannot_enforce_and_keeps_the_rest():
    schema = {
        "type": "object",
        "properties": {
            "days": {"type": "array", "items": {"type": "string", "enum": ["mon", "tue"]}, "minItems": 1, "uniqueItems": True},
            # A property may be named like a keyword: it is data, not a keyword.
            "uniqueItems": {"type": "integer", "minimum": 1, "multipleOf": 5},
        },
        "required": ["days"],
        "additionalProperties": False,
    }
    guided = guiding_schema(schema)
    assert guided["properties"]["days"] == {"type": "array", "items": {"type": "string", "enum": ["mon", "tue"]}, "minItems": 1}
    assert guided["properties"]["uniqueItems"] == {"type": "integer", "minimum": 1}
    assert guided["required"] == ["days"] and guided["additionalProperties"] is False
    assert unsupported_keywords(schema) == ["multipleOf", "uniqueItems"] and unsupported_keywords(guided) == []
    assert schema["properties"]["days"]["uniqueItems"] is True  # the tool's own schema is untouched


def test_answer_schema_offers_exactly_the_requests_tools(requests):
    schema = answer_schema(requests[0]["tools"])
    names = [option["properties"]["name"]["const"] for option in schema["items"]["anyOf"]]
    assert schema["type"] == "array" and names == ["set_lights", "start_timer"]
    assert answer_schema([]) == {"type": "array", "maxItems": 0}
