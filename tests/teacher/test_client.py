"""Requests through the client: retries, errors as candidate rows, the cache, bounded concurrency."""

from __future__ import annotations

from fake_openai import FakeOpenAI

from supertiny.teacher import label_requests


def test_rate_limits_are_retried_after_the_servers_retry_after(requests, make_config):
    with FakeOpenAI(failures=[(429, {"Retry-After": "1"}), (429, {"retry-after-ms": "300"})]) as server:
        candidates, usage = label_requests(requests[:1], [], make_config(server, max_retries=2))
    assert candidates[0]["error_kind"] is None and candidates[0]["calls"] == [{"name": "set_lights", "arguments": {}}]
    assert usage["retries"] == 2 and usage["errors"] == {}
    # The probe met both 429s; the waits between attempts are at least what the server asked for.
    gaps = [later - earlier for earlier, later in zip(server.arrivals, server.arrivals[1:])]
    assert gaps[0] >= 0.95 and gaps[1] >= 0.28


def test_server_errors_are_retried(requests, make_config):
    with FakeOpenAI(failures=[(500, {}), (503, {}), (502, {})]) as server:
        candidates, usage = label_requests(requests[:2], [], make_config(server, max_retries=3, concurrency=1))
    assert all(c["error_kind"] is None for c in candidates)
    assert usage["retries"] == 3 and usage["requests_sent"] == 2


def test_a_request_that_keeps_failing_becomes_a_candidate_row(requests, make_config):
    # The probe passes, then every request fails: the run ends normally, with error rows.
    with FakeOpenAI(status=500) as server:
        config = make_config(server, max_retries=1, k_samples=2)
        candidates, usage = label_requests(requests[1:3], [], config)
    assert len(candidates) == 4
    for candidate in candidates:
        assert candidate["error_kind"] == "server_error" and "500" in candidate["error"]
        assert candidate["calls"] is None and candidate["text"] is None
    assert usage["errors"] == {"server_error": 4} and usage["candidates_failed"] == 4
    assert usage["retries"] == 4  # one retry each
    # Failures are not cached: the next run asks again.
    with FakeOpenAI(port=server.port):
        again, usage = label_requests(requests[1:3], [], config)
    assert all(c["error_kind"] is None for c in again) and usage["requests_sent"] == 4


def test_a_server_that_never_answers_times_out(requests, make_config):
    with FakeOpenAI(hang=True) as server:
        candidates, usage = label_requests(requests[1:2], [], make_config(server, max_retries=0, timeout_s=0.5))
    assert candidates[0]["error_kind"] == "timeout"
    assert usage["errors"] == {"timeout": 1}


def test_second_run_is_all_cache_hits_and_sends_nothing(requests, make_config):
    with FakeOpenAI() as server:
        config = make_config(server, k_samples=2)
        first, first_usage = label_requests(requests, [], config)
        sent = len(server.bodies)
        second, usage = label_requests(requests, [], config)
    assert first_usage["requests_sent"] == 12 and first_usage["probe_requests"] == 3
    assert len(server.bodies) == sent  # not even a probe
    assert usage["requests_sent"] == 0 and usage["cache_hits"] == 12 and usage["cache_hit_rate"] == 1.0
    assert all(c["cached"] for c in second) and not any(c["cached"] for c in first)
    assert [c["calls"] for c in second] == [c["calls"] for c in first]


def test_changed_sampling_or_prompt_misses_the_cache(requests, make_config, make_request):
    with FakeOpenAI() as server:
        label_requests(requests[:2], [], make_config(server))
        _, warmer = label_requests(requests[:2], [], make_config(server, temperature=0.9))
        _, longer = label_requests(requests[:2], [], make_config(server, max_tokens=64))
        reworded = [make_request(1, "turn on the kitchen light"), requests[1]]
        _, partly = label_requests(reworded, [], make_config(server))
    assert warmer["cache_hits"] == 0 and warmer["requests_sent"] == 2
    assert longer["cache_hits"] == 0 and longer["requests_sent"] == 2
    assert partly["cache_hits"] == 1 and partly["requests_sent"] == 1


def test_concurrency_is_bounded(requests, make_config):
    with FakeOpenAI(latency_s=0.05) as server:
        candidates, usage = label_requests(requests * 1, [], make_config(server, concurrency=3, k_samples=4))
    assert len(candidates) == 24 and usage["requests_sent"] == 24
    assert 1 <= server.max_in_flight <= 3
