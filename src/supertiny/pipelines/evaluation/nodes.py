"""Nodes of the evaluation pipeline: every stage measured the same way, then one table.

Local models: the shared prompt format, batched greedy answers to the same seeded subset of
test requests (under each request's grammar when ``evaluation.constrained``) scored by the call
module (``supertiny.inference``), batch-1 latency from the one harness (``supertiny.latency``),
parameters and size on disk, and cost as machine time times a price per hour; each on the
device ``runtime.device`` resolves to, except a quantised model, whose layers run on the CPU. The teacher: the
teacher pipeline's own endpoint and strategy, one greedy answer per request through its cache
and accounting; its latency is batch-1 requests to its endpoint, its cost machine time like a
local model's when it runs on this machine and tokens times the price table otherwise. A floor:
``always_no_call``, the answer ``[]`` to every request, scored the same way.
"""

from __future__ import annotations

import logging
import math
import tempfile
import time
from collections import Counter, defaultdict
from itertools import product
from statistics import fmean
from typing import Any

import numpy as np
import pandas as pd
import torch
from markdown_it import MarkdownIt

from supertiny.calls import NO_CALL, called_functions, format_calls
from supertiny.compression.pruning import parameter_count
from supertiny.datasets import ModelDirectory
from supertiny.errors import ConfigError
from supertiny.inference import GeneratedAnswers, answer_grammars, generate_answers, sample_requests, score_requests
from supertiny.decoding import build_decoder, decoder_settings
from supertiny.parameters import CONFIDENCE_SIGNALS, check_section
from supertiny.latency import measure_served_latency, percentiles_ms
from supertiny.prompt import prompt_text
from supertiny.runtime import CPU, Device, resolve_device, torch_threads
from supertiny.teacher import TeacherConfig, label_requests

log = logging.getLogger(__name__)

METRIC_COLUMNS = [
    "stage", "model_path", "device", "tools_mode", "constrained", "params", "size_mb",
    "exact_match", "exact_match_low", "exact_match_high", "call_exact_match", "similarity", "valid_rate", "no_call_accuracy",
    "p50_ms", "p95_ms", "prefill_p50_ms", "tokens_per_s", "requests_per_s", "cost_per_1k_requests", "unconstrained_fallbacks", "n",
    "share_to_teacher",  # the cascade's: requests its final model sent on to the teacher
    "reference",  # what the scores are against: labels, the teacher's greedy answers (unlabelled requests), or both
]
# What score_requests measures, as every row reports it.
SCORE_COLUMNS = ["exact_match", "exact_match_low", "exact_match_high", "call_exact_match", "similarity", "valid_rate",
                 "no_call_accuracy", "n"]
ALWAYS_NO_CALL = "always_no_call"


def evaluation_requests(test_requests: list[dict], params: dict[str, Any]) -> list[dict]:
    """The seeded subset of test requests every stage answers (CPU generation is slow)."""
    return sample_requests(test_requests, params.get("max_requests"), params.get("seed", 0))


TEACHER_REFERENCE = "teacher"  # request.meta.reference_source of a reference that is the teacher's greedy answer


def with_teacher_references(requests: list[dict], teacher_predictions: list[dict], params: dict[str, Any]) -> list[dict]:
    """The requests every stage is scored on. With ``evaluation.unlabelled_reference: teacher``
    an unlabelled request (production logs have no labels) takes the teacher's greedy answer,
    when it is valid, as its reference, marked in ``meta.reference_source``; null leaves it
    unscored."""
    mode = params.get("unlabelled_reference", TEACHER_REFERENCE)
    if mode not in (TEACHER_REFERENCE, None):
        raise ConfigError(f"evaluation.unlabelled_reference must be 'teacher' or null; got {mode!r}")
    answers = {p["request_id"]: p["calls"] for p in teacher_predictions if p["valid"]} if mode else {}
    scored = []
    for request in requests:
        if request.get("reference") is None and request["id"] in answers:
            request = {**request, "reference": answers[request["id"]], "meta": {**request.get("meta", {}), "reference_source": TEACHER_REFERENCE}}
        scored.append(request)
    taught = sum(1 for r in scored if r.get("meta", {}).get("reference_source") == TEACHER_REFERENCE)
    if taught:
        log.info("%d of %d evaluation requests are scored against the teacher's greedy answer", taught, len(scored))
    return scored


def reference_source(requests: list[dict]) -> str | None:
    """What a row's scores are measured against: ``labels``, ``teacher`` (its greedy answers),
    ``labels+teacher``, or None when no request has a reference."""
    sources = {"teacher" if r.get("meta", {}).get("reference_source") == TEACHER_REFERENCE else "labels"
               for r in requests if r.get("reference") is not None}
    return "+".join(sorted(sources)) or None


def per_function_accuracy(requests: list[dict], predictions: list[dict]) -> dict[str, float]:
    """Exact match by function: over the requests whose reference calls that function
    (NO_CALL for requests that need none)."""
    hits: dict[str, list[bool]] = defaultdict(list)
    for request, prediction in zip(requests, predictions, strict=True):
        reference = request.get("reference")
        if reference is None:
            continue
        for function in called_functions(reference):
            hits[function].append(bool(prediction["exact"]))
    return {function: round(fmean(values), 4) for function, values in sorted(hits.items())}


def machine_cost_per_1k(seconds_per_request: float, price_per_hour_usd: float) -> float:
    """What 1,000 requests cost in machine time at an hourly price."""
    return round(1000 * seconds_per_request * price_per_hour_usd / 3600, 5)


def decoding_settings(params: dict[str, Any]) -> tuple[bool, int | None]:
    """``evaluation.constrained`` and ``evaluation.max_calls`` (their types and ranges: the parameters model's)."""
    constrained, max_calls = params.get("constrained", True), params.get("max_calls")
    check_section("evaluation", {"constrained": constrained, "max_calls": max_calls})
    return constrained, max_calls


def answer_path(params: dict[str, Any]) -> dict[str, Any] | None:
    """``evaluation.answers``: ``served`` (default) answers each request alone on the fast path, as
    ``supertiny serve`` does (its settings, ``decoder_settings``); ``batched``: in batches of
    ``batch_size`` through ``generate`` (same calls as the fast path without jump-forward)."""
    answers = params.get("answers", "served")
    check_section("evaluation", {"answers": answers})
    settings = decoder_settings(params)
    if answers == "batched" and settings["no_call_threshold"] is not None:
        raise ConfigError("evaluation.no_call_threshold applies to served answers: set evaluation.answers: served, "
                          "or no_call_threshold: null")
    return settings if answers == "served" else None


def check_params(params: dict[str, Any]) -> None:
    """The ``evaluation`` settings, checked before any node runs: the parameters model's checks,
    then what the answer path needs of the other settings."""
    check_section("evaluation", params)
    decoding_settings(params)
    answer_path(params)


def evaluation_device(model_dir: ModelDirectory, runtime: dict[str, Any]) -> Device:
    """``runtime.device``, except for a quantised model: its quantised layers run on the CPU only."""
    from supertiny.quantized_model import is_quantized

    device = resolve_device(runtime)
    if not device.use_cpu and is_quantized(model_dir.path):
        log.info("%s is quantised: evaluated on the CPU, where its quantised layers run", model_dir.path)
        return CPU
    return device


def _answer_requests(
    model_dir: ModelDirectory, requests: list[dict], tools_mode: str, params: dict[str, Any], runtime: dict[str, Any],
    fast_path: dict[str, Any] | None,
) -> tuple[Any, Any, Device, GeneratedAnswers, float]:
    """The model loaded on ``evaluation_device`` and its answers to ``requests`` with
    ``evaluation.threads`` (``fast_path``: see ``generate_answers``), and the seconds they took."""
    constrained, max_calls = decoding_settings(params)
    device = evaluation_device(model_dir, runtime)
    bundle = model_dir.load()
    model = bundle.model.to(device.type).eval()
    log.info("%s answers on %s", model_dir.path.name, device.name)
    with torch_threads(params["threads"]):
        started = time.perf_counter()
        answers = generate_answers(model, bundle.tokenizer, requests, tools_mode, params["max_new_tokens"], params["batch_size"],
                                   constrained=constrained, max_calls=max_calls, fast_path=fast_path)
        seconds = time.perf_counter() - started
    return model, bundle.tokenizer, device, answers, seconds


def evaluate_local_model(
    model_dir: ModelDirectory, requests: list[dict], tools_mode: str, params: dict[str, Any], runtime: dict[str, Any], stage: str
) -> tuple[dict[str, Any], list[dict]]:
    """One stage's metrics row and its predictions, measured on ``evaluation_device``."""
    constrained, max_calls = decoding_settings(params)
    log.info("Evaluating %s (%s) on %d test requests%s", stage, model_dir.path, len(requests), ", constrained" if constrained else "")
    model, tokenizer, device, answers, answer_seconds = _answer_requests(model_dir, requests, tools_mode, params, runtime, answer_path(params))
    threads = params["threads"]
    predictions, metrics = score_requests(requests, answers.texts)
    predictions = with_answer_details(predictions, answers)
    # Batch-1 latency as served: the fast path (supertiny serve's), each answer to its end,
    # under its grammar when constrained; the teacher's latency is its whole answers too.
    latency_requests = requests[: params["latency"]["prompts"]]
    decoder = build_decoder(model, tokenizer, tools_mode, **decoder_settings(params))
    latency = measure_served_latency(
        decoder,
        [prompt_text(request, tokenizer, tools_mode) for request in latency_requests],
        answer_grammars(model, tokenizer, latency_requests, max_calls) if constrained else [None] * len(latency_requests),
        max_new_tokens=params["max_new_tokens"], threads=threads, warmup=params["latency"]["warmup"],
    )
    seconds_per_request = answer_seconds / len(requests)
    row = {
        "stage": stage,
        "model_path": str(model_dir.path),
        "device": device.name,
        "tools_mode": tools_mode,
        "constrained": constrained,
        "params": parameter_count(model),
        "size_mb": model_dir.size_mb,
        **{key: metrics[key] for key in SCORE_COLUMNS},
        "p50_ms": latency.p50_ms,
        "p95_ms": latency.p95_ms,
        "tokens_per_s": latency.decode_tokens_per_s,
        "prefill_p50_ms": latency.prefill_p50_ms,
        "requests_per_s": round(len(requests) / answer_seconds, 3),
        # Machine time per request at the batch size used, priced by the hour.
        "cost_per_1k_requests": machine_cost_per_1k(seconds_per_request, params["price_per_hour_usd"]),
        "unconstrained_fallbacks": len(answers.unconstrained),
        "reference": reference_source(requests),
        "per_function": per_function_accuracy(requests, predictions),
    }
    log.info("%s: %s", stage, metrics_line(row))
    return row, [{"stage": stage, **prediction} for prediction in predictions]


def with_answer_details(predictions: list[dict], answers: GeneratedAnswers) -> list[dict]:
    """Served answers' confidence (``confidence_<signal>``), time (``answer_ms``) and no-call
    probability on their predictions."""
    if answers.decoded is None:
        return predictions
    return [
        {**prediction, **{f"confidence_{signal}": decoded.confidence(signal) for signal in CONFIDENCE_SIGNALS},
         "answer_ms": round(decoded.total_s * 1000, 1), "no_call_probability": decoded.no_call_probability}
        for prediction, decoded in zip(predictions, answers.decoded, strict=True)
    ]


def local_predictions(
    model_dir: ModelDirectory, requests: list[dict], tools_mode: str, params: dict[str, Any], runtime: dict[str, Any], stage: str
) -> list[dict]:
    """A local model's scored answers on the served path, with their confidence and time: no
    latency harness, no metrics row (the cascade's validation answers)."""
    log.info("Answering %d requests with %s (%s) on the served path", len(requests), stage, model_dir.path)
    *_, answers, _ = _answer_requests(model_dir, requests, tools_mode, params, runtime, decoder_settings(params))
    predictions, _ = score_requests(requests, answers.texts)
    return [{"stage": stage, **prediction} for prediction in with_answer_details(predictions, answers)]


def metrics_line(row: dict[str, Any]) -> str:
    """A stage's headline numbers for the log; a number that could not be measured (no labelled
    request, no timed answer) reads n/a, never 0."""

    def shown(value: Any, spec: str) -> str:
        return "n/a" if not _known(value) else format(value, spec)

    return f"exact match {shown(row['exact_match'], '.3f')}, similarity {shown(row['similarity'], '.3f')}, p50 {shown(row['p50_ms'], '.0f')} ms"


def evaluate_trained_stage(
    model_dir: ModelDirectory, requests: list[dict], tools_mode: str, params: dict[str, Any], runtime: dict[str, Any],
    stages: list[str], stage: str, training_stage: str,
) -> tuple[dict[str, Any], list[dict]]:
    """A training stage that ``student.stages`` may leave out: its row and predictions when it
    trained, else an empty row and none (an untrained stage passes its input model on, which
    another row already measures)."""
    if training_stage not in stages:
        log.info("Not evaluating %s: %r is not in student.stages", stage, training_stage)
        return {}, []
    return evaluate_local_model(model_dir, requests, tools_mode, params, runtime, stage)


def evaluate_always_no_call(requests: list[dict]) -> tuple[dict[str, Any], list[dict]]:
    """The floor a model must clear: ``[]`` to every request, scored like every stage. A model
    that learnt nothing but the frequent "no call" answer scores this."""
    predictions, metrics = score_requests(requests, ["[]"] * len(requests))
    row = {
        "stage": ALWAYS_NO_CALL,
        **{key: metrics[key] for key in SCORE_COLUMNS},
        "reference": reference_source(requests),
        "per_function": per_function_accuracy(requests, predictions),
    }
    return row, [{"stage": ALWAYS_NO_CALL, **prediction} for prediction in predictions]


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
    time (the only requests a re-run sends). Cost per 1,000 requests: a teacher on this machine
    (the embedded server, or a loopback ``base_url``) costs machine time at
    ``evaluation.price_per_hour_usd``, like every local model; an endpoint elsewhere costs its
    tokens times the price table.
    """
    greedy = {**teacher, "k_samples": 1, "temperature": 0.0}
    config = TeacherConfig.from_params(greedy)
    log.info("Evaluating the teacher (%s strategy) on %d test requests", config.strategy, len(requests))
    candidates, usage, predictions, metrics = teacher_answers(requests, teacher_seed_examples, base_model, teacher)
    if config.on_this_machine:
        cost_per_1k = machine_cost_per_1k(teacher_seconds_per_request(candidates, config.concurrency), params["price_per_hour_usd"])
    else:
        cost_per_1k = token_cost_per_1k(candidates, usage["price_usd_per_1m_tokens"])
    latency = _teacher_latency(requests[: params["latency"]["prompts"]], teacher_seed_examples, greedy, base_model)
    row = {
        "stage": "teacher",
        "model_path": f"{usage['model']} @ {usage['endpoint']}",
        "params": None,
        "size_mb": None,
        **{key: metrics[key] for key in SCORE_COLUMNS},
        **latency,
        # Requests/s at the teacher's concurrency, of this run's own requests (a fully cached run sent nothing to time).
        "requests_per_s": round(usage["requests_sent"] / usage["wall_s"], 3) if usage["requests_sent"] and usage["wall_s"] else None,
        "cost_per_1k_requests": cost_per_1k,
        "reference": reference_source(requests),
        "per_function": per_function_accuracy(requests, predictions),
    }
    log.info("teacher: %s", metrics_line(row))
    return row, [{"stage": "teacher", **prediction} for prediction in predictions], usage


def teacher_answers(
    requests: list[dict], teacher_seed_examples: list[dict], base_model: ModelDirectory, teacher: dict[str, Any]
) -> tuple[list[dict], dict[str, Any], list[dict], dict[str, Any]]:
    """The teacher pipeline's greedy answer to each request through its own client, cache and
    accounting: its candidates, usage record, scored predictions and their totals."""
    config = TeacherConfig.from_params({**teacher, "k_samples": 1, "temperature": 0.0})
    candidates, usage = label_requests(requests, teacher_seed_examples, config, model_dir=base_model.path)
    # The teacher's answer is its parsed calls (a decomposed answer is several completions);
    # an answer that did not parse is scored from its text, which fails the same way.
    texts = [format_calls(c["calls"]) if c["calls"] is not None else (c["text"] or "") for c in candidates]
    predictions, metrics = score_requests(requests, texts)
    return candidates, usage, predictions, metrics


def teacher_validation_predictions(
    requests: list[dict], teacher_seed_examples: list[dict], base_model: ModelDirectory, teacher: dict[str, Any]
) -> list[dict]:
    """The teacher pipeline's scored greedy answers to validation requests (the cascade's other side)."""
    log.info("Answering %d validation requests with the teacher", len(requests))
    _, _, predictions, _ = teacher_answers(requests, teacher_seed_examples, base_model, teacher)
    return [{"stage": "teacher", **prediction} for prediction in predictions]


def teacher_seconds_per_request(candidates: list[dict], concurrency: int) -> float:
    """The teacher's machine time per answer, from the answers' own latencies (kept in the cache,
    so a re-run prices the same). Little's law: with ``concurrency`` answers in flight, the wall
    time is the sum of their latencies over ``concurrency``."""
    if not candidates:
        return 0.0
    in_flight = min(concurrency, len(candidates))
    return sum(c["latency_ms"] for c in candidates) / 1000 / in_flight / len(candidates)


def token_cost_per_1k(candidates: list[dict], price: dict[str, float] | None) -> float | None:
    """Tokens times the price table, from the answers' own tokens, cached or not (the run's total
    also holds its probe); None without a price."""
    if price is None or not candidates:
        return None
    prompt_tokens = sum(c["prompt_tokens"] for c in candidates)
    completion_tokens = sum(c["completion_tokens"] for c in candidates)
    cost = (prompt_tokens * price["prompt"] + completion_tokens * price["completion"]) / 1e6
    return round(1000 * cost / len(candidates), 5)


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
        **percentiles_ms(latencies),
        "tokens_per_s": round(sum(a["completion_tokens"] for a in timed) / (sum(latencies) / 1000), 2),
    }


def evaluate_quantized_model(
    model_dir: ModelDirectory, requests: list[dict], tools_mode: str, params: dict[str, Any], runtime: dict[str, Any],
    source_row: dict[str, Any],
) -> tuple[dict[str, Any], list[dict]]:
    """The quantised model, its stage named after the recipe it was saved with
    (``quantized_<method>``, ``_onnxrt`` when ONNX Runtime runs it).

    Its parameters are those of the model it quantised (``source_row``): quantisation changes
    how they are stored, not how many there are, and packed weights are not torch parameters."""
    from supertiny.quantized_model import read_recipe

    stage = f"quantized_{read_recipe(model_dir.path).name}"
    row, predictions = evaluate_local_model(model_dir, requests, tools_mode, params, runtime, stage=stage)
    return {**row, "params": source_row["params"]}, predictions


def collect_stage_metrics(*rows: dict[str, Any]) -> pd.DataFrame:
    """The table: one row per stage measured (an empty row: a stage not trained), in pipeline order."""
    return pd.DataFrame([{key: row.get(key) for key in METRIC_COLUMNS} for row in rows if row], columns=METRIC_COLUMNS)


def collect_predictions(*predictions: list[dict]) -> list[dict]:
    return [prediction for stage_predictions in predictions for prediction in stage_predictions]


def per_function_table(*rows: dict[str, Any]) -> pd.DataFrame:
    """Exact match by function (rows) and stage (columns)."""
    return pd.DataFrame({row["stage"]: row["per_function"] for row in rows if row}).sort_index()


def plot_accuracy_vs_latency(stage_metrics: pd.DataFrame) -> Any:
    """Where each stage sits: exact match against batch-1 latency (lower right is worse)."""
    import plotly.express as px

    # A stage whose size is unknown (the teacher behind an endpoint) gets the largest marker; the
    # floor (no model, no latency) is a line.
    models = stage_metrics[stage_metrics["stage"] != ALWAYS_NO_CALL]
    shown = models.assign(marker=models["size_mb"].astype(float).fillna(models["size_mb"].max() or 1.0))
    figure = px.scatter(
        shown, x="p50_ms", y="exact_match", text="stage", size="marker", size_max=40, log_x=True,
        hover_data=["similarity", "size_mb", "params", "cost_per_1k_requests"],
        labels={"p50_ms": "batch-1 latency p50 (ms, log)", "exact_match": "exact match on test"},
        title="Accuracy against latency, per stage",
    )
    figure.update_traces(textposition="top center")
    figure.update_yaxes(range=[0, 1.05])
    floor = _stage_value(stage_metrics, ALWAYS_NO_CALL, "exact_match")
    if floor is not None:
        figure.add_hline(y=floor, line_dash="dot", annotation_text="always no call", annotation_position="bottom right")
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
        if isinstance(value, float) and value.is_integer() and abs(value) >= 10_000:
            return f"{int(value):,}"  # a count in a column that also holds a missing value (floats)
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
SUMMARY_COLUMNS = ["stage", "device", "tools_mode", "constrained", "params", "size_mb", "exact_match", "call_exact_match", "similarity",
                   "valid_rate", "no_call_accuracy", "p50_ms", "p95_ms", "tokens_per_s", "cost_per_1k_requests",
                   "unconstrained_fallbacks", "share_to_teacher", "reference", "note"]
# Rows that are not students: the teacher, the floor, the untrained base model and the cascade (the teacher behind the final model).
NOT_STUDENTS = ("teacher", ALWAYS_NO_CALL, "base", "cascade")
NOT_LEARNING = "not learning"


def _known(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def _stage_value(stage_metrics: pd.DataFrame, stage: str, column: str) -> Any:
    """A stage's value in a column, or None when the stage or the value is missing."""
    values = stage_metrics.loc[stage_metrics["stage"] == stage, column]
    return values.iloc[0] if len(values) and _known(values.iloc[0]) else None


def not_learning(row: dict[str, Any], floor: float | None) -> bool:
    """A stage that did no better than answering ``[]`` everywhere (``floor``: always_no_call's
    exact match), or got no request that needs a call exactly right."""
    if row["stage"] == ALWAYS_NO_CALL or not _known(row["exact_match"]):
        return False
    return (floor is not None and row["exact_match"] <= floor) or row.get("call_exact_match") == 0


def best_student(stage_metrics: pd.DataFrame) -> dict[str, Any] | None:
    """The student stage with the highest exact match (then call exact match), or None."""
    students = [row for row in stage_metrics.to_dict("records") if row["stage"] not in NOT_STUDENTS and _known(row["exact_match"])]
    return max(students, key=lambda row: (row["exact_match"], row["call_exact_match"] if _known(row["call_exact_match"]) else -1),
               default=None)


def _with_interval(row: dict[str, Any]) -> str | None:
    """Exact match and its 95% interval, ``0.31 [0.27, 0.36]``."""
    if not _known(row["exact_match"]):
        return None
    if not (_known(row.get("exact_match_low")) and _known(row.get("exact_match_high"))):
        return f"{row['exact_match']:.2f}"
    return f"{row['exact_match']:.2f} [{row['exact_match_low']:.2f}, {row['exact_match_high']:.2f}]"


def stage_table_markdown(stage_metrics: pd.DataFrame) -> str:
    """The stage table as the report and the end of ``kedro run`` show it: exact match with its
    interval, and a note on each stage that is not learning (of a table that an older version
    wrote, the columns it has)."""
    floor = _stage_value(stage_metrics, ALWAYS_NO_CALL, "exact_match")
    rows = []
    for row in stage_metrics.to_dict("records"):
        rows.append({**row, "exact_match": _with_interval(row), "note": NOT_LEARNING if not_learning(row, floor) else ""})
    table = pd.DataFrame(rows, columns=[*stage_metrics.columns, "note"])
    return _markdown_table(table[[column for column in SUMMARY_COLUMNS if column in table]])


def summary_line(stage_metrics: pd.DataFrame) -> str:
    """Teacher against the best student on exact match and call exact match, the floor, and the
    stages that are not learning."""
    rows = {row["stage"]: row for row in stage_metrics.to_dict("records")}
    teacher, student = rows.get("teacher"), best_student(stage_metrics)

    def scores(row: dict[str, Any]) -> str:
        calls = row["call_exact_match"]
        return f"exact match {_with_interval(row) or '–'}, call exact match {f'{calls:.2f}' if _known(calls) else '–'}"

    def share(column: str) -> str:
        ours, theirs = student[column], teacher[column]
        return f"{ours / theirs:.2f}x" if _known(ours) and _known(theirs) and theirs else "–"

    parts = [f"Teacher: {scores(teacher)}." if teacher else "No teacher row."]
    if student:
        against = f" ({share('exact_match')} and {share('call_exact_match')} the teacher's)" if teacher else ""
        parts.append(f"Best student, {student['stage']}: {scores(student)}{against}.")
    else:
        parts.append("No student stage was measured.")
    final = next((row for stage, row in reversed(rows.items()) if stage.startswith("quantized_")), None)
    if final:
        faster = (f", {teacher['p50_ms'] / final['p50_ms']:.1f}x faster than the teacher's {teacher['p50_ms']:.0f} ms"
                  if teacher and _known(teacher["p50_ms"]) and _known(final["p50_ms"]) and final["p50_ms"] else "")
        latency = f"{final['p50_ms']:.0f} ms" if _known(final["p50_ms"]) else "–"
        parts.append(f"Final model, {final['stage']}: {scores(final)}; batch-1 p50 {latency}{faster}.")
    cascade = rows.get("cascade")
    if cascade and _known(cascade["exact_match"]):
        cost = (f", cost per 1,000 requests {cascade['cost_per_1k_requests'] / teacher['cost_per_1k_requests']:.2f}x the teacher's"
                if teacher and _known(cascade["cost_per_1k_requests"]) and _known(teacher["cost_per_1k_requests"]) and teacher["cost_per_1k_requests"]
                else "")
        parts.append(f"Cascade (the teacher where the final model is unsure): {scores(cascade)}, "
                     f"{cascade['share_to_teacher']:.0%} of requests sent to the teacher{cost}.")
    floor = rows.get(ALWAYS_NO_CALL)
    if floor:
        parts.append(f"Answering [] to every request: exact match {_with_interval(floor)}.")
    stalled = [stage for stage, row in rows.items() if not_learning(row, floor["exact_match"] if floor else None)]
    parts.append(f"Not learning: {', '.join(stalled)}." if stalled else "Every stage is learning.")
    return " ".join(parts)


def function_errors(function_accuracy: pd.DataFrame, stage: str, distill_train: list[dict]) -> pd.DataFrame:
    """Per function: ``stage``'s exact match next to the teacher's, and the function's training
    examples in ``distill_train`` (rows whose answer calls it; NO_CALL: rows answering ``[]``)."""
    examples: Counter[str] = Counter()
    for row in distill_train:
        examples.update(called_functions(row["calls"]))
    table = pd.DataFrame({"function": function_accuracy.index})
    for column in ("teacher", stage):
        table[column] = function_accuracy[column].to_numpy() if column in function_accuracy else None
    table["training examples"] = [examples[function] for function in table["function"]]
    return table


def top_confusions(requests: list[dict], predictions: list[dict], stage: str, count: int) -> pd.DataFrame:
    """``stage``'s most frequent confusions, reference function -> predicted function, over the
    labelled requests whose answer did not call the reference's functions. Each function
    missed is paired with each function called instead (NO_CALL on a side left empty; an answer
    that did not parse predicts "(not parsed)"). Right functions with wrong arguments are not
    confusions: the per-function exact match shows them."""
    references = {request["id"]: request.get("reference") for request in requests}
    pairs: Counter[tuple[str, str]] = Counter()
    for prediction in predictions:
        reference = references.get(prediction["request_id"])
        if prediction["stage"] != stage or reference is None:
            continue
        wanted = Counter(call["name"] for call in reference)
        if prediction["calls"] is None:
            missed, instead = list(wanted.elements()), ["(not parsed)"]
        else:
            called = Counter(call["name"] for call in prediction["calls"])
            missed, instead = list((wanted - called).elements()), list((called - wanted).elements())
        if missed or instead:
            pairs.update(product(missed or [NO_CALL], instead or [NO_CALL]))
    rows = [{"reference": reference, "predicted": predicted, "requests": n} for (reference, predicted), n in pairs.most_common(count)]
    return pd.DataFrame(rows, columns=["reference", "predicted", "requests"])


def write_report(
    stage_metrics: pd.DataFrame,
    function_accuracy: pd.DataFrame,
    predictions: list[dict],
    evaluation_requests: list[dict],
    distill_train: list[dict],
    data_report: dict[str, Any],
    filter_summary: dict[str, Any],
    teacher_usage: dict[str, Any],
    run_record: dict[str, Any],
    accuracy_vs_latency: Any,
    size_per_stage: Any,
    accuracy_per_function: Any,
    cascade_choice: dict[str, Any],
    cascade_curve_plot: Any,
    reliability_plot: Any,
    report: dict[str, Any],
) -> tuple[str, str]:
    """The report in Markdown and in HTML (the HTML with the plots, readable offline).

    ``report``: ``confusions``, how many of the best student's confusions to list."""
    table = stage_table_markdown(stage_metrics)
    student = best_student(stage_metrics)
    if student:
        stage = student["stage"]
        errors = (
            f"## Errors of the best student ({stage})\n\nExact match per function, next to the teacher's, and the "
            "function's examples in distill_train:\n\n" + _markdown_table(function_errors(function_accuracy, stage, distill_train))
            + f"\n\nThe {report['confusions']} most frequent confusions, reference function -> predicted function "
            "(requests):\n\n" + _markdown_table(top_confusions(evaluation_requests, predictions, stage, report["confusions"]))
        )
    else:
        errors = "## Errors of the best student\n\nNo student stage was measured."
    sections = [
        "# supertiny report",
        f"Run {run_record['run_id']} at git commit {run_record['git_commit']}.",
        "## Summary\n\n" + summary_line(stage_metrics),
        "## Stages\n\nExact match (with its 95% Wilson interval), call exact match (over the requests that need a call), "
        "similarity and no-call accuracy on the same seeded test requests; always_no_call answers [] to every one, and a "
        f"stage that does not beat it, or gets no call right, is marked \"{NOT_LEARNING}\". Latency is batch-1 as "
        "`supertiny serve` answers: each latency request alone, greedy, to the end of its answer (under its grammar when "
        "constrained), on this machine and the row's device (the teacher's: batch-1 requests to its endpoint); cost is machine "
        "time per request at an hourly price, or an endpoint's tokens at its prices.\n\n" + table,
        errors,
        "## Exact match per function\n\n" + _markdown_table(function_accuracy.reset_index(names="function")),
        "## Cascade\n\n" + cascade_paragraph(cascade_choice),
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
    figures = [accuracy_vs_latency, size_per_stage, accuracy_per_function, cascade_curve_plot, reliability_plot]
    # Plotly's script is embedded once, so the page renders without a network.
    plots = "\n".join(figure.to_html(full_html=False, include_plotlyjs=(i == 0)) for i, figure in enumerate(figures))
    body = MarkdownIt("commonmark").enable("table").render(markdown)
    html = f"<!doctype html><html><head><meta charset='utf-8'><title>supertiny report</title><style>{REPORT_CSS}</style></head><body>{body}{plots}</body></html>"
    return markdown, html


def cascade_paragraph(choice: dict[str, Any]) -> str:
    """How the cascade's threshold was chosen, and what it did on validation requests."""
    if choice.get("threshold") is None:
        return f"Not measured: {choice.get('reason', 'no labelled validation requests')}."
    validation = choice["validation"]
    reached = {True: "the cheapest threshold whose exact match is at least the teacher's",
               False: "no threshold reaches the teacher's exact match: the most accurate one", None: "as configured"}[choice["reaches_teacher"]]
    areas = ", ".join(f"{signal} {area:.3f}" for signal, area in choice["signal_areas"].items())
    return (
        f"The final model answers; where its {choice['signal']} confidence is below {choice['threshold']:.4f} "
        f"({choice['chosen_by']}: {reached}), the teacher answers instead. On {validation['requests']} validation requests "
        f"that sent {validation['share_to_teacher']:.0%} to the teacher for exact match {validation['exact_match']:.3f} "
        f"(final model alone {validation['final_exact_match']:.3f}, teacher alone {validation['teacher_exact_match']:.3f}). "
        f"Signals compared by the area under their curve: {areas}. The cascade row of the table is this rule on the test requests."
    )


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
