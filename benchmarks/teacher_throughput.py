"""Does the teacher client keep a slow endpoint busy? And what does a cached re-run cost?

Against a local OpenAI-compatible server that answers every chat completion after a fixed
latency (tests/teacher/fake_openai.py, in its own process), label requests at concurrency 1, 8
and 32 and compare requests per second with the ideal concurrency / latency (the aim: at least
0.8 of it). Then repeat the last run unchanged: it should send nothing and hit the cache for
every request, in a fraction of the time.

    .venv/bin/python benchmarks/teacher_throughput.py [--latency 0.2] [--batches 40]
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT / "src"))

from supertiny.teacher import TeacherConfig, label_requests  # noqa: E402

TOOL = {
    "type": "function",
    "function": {
        "name": "set_lights",
        "description": "Turn the lights in a room on or off.",
        "parameters": {"type": "object", "properties": {"room": {"type": "string"}, "state": {"type": "string", "enum": ["on", "off"]}}, "required": ["room", "state"]},
    },
}


def requests(count: int) -> list[dict]:
    return [
        {"id": f"b{n}", "messages": [{"role": "user", "content": f"turn on the lights in room {n}"}], "tools": [TOOL], "reference": None}
        for n in range(count)
    ]


def label(base_url: str, cache_dir: str, concurrency: int, count: int) -> dict:
    config = TeacherConfig.from_params({
        "base_url": base_url, "model": "teacher", "api_key_env": None, "strategy": "prompted", "k_samples": 1,
        "concurrency": concurrency, "few_shot": 0, "max_retries": 0, "timeout_s": 60, "cache_dir": cache_dir,
    })  # fmt: skip
    return label_requests(requests(count), [], config)[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--latency", type=float, default=0.2, help="server seconds per chat completion")
    parser.add_argument("--batches", type=int, default=40, help="requests per run = concurrency x batches")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    server = subprocess.Popen(
        [sys.executable, str(PROJECT / "tests/teacher/fake_openai.py"), "--latency", str(args.latency)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        base_url = f"http://127.0.0.1:{server.stdout.readline().split()[1]}/v1"
        print(f"Fake endpoint: {args.latency * 1000:.0f} ms a request; {args.batches} requests per slot; "
              "wall time includes the one probe request")
        print(f"{'concurrency':>11} {'requests':>8} {'wall s':>7} {'req/s':>7} {'ideal':>7} {'ratio':>6}")
        with tempfile.TemporaryDirectory() as scratch:
            for concurrency in (1, 8, 32):
                cache_dir = f"{scratch}/cache-{concurrency}"
                usage = label(base_url, cache_dir, concurrency, concurrency * args.batches)
                ideal = concurrency / args.latency
                print(f"{concurrency:>11} {usage['requests_sent']:>8} {usage['wall_s']:>7.2f} {usage['requests_per_s']:>7.1f} "
                      f"{ideal:>7.1f} {usage['requests_per_s'] / ideal:>6.2f}")
            again = label(base_url, cache_dir, concurrency, concurrency * args.batches)
            print(f"\nIdentical second run (concurrency {concurrency}): {again['requests_sent']} requests sent "
                  f"({again['probe_requests']} probes), cache hits {again['cache_hits']} "
                  f"({again['cache_hit_rate']:.0%}), wall {again['wall_s']:.3f} s = "
                  f"{again['wall_s'] / usage['wall_s']:.3f} of the first run's {usage['wall_s']:.2f} s")
    finally:
        server.kill()
        server.wait()


if __name__ == "__main__":
    main()
