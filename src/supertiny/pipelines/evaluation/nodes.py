"""Nodes of the evaluation pipeline: every stage measured the same way, then one table.

Local models: the shared prompt format, batched greedy answers to the same seeded subset of
test requests scored by the call module (``supertiny.inference``), batch-1 latency from the
one harness (``supertiny.latency``), parameters and size on disk, and cost as machine time
times a price per hour. The teacher: the teacher pipeline's own endpoint and strategy, one
greedy answer per request through its cache and accounting; its latency is what the endpoint
took and its cost is tokens times the price table.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from statistics import fmean
from typing import Any

import numpy as np
import pandas as pd
import torch
from markdown_it import MarkdownIt

from supertiny.datasets import ModelDirectory
from supertiny.inference import generate_answers, sample_requests, score_requests
from supertiny.latency import measure_latency
from supertiny.prompt import prompt_text

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


def evaluate_quantized_model(
    model_dir: ModelDirectory, requests: list[dict], tools_mode: str, params: dict[str, Any], method: str
) -> tuple[dict[str, Any], list[dict]]:
    """The quantised model, its stage named after its method (``quantized_<method>``)."""
    return evaluate_local_model(model_dir, requests, tools_mode, params, stage=f"quantized_{method}")


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

    figure = px.scatter(
        stage_metrics, x="p50_ms", y="exact_match", text="stage", size="size_mb", size_max=40, log_x=True,
        hover_data=["similarity", "params", "cost_per_1k_requests"],
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
        "is batch-1 greedy generation on this machine (the teacher's is what its endpoint took).\n\n" + table,
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
