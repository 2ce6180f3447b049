"""Active labelling against random selection at the same teacher budget, one round each.

    .venv/bin/python benchmarks/active_labelling.py --extra 240 --pool 480

Needs a default `kedro run` first: round 1 is its random ``teacher_selection`` and its final
model (``quantized_model``, or ``--model``). Round 2 keeps round 1's requests (their teacher
answers are in the cache, so they cost nothing again) and spends ``--extra`` more requests on
the teacher, chosen two ways, each in its own output folder under
``<output_root>/08_reporting/active_labelling/<arm>`` with this project's code and config:

- ``random``: ``teacher.select: random``;
- ``least_confident``: the round-1 model answers ``--pool`` of the requests left (served, as the
  cascade does) and the teacher labels the ``--extra`` it is least sure of
  (``teacher.selection.signal``).

Each arm runs the data, model, teacher, filtering and student pipelines (``kedro run --conf-source``),
then its ``student_sft`` is evaluated on the default run's test requests by the evaluation's
own node. The table: exact match with its 95% interval, call and no-call accuracy, the examples
distillation kept, and what the chosen requests were (the share whose reference is no call).
JSON in ``<output_root>/08_reporting/active_labelling.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "true")

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT / "benchmarks"))

from _common import load_context, write_result  # noqa: E402

KEDRO = str(Path(sys.executable).with_name("kedro"))
ARMS = ("random", "least_confident")
PIPELINES = "data,model,teacher,filtering,student"  # model: the base model the teacher serves


def arm_conf(root: Path, arm: str, teacher: dict[str, Any], output_root: Path) -> Path:
    """A conf folder: the project's base, and an ``arm`` environment with this arm's output root
    and teacher selection (conf/local is left out, as in a fresh clone)."""
    conf = root / "conf"
    shutil.rmtree(conf, ignore_errors=True)
    shutil.copytree(PROJECT / "conf" / "base", conf / "base")
    (conf / arm).mkdir(parents=True)
    (conf / arm / "globals.yml").write_text(yaml.safe_dump({"output_root": str(output_root)}))
    (conf / arm / "parameters_teacher.yml").write_text(yaml.safe_dump({"teacher": teacher}))
    return conf


def run_arm(arm: str, args: argparse.Namespace, round_1: dict[str, Any], context: Any) -> dict[str, Any]:
    from supertiny.datasets import ModelDirectory
    from supertiny.pipelines.evaluation.nodes import evaluate_local_model, evaluation_requests

    root = round_1["reporting"] / "active_labelling" / arm
    output_root = root / "data"
    teacher = {
        **context.params["teacher"],
        "max_requests": round_1["labelled"] + args.extra,
        # One cache for both arms and round 1: round 1's answers are not paid for again.
        "cache_dir": str(round_1["cache_dir"]),
        "select": arm,
        "selection": {"labelled": str(round_1["selection"]), "model_dir": str(round_1["model"]), "signal": args.signal,
                      "pool": args.pool},
    }
    conf = arm_conf(root, arm, teacher, output_root)
    started = time.perf_counter()
    command = [KEDRO, "run", "--conf-source", str(conf), "--env", arm, "--pipelines", PIPELINES]
    print(f"[{arm}] {' '.join(command)}", flush=True)
    with (root / "kedro_run.log").open("w") as log:
        subprocess.run(command, cwd=PROJECT, stdout=log, stderr=subprocess.STDOUT, check=True)
    run_s = time.perf_counter() - started
    arm_context = load_context(PROJECT, arm, conf_source=str(conf))
    catalog, params = arm_context.catalog, arm_context.params
    requests = evaluation_requests(catalog.load("test_requests"), params["evaluation"])
    row, _ = evaluate_local_model(catalog.load("student_sft"), requests, params["student"]["tools_mode"], params["evaluation"],
                                  params["runtime"], stage=f"student_sft ({arm})")
    by_id = {r["id"]: r for r in catalog.load("teacher_requests")}
    chosen = [by_id[row["request_id"]] for row in catalog.load("teacher_selection") if row["selected"]]
    new = [request for request in chosen if request["id"] not in round_1["ids"]]
    labelled = [request for request in new if request.get("reference") is not None]
    usage = catalog.load("teacher_usage")
    summary = catalog.load("filter_summary")
    return {
        "arm": arm,
        "exact_match": row["exact_match"], "exact_match_ci": [row["exact_match_low"], row["exact_match_high"]],
        "call_exact_match": row.get("call_exact_match"), "no_call_accuracy": row.get("no_call_accuracy"),
        "valid_rate": row["valid_rate"], "n": row["n"],
        "requests_labelled": len(chosen), "new_requests": len(new),
        "new_no_call_share": round(sum(not r["reference"] for r in labelled) / len(labelled), 3) if labelled else None,
        "teacher_requests_sent": usage.get("requests_sent"), "examples_kept": summary["examples_kept"],
        "run_s": round(run_s, 1),
    }


def table(round_1_row: dict[str, Any] | None, rows: list[dict[str, Any]]) -> str:
    def number(value: Any, digits: int = 3) -> str:
        return "–" if value is None else f"{value:.{digits}f}"

    lines = ["| round 2 selection | requests labelled (new) | new no-call share | examples kept | exact match [95%] | call exact | no-call acc. | run s |",
             "|---|---|---|---|---|---|---|---|"]
    if round_1_row:
        lines.append(f"| round 1 (random), its student_sft | {round_1_row['labelled']} | – | – | {number(round_1_row['exact_match'])} | "
                     f"{number(round_1_row.get('call_exact_match'))} | {number(round_1_row.get('no_call_accuracy'))} | – |")
    for row in rows:
        low, high = row["exact_match_ci"]
        lines.append(f"| {row['arm']} | {row['requests_labelled']} ({row['new_requests']}) | {number(row['new_no_call_share'], 2)} | "
                     f"{row['examples_kept']} | {number(row['exact_match'])} [{number(low, 2)}, {number(high, 2)}] | "
                     f"{number(row['call_exact_match'])} | {number(row['no_call_accuracy'])} | {row['run_s']:.0f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--project", type=Path, default=PROJECT)
    parser.add_argument("--env", default=None, help="the round-1 run's environment")
    parser.add_argument("--extra", type=int, default=240, help="requests the teacher labels in round 2")
    parser.add_argument("--pool", type=int, default=480, help="least_confident: requests the round-1 model answers to rank them")
    parser.add_argument("--signal", default="min", choices=("min", "mean"))
    parser.add_argument("--model", default="quantized_model", help="the round-1 model (a catalog model)")
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=ARMS)
    args = parser.parse_args()

    context = load_context(args.project, args.env)
    catalog = context.catalog
    output_root = args.project / context.config_loader["globals"]["output_root"]
    reporting = output_root / "08_reporting"
    selection = reporting / "teacher_selection.jsonl"
    if not selection.is_file():
        sys.exit(f"{selection} is missing: run `kedro run` (round 1) first")
    chosen = [row["request_id"] for row in catalog.load("teacher_selection") if row["selected"]]
    metrics = {row["stage"]: row for row in catalog.load("stage_metrics").to_dict("records")}
    round_1 = {
        "reporting": reporting, "selection": selection, "labelled": len(chosen), "ids": set(chosen),
        "model": catalog.load(args.model).path.resolve(),
        "cache_dir": Path(context.params["teacher"]["cache_dir"]).resolve(),
    }
    rows = [run_arm(arm, args, round_1, context) for arm in args.arms]
    round_1_row = {**metrics["student_sft"], "labelled": len(chosen)} if "student_sft" in metrics else None
    print(table(round_1_row, rows))
    write_result(context, args.project, "active_labelling", {"round_1": round_1_row and {
        k: round_1_row.get(k) for k in ("exact_match", "call_exact_match", "no_call_accuracy", "labelled")}, "arms": rows})


if __name__ == "__main__":
    main()
