"""Each strategy's prompts, and how its answers become calls (through a scripted server)."""

from __future__ import annotations

import json

import fake_openai
from fake_openai import FakeOpenAI

from supertiny.teacher import label_requests
from supertiny.teacher.fewshot import FewShotIndex
from supertiny.teacher.strategies import Prompting, fill_messages, prompted_messages, select_messages

LIGHTS_ON = [{"name": "set_lights", "arguments": {"room": "kitchen", "on": True}}]


def prompting(examples, few_shot=2) -> Prompting:
    return Prompting(FewShotIndex(examples), few_shot, max_tokens=32, max_tokens_select=16)


def test_prompted_messages_describe_the_tools_then_examples_most_similar_last(requests, make_request):
    query = make_request(99, "please turn on the kitchen lights")
    messages = prompted_messages(query, prompting(requests))
    system = messages[0]["content"]
    assert messages[0]["role"] == "system"
    assert "set_lights: Turn lights on or off in a room.\n  room: kitchen|bedroom\n  on: boolean\n  brightness?: integer 0..100 = 100" in system
    assert "start_timer: Start a countdown timer.\n  minutes: integer >=1" in system
    assert "Reply [] if no function fits or a required value is missing." in system
    assert [m["role"] for m in messages[1:]] == ["user", "assistant", "user", "assistant", "user"]
    assert messages[3]["content"] == "turn on the kitchen lights"  # the nearest example, next to the question
    assert json.loads(messages[4]["content"]) == LIGHTS_ON
    assert messages[-1] == query["messages"][0]


def test_a_requests_own_system_message_joins_the_teachers(requests, make_request):
    query = make_request(99, "lights on")
    query["messages"].insert(0, {"role": "system", "content": "The user is in the kitchen."})
    messages = prompted_messages(query, prompting(requests))
    assert messages[0]["content"].endswith("The user is in the kitchen.")
    assert sum(m["role"] == "system" for m in messages) == 1


def test_examples_only_use_functions_the_request_offers(requests, make_request):
    query = make_request(99, "set a timer for five minutes")
    query["tools"] = [t for t in query["tools"] if t["function"]["name"] == "set_lights"]
    shown = [m["content"] for m in prompted_messages(query, prompting(requests, few_shot=6))[1:-1:2]]
    assert all("timer" not in text for text in shown)


def test_decomposed_steps_see_only_what_they_need(requests, make_request):
    query = make_request(99, "turn the kitchen lights on")
    select = select_messages(query, prompting(requests))
    assert "- set_lights: Turn lights on or off in a room." in select[0]["content"]
    assert "kitchen|bedroom" not in select[0]["content"]  # names and descriptions only
    assert json.loads(select[-2]["content"]) == [{"name": "set_lights"}]
    fill = fill_messages(query, query["tools"][0], prompting(requests))
    assert fill[0]["content"].startswith("Call set_lights for the user's request")
    assert "start_timer" not in json.dumps(fill)  # only that function's schema and examples
    assert json.loads(fill[-2]["content"]) == LIGHTS_ON


def test_native_reads_tool_calls(requests, make_config):
    with FakeOpenAI() as server:
        candidates, _ = label_requests(requests[:1], [], make_config(server, strategy="native"))
    body = server.chat_requests[0]
    assert body["tools"] == requests[0]["tools"] and body["messages"] == requests[0]["messages"]
    assert candidates[0]["calls"] == [{"name": "set_lights", "arguments": {}}] and candidates[0]["parse_error"] is None
    assert json.loads(candidates[0]["text"]) == [{"name": "set_lights", "arguments": "{}"}]


def test_native_text_reply_means_no_call(requests, make_config):
    # The endpoint calls tools (it calls one for the probe); this request it answers in words.
    def reply(body):
        return fake_openai.default_reply(body) if fake_openai.is_probe(body) else {"role": "assistant", "content": "I can't book flights."}

    with FakeOpenAI(reply=reply) as server:
        candidates, _ = label_requests(requests[4:5], [], make_config(server, strategy="native"))
    assert candidates[0]["calls"] == [] and candidates[0]["text"] == "I can't book flights."


def test_prompted_parses_text_and_reports_unparseable_answers(requests, make_config):
    replies = iter(["Sure: [{\"name\": \"set_lights\", \"arguments\": {\"room\": \"kitchen\", \"on\": true}}]", "no idea"])
    with FakeOpenAI(reply=lambda body: {"role": "assistant", "content": next(replies) if "Reply OK." not in json.dumps(body) else "OK"}) as server:
        candidates, usage = label_requests(requests[:2], [], make_config(server, concurrency=1))
    assert "tools" not in server.chat_requests[0]
    assert candidates[0]["calls"] == LIGHTS_ON and candidates[0]["strategy"] == "prompted"
    assert candidates[1]["calls"] is None and candidates[1]["parse_error"] == "no JSON found"
    assert usage["candidates_parsed"] == 1


def two_step_reply(body: dict) -> dict:
    """Chooses both functions plus an unknown one; fills lights twice and the timer once."""
    system = body["messages"][0]["content"]
    if system.startswith("Pick"):
        content = '[{"name": "set_lights"}, {"name": "start_timer"}, {"name": "order_pizza"}]'
    elif system.startswith("Call set_lights"):
        content = json.dumps([{"name": "set_lights", "arguments": {"room": r, "on": True}} for r in ("kitchen", "bedroom")])
    elif system.startswith("Call start_timer"):
        content = '```json\n[{"name": "start_timer", "arguments": {"minutes": 5}}, {"name": "set_lights", "arguments": {}}]\n```'
    else:
        content = "OK"
    return {"role": "assistant", "content": content}


def test_decomposed_chooses_then_fills_each_function(requests, make_config):
    with FakeOpenAI(reply=two_step_reply) as server:
        candidates, usage = label_requests(requests[:1], requests[1:], make_config(server, strategy="decomposed", k_samples=2))
    assert len(candidates) == 2 and usage["requests_sent"] == 6  # per sample: choose, fill lights, fill timer
    candidate = candidates[0]
    assert candidate["calls"] == [
        {"name": "set_lights", "arguments": {"room": "kitchen", "on": True}},
        {"name": "set_lights", "arguments": {"room": "bedroom", "on": True}},
        {"name": "start_timer", "arguments": {"minutes": 5}},  # a stray call to another function is dropped
    ]
    steps = json.loads(candidate["text"])
    assert set(steps) == {"select", "fill"} and set(steps["fill"]) == {"set_lights", "start_timer"}  # unknown name dropped
    assert candidate["requests"] == 3 and candidate["prompt_tokens"] > 0
    assert candidate["latency_ms"] >= 0 and candidate["strategy"] == "decomposed"


def test_decomposed_reports_which_step_failed_to_parse(requests, make_config):
    def reply(body):
        system = body["messages"][0]["content"]
        return {"role": "assistant", "content": '[{"name": "start_timer"}]' if system.startswith("Pick") else "five minutes"}

    with FakeOpenAI(reply=reply) as server:
        candidates, _ = label_requests(requests[2:3], [], make_config(server, strategy="decomposed"))
    assert candidates[0]["calls"] is None and candidates[0]["parse_error"].startswith("fill start_timer:")


def test_decomposed_with_no_function_chosen_is_no_call(requests, make_config):
    with FakeOpenAI(reply=lambda body: {"role": "assistant", "content": "[]"}) as server:
        candidates, usage = label_requests(requests[4:5], [], make_config(server, strategy="decomposed"))
    assert candidates[0]["calls"] == [] and usage["requests_sent"] == 1
