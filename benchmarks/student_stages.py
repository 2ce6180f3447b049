"""Does each student stage help? Accuracy on test requests, training cost and memory, as ratios.

    .venv/bin/python benchmarks/student_stages.py --memory-steps 3
    .venv/bin/python benchmarks/student_stages.py --n 100 --models teacher student_sft   # scored afresh
    .venv/bin/python benchmarks/student_stages.py --modes --n 60 [--model DIR]          # prompt x decoding

Needs `kedro run` of the data, (teacher, filtering) and student pipelines first. It reads the
catalog of the chosen environment and:

1. shows exact match and similarity of the teacher, base_model, student_sft, student_rl (and
   student_kd) from the evaluation pipeline's ``stage_metrics``; or, with ``--models``, scores
   the named catalog models (and/or ``teacher``) afresh on a seeded subset of N test requests,
   by the evaluation's own functions;
2. reads each stage's training wall time, tokens/s and peak memory from student_training_summary;
3. with --memory-steps K: runs K SFT steps twice, each in a fresh process (so peak memory is that
   run's alone), with activation (gradient) checkpointing off and on, same data and batch.

With --modes it does only this instead: one SFT student (--model, default the catalog's
student_sft) on the same N test requests in every tools mode (``supertiny.prompt.TOOLS_MODES``),
each unconstrained and constrained (``evaluation.max_calls`` from the catalog's parameters).
Per row: exact match with its 95% Wilson interval, valid rate, no-call accuracy, call exact match
(``inference.evaluate_model``), batch-1 p50 of the first --latency-prompts requests answered to
their end (``supertiny.latency``, under their grammars when constrained, so both are what a
caller waits for) and the mean prompt tokens. A Markdown table, and JSON in
``<output_root>/08_reporting/student_modes.json``. A student trained in one mode meets the
others unseen: the table says what a mode costs, and whether the grammar rescues a prompt the
model was not trained on.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "true")

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT / "benchmarks"))

from _common import load_context  # noqa: E402



def teacher_accuracy(requests: list[dict], context: Any) -> dict[str, Any]:
    """The teacher's greedy accuracy on these requests: the evaluation pipeline's own node."""
    from supertiny.pipelines.evaluation.nodes import evaluate_teacher

    catalog, params = context.catalog, context.params
    row, _, _ = evaluate_teacher(requests, catalog.load("teacher_seed_examples"), catalog.load("base_model"),
                                 params["teacher"], params["evaluation"])
    return row


def probe_sft_memory(project: Path, env: str | None, steps: int, checkpointing: bool) -> dict[str, Any]:
    """Run ``steps`` SFT steps in this process; the peak memory and speed the stage logged."""
    from supertiny.runtime import resolve_device
    from supertiny.training.sft import run_sft

    context = load_context(project, env)
    student = json.loads(json.dumps(context.params["student"]))
    args = student["sft"]["args"]
    args |= {"max_steps": steps, "logging_steps": 1, "activation_checkpointing": checkpointing}
    student["sft"]["early_stopping_patience"] = None
    rows = context.catalog.load("distill_train")[: steps * args["per_device_train_batch_size"] * args.get("gradient_accumulation_steps", 1)]
    _, log = run_sft(context.catalog.load("base_model"), rows, [], student, resolve_device(context.params["runtime"]))
    closing = log[-1]  # the trainer's closing log: totals over the run
    return {
        "peak_rss_mb": max(row["peak_rss_mb"] for row in log),
        "s_per_step": round(closing["elapsed_s"] / closing["step"], 2),
        "tokens_per_s": closing["tokens_per_s"],
    }


def memory_comparison(project: Path, env: str | None, steps: int) -> dict[bool, dict[str, Any]]:
    results = {}
    for checkpointing in (False, True):
        command = [sys.executable, __file__, "--project", str(project), "--probe-checkpointing", str(checkpointing), "--memory-steps", str(steps)]
        if env:
            command += ["--env", env]
        output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        results[checkpointing] = json.loads(output.strip().splitlines()[-1])
    return results


def compare_modes(model_dir: Any, requests: list[dict], evaluation: dict[str, Any], args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every tools mode x constrained off/on for one model, side by side on the same requests."""
    import torch

    from supertiny.inference import AnswerGrammars, evaluate_model
    from supertiny.latency import measure_latency
    from supertiny.prompt import TOOLS_MODES, prompt_text, prompt_tokens

    torch.set_num_threads(args.threads)
    bundle = model_dir.load()
    bundle.model.eval()
    tokenizer, max_calls = bundle.tokenizer, evaluation.get("max_calls")
    grammars = AnswerGrammars(tokenizer, bundle.model.config.vocab_size, max_calls)
    timed = requests[: args.latency_prompts]
    rows = []
    for tools_mode in TOOLS_MODES:
        for constrained in (False, True):
            settings = {"tools_mode": tools_mode, "constrained": constrained, "max_calls": max_calls,
                        "max_new_tokens": args.max_new_tokens, "batch_size": args.batch_size}
            _, metrics = evaluate_model(bundle, requests, settings)
            processors = (lambda i: [grammars.processor([grammars.compile(timed[i]["tools"])])]) if constrained else None
            latency = measure_latency(bundle.model, tokenizer, [prompt_text(r, tokenizer, tools_mode) for r in timed],
                                      new_tokens=args.max_new_tokens, threads=args.threads, to_end=True, logits_processors=processors)
            rows.append({
                "tools_mode": tools_mode, "constrained": constrained, **metrics,
                "p50_ms": latency.p50_ms, "decode_tokens_per_s": latency.decode_tokens_per_s,
                "prompt_tokens": round(sum(prompt_tokens(r, tokenizer, tools_mode) for r in requests) / len(requests), 1),
            })
            logging.info("%s, constrained %s: exact match %s, p50 %.0f ms", tools_mode, constrained, metrics["exact_match"], latency.p50_ms)
    return rows


def modes_table(rows: list[dict[str, Any]]) -> str:
    """The comparison as a Markdown table."""
    def number(value: float | None, digits: int = 3) -> str:
        return "–" if value is None else f"{value:.{digits}f}"

    lines = ["| tools_mode | constrained | exact match [95%] | valid | no-call | call exact | p50 ms | decode tok/s | prompt tokens | fallbacks |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        exact = f"{number(r['exact_match'])} [{number(r['exact_match_low'])}, {number(r['exact_match_high'])}]"
        lines.append(f"| {r['tools_mode']} | {'on' if r['constrained'] else 'off'} | {exact} | {number(r['valid_rate'])} | "
                     f"{number(r['no_call_accuracy'])} | {number(r['call_exact_match'])} | {number(r['p50_ms'], 0)} | "
                     f"{number(r['decode_tokens_per_s'], 1)} | {r['prompt_tokens']:.0f} | {r['unconstrained_fallbacks']} |")
    return "\n".join(lines)


def ratio(value: float | None, reference: float | None) -> str:
    return f"{value / reference:.2f}x" if value is not None and reference else "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100, help="test requests scored (a seeded subset)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--env", default=None, help="Kedro environment (default: the embedded default)")
    parser.add_argument("--project", type=Path, default=PROJECT, help="the Kedro project whose catalog is read")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=96)
    parser.add_argument("--models", nargs="+", default=[],
                        help="score afresh: catalog models and/or 'teacher' (default: read stage_metrics)")
    parser.add_argument("--memory-steps", type=int, default=0, help="SFT steps per memory probe (0: skip)")
    parser.add_argument("--modes", action="store_true", help="compare every tools mode x constrained off/on for one model instead")
    parser.add_argument("--model", type=Path, default=None, help="--modes: the SFT model directory (default: the catalog's student_sft)")
    parser.add_argument("--latency-prompts", type=int, default=8, help="--modes: requests timed at batch 1")
    parser.add_argument("--threads", type=int, default=2, help="--modes: torch threads")
    parser.add_argument("--probe-checkpointing", choices=["True", "False"], help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.probe_checkpointing is not None:  # a memory probe, in its own process
        logging.basicConfig(level=logging.WARNING)
        print(json.dumps(probe_sft_memory(args.project, args.env, args.memory_steps, args.probe_checkpointing == "True")))
        return
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    from supertiny.inference import evaluate_model, sample_requests

    context = load_context(args.project, args.env)
    catalog, student, evaluation = context.catalog, context.params["student"], context.params["evaluation"]
    requests = sample_requests(catalog.load("test_requests"), args.n, args.seed)
    if args.modes:
        from supertiny.datasets import ModelDirectory

        model_dir = ModelDirectory(args.model) if args.model else catalog.load("student_sft")
        rows = compare_modes(model_dir, requests, evaluation, args)
        print(f"\n{model_dir.path}: {len(requests)} test requests, greedy, max_calls {evaluation.get('max_calls')}, "
              f"batch-1 p50 of {min(args.latency_prompts, len(requests))} answered to their end, {args.threads} threads\n")
        print(modes_table(rows))
        out = args.project / context.config_loader["globals"]["output_root"] / "08_reporting" / "student_modes.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"model": str(model_dir.path), "requests": len(requests), "rows": rows}, indent=2) + "\n")
        print(f"\nWritten to {out}")
        return
    summary = catalog.load("student_training_summary")
    settings = {"tools_mode": student["tools_mode"], "constrained": evaluation["constrained"], "max_calls": evaluation.get("max_calls"),
                "max_new_tokens": args.max_new_tokens, "batch_size": args.batch_size}

    accuracy: dict[str, dict[str, Any]] = {}
    if not args.models:
        metrics = catalog.load("stage_metrics")
        for row in metrics.to_dict("records"):
            if row["stage"] in ("teacher", "base", "student_sft", "student_rl", "student_kd"):
                accuracy[row["stage"]] = row
        requests = [None] * int(metrics["n"].max())
    for name in args.models:
        if name == "teacher":
            accuracy[name] = teacher_accuracy(requests, context)
        elif name != "student_kd" or summary["kd"]["status"] == "trained":
            _, accuracy[name] = evaluate_model(catalog.load(name), requests, settings)
    memory = memory_comparison(args.project, args.env, args.memory_steps) if args.memory_steps else None

    source = "scored now" if args.models else "from stage_metrics"
    print(f"\nTest requests: {len(requests)} ({source}), tools_mode {student['tools_mode']}, greedy, stages {student['stages']}")
    reference = accuracy.get("teacher", {}).get("exact_match")
    header = f"{'model':<12} {'exact':>6} {'similarity':>10} {'valid':>6} {'no-call':>7} {'exact vs teacher':>16} {'req/s':>6}"
    print(header + "\n" + "-" * len(header))
    for name, m in accuracy.items():
        no_call = "-" if m["no_call_accuracy"] is None else f"{m['no_call_accuracy']:.3f}"
        print(
            f"{name:<12} {m['exact_match']:>6.3f} {m['similarity']:>10.3f} {m['valid_rate']:>6.3f} {no_call:>7} "
            f"{ratio(m['exact_match'], reference):>16} {m.get('requests_per_s') or '-':>6}"
        )

    print(f"\nTraining (student_training_summary)\n{'stage':<6} {'status':<8} {'steps':>5} {'wall s':>7} {'tokens':>7} {'tokens/s':>8} {'peak MiB':>8}  last")
    for stage, entry in summary.items():
        if entry["status"] != "trained":
            print(f"{stage:<6} {entry['status']:<8}")
            continue
        last = ", ".join(f"{k.removeprefix('last_')} {v}" for k, v in entry.items() if k.startswith(("last_", "best_")))
        print(
            f"{stage:<6} {'trained':<8} {entry['steps']:>5} {entry['wall_s']:>7.0f} {entry['tokens']:>7} "
            f"{entry['tokens_per_s']:>8.1f} {entry['peak_rss_mb']:>8.0f}  {last}"
        )

    if memory:
        off, on = memory[False], memory[True]
        print(f"\nSFT peak memory, {args.memory_steps} steps, batch {student['sft']['args']['per_device_train_batch_size']}, fresh process each")
        print(f"{'activation checkpointing':<25} {'peak MiB':>8} {'s/step':>7} {'tokens/s':>8}")
        for label, m in (("off", off), ("on", on)):
            print(f"{label:<25} {m['peak_rss_mb']:>8.0f} {m['s_per_step']:>7.2f} {m['tokens_per_s']:>8.1f}")
        print(f"{'on / off':<25} {ratio(on['peak_rss_mb'], off['peak_rss_mb']):>8} {ratio(on['s_per_step'], off['s_per_step']):>7}")


if __name__ == "__main__":
    main()
