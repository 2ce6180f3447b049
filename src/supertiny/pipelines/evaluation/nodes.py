"""Nodes of the evaluation pipeline: every stage measured the same way, then one table.

Local models: the shared prompt format, batched greedy answers to the same seeded subset of
test requests scored by the call module (``supertiny.inference``), batch-1 latency from the
one harness (``supertiny.latency``), parameters and size on disk, and cost as machine time
times a price per hour. The teacher: the teacher pipeline's own endpoint and strategy, one
greedy answer per request through its cache and accounting; its latency is batch-1 requests to
its endpoint and its cost is tokens times the price table.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections import defaultdict
from statistics import fmean
from typing import Any

import numpy as np
import pandas as pd
import torch
from markdown_it import MarkdownIt

from supertiny.calls import format_calls
from supertiny.datasets import ModelDirectory
from supertiny.inference import generate_answers, sample_requests, score_requests
from supertiny.latency import measure_latency
from supertiny.prompt import prompt_text
from supertiny.teacher import TeacherConfig, label_requests

log = logging.getLogger(__name__)

METRIC_COLUMNS = [
    "stage", "model_path", "params", "size_mb", "exact_match", "similarity", "valid_rate", "no_call_accuracy",
    "p50_ms", "p95_ms", "tokens_per_s", "requests_per_s", "cost_per_1k_requests", "n",
]


def evaluation_requests(test_requests: list[dict], params: dict[str, Any]) -> list[dict]:
    """The seeded subset of test requests every stage answers (CPU generation is slow)."""
    return sample_requests(test_requests, params.get("max_requests"), params.get("seed", 0))


def per_function_accuracy(requests: list[dict], predictions: list[dict]) -> dict[str, float]:
    """Exact match by function: over the requests whose reference calls that function
    ("(no call)" for requests that need none)."""
    hits: dict[str, list[bool]] = defaultdict(list)
    for request, prediction in zip(requests, predictions, strict=True):
        reference = request.get("reference")
        if reference is None:
            continue
        for function in sorted({call["name"] for call in reference}) or ["(no call)"]:
            hits[function].append(bool(prediction["exact"]))
    return {function: round(fmean(values), 4) for function, values in sorted(hits.items())}


def evaluate_local_model(
    model_dir: ModelDirectory, requests: list[dict], tools_mode: str, params: dict[str, Any], stage: str
) -> tuple[dict[str, Any], list[dict]]:
    """One stage's metrics row and its predictions."""
    log.info("Evaluating %s (%s) on %d test requests", stage, model_dir.path, len(requests))
    bundle = model_dir.load()
    model, tokenizer = bundle.model, bundle.tokenizer
    model.eval()
    threads = params["threads"]
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        started = time.perf_counter()
        texts = generate_answers(model, tokenizer, requests, tools_mode, params["max_new_tokens"], params["batch_size"])
        answer_seconds = time.perf_counter() - started
    finally:
        torch.set_num_threads(previous_threads)
    predictions, metrics = score_requests(requests, texts)
    latency_cfg = params["latency"]
    prompts = [prompt_text(request, tokenizer, tools_mode) for request in requests[: latency_cfg["prompts"]]]
    latency = measure_latency(model, tokenizer, prompts, new_tokens=latency_cfg["new_tokens"], threads=threads,
                              warmup=latency_cfg["warmup"])
    seconds_per_request = answer_seconds / len(requests)
    row = {
        "stage": stage,
        "model_path": str(model_dir.path),
        "params": sum(p.numel() for p in model.parameters()),
        "size_mb": round(model_dir.size_bytes / 2**20, 1),
        **{key: metrics[key] for key in ("exact_match", "similarity", "valid_rate", "no_call_accuracy", "n")},
        "p50_ms": latency.p50_ms,
        "p95_ms": latency.p95_ms,
        "tokens_per_s": latency.decode_tokens_per_s,
        "requests_per_s": round(len(requests) / answer_seconds, 3),
        # Machine time per request at the batch size used, priced by the hour.
        "cost_per_1k_requests": round(1000 * seconds_per_request * params["price_per_hour_usd"] / 3600, 5),
        "per_function": per_function_accuracy(requests, predictions),
    }
    log.info("%s: exact match %.3f, similarity %.3f, p50 %.0f ms", stage, row["exact_match"] or 0, row["similarity"] or 0, row["p50_ms"])
    return row, [{"stage": stage, **prediction} for prediction in predictions]


def evaluate_teacher(
    requests: list[dict],
    teacher_seed_examples: list[dict],
    base_model: ModelDirectory,
    teacher: dict[str, Any],
    params: dict[str, Any],
) -> tuple[dict[str, Any], list[dict], dict[str, Any]]:
    """The teacher's row: its endpoint and strategy, one greedy answer per request.

    It goes through the teacher's own client, cache and accounting (``label_requests``), so a
    re-run scores from the cache and the usage record says what the answers cost. Latency is
    batch-1, like the local models': the first ``latency.prompts`` requests sent again one at a
    time (the only requests a re-run sends). Cost per 1,000 requests is tokens times the price
    table (0 for a model served on this machine).
    """
    greedy = {**teacher, "k_samples": 1, "temperature": 0.0}
    config = TeacherConfig.from_params(greedy)
    log.info("Evaluating the teacher (%s strategy) on %d test requests", config.strategy, len(requests))
    candidates, usage = label_requests(requests, teacher_seed_examples, config, model_dir=base_model.path)
    # The teacher's answer is its parsed calls (a decomposed answer is several completions);
    # an answer that did not parse is scored from its text, which fails the same way.
    texts = [format_calls(c["calls"]) if c["calls"] is not None else (c["text"] or "") for c in candidates]
    predictions, metrics = score_requests(requests, texts)
    prompt_tokens = sum(c["prompt_tokens"] for c in candidates)
    completion_tokens = sum(c["completion_tokens"] for c in candidates)
    # Priced from the answers' own tokens, cached or not (the run's total also holds its probe).
    price = usage["price_usd_per_1m_tokens"]
    cost = (prompt_tokens * price["prompt"] + completion_tokens * price["completion"]) / 1e6 if price else None
    latency = _teacher_latency(requests[: params["latency"]["prompts"]], teacher_seed_examples, greedy, base_model)
    row = {
        "stage": "teacher",
        "model_path": f"{usage['model']} @ {usage['endpoint']}",
        "params": None,
        "size_mb": None,
        **{key: metrics[key] for key in ("exact_match", "similarity", "valid_rate", "no_call_accuracy", "n")},
        **latency,
        # Requests/s at the teacher's concurrency, of this run's own requests (a fully cached run sent nothing to time).
        "requests_per_s": round(usage["requests_sent"] / usage["wall_s"], 3) if usage["requests_sent"] and usage["wall_s"] else None,
        "cost_per_1k_requests": round(1000 * cost / len(requests), 5) if cost is not None and requests else None,
        "per_function": per_function_accuracy(requests, predictions),
    }
    log.info("teacher: exact match %.3f, similarity %.3f, p50 %s ms", row["exact_match"] or 0, row["similarity"] or 0, row["p50_ms"])
    return row, [{"stage": "teacher", **prediction} for prediction in predictions], usage


def _teacher_latency(requests: list[dict], seed_examples: list[dict], greedy: dict[str, Any], base_model: ModelDirectory) -> dict:
    """The teacher's batch-1 latency, as the local models': these requests one at a time
    (concurrency 1) and sent afresh (an empty cache), so the time is the endpoint's and not a
    queue's or the cache's. An answer's latency is all its completions' (decomposed: several)."""
    if not requests:
        return {"p50_ms": None, "p95_ms": None, "tokens_per_s": None}
    with tempfile.TemporaryDirectory(prefix="supertiny-latency-") as fresh_cache:
        config = TeacherConfig.from_params({**greedy, "concurrency": 1, "cache_dir": fresh_cache})
        answers, _ = label_requests(requests, seed_examples, config, model_dir=base_model.path)
    timed = [a for a in answers if a["error_kind"] is None]
    if not timed:
        return {"p50_ms": None, "p95_ms": None, "tokens_per_s": None}
    latencies = [a["latency_ms"] for a in timed]
    return {
        "p50_ms": round(float(np.percentile(latencies, 50)), 1),
        "p95_ms": round(float(np.percentile(latencies, 95)), 1),
        "tokens_per_s": round(sum(a["completion_tokens"] for a in timed) / (sum(latencies) / 1000), 2),
    }


def evaluate_quantized_model(
    model_dir: ModelDirectory, requests: list[dict], tools_mode: str, params: dict[str, Any], method: str, source_row: dict[str, Any]
) -> tuple[dict[str, Any], list[dict]]:
    """The quantised model, its stage named after its method (``quantized_<method>``).

    Its parameters are those of the model it quantised (``source_row``): quantisation changes
    how they are stored, not how many there are, and packed weights are not torch parameters."""
    row, predictions = evaluate_local_model(model_dir, requests, tools_mode, params, stage=f"quantized_{method}")
    return {**row, "params": source_row["params"]}, predictions


def collect_stage_metrics(*rows: dict[str, Any]) -> pd.DataFrame:
    """The table: one row per stage, in pipeline order."""
    table = pd.DataFrame([{key: row.get(key) for key in METRIC_COLUMNS} for row in rows], columns=METRIC_COLUMNS)
    return table


def collect_predictions(*predictions: list[dict]) -> list[dict]:
    return [prediction for stage_predictions in predictions for prediction in stage_predictions]


def per_function_table(*rows: dict[str, Any]) -> pd.DataFrame:
    """Exact match by function (rows) and stage (columns)."""
    return pd.DataFrame({row["stage"]: row["per_function"] for row in rows}).sort_index()


def plot_accuracy_vs_latency(stage_metrics: pd.DataFrame) -> Any:
    """Where each stage sits: exact match against batch-1 latency (lower right is worse)."""
    import plotly.express as px

    # A stage whose size is unknown (the teacher behind an endpoint) gets the largest marker.
    shown = stage_metrics.assign(marker=stage_metrics["size_mb"].astype(float).fillna(stage_metrics["size_mb"].max() or 1.0))
    figure = px.scatter(
        shown, x="p50_ms", y="exact_match", text="stage", size="marker", size_max=40, log_x=True,
        hover_data=["similarity", "size_mb", "params", "cost_per_1k_requests"],
        labels={"p50_ms": "batch-1 latency p50 (ms, log)", "exact_match": "exact match on test"},
        title="Accuracy against latency, per stage",
    )
    figure.update_traces(textposition="top center")
    figure.update_yaxes(range=[0, 1.05])
    return figure


def plot_size_per_stage(stage_metrics: pd.DataFrame) -> Any:
    import plotly.express as px

    return px.bar(stage_metrics, x="stage", y="size_mb", text="size_mb", title="Size on disk per stage (MB)",
                  labels={"size_mb": "MB", "stage": ""})


def plot_accuracy_per_function(function_accuracy: pd.DataFrame) -> Any:
    import plotly.express as px

    return px.imshow(function_accuracy, zmin=0, zmax=1, color_continuous_scale="Viridis", aspect="auto",
                     labels={"color": "exact match", "x": "stage", "y": "function"},
                     title="Exact match per function and stage")


def _markdown_table(frame: pd.DataFrame) -> str:
    """A Markdown table without the optional ``tabulate`` dependency of ``DataFrame.to_markdown``."""
    def cell(value: Any) -> str:
        if value is None or (isinstance(value, float) and np.isnan(value)):
            return "–"
        if isinstance(value, float):
            return f"{value:.4g}"
        if isinstance(value, (int, np.integer)) and abs(value) >= 10_000:
            return f"{value:,}"
        return str(value)

    header = "| " + " | ".join(frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    rows = ["| " + " | ".join(cell(value) for value in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *rows])


REPORT_CSS = "body{font-family:sans-serif;max-width:1200px;margin:2em auto}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}"
SUMMARY_COLUMNS = ["stage", "params", "size_mb", "exact_match", "similarity", "valid_rate", "no_call_accuracy",
                   "p50_ms", "p95_ms", "tokens_per_s", "cost_per_1k_requests"]


def stage_table_markdown(stage_metrics: pd.DataFrame) -> str:
    return _markdown_table(stage_metrics[SUMMARY_COLUMNS])


def write_report(
    stage_metrics: pd.DataFrame,
    function_accuracy: pd.DataFrame,
    data_report: dict[str, Any],
    filter_summary: dict[str, Any],
    teacher_usage: dict[str, Any],
    run_record: dict[str, Any],
    accuracy_vs_latency: Any,
    size_per_stage: Any,
    accuracy_per_function: Any,
) -> tuple[str, str]:
    """The report in Markdown and in HTML (the HTML with the plots, readable offline)."""
    table = stage_table_markdown(stage_metrics)
    sections = [
        "# supertiny report",
        f"Run {run_record['run_id']} at git commit {run_record['git_commit']}.",
        "## Stages\n\nExact match, similarity and no-call accuracy on the same seeded test requests; latency "
        "is batch-1 greedy generation on this machine (the teacher's: batch-1 requests to its endpoint).\n\n" + table,
        "## Exact match per function\n\n" + _markdown_table(function_accuracy.reset_index(names="function")),
        "## Data\n\n" + _markdown_table(pd.DataFrame([
            {"requests": data_report["requests"], "rejected": data_report["rejected"], "train": data_report["splits"]["train"],
             "val": data_report["splits"]["val"], "test": data_report["splits"]["test"],
             "parallel share": data_report["share_parallel"], "no-call share": data_report["share_no_call"]}])),
        "## Filtering\n\n" + _markdown_table(pd.DataFrame([
            {key: filter_summary[key] for key in ("candidates", "accepted_candidates", "acceptance_rate", "requests",
                                                  "requests_without_accepted_answer", "examples_kept")}])),
        "## Teacher\n\n" + _markdown_table(pd.DataFrame([
            {key: teacher_usage.get(key) for key in ("model", "strategy", "requests_sent", "cache_hits", "prompt_tokens",
                                                     "completion_tokens", "wall_s", "requests_per_s", "cost_usd")}])),
    ]
    markdown = "\n\n".join(sections) + "\n"
    figures = [accuracy_vs_latency, size_per_stage, accuracy_per_function]
    # Plotly's script is embedded once, so the page renders without a network.
    plots = "\n".join(figure.to_html(full_html=False, include_plotlyjs=(i == 0)) for i, figure in enumerate(figures))
    body = MarkdownIt("commonmark").enable("table").render(markdown)
    html = f"<!doctype html><html><head><meta charset='utf-8'><title>supertiny report</title><style>{REPORT_CSS}</style></head><body>{body}{plots}</body></html>"
    return markdown, html


def record_run(parameters: dict[str, Any], stage_metrics: pd.DataFrame) -> dict[str, Any]:
    """What makes two runs comparable: config, versions, git commit, and the metrics."""
    import platform
    import subprocess
    import uuid
    from datetime import datetime, timezone
    from importlib.metadata import PackageNotFoundError, version

    def package_version(name: str) -> str | None:
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, timeout=10).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain"], capture_output=True, text=True, timeout=10).stdout.strip())
    except (OSError, subprocess.SubprocessError):
        commit, dirty = "unknown", None
    return {
        "run_id": uuid.uuid4().hex[:12],
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "git_commit": commit,
        "git_dirty": dirty,
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads",
        "versions": {name: package_version(name) for name in
                     ("supertiny", "torch", "transformers", "trl", "neural-compressor", "kedro", "kedro-datasets", "openai")},
        "parameters": parameters,
        "stage_metrics": stage_metrics.astype(object).where(stage_metrics.notna(), None).to_dict(orient="records"),
    }
