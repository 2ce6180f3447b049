"""How long does the project take to run, pipeline by pipeline, on this machine?

Runs ``kedro run`` in this project, either once for everything (``--whole``) or once per
pipeline in the order of the recipe, and reports each run's wall time and the peak memory of
its process tree. The teacher's response cache makes a second run much faster, so the teacher's
own usage record (requests sent, cache hits) is printed next to its time: clear the cache
(``--clear-teacher-cache``) to time a first run.

    .venv/bin/python benchmarks/run_time.py                      # default env, per pipeline
    .venv/bin/python benchmarks/run_time.py --env smoke --whole  # the smoke run in one go

Results also go to ``<output_root>/08_reporting/run_time_<env>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
ORDER = ["data", "teacher", "filtering", "student", "compression", "evaluation"]
OUTPUT_ROOT = {"base": "data", "smoke": "data/smoke"}


def kedro_run(env: str, pipelines: list[str] | None, extra: list[str]) -> dict:
    command = [str(PROJECT / ".venv" / "bin" / "kedro"), "run", "--env", env, *extra]
    if pipelines:
        command += ["--pipelines", ",".join(pipelines)]
    environment = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "true", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    print("$", " ".join(command), flush=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    completed = subprocess.run(command, cwd=PROJECT, env=environment)
    wall_s = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {
        "pipelines": ",".join(pipelines) if pipelines else "__default__",
        "returncode": completed.returncode,
        "wall_s": round(wall_s, 1),
        "cpu_s": round((after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime), 1),
        # ru_maxrss of children is the largest single process seen so far (KiB on Linux).
        "peak_rss_mb_so_far": round(after.ru_maxrss / 1024),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="base")
    parser.add_argument("--whole", action="store_true", help="one `kedro run` for every pipeline")
    parser.add_argument("--pipelines", nargs="+", default=ORDER, help="per-pipeline runs, in this order")
    parser.add_argument("--clear-teacher-cache", action="store_true")
    parser.add_argument("--kedro-args", nargs=argparse.REMAINDER, default=[], help="passed on to every kedro run")
    args = parser.parse_args()
    output_root = PROJECT / OUTPUT_ROOT.get(args.env, "data")
    if args.clear_teacher_cache:
        subprocess.run([sys.executable, "-m", "supertiny.teacher.cache", "clear", str(output_root / "02_intermediate" / "teacher_cache")], check=True)

    runs = [kedro_run(args.env, None, args.kedro_args)] if args.whole else [
        kedro_run(args.env, [name], args.kedro_args) for name in args.pipelines
    ]
    usage_file = output_root / "08_reporting" / "teacher_usage.json"
    teacher = json.loads(usage_file.read_text()) if usage_file.exists() else {}
    result = {
        "env": args.env,
        "runs": runs,
        "total_wall_s": round(sum(run["wall_s"] for run in runs), 1),
        "all_succeeded": all(run["returncode"] == 0 for run in runs),
        "teacher": {key: teacher.get(key) for key in ("requests_sent", "cache_hits", "wall_s", "requests_per_s")},
    }
    print(f"\n{'pipelines':<14} {'rc':>3} {'wall s':>8} {'cpu s':>8} {'peak MiB':>8}")
    for run in runs:
        print(f"{run['pipelines']:<14} {run['returncode']:>3} {run['wall_s']:>8.1f} {run['cpu_s']:>8.1f} {run['peak_rss_mb_so_far']:>8}")
    print(f"{'total':<14} {'':>3} {result['total_wall_s']:>8.1f}   ({result['total_wall_s'] / 60:.1f} min)")
    print("teacher usage:", result["teacher"])
    report = output_root / "08_reporting" / f"run_time_{args.env}.json"
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(json.dumps(result, indent=2) + "\n")
    print("written", report.relative_to(PROJECT))
    sys.exit(0 if result["all_succeeded"] else 1)


if __name__ == "__main__":
    main()
