"""supertiny serve through the official openai SDK: OpenAI-shaped tool calls, OpenAI-style errors
that name the field, a server that keeps serving, an API key, and concurrent clients."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import urllib.error
import urllib.request
import openai
import pytest

from supertiny.calls import validate_calls
from supertiny.compression.quantization import quantize
from supertiny.datasets import ModelBundle, ModelDataset
from supertiny.errors import SupertinyError
from supertiny.quantized_model import Recipe
from supertiny.serving import ANSWERED_BY_HEADER, BackgroundServer, Fallback, ServedModel, create_app, served_model_directory, teacher_fallback

LOCK = {"type": "function", "function": {"name": "lock_door", "description": "Lock or unlock a door.", "parameters": {
    "type": "object", "properties": {"door": {"type": "string", "enum": ["front", "back"]}, "locked": {"type": "boolean"}},
    "required": ["door", "locked"], "additionalProperties": False}}}


@pytest.fixture(scope="module")
def served(tiny_model):
    return ServedModel(name="tiny", bundle=tiny_model, tools_mode="names", max_calls=2, max_new_tokens=48, threads=1)


@pytest.fixture(scope="module")
def server(served):
    with BackgroundServer(create_app(served)) as running:
        yield running


@pytest.fixture
def client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)


def _get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.loads(response.read())


def _ask(client, text: str, tools: list[dict], **kwargs):
    return client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": text}], tools=tools, **kwargs)


def test_answers_are_valid_tool_calls_or_a_plain_message(client, tool_catalog):
    _assert_answers_are_tool_calls_or_a_plain_message(client, tool_catalog)


def test_an_onnx_runtime_model_serves_the_same_shape_of_answers(tiny_model, tool_catalog):
    import copy

    recipe = Recipe("inc_dynamic_int8", runtime="onnxruntime")
    bundle = ModelBundle(quantize(copy.deepcopy(tiny_model.model), recipe), tiny_model.tokenizer, recipe)
    served_model = ServedModel(name="tiny", bundle=bundle, tools_mode="names", max_calls=2, max_new_tokens=48, threads=1)
    with BackgroundServer(create_app(served_model)) as running:
        _assert_answers_are_tool_calls_or_a_plain_message(openai.OpenAI(base_url=f"{running.url}/v1", api_key="unused", max_retries=0), tool_catalog)


def _assert_answers_are_tool_calls_or_a_plain_message(client, tool_catalog) -> None:
    tools = [tool_catalog[0], LOCK]
    finishes = set()
    for text in ["lock the front door", "kitchen lights on", "what time is it", "please please", "back door"]:
        completion = _ask(client, text, tools)
        choice = completion.choices[0]
        finishes.add(choice.finish_reason)
        if choice.finish_reason == "tool_calls":
            calls = [{"name": c.function.name, "arguments": json.loads(c.function.arguments)} for c in choice.message.tool_calls]
            assert calls and validate_calls(calls, tools) == []
            assert all(c.id.startswith("call_") and c.type == "function" for c in choice.message.tool_calls)
        else:
            assert choice.finish_reason == "stop" and choice.message.content == "" and not choice.message.tool_calls
        assert completion.model == "tiny" and completion.usage.prompt_tokens > 0
    assert finishes <= {"tool_calls", "stop"}
    # Without tools the only answer is none.
    assert _ask(client, "lock the front door", []).choices[0].message.tool_calls in (None, [])


def test_models_health_and_the_answering_model_header(client, server):
    assert [model.id for model in client.models.list()] == ["tiny"]
    health = _get_json(f"{server.url}/health")
    assert health["status"] == "ok" and health["model"] == "tiny"
    raw = client.chat.completions.with_raw_response.create(model="tiny", messages=[{"role": "user", "content": "hi"}], tools=[LOCK])
    assert raw.headers[ANSWERED_BY_HEADER] == "tiny"


@pytest.mark.parametrize(("kwargs", "status", "param", "code"), [
    ({"messages": []}, 400, "messages", None),
    ({"messages": [{"role": "robot", "content": "x"}]}, 400, "messages[0].role", None),
    ({"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": 7}}}]},
     400, "tools[0].function", None),
    ({"messages": [{"role": "user", "content": "word " * 9000}]}, 400, "messages", "context_length_exceeded"),
    ({"messages": [{"role": "user", "content": "x"}], "model": "gpt-9"}, 404, "model", "model_not_found"),
    ({"messages": [{"role": "user", "content": "x"}], "max_tokens": 0}, 400, "max_tokens", None),
])
def test_bad_requests_get_openai_errors_naming_the_field_and_the_server_keeps_serving(client, kwargs, status, param, code):
    kwargs = {"model": "tiny", **kwargs}
    with pytest.raises(openai.APIStatusError) as raised:
        client.chat.completions.create(**kwargs)
    assert raised.value.status_code == status and raised.value.param == param and raised.value.code == code
    assert raised.value.body["message"]
    assert _ask(client, "lock the door", [LOCK]).choices[0].finish_reason in ("tool_calls", "stop")


def test_a_body_that_is_not_json_is_a_400(server):
    request = urllib.request.Request(f"{server.url}/v1/chat/completions", data=b"{not json", headers={"content-type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as raised:
        urllib.request.urlopen(request, timeout=30)
    assert raised.value.code == 400 and "not valid JSON" in json.loads(raised.value.read())["error"]["message"]


def test_concurrent_clients_all_get_answers(client, served, server):
    before = served.answered
    with ThreadPoolExecutor(max_workers=8) as pool:
        completions = list(pool.map(lambda n: _ask(client, f"lock door {n}", [LOCK], max_tokens=24), range(16)))
    assert len(completions) == 16 and all(c.choices[0].finish_reason in ("tool_calls", "stop", "length") for c in completions)
    assert served.answered - before == 16
    assert _get_json(f"{server.url}/health")["status"] == "ok"


def test_an_api_key_is_required_when_set(served):
    with BackgroundServer(create_app(served, api_key="s3cret")) as running:
        wrong = openai.OpenAI(base_url=f"{running.url}/v1", api_key="guess", max_retries=0)
        with pytest.raises(openai.AuthenticationError):
            _ask(wrong, "lock the door", [LOCK])
        right = openai.OpenAI(base_url=f"{running.url}/v1", api_key="s3cret", max_retries=0)
        assert _ask(right, "lock the door", [LOCK]).choices[0].finish_reason in ("tool_calls", "stop")


def test_a_missing_model_directory_is_named(tmp_path):
    from kedro.io import DataCatalog

    catalog = DataCatalog({"final": ModelDataset(filepath=str(tmp_path / "never_written"))})
    with pytest.raises(SupertinyError, match="never_written"):
        served_model_directory(catalog, "final")
    with pytest.raises(SupertinyError, match="'nothing'"):
        served_model_directory(catalog, "nothing")


LOCK_FRONT = [{"name": "lock_door", "arguments": {"door": "front", "locked": True}}]


def _fallback_client(served_model: ServedModel, fallback: Fallback):
    served_model.fallback = fallback
    return BackgroundServer(create_app(served_model))


def test_below_the_threshold_the_teacher_answers_and_says_so(tiny_model):
    asked = []
    fallback = Fallback(threshold=1.0, signal="min", ask=lambda request: asked.append(request) or LOCK_FRONT, teacher_name="teacher:big")
    served_model = ServedModel(name="tiny", bundle=tiny_model, tools_mode="names", max_calls=2, max_new_tokens=48, threads=1)
    with _fallback_client(served_model, fallback) as running:
        client = openai.OpenAI(base_url=f"{running.url}/v1", api_key="unused", max_retries=0)
        raw = client.chat.completions.with_raw_response.create(
            model="tiny", messages=[{"role": "user", "content": "lock the front door"}], tools=[LOCK])
        completion = raw.parse()
        health = _get_json(f"{running.url}/health")
    # A random model is never certain: every answer is below 1.0 and goes to the teacher.
    assert raw.headers[ANSWERED_BY_HEADER] == "teacher:big" and completion.model == "teacher:big"
    call = completion.choices[0].message.tool_calls[0]
    assert (call.function.name, json.loads(call.function.arguments)) == ("lock_door", {"door": "front", "locked": True})
    extra = completion.model_extra["supertiny"]
    assert extra["answered_by"] == "teacher:big" and 0 < extra["confidence"] < 1.0 and extra["threshold"] == 1.0
    assert asked[0]["tools"] == [LOCK] and asked[0]["messages"][-1]["content"] == "lock the front door"
    assert health["fallback"] == {"threshold": 1.0, "signal": "min", "sent": 1, "failed": 0}


def test_a_teacher_that_fails_leaves_the_tiny_answer_marked_and_the_server_serving(tiny_model):
    def down(request):
        raise ConnectionError("teacher unreachable")

    fallback = Fallback(threshold=1.0, signal="mean", ask=down)
    served_model = ServedModel(name="tiny", bundle=tiny_model, tools_mode="names", max_calls=2, max_new_tokens=48, threads=1)
    with _fallback_client(served_model, fallback) as running:
        client = openai.OpenAI(base_url=f"{running.url}/v1", api_key="unused", max_retries=0)
        first = _ask(client, "lock the front door", [LOCK])
        second = _ask(client, "unlock the back door", [LOCK])
        health = _get_json(f"{running.url}/health")
    for completion in (first, second):
        assert completion.model == "tiny" and completion.model_extra["supertiny"]["fallback_error"] == "teacher unreachable"
    assert health["fallback"]["sent"] == 2 and health["fallback"]["failed"] == 2


def test_at_threshold_zero_nothing_goes_to_the_teacher(tiny_model):
    fallback = Fallback(threshold=0.0, signal="min", ask=lambda request: pytest.fail("the teacher was asked"))
    served_model = ServedModel(name="tiny", bundle=tiny_model, tools_mode="names", max_calls=2, max_new_tokens=48, threads=1,
                               fallback=fallback)
    completion = served_model.answer({"messages": [{"role": "user", "content": "lock the front door"}], "tools": [LOCK]})
    assert completion["model"] == "tiny" and completion["supertiny"]["answered_by"] == "tiny" and fallback.sent == 0


def test_the_configured_fallback_asks_the_teacher_through_its_client(tmp_path, tool_catalog, teacher_settings):
    from kedro.io import DataCatalog, MemoryDataset

    from supertiny.teacher.client import RUN_SPENDING

    from fake_openai import FakeOpenAI

    RUN_SPENDING.reset()
    with FakeOpenAI() as endpoint:
        teacher = {**teacher_settings, "base_url": endpoint.base_url, "model": "teacher", "api_key_env": None, "strategy": "native", "k_samples": 1,
                   "temperature": 0.0, "max_tokens": 32, "concurrency": 1, "timeout_s": 10, "max_retries": 0, "few_shot": 0,
                   "cache_dir": str(tmp_path / "cache")}
        catalog = DataCatalog({"teacher_seed_examples": MemoryDataset([]),
                               "cascade_choice": MemoryDataset({"signal": "mean", "threshold": 0.42})})
        fallback = teacher_fallback(catalog, {"teacher": teacher, "serving": {"fallback": {"threshold": "auto", "signal": "auto"}}})
        calls = fallback.ask({"messages": [{"role": "user", "content": "kitchen lights on"}], "tools": tool_catalog})
    assert (fallback.threshold, fallback.signal, fallback.teacher_name) == (0.42, "mean", "teacher:teacher")
    assert calls == [{"name": tool_catalog[0]["function"]["name"], "arguments": {}}]
    assert len(endpoint.chat_requests) == 1  # the probe aside, one request for one fallback


def test_an_auto_fallback_without_an_evaluation_says_what_to_run():
    from kedro.io import DataCatalog

    with pytest.raises(SupertinyError, match="no cascade_choice yet: run `kedro run --pipelines evaluation`"):
        teacher_fallback(DataCatalog({}), {"teacher": {}, "serving": {"fallback": {"threshold": "auto"}}})
