"""What does each verifier accept, and how often is what it accepts right?

Runs the filtering pipeline's own steps (``run_filtering``) on the teacher's candidates (nothing is
saved), with the configured verifiers and then with the LLM judge added before the reference
check, so the judge sees every well-formed candidate and its verdicts can be compared with the
references: acceptance by verifier and overall, the precision of the consistency verifier
alone on labelled requests, and the judge's precision, recall, requests and time.

    .venv/bin/python benchmarks/filter_verifiers.py [--env base]

Needs `kedro run --pipelines data,teacher` (and the base model, for the embedded judge) first.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "true")

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT / "src"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", default=None)
    parser.add_argument("--no-judge", action="store_true", help="only the configured verifiers")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    from supertiny.pipelines.filtering.pipeline import run_filtering

    bootstrap_project(PROJECT)
    with KedroSession.create(project_path=PROJECT, env=args.env) as session:
        context = session.load_context()
    catalog, params = context.catalog, context.params
    candidates, requests, test = (catalog.load(name) for name in ("teacher_candidates", "teacher_requests", "test_requests"))
    configured = params["filtering"]["verifiers"]
    runs = {"configured": configured}
    if not args.no_judge:
        with_judge = [v for v in configured if v != "judge"]
        at = with_judge.index("reference") if "reference" in with_judge else len(with_judge)
        runs["with judge"] = with_judge[:at] + ["judge"] + with_judge[at:]

    results = {}
    for label, verifiers in runs.items():
        _, _, _, summary = run_filtering(candidates, requests, test, {**params["filtering"], "verifiers": verifiers}, params["teacher"])
        results[label] = summary
        print(f"\n{label}: verifiers {verifiers}")
        print(f"  candidates {summary['candidates']} for {summary['requests']} requests; accepted {summary['accepted_candidates']} "
              f"({summary['acceptance_rate']:.1%}); requests with an accepted answer {summary['requests_with_accepted_answer']}; "
              f"examples kept {summary['examples_kept']}")
        for name, rate in summary["by_verifier"].items():
            print(f"  {name:<12} acceptance {'n/a (applies to no candidate)' if rate is None else f'{rate:.1%}'}")
        judge = summary.get("verifier_reports", {}).get("judge")
        if judge:
            usage, labelled = judge["usage"], judge["on_labelled"]
            print(f"  judge on labelled requests: {labelled['judged']} judged, precision {labelled['precision']}, recall {labelled['recall']}")
            print(f"  judge verdicts {usage['verdicts']}; {usage['requests_sent']} sent, {usage['cache_hits']} from the cache, "
                  f"{usage['wall_s']} s, {usage['prompt_tokens'] + usage['cached_prompt_tokens']} prompt tokens")
    alone = results["configured"]["consistency_alone_on_labelled"]
    print(f"\nconsistency alone on labelled requests: accepts {alone['accepted']} of {alone['parsed_candidates']} parsed candidates, "
          f"{alone['exactly_right']} exactly right: precision {alone['precision']}")
    out = PROJECT / "data" / "08_reporting" / "filter_verifiers.json"
    out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print("written", out.relative_to(PROJECT))


if __name__ == "__main__":
    main()
