"""The embedded teacher: the real `transformers serve` on a tiny random model, started and stopped."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import openai
import pytest

from supertiny.datasets import ModelDataset
from supertiny.teacher.server import LocalServer, LocalServerError

pytestmark = pytest.mark.server


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # A zombie (exited, not yet reaped by a dead parent's init) is gone too.
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().split(") ")[1].startswith("Z")


def wait_gone(pid: int, timeout_s: float = 30) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if gone(pid):
            return True
        time.sleep(0.1)
    return False


@pytest.fixture(scope="module")
def tiny_model_dir(tiny_model, tmp_path_factory):
    path = tmp_path_factory.mktemp("models") / "tiny"
    ModelDataset(filepath=str(path)).save(tiny_model)
    return path


def test_serves_one_request_and_stops(tiny_model_dir):
    with LocalServer(tiny_model_dir, temperature=0.7, kv_cache_tokens=1024) as server:
        pid = server.process.pid
        client = openai.OpenAI(base_url=server.base_url, api_key="not-needed", max_retries=0, timeout=120)
        response = client.chat.completions.create(
            model=server.model_id, messages=[{"role": "user", "content": "hi"}], max_tokens=3, temperature=0.7
        )
        assert response.usage.completion_tokens >= 1
        assert (server.log_path.parent / "model" / "generation_config.json").read_text().count('"do_sample": true') == 1
    assert gone(pid)


def test_a_server_that_cannot_start_reports_its_log(tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text('{"model_type": "no_such_architecture"}')
    with pytest.raises(LocalServerError, match=r"(?s)exited with code .* its log ends with:\n.+"):
        with LocalServer(broken, temperature=0.7, startup_timeout_s=120):
            pass


# The owner takes Ctrl-C as a user's process at a terminal does. Started in the background of a
# non-interactive shell (as a CI script may run the suite), a process inherits SIGINT ignored,
# and Python then leaves it ignored: the owner would sleep through the signal.
SERVE_SCRIPT = """
import signal, sys, time
from supertiny.teacher.server import LocalServer
signal.signal(signal.SIGINT, signal.default_int_handler)
with LocalServer(sys.argv[1], temperature=0.7, kv_cache_tokens=1024) as server:
    print(server.process.pid, flush=True)
    time.sleep(600)
"""


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL], ids=["ctrl-c", "sigterm", "sigkill"])
def test_the_server_stops_when_its_owner_is_interrupted_or_killed(tiny_model_dir, stop):
    owner = subprocess.Popen([sys.executable, "-c", SERVE_SCRIPT, str(tiny_model_dir)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        pid = int(owner.stdout.readline())
        owner.send_signal(stop)
        owner.wait(timeout=180)  # a loaded machine can take long to unwind (grace period, teardown)
        assert wait_gone(pid), f"transformers serve (pid {pid}) outlived its owner after {stop.name}"
    finally:
        owner.kill()
