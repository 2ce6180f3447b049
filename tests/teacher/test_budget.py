"""The spending cap: no new request once the run's estimated cost reaches teacher.max_cost_usd,
everything received kept, one line saying how to resume; without a cap, an estimate first."""

from __future__ import annotations

import logging

import pytest
from fake_openai import FakeOpenAI

from supertiny.errors import ConfigError, SupertinyError
from supertiny.teacher import label_requests
from supertiny.teacher.cache import ResponseCache

# USD per 1M tokens: a prompted request of the test tools is ~100 tokens, about a cent.
PRICES = {"teacher": {"prompt": 100.0, "completion": 100.0}}


def test_the_cap_stops_new_requests_keeps_what_came_and_says_how_to_resume(requests, make_config, fresh_spending):
    with FakeOpenAI() as server:
        capped = make_config(server, prices=PRICES, max_cost_usd=0.025, concurrency=1, k_samples=1)
        with pytest.raises(SupertinyError, match=r"^teacher.max_cost_usd \(\$0.025\) reached: .* To resume, run again") as stop:
            label_requests(requests, [], capped)
        received = len(server.chat_requests)
        spent = fresh_spending.usd
        assert 0 < received < len(requests)
        assert spent >= 0.025
        assert "\n" not in str(stop.value) and capped.cache_dir in str(stop.value)
        # Every response that arrived is in the cache: resuming sends only the rest.
        assert len(ResponseCache(capped.cache_dir)) == received
        fresh_spending.reset()  # the next run
        candidates, usage = label_requests(requests, [], make_config(server, prices=PRICES, concurrency=1, k_samples=1))
    assert len(server.chat_requests) == len(requests)
    assert usage["cache_hits"] == received and usage["requests_sent"] == len(requests) - received
    assert all(c["error_kind"] is None for c in candidates)


def test_a_cap_reached_by_earlier_teacher_nodes_of_the_run_sends_nothing(requests, make_config, fresh_spending):
    fresh_spending.usd = 0.03  # labelling the train requests spent it; now the val requests
    with FakeOpenAI() as server:
        with pytest.raises(SupertinyError, match=r"reached: this run's teacher responses cost about \$0.03"):
            label_requests(requests[:2], [], make_config(server, prices=PRICES, max_cost_usd=0.025))
        assert server.chat_requests == []


def test_a_cap_needs_a_price_for_the_model(make_config):
    with pytest.raises(ConfigError, match=r"teacher.max_cost_usd is set, but teacher.prices has no price for model 'gpt-x'"):
        make_config(base_url="https://api.example.com/v1", model="gpt-x", max_cost_usd=5)


def test_without_a_cap_a_priced_run_logs_its_estimate_first(requests, make_config, caplog):
    with FakeOpenAI() as server, caplog.at_level(logging.WARNING, logger="supertiny"):
        candidates, _ = label_requests(requests, [], make_config(server, prices=PRICES, k_samples=2))
    estimate = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("Teacher cost estimate"))
    # The first request that needs a call is answered first; its tokens times the requests planned.
    first = [c for c in candidates if c["request_id"] == "r1"]
    each = sum(100.0 * (c["prompt_tokens"] + c["completion_tokens"]) for c in first) / 1e6
    assert f"up to ${each * len(requests):.2f} for {len(requests)} requests x 2 samples" in estimate
    assert "no teacher.max_cost_usd" in estimate


def test_an_unpriced_or_local_run_logs_no_estimate(requests, make_config, caplog):
    with FakeOpenAI() as server, caplog.at_level(logging.WARNING, logger="supertiny"):
        label_requests(requests[:2], [], make_config(server))
    assert not [r for r in caplog.records if r.getMessage().startswith("Teacher cost estimate")]


def test_judging_stops_at_the_cap_too(requests, make_config, fresh_spending):
    from supertiny.teacher.judge import judge_calls

    fresh_spending.usd = 1.0
    with FakeOpenAI() as server:
        with pytest.raises(SupertinyError, match=r"0 of 2 judgements were answered"):
            judge_calls([(request, []) for request in requests[:2]], make_config(server, prices=PRICES, max_cost_usd=0.5))
        assert server.chat_requests == []
