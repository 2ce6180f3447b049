"""The judge verifier: an LLM asked through the teacher's client, cache and accounting."""

from __future__ import annotations

import json

import pytest

from supertiny.errors import ConfigError
from supertiny.pipelines.filtering.nodes import check_params
from supertiny.pipelines.filtering.pipeline import run_filtering
from supertiny.pipelines.filtering.verifiers import Item, verify_judge
from supertiny.teacher.judge import Judgement, read_judgement

import fake_openai  # tests/teacher/fake_openai.py, put on the import path by tests/conftest.py

KITCHEN_ON = [{"name": "set_lights", "arguments": {"room": "kitchen", "on": True}}]
BEDROOM_ON = [{"name": "set_lights", "arguments": {"room": "bedroom", "on": True}}]


def judge_reply(body: dict) -> dict:
    """A judge that approves calls to the kitchen, rambles about the bedroom, and refuses the rest."""
    question = body["messages"][-1]["content"]
    if question == fake_openai.PROBE_TEXT:
        return {"role": "assistant", "content": "OK"}
    calls = question.split("Calls made: ")[1].split("\n")[0]
    if "kitchen" in calls:
        answer = '```json\n{"verdict": "yes", "reason": "the kitchen lights, as asked"}\n```'
    elif "bedroom" in calls:
        answer = "Hmm, the bedroom. Hard to say."
    else:
        answer = '{"verdict": "no", "reason": "no call, but the user wants light"}'
    return {"role": "assistant", "content": answer}


@pytest.fixture
def teacher(tmp_path, teacher_settings):
    return {**teacher_settings, "base_url": None, "model": "judge", "api_key_env": None, "strategy": "prompted", "k_samples": 3,
            "temperature": 0.7, "max_tokens": 80, "concurrency": 2, "timeout_s": 10, "max_retries": 0,
            "cache_dir": str(tmp_path / "cache"), "prices": {"judge": {"prompt": 1.0, "completion": 1.0}}}


@pytest.fixture
def request_of(tool_catalog):
    def build(request_id: str, reference=KITCHEN_ON) -> dict:
        return {"id": request_id, "messages": [{"role": "user", "content": f"kitchen lights on ({request_id})"}],
                "tools": tool_catalog, "reference": reference, "meta": {}}
    return build


def test_read_judgement_finds_the_verdict_in_prose_and_fences():
    assert read_judgement('Sure. ```json\n{"verdict": "YES", "reason": "fine \\"really\\""}\n```').verdict == "yes"
    assert read_judgement('{"reason": "wrong room", "verdict": "no"}').reason == "wrong room"
    assert read_judgement("Yes.") == Judgement("yes", "")
    assert read_judgement("No, the function is missing the volume.\n") == Judgement("no", "the function is missing the volume.")
    assert read_judgement("Nope").verdict == "unparsed"
    unparsed = read_judgement("I would say it looks right")
    assert unparsed.verdict == "unparsed" and not unparsed.accepted and "looks right" in unparsed.reason
    assert read_judgement(None).verdict == "unparsed"


def test_the_judge_accepts_rejects_and_stores_its_reason_through_the_cache(request_of, teacher):
    labelled, unlabelled = request_of("a"), request_of("b", reference=None)
    items = [Item(labelled, {"sample": 0}, 3, KITCHEN_ON), Item(labelled, {"sample": 1}, 3, BEDROOM_ON),
             Item(unlabelled, {"sample": 0}, 3, [])]
    with fake_openai.FakeOpenAI(models=["judge"], reply=judge_reply) as server:
        teacher["base_url"] = server.base_url
        settings = {"teacher_params": teacher, "max_tokens": 40}
        verdicts, report = verify_judge(items, settings)
        sent = len(server.chat_requests)
        again, report_again = verify_judge([Item(i.request, i.candidate, 3, i.calls) for i in items], settings)
        sent_again = len(server.chat_requests) - sent

    assert [v.passed for v in verdicts] == [True, False, False]
    assert verdicts[0].reason == "judge: the kitchen lights, as asked"
    assert verdicts[1].reason.startswith("judge said unparsed") and verdicts[2].reason == "judge said no: no call, but the user wants light"
    assert verdicts[0].item.judgement == {"verdict": "yes", "reason": "the kitchen lights, as asked"}
    assert items[0].judgement is None, "the judge returns a new item; the one it was given is as it was"
    # Greedy, at the judge's own token budget, whatever the teacher samples with.
    assert {body["temperature"] for body in server.chat_requests} == {0.0}
    assert {body["max_tokens"] for body in server.chat_requests} == {40}
    usage = report["usage"]
    assert sent == 3 and usage["requests_sent"] == 3 and usage["verdicts"] == {"yes": 1, "no": 1, "unparsed": 1, "error": 0}
    assert usage["cost_usd"] > 0
    # On labelled requests the judge is checked against the reference: it accepted the one right answer.
    assert report["on_labelled"] == {"judged": 2, "precision": 1.0, "recall": 1.0}
    # Asked again: every verdict from the cache, nothing sent.
    assert sent_again == 0 and report_again["usage"]["cache_hits"] == 3
    assert [v.passed for v in again] == [True, False, False]


def test_only_unlabelled_leaves_labelled_requests_to_the_reference(request_of, teacher):
    items = [Item(request_of("a"), {"sample": 0}, 1, KITCHEN_ON), Item(request_of("b", reference=None), {"sample": 0}, 1, KITCHEN_ON)]
    with fake_openai.FakeOpenAI(models=["judge"], reply=judge_reply) as server:
        teacher["base_url"] = server.base_url
        verdicts, report = verify_judge(items, {"teacher_params": teacher, "only_unlabelled": True})
        assert len(server.chat_requests) == 1
    assert [v.passed for v in verdicts] == [None, True] and report["on_labelled"]["judged"] == 0


def test_filtering_with_the_judge_keeps_its_verdict_and_reports_its_cost(request_of, teacher):
    requests = [request_of("a", reference=None), request_of("b", reference=None)]
    candidates = [{"request_id": "a", "sample": 0, "text": json.dumps(KITCHEN_ON), "calls": KITCHEN_ON},
                  {"request_id": "b", "sample": 0, "text": "[]", "calls": []}]
    params = {"verifiers": ["format", "schema", "judge"], "reference": {"min_similarity": None}, "consistency": {"min_share": 0.5},
              "selection": "first", "max_per_function": None, "seed": 0, "judge": {"max_tokens": 40, "teacher": {"model": "judge"}}}
    with fake_openai.FakeOpenAI(models=["judge"], reply=judge_reply) as server:
        teacher["base_url"] = server.base_url
        examples, rejections, report, summary = run_filtering(candidates, requests, [], params, {**teacher, "model": "nobody"})
    assert [(e["id"], e["verifiers_passed"], e["judge"]["verdict"]) for e in examples] == [("a", ["format", "schema", "judge"], "yes")]
    assert [(r["request_id"], r["step"]) for r in rejections] == [("b", "judge")]
    assert summary["verifier_reports"]["judge"]["usage"]["requests_sent"] == 2
    assert summary["by_verifier"]["judge"] == 0.5
    with pytest.raises(ConfigError, match="the judge needs the teacher's settings"):
        run_filtering(candidates, requests, [], params)


@pytest.mark.parametrize(
    ("judge", "message"),
    [({"max_tokens": 0}, "filtering.judge.max_tokens must be at least 1; got 0"),
     ({"teacher": "gpt-4o"}, "filtering.judge.teacher: input should be a valid dictionary")],
)
def test_bad_judge_settings_are_named(judge, message):
    params = {"verifiers": ["format", "judge"], "reference": {}, "consistency": {"min_share": 0.5}, "selection": "first", "judge": judge}
    with pytest.raises(ConfigError, match=message):
        check_params(params)
