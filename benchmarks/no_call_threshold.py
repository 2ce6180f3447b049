"""Which ``evaluation.no_call_threshold``? Exact match on validation requests at each threshold,
per model, side by side.

Each model answers a seeded subset of ``val_requests`` once, greedily on the served path (the
evaluation's ``local_predictions``), and each answer records the probability the model gave to
``[]`` where it chose between calling and not (``decoding.Decoded.no_call_probability``). With a
threshold the decoder answers ``[]`` exactly where that probability reaches it and otherwise
writes the same greedy answer, so every threshold's answers follow from that one pass: ``[]``
where the probability is at or above it, the greedy answer elsewhere. Per threshold: exact match
with its 95% interval, no-call accuracy, call exact match, and the share answered ``[]``.

    .venv/bin/python benchmarks/no_call_threshold.py --models student_sft quantized_model --n 150

Needs ``kedro run`` first (the models and val_requests). Writes a Markdown table and
``<output_root>/08_reporting/no_call_threshold.json``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "true")

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT / "benchmarks"))

from _common import load_context, write_result  # noqa: E402
THRESHOLDS = [None, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4]



def sweep(requests: list[dict], predictions: list[dict], thresholds: list[float | None]) -> list[dict[str, Any]]:
    """Each threshold's scores, from the greedy answers and their no-call probabilities."""
    from supertiny.inference import wilson_interval

    rows = []
    for threshold in thresholds:
        exact, no_call, with_calls, empty = [], [], [], 0
        for request, prediction in zip(requests, predictions, strict=True):
            probability = prediction["no_call_probability"]
            answers_none = threshold is not None and probability is not None and probability >= threshold
            right = request["reference"] == [] if answers_none else bool(prediction["exact"])
            empty += answers_none or prediction["calls"] == []
            exact.append(right)
            (no_call if request["reference"] == [] else with_calls).append(right)
        low, high = wilson_interval(sum(exact), len(exact))
        rows.append({
            "threshold": threshold,
            "exact_match": round(sum(exact) / len(exact), 4), "exact_match_low": low, "exact_match_high": high,
            "no_call_accuracy": round(sum(no_call) / len(no_call), 4) if no_call else None,
            "call_exact_match": round(sum(with_calls) / len(with_calls), 4) if with_calls else None,
            "answered_no_call": round(empty / len(exact), 4),
        })  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--project", type=Path, default=PROJECT)
    parser.add_argument("--env", default=None)
    parser.add_argument("--models", nargs="+", default=["student_sft", "quantized_model"], help="catalog model datasets")
    parser.add_argument("--n", type=int, default=150, help="validation requests (seeded subset)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    for noisy in ("transformers", "kedro"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    from supertiny.inference import sample_requests
    from supertiny.pipelines.evaluation.nodes import local_predictions

    context = load_context(args.project, args.env)
    params = context.params
    requests = [r for r in sample_requests(context.catalog.load("val_requests"), args.n, args.seed) if r.get("reference") is not None]
    greedy = {**params["evaluation"], "no_call_threshold": None}
    results = {}
    for name in args.models:
        predictions = local_predictions(context.catalog.load(name), requests, params["student"]["tools_mode"], greedy, params["runtime"], name)
        results[name] = sweep(requests, predictions, THRESHOLDS)

    no_calls = sum(r["reference"] == [] for r in requests)
    print(f"\n{len(requests)} labelled validation requests ({no_calls} need no call), served path\n")
    print("| model | threshold | exact match [95%] | no-call accuracy | call exact match | answered [] |")
    print("|---|---|---|---|---|---|")
    for name, rows in results.items():
        for row in rows:
            threshold = "greedy" if row["threshold"] is None else f"{row['threshold']:.2f}"
            print(f"| {name} | {threshold} | {row['exact_match']:.3f} [{row['exact_match_low']:.2f}, {row['exact_match_high']:.2f}] | "
                  f"{row['no_call_accuracy']} | {row['call_exact_match']} | {row['answered_no_call']:.2f} |")
    write_result(context, args.project, "no_call_threshold", {"requests": len(requests), "models": results})


if __name__ == "__main__":
    main()
