"""The final model's compression settings side by side: how many decoder layers it can lose
(``compression.pruning.depth.drop_layers``), how long recovery runs, and how INT8 treats the MLP's
down projections (``keep_float``, ``smooth_alpha``), through the compression pipeline's own nodes.

A variant is ``key=value`` pairs joined by commas (keys: ``drop``, ``sparsity`` (the MLP's
``target_sparsity``), ``recovery`` (steps), ``alpha`` (``smooth_alpha``, ``-`` for none),
``keep`` (``keep_float``: ``down`` or ``-``)); a key left out keeps the catalog's setting.
For each variant: ``prune_student`` (the least important layers dropped, then INC's MLP
pruning while fine-tuning), ``recover_pruned`` (distillation from the unpruned student) and
``quantize_recovered``; variants that differ only in quantisation share their recovered model.
Every model is saved through ``ModelDataset`` and loaded back. Then the evaluation's own node
(``evaluate_local_model``) scores each final model on the same requests (``--split``:
validation by default, where settings are chosen; ``test`` to report): exact match with its 95%
interval, call exact match, valid rate. Batch-1 latency is measured afterwards in rounds, every
model once a round on the served path (``supertiny.latency``, ``decoding.Decoder``, as
``supertiny serve`` answers), and the best round of each is reported.

    .venv/bin/python benchmarks/final_model.py --variants drop=0 drop=8 drop=0,keep=-,alpha=0.5 --n 150
    .venv/bin/python benchmarks/final_model.py --variants sparsity=0.5 sparsity=0.25 --n 150

Needs ``kedro run`` up to the student (student_model, distill_train, val_requests or
test_requests). Writes a Markdown table and ``<output_root>/08_reporting/final_model.json``.
"""

from __future__ import annotations

import argparse
import copy
import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "true")

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT / "benchmarks"))

from _common import load_context, write_result  # noqa: E402



KEEP_FLOAT = {"down": ["mlp\\.down_proj$"], "-": []}


def variant_settings(text: str, compression: dict[str, Any]) -> dict[str, Any]:
    """The catalog's compression settings with a variant's changes (``drop=8,alpha=0.5``)."""
    settings = copy.deepcopy(compression)
    for pair in text.split(","):
        key, _, value = pair.partition("=")
        if key == "drop":
            settings["pruning"]["depth"]["drop_layers"] = int(value)
        elif key == "sparsity":
            settings["pruning"]["mlp"]["target_sparsity"] = float(value)
        elif key == "recovery":
            settings["recovery"]["args"]["max_steps"] = int(value)
        elif key == "alpha":
            settings["quantization"]["smooth_alpha"] = None if value == "-" else float(value)
        elif key == "keep":
            settings["quantization"]["keep_float"] = KEEP_FLOAT[value]
        else:
            raise SystemExit(f"variant {text!r}: unknown key {key!r} (drop, sparsity, recovery, alpha, keep)")
    return settings


def compress(text: str, context: Any, scratch: Path, recovered_models: dict[tuple, tuple]) -> tuple[Any, dict[str, Any]]:
    """The compression pipeline's three nodes for one variant; the final model's directory and
    timings. ``recovered_models`` keeps each (drop, sparsity, recovery steps)'s recovered model
    for the variants that differ from it only in quantisation."""
    from supertiny.compression.settings import recovery_steps
    from supertiny.datasets import ModelDataset
    from supertiny.pipelines.compression.nodes import prune_student, quantize_recovered, recover_pruned

    catalog, params = context.catalog, context.params
    compression = variant_settings(text, params["compression"])
    drop, steps = compression["pruning"]["depth"]["drop_layers"], recovery_steps(compression["recovery"])
    sparsity = compression["pruning"]["mlp"]["target_sparsity"]
    recovered_as = (drop, sparsity, steps)
    student_model, distill_train = catalog.load("student_model"), catalog.load("distill_train")
    student, runtime = params["student"], params["runtime"]

    def saved(bundle: Any, stage: str) -> Any:
        dataset = ModelDataset(filepath=str(scratch / stage))
        dataset.save(bundle)
        return dataset.load()

    started = time.perf_counter()
    if recovered_as not in recovered_models:
        pruned_bundle, pruning_log = prune_student(student_model, distill_train, compression, student, runtime)
        pruned = saved(pruned_bundle, f"drop{drop}_sparsity{sparsity}_pruned")
        del pruned_bundle
        recovered_bundle, recovery_log = recover_pruned(pruned, student_model, distill_train, compression, student, runtime)
        recovered_models[recovered_as] = (saved(recovered_bundle, f"drop{drop}_sparsity{sparsity}_recovery{steps}"), pruning_log, recovery_log)
        del recovered_bundle
    recovered, pruning_log, recovery_log = recovered_models[recovered_as]
    quantized_bundle, quantization_log = quantize_recovered(recovered, distill_train, compression, student, runtime)
    final = saved(quantized_bundle, f"{text}_quantized")
    quantization = compression["quantization"]
    return final, {
        "variant": text,
        "drop_layers": drop,
        "mlp_sparsity": sparsity,
        "recovery_steps": steps,
        "keep_float": quantization.get("keep_float") or [],
        "smooth_alpha": quantization.get("smooth_alpha"),
        "layers": pruning_log["after"]["layers"],
        "params": pruning_log["after"]["params"],
        "dropped": pruning_log["layers_dropped"],
        "prune_s": pruning_log["seconds"],
        "recovery_s": recovery_log["seconds"],
        "quantize_s": quantization_log["seconds"],
        "seconds_this_variant": round(time.perf_counter() - started, 1),
    }


def served_latency_rounds(models: dict[str, Any], requests: list[dict], context: Any, rounds: int) -> dict[str, list[Any]]:
    """Every model's served batch-1 latency, once a round, so that load from other processes
    falls on all of them alike."""
    from supertiny.decoding import build_decoder, decoder_settings
    from supertiny.inference import answer_grammars
    from supertiny.latency import measure_served_latency
    from supertiny.prompt import prompt_text

    evaluation, tools_mode = context.params["evaluation"], context.params["student"]["tools_mode"]
    prompts_count = evaluation["latency"]["prompts"]
    prepared = {}
    for name, directory in models.items():
        bundle = directory.load()
        bundle.model.eval()
        tokenizer = bundle.tokenizer
        timed = requests[:prompts_count]
        prepared[name] = (
            build_decoder(bundle.model, tokenizer, tools_mode, **decoder_settings(evaluation)),
            [prompt_text(request, tokenizer, tools_mode) for request in timed],
            answer_grammars(bundle.model, tokenizer, timed, evaluation.get("max_calls")),
        )
    timings: dict[str, list[Any]] = {name: [] for name in models}
    for round_index in range(rounds):
        for name, (decoder, prompts, grammars) in prepared.items():
            timings[name].append(measure_served_latency(decoder, prompts, grammars, max_new_tokens=evaluation["max_new_tokens"],
                                                        threads=evaluation["threads"], warmup=evaluation["latency"]["warmup"]))
        logging.info("latency round %d of %d done", round_index + 1, rounds)
    return timings


def markdown(rows: list[dict[str, Any]]) -> str:
    header = ("| variant | layers | params (M) | prune + recovery + quantise s | exact match [95%] | call exact | valid | "
              "p50 ms | prefill ms | decode tok/s | p50 vs first |")
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    for row in rows:
        lines.append(
            f"| {row['variant']} | {row['layers']} | {row['params'] / 1e6:.1f} | {row['prune_s'] + row['recovery_s'] + row['quantize_s']:.0f} | "
            f"{row['exact_match']:.3f} [{row['exact_match_low']:.2f}, {row['exact_match_high']:.2f}] | {row['call_exact_match']:.3f} | "
            f"{row['valid_rate']:.3f} | {row['p50_ms']:.0f} | {row['prefill_p50_ms']:.0f} | {row['decode_tokens_per_s']} | "
            f"{row['p50_vs_first']:.2f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--project", type=Path, default=PROJECT)
    parser.add_argument("--env", default=None)
    parser.add_argument("--variants", nargs="+", default=["drop=0", "drop=8", "drop=0,keep=-,alpha=0.5"],
                        help="key=value pairs joined by commas (drop, sparsity, recovery, alpha, keep); the first is the reference")
    parser.add_argument("--split", choices=["val", "test"], default="val", help="the requests scored: val_requests or test_requests")
    parser.add_argument("--n", type=int, default=150, help="requests scored (seeded subset)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rounds", type=int, default=3, help="latency rounds")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    for noisy in ("neural_compressor", "transformers", "httpx", "kedro"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    from supertiny.inference import sample_requests
    from supertiny.pipelines.evaluation.nodes import evaluate_local_model

    context = load_context(args.project, args.env)
    params = context.params
    requests = sample_requests(context.catalog.load(f"{args.split}_requests"), args.n, args.seed)
    # Latency comes later, in rounds: the evaluation node times one prompt here.
    evaluation = {**params["evaluation"], "latency": {**params["evaluation"]["latency"], "prompts": 1}}

    rows, finals, recovered_models = [], {}, {}
    with tempfile.TemporaryDirectory(prefix="final-model-") as scratch:
        for text in args.variants:
            final, row = compress(text, context, Path(scratch), recovered_models)
            metrics, _ = evaluate_local_model(final, requests, params["student"]["tools_mode"], evaluation, params["runtime"], row["variant"])
            row.update({key: metrics[key] for key in ("exact_match", "exact_match_low", "exact_match_high", "call_exact_match",
                                                      "no_call_accuracy", "valid_rate", "size_mb")})
            logging.info("%s: exact match %.3f, %d layers", row["variant"], row["exact_match"], row["layers"])
            rows.append(row)
            finals[row["variant"]] = final
        timings = served_latency_rounds(finals, requests, context, args.rounds)
    for row in rows:
        best = min(timings[row["variant"]], key=lambda latency: latency.p50_ms)
        row.update(p50_ms=best.p50_ms, p95_ms=best.p95_ms, prefill_p50_ms=best.prefill_p50_ms,
                   decode_tokens_per_s=best.decode_tokens_per_s, all_rounds_p50_ms=[t.p50_ms for t in timings[row["variant"]]])
    for row in rows:
        row["p50_vs_first"] = round(row["p50_ms"] / rows[0]["p50_ms"], 3)

    table = markdown(rows)
    print(f"\n{len(requests)} {args.split} requests, served path, latency: best of {args.rounds} rounds of "
          f"{params['evaluation']['latency']['prompts']} prompts\n\n{table}")
    write_result(context, args.project, "final_model", {"split": args.split, "requests": len(requests), "rows": rows})


if __name__ == "__main__":
    main()
