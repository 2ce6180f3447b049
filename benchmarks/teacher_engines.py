"""Which engine serves the embedded teacher, with or without structured outputs? One run, side by side.

For engine (vllm, transformers) x structured outputs (on, off), on the demo data with the
default env's teacher settings (strategy, k, prompts):

- start-up: seconds until the server answers /health (vLLM compiles the model; its compile
  cache in ~/.cache/vllm makes a second start faster);
- candidates/s at the configured concurrency (16), labelling the same seeded train requests;
- the share of those requests with at least one exactly right candidate (what rejection
  sampling can keep);
- format acceptance (the candidate parses into calls) and schema acceptance (the calls are
  valid against the request's tools);
- greedy exact match on the evaluation's seeded test requests.

transformers serve follows no response_format, so it has no "on" row. Every run starts from
an empty cache, so everything is measured, not read back.

    .venv/bin/python benchmarks/teacher_engines.py [--n 64] [--test-n 100]
    .venv/bin/python benchmarks/teacher_engines.py --engines vllm --dtypes bfloat16 float32 --structured on

``--dtypes`` compares vLLM's CPU dtypes (``teacher.local_server.dtype``; ``auto`` picks by the
CPU's flags, ``supertiny.teacher.server.vllm_cpu_dtype``).

Needs `kedro run --pipelines data` and the base model (`kedro run --pipelines model`).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from teacher_accuracy import PROJECT, load_jsonl, matched, project_params  # noqa: E402

from supertiny.calls import validate_calls  # noqa: E402
from supertiny.inference import sample_requests  # noqa: E402
from supertiny.pipelines.teacher.nodes import select_seed_examples  # noqa: E402
from supertiny.teacher import TeacherConfig, label_requests  # noqa: E402
from supertiny.teacher.label import local_server_settings  # noqa: E402
from supertiny.teacher.server import shared_local_server, stop_shared_servers  # noqa: E402

MODEL_DIR = PROJECT / "data/06_models/base_model"


def measure(train: list[dict], test: list[dict], seeds: list[dict], params: dict) -> dict:
    with tempfile.TemporaryDirectory(prefix="supertiny-engines-") as cache:
        config = TeacherConfig.from_params({**params, "cache_dir": cache})
        candidates, usage = label_requests(train, seeds, config, model_dir=MODEL_DIR)
        greedy = TeacherConfig.from_params({**params, "cache_dir": cache, "temperature": 0.0, "k_samples": 1})
        answers, _ = label_requests(test, seeds, greedy, model_dir=MODEL_DIR) if test else ([], {})
    by_id = {request["id"]: request for request in train}
    parsed = [c for c in candidates if c["calls"] is not None]
    valid = [c for c in parsed if not validate_calls(c["calls"], by_id[c["request_id"]]["tools"])]
    hits = matched(candidates, train)
    return {
        "structured (ran)": usage["structured_outputs"],
        "samples": usage["samples_drawn"],
        "candidates/s": usage["candidates_per_s"],
        "labelling s": usage["wall_s"],
        "requests with an exact candidate": sum(hits.values()) / len(train),
        "format acceptance": len(parsed) / len(candidates),
        "schema acceptance": len(valid) / max(len(parsed), 1),
        "format+schema": len(valid) / len(candidates),
        "greedy test exact match": sum(matched(answers, test).values()) / len(test) if test else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=64, help="train requests labelled per row")
    parser.add_argument("--test-n", type=int, default=100, help="test requests for greedy exact match (0: skip)")
    parser.add_argument("--engines", nargs="+", default=["vllm", "transformers"])
    parser.add_argument("--dtypes", nargs="+", default=["auto"], help="vllm: teacher.local_server.dtype values, a row each")
    parser.add_argument("--structured", nargs="+", default=["on", "off"], help="vllm: structured-output modes, a row each")
    parser.add_argument("--out", default=str(PROJECT / "data/08_reporting/teacher_engines.json"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    everything = project_params()
    params = dict(everything["teacher"])
    train_all = load_jsonl(PROJECT / "data/05_model_input/train_requests.jsonl")
    test_all = load_jsonl(PROJECT / "data/05_model_input/test_requests.jsonl")
    seeds, rest = select_seed_examples(train_all, params)
    train = [r for r in sample_requests(rest, args.n, params.get("seed", 0)) if r["reference"] is not None]
    test = [r for r in sample_requests(test_all, args.test_n, everything["evaluation"].get("seed", 0)) if r["reference"] is not None]

    rows = []
    for engine in args.engines:
        for dtype in args.dtypes if engine == "vllm" else ["–"]:
            local = {**params["local_server"], "engine": engine, **({"dtype": dtype} if engine == "vllm" else {})}
            engine_params = {**params, "local_server": local}
            started = time.perf_counter()
            # The server every row of this engine shares (label_requests finds it running).
            server = shared_local_server(MODEL_DIR, **local_server_settings(TeacherConfig.from_params(engine_params)))
            startup_s = time.perf_counter() - started
            served_dtype = server.dtype if engine == "vllm" else "–"
            for mode in args.structured if engine == "vllm" else ["off"]:
                print(f"{engine} {served_dtype}, structured {mode} ...", flush=True)
                row = measure(train, test, seeds, {**engine_params, "structured_outputs": mode})
                rows.append({"engine": engine, "dtype": served_dtype, "structured": mode, "start-up s": round(startup_s, 1), **row})
            stop_shared_servers()

    Path(args.out).write_text(json.dumps(rows, indent=2))
    columns = list(rows[0])
    print(f"\nTeacher engines: {len(train)} train requests x k={params['k_samples']} ({params['strategy']}, "
          f"concurrency {params['concurrency']}), {len(test)} test requests greedy; model {MODEL_DIR.name}\n")
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for row in rows:
        print("| " + " | ".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in row.values()) + " |")
    base = next((r for r in rows if r["engine"] == "transformers"), None)
    if base:
        for row in rows:
            print(f"{row['engine']} {row['dtype']} structured {row['structured']}: {row['candidates/s'] / base['candidates/s']:.2f}x the candidates/s of transformers")
    first = rows[0]
    for row in rows[1:]:
        if row["engine"] == first["engine"] == "vllm" and row["structured"] == first["structured"]:
            print(f"vllm {row['dtype']}: {row['candidates/s'] / first['candidates/s']:.2f}x the candidates/s of vllm {first['dtype']}")


if __name__ == "__main__":
    main()
