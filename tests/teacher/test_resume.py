"""A run killed halfway resumes: the re-run sends only the requests whose answers were not stored."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import time

import pytest
from fake_openai import FakeOpenAI

from supertiny.teacher import label_requests
from supertiny.teacher.cache import ResponseCache

LABEL_SCRIPT = """
import json, sys
from supertiny.teacher import TeacherConfig, label_requests
params, requests = json.load(open(sys.argv[1]))
label_requests(requests, [], TeacherConfig.from_params(params))
"""


def settle(server: FakeOpenAI, timeout_s: float = 60) -> None:
    """Wait until bytes the killed client had already sent are read and answered."""
    seen, deadline = -1, time.monotonic() + timeout_s
    while seen != len(server.bodies) or server.in_flight:
        assert time.monotonic() < deadline, f"the server still has {server.in_flight} requests in flight after {timeout_s:.0f} s"
        seen = len(server.bodies)
        time.sleep(0.5)


@pytest.mark.e2e
def test_a_killed_run_resumes_where_it_stopped(tmp_path, requests, make_config):
    with FakeOpenAI(latency_s=0.2) as server:
        config = make_config(server, k_samples=8, concurrency=2)  # 48 requests, about 5 s
        total = len(requests) * config.k_samples
        job = tmp_path / "job.json"
        job.write_text(json.dumps([dataclasses.asdict(config), requests]))  # the same settings, as parameters
        cache = ResponseCache(config.cache_dir)
        run = subprocess.Popen([sys.executable, "-c", LABEL_SCRIPT, str(job)], stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while len(cache) < 6 and run.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        run.kill()
        run.wait()
        stored = len(cache)
        assert 6 <= stored < total, f"the run should have been killed halfway, not after {stored} of {total}"
        settle(server)

        sent_before = len(server.chat_requests)
        candidates, usage = label_requests(requests, [], config)
        resent = len(server.chat_requests) - sent_before
    assert resent == total - stored, f"{stored} stored of {total}, {resent} sent again"
    assert usage["requests_sent"] == total - stored and usage["cache_hits"] == stored
    assert len(candidates) == total and all(c["error_kind"] is None for c in candidates)
