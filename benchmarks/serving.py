"""``supertiny serve`` under load, through the ``openai`` SDK: latency and throughput at
concurrency 1, 4 and 16 (clients sending evaluation requests back to back).

The server is the one ``supertiny shadow`` starts (``pipelines.shadow.nodes.served_endpoint``:
the final model on the fast path, on a loopback port), or a running one (``--url``). One model
answers one request at a time, so under concurrency latency grows with the queue while
requests/s stays at the single-stream rate: the table shows both.

    .venv/bin/python benchmarks/serving.py --requests 32

Writes ``data/08_reporting/serving.json`` and prints the table.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "true")

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT / "src"))

import openai  # noqa: E402
import yaml  # noqa: E402

from supertiny.datasets import ModelDirectory  # noqa: E402
from supertiny.latency import percentiles_ms  # noqa: E402
from supertiny.pipelines.shadow.nodes import served_endpoint  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(PROJECT / "data" / "06_models" / "quantized_model"))
    parser.add_argument("--url", default=None, help="a running supertiny serve (http://127.0.0.1:8000/v1)")
    parser.add_argument("--requests", type=int, default=32, help="requests sent at each concurrency")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--output", default=str(PROJECT / "data" / "08_reporting" / "serving.json"))
    args = parser.parse_args()

    student = yaml.safe_load((PROJECT / "conf" / "base" / "parameters_student.yml").read_text())["student"]
    evaluation = yaml.safe_load((PROJECT / "conf" / "base" / "parameters_evaluation.yml").read_text())["evaluation"]
    with open(PROJECT / "data" / "05_model_input" / "evaluation_requests.jsonl", encoding="utf-8") as handle:
        requests = [json.loads(line) for line in handle if line.strip()][: args.requests]
    rows = []
    with served_endpoint(args.url, ModelDirectory(Path(args.model)), student["tools_mode"], evaluation) as (client, name):
        def ask(request: dict) -> tuple[float, bool]:
            started = time.perf_counter()
            reply = client.chat.completions.create(model=name, messages=request["messages"], tools=request["tools"])
            return time.perf_counter() - started, reply.choices[0].finish_reason in ("tool_calls", "stop")

        for concurrency in args.concurrency:
            started = time.perf_counter()
            with ThreadPoolExecutor(max_workers=concurrency) as pool:
                results = list(pool.map(ask, requests))
            wall = time.perf_counter() - started
            latencies = [seconds * 1000 for seconds, _ in results]
            rows.append({
                "concurrency": concurrency, "requests": len(results), "answered": sum(ok for _, ok in results),
                **percentiles_ms(latencies),
                "requests_per_s": round(len(results) / wall, 2),
            })
            print(f"concurrency {concurrency} done", file=sys.stderr)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps({"model": args.url or args.model, "rows": rows}, indent=2))
    print(f"\n{args.url or args.model}: {args.requests} evaluation requests at each concurrency, through the openai SDK")
    print("| concurrency | answered | p50 ms | p95 ms | requests/s |\n|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['concurrency']} | {row['answered']}/{row['requests']} | {row['p50_ms']} | {row['p95_ms']} | {row['requests_per_s']} |")


if __name__ == "__main__":
    main()
