"""Student, pruned, recovered and every quantisation of the recovered model, side by side.

For each model: parameters, weight bytes on disk, exact match and similarity on a seeded
subset of test requests (``supertiny.inference``: the evaluation's own generation and
scoring), batch-1 latency p50/p95 and decode tokens/s (``supertiny.latency``, the one
harness), and the physical bound: weight bytes read per generated token against this
machine's measured memory bandwidth, and the share of that bound each model reaches.

Every quantised model is saved through the catalog's ``ModelDataset`` and loaded back from
disk before it is measured: the sizes are of real files, and what is timed is what loads.
Latency is measured in rounds, every model once a round, so that load from other processes
on the machine falls on all models alike.

    .venv/bin/python benchmarks/compression_table.py --requests 60 --rounds 3

Needs ``kedro run --pipelines compression`` first (pruned_model, pruned_recovered), or the
three directories given with --student/--pruned/--recovered.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "true")

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT / "src"))

import torch  # noqa: E402

from supertiny.compression.pruning import parameter_count  # noqa: E402
from supertiny.compression.quantization import quantize  # noqa: E402
from supertiny.quantized_model import Recipe  # noqa: E402
from supertiny.compression.fine_tuning import calibration_batches  # noqa: E402
from supertiny.datasets import ModelBundle, ModelDataset, ModelDirectory  # noqa: E402
from supertiny.inference import evaluate_model, sample_requests  # noqa: E402
from supertiny.latency import measure_latency, memory_bandwidth_gbs, weight_bytes_per_token  # noqa: E402
from supertiny.prompt import prompt_text  # noqa: E402

MODELS = PROJECT / "data" / "06_models"
RECIPES = {
    "rtn_int8": Recipe("rtn", bits=8, group_size=32),
    "rtn_int4": Recipe("rtn", bits=4, group_size=32),
    "gptq_int8": Recipe("gptq", bits=8, group_size=32),
    "gptq_int4": Recipe("gptq", bits=4, group_size=32),
    "inc_dynamic_int8": Recipe("inc_dynamic_int8"),
    "torch_dynamic_int8": Recipe("torch_dynamic_int8"),
}


def load_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def calibration_rows(path: Path | None, count: int, seed: int) -> list[dict]:
    """distill_train rows; without them, labelled train requests answered by their reference."""
    if path is not None and path.exists():
        rows = load_jsonl(path)
    else:
        rows = [dict(r, calls=r["reference"]) for r in load_jsonl(PROJECT / "data" / "05_model_input" / "train_requests.jsonl") if r.get("reference") is not None]
    return random.Random(seed).sample(rows, min(count, len(rows)))


def measure(name: str, directory: ModelDirectory, params: int | None, requests: list[dict], args: argparse.Namespace) -> dict:
    """Load a saved model and measure its size and accuracy (latency comes later, in rounds).
    ``params``: of the float model a quantised one was made from (None: count them)."""
    bundle = directory.load()
    # The evaluation's own path (inference.evaluate_model), on every request given.
    settings = {"tools_mode": args.tools_mode, "constrained": args.constrained, "max_calls": args.max_calls,
                "max_new_tokens": args.max_new_tokens, "batch_size": args.batch_size, "max_requests": None}
    _, metrics = evaluate_model(bundle, requests, settings)
    logging.info("%s: exact match %.3f in %.0f s", name, metrics["exact_match"] or 0, metrics["wall_s"])
    return {
        "name": name,
        "bundle": bundle,
        "params": params if params is not None else parameter_count(bundle.model),
        "size_bytes": directory.size_bytes,
        "exact_match": metrics["exact_match"],
        "similarity": metrics["similarity"],
        "valid_rate": metrics["valid_rate"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    student_default = MODELS / "student_model" if (MODELS / "student_model").exists() else MODELS / "base_model"
    parser.add_argument("--student", type=Path, default=student_default, help="default: student_model, else base_model")
    parser.add_argument("--pruned", type=Path, default=MODELS / "pruned_model")
    parser.add_argument("--recovered", type=Path, default=MODELS / "pruned_recovered")
    parser.add_argument("--test", type=Path, default=PROJECT / "data" / "05_model_input" / "test_requests.jsonl")
    parser.add_argument("--distill-train", type=Path, default=PROJECT / "data" / "05_model_input" / "distill_train.jsonl", help="GPTQ calibration")
    parser.add_argument("--methods", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    parser.add_argument("--tools-mode", default="none", help="the student's prompt format (student.tools_mode)")
    parser.add_argument("--constrained", action=argparse.BooleanOptionalAction, default=True,
                        help="answers under their grammar, as evaluation.constrained (default: on)")
    parser.add_argument("--max-calls", type=int, default=3, help="calls a constrained answer may hold (evaluation.max_calls)")
    parser.add_argument("--requests", type=int, default=60, help="seeded subset of test requests for accuracy")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--latency-prompts", type=int, default=6)
    parser.add_argument("--new-tokens", type=int, default=24)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--calibration-rows", type=int, default=16)
    parser.add_argument("--out", type=Path, default=PROJECT / "data" / "08_reporting" / "compression_table.json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    for noisy in ("neural_compressor", "transformers", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    requests = sample_requests(load_jsonl(args.test), args.requests, args.seed)
    rows = []
    for name, path in (("student", args.student), ("pruned", args.pruned), ("recovered", args.recovered)):
        rows.append(measure(name, ModelDataset(filepath=str(path)).load(), None, requests, args))
    recovered = ModelDataset(filepath=str(args.recovered)).load()
    calibration = calibration_batches(
        calibration_rows(args.distill_train, args.calibration_rows, args.seed), recovered.load_tokenizer(), args.tools_mode
    )
    with tempfile.TemporaryDirectory(prefix="compression-table-") as scratch:
        for method in args.methods:
            recipe = RECIPES[method]
            started = time.perf_counter()
            model = quantize(recovered.load_model(), recipe, calibration if recipe.method == "gptq" else None)
            quantize_s = time.perf_counter() - started
            dataset = ModelDataset(filepath=f"{scratch}/{method}")
            dataset.save(ModelBundle(model, recovered.load_tokenizer(), quantization=recipe))
            del model
            row = measure(f"recovered + {method}", dataset.load(), rows[2]["params"], requests, args)
            row["quantize_s"] = round(quantize_s, 1)
            rows.append(row)

    # Latency in rounds: every model once a round, the bandwidth measured each round too.
    prompts = [prompt_text(r, rows[0]["bundle"].tokenizer, args.tools_mode) for r in requests[: args.latency_prompts]]
    bandwidths, timings = [], {row["name"]: [] for row in rows}
    for round_index in range(args.rounds):
        bandwidths.append(memory_bandwidth_gbs(threads=args.threads))
        for row in rows:
            timings[row["name"]].append(
                measure_latency(row["bundle"].model, row["bundle"].tokenizer, prompts, new_tokens=args.new_tokens, threads=args.threads)
            )
        logging.info("latency round %d of %d done", round_index + 1, args.rounds)
    bandwidth = max(bandwidths)

    student = rows[0]
    for row in rows:
        model = row.pop("bundle").model
        runs = timings[row["name"]]
        # The best round of each model: the one least disturbed by other load.
        best = min(runs, key=lambda run: run.p50_ms)
        weight_bytes = weight_bytes_per_token(model)  # after generation: unpacked weights count as read
        bound = bandwidth * 1e9 / weight_bytes
        row.update(
            p50_ms=best.p50_ms,
            p95_ms=best.p95_ms,
            prefill_p50_ms=best.prefill_p50_ms,
            decode_tokens_per_s=best.decode_tokens_per_s,
            weight_mb_per_token=round(weight_bytes / 1e6, 1),
            bound_tokens_per_s=round(bound, 1),
            share_of_bound=round(best.decode_tokens_per_s / bound, 3),
            all_rounds_p50_ms=[run.p50_ms for run in runs],
        )
    for row in rows:
        row["size_vs_student"] = round(row["size_bytes"] / student["size_bytes"], 3)
        row["speedup_p50"] = round(student["p50_ms"] / row["p50_ms"], 2)
        row["decode_speedup"] = round(row["decode_tokens_per_s"] / student["decode_tokens_per_s"], 2)
    report = {
        "command": " ".join(sys.argv),
        "threads": args.threads,
        "bandwidth_gbs": bandwidth,
        "bandwidth_rounds_gbs": bandwidths,
        "requests": len(requests),
        "latency": {"prompts": len(prompts), "new_tokens": args.new_tokens, "rounds": args.rounds},
        "models": {"student": str(args.student), "pruned": str(args.pruned), "recovered": str(args.recovered)},
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(markdown(report))


def markdown(report: dict) -> str:
    header = (
        "| model | params (M) | size MB | size vs student | exact match | similarity | p50 ms | p95 ms | prefill ms "
        "| decode tok/s | speed-up p50 | weight MB/token | bound tok/s | share of bound |"
    )
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    for row in report["rows"]:
        lines.append(
            f"| {row['name']} | {row['params'] / 1e6:.1f} | {row['size_bytes'] / 1e6:.1f} | {row['size_vs_student']:.3f} "
            f"| {row['exact_match']:.3f} | {row['similarity']:.3f} | {row['p50_ms']:.0f} | {row['p95_ms']:.0f} "
            f"| {row['prefill_p50_ms']:.0f} | {row['decode_tokens_per_s']:.1f} | {row['speedup_p50']:.2f}x "
            f"| {row['weight_mb_per_token']:.1f} | {row['bound_tokens_per_s']:.0f} | {row['share_of_bound']:.0%} |"
        )
    lines.append(
        f"\n{report['threads']} threads; memory bandwidth {report['bandwidth_gbs']} GB/s (best of {report['bandwidth_rounds_gbs']}); "
        f"accuracy on {report['requests']} test requests; latency: {report['latency']['prompts']} prompts x "
        f"{report['latency']['new_tokens']} new tokens, best of {report['latency']['rounds']} rounds."
    )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
