"""How good is the embedded teacher? Labels demo requests with `transformers serve` on this machine.

For each strategy: the share of the train requests the teacher pipeline labels
(``teacher.max_requests``, the same seeded subset) with at least one of k sampled candidates
that exactly matches the reference (what rejection sampling can keep), then the teacher's
greedy (temperature 0, one sample) exact-match accuracy on the evaluation's test requests
(``evaluation.max_requests``, the same seeded subset).

    .venv/bin/python benchmarks/teacher_accuracy.py [--n 48] [--test-n 100]

Needs `kedro run --pipelines data,student` first (the splits and the base model). Settings are
the default env's `teacher` parameters, and responses go to the teacher's own cache: what the
teacher and evaluation pipelines already asked (the configured strategy) is not asked again.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "true")

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT / "src"))

from supertiny.calls import exact_match  # noqa: E402
from supertiny.inference import sample_requests  # noqa: E402
from supertiny.pipelines.teacher.nodes import select_seed_examples  # noqa: E402
from supertiny.teacher import TeacherConfig, label_requests  # noqa: E402


def load_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def project_params() -> dict:
    """The default env's parameters, as a pipeline run sees them."""
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    bootstrap_project(PROJECT)
    with KedroSession.create(project_path=PROJECT) as session:
        return dict(session.load_context().params)


def matched(candidates: list[dict], requests: list[dict]) -> dict[str, bool]:
    """Request id -> whether any of its candidates exactly matches the reference."""
    by_id = {request["id"]: request for request in requests}
    hits = {request["id"]: False for request in requests}
    for candidate in candidates:
        request = by_id[candidate["request_id"]]
        if exact_match(candidate["calls"], request["reference"], request["tools"]):
            hits[request["id"]] = True
    return hits


def run(requests: list[dict], seeds: list[dict], params: dict, label: str) -> dict:
    config = TeacherConfig.from_params(params)
    started = time.perf_counter()
    candidates, usage = label_requests(requests, seeds, config, model_dir=PROJECT / "data/06_models/base_model")
    hits = matched(candidates, requests)
    return {
        "run": label,
        "requests": len(requests),
        "k": config.k_samples,
        "any_exact": sum(hits.values()) / len(requests),
        "parsed": usage["candidates_parsed"] / max(usage["candidates"], 1),
        "sent": usage["requests_sent"],
        "prompt_tok_per_request": (usage["prompt_tokens"] + usage["cached_prompt_tokens"]) / max(usage["requests_sent"] + usage["cache_hits"], 1),
        "req_per_s": usage["requests_per_s"],
        "cached": usage["requests_sent"] == 0,
        "wall_s": time.perf_counter() - started,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=None, help="train requests labelled per strategy (default: teacher.max_requests)")
    parser.add_argument("--test-n", type=int, default=None, help="test requests for the greedy accuracy (default: evaluation.max_requests; 0: skip)")
    parser.add_argument("--k", type=int, default=None, help="samples per train request (default: teacher.k_samples)")
    parser.add_argument("--strategies", nargs="+", default=["prompted", "decomposed"])
    parser.add_argument("--cache-dir", default=None, help="default: teacher.cache_dir")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")

    everything = project_params()
    params = {**everything["teacher"], "cache_dir": args.cache_dir or everything["teacher"]["cache_dir"]}
    n = everything["teacher"]["max_requests"] if args.n is None else args.n
    test_n = everything["evaluation"]["max_requests"] if args.test_n is None else args.test_n
    if args.k:
        params["k_samples"] = args.k
    train = load_jsonl(PROJECT / "data/05_model_input/train_requests.jsonl")
    test = load_jsonl(PROJECT / "data/05_model_input/test_requests.jsonl")
    seeds, rest = select_seed_examples(train, params)
    # The pipelines' own subsets, so that their cached answers are reused.
    train_sample = [r for r in sample_requests(rest, n, params.get("seed", 0)) if r["reference"] is not None]
    test_sample = [r for r in sample_requests(test, test_n, everything["evaluation"].get("seed", 0)) if r["reference"] is not None] if test_n else []

    rows = []
    for strategy in args.strategies:
        rows.append(run(train_sample, seeds, {**params, "strategy": strategy}, f"train {strategy}, k={params['k_samples']}"))
    if test_sample:
        for strategy in args.strategies:
            greedy = {**params, "strategy": strategy, "temperature": 0.0, "k_samples": 1}
            rows.append(run(test_sample, seeds, greedy, f"test {strategy}, greedy"))

    print(f"\nEmbedded teacher (transformers serve, {PROJECT / 'data/06_models/base_model'}), {len(seeds)} seed examples, few_shot={params['few_shot']}")
    header = f"{'run':<28} {'requests':>8} {'exact(any)':>10} {'parsed':>7} {'sent':>6} {'prompt tok/req':>14} {'req/s':>6} {'wall s':>7}"
    print(header)
    print("-" * len(header))
    for row in rows:
        print(
            f"{row['run']:<28} {row['requests']:>8} {row['any_exact']:>10.1%} {row['parsed']:>7.1%} {row['sent']:>6} "
            f"{row['prompt_tok_per_request']:>14.0f} {row['req_per_s']:>6.2f} {row['wall_s']:>7.1f}"
            + ("  (from the cache)" if row["cached"] else "")
        )
    print("exact(any): share of requests with at least one candidate that exactly matches the reference "
          "(with one greedy sample: exact-match accuracy)")


if __name__ == "__main__":
    main()
