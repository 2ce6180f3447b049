"""The cascade: the final model answers, and the teacher only where the final model is unsure.

A served answer's confidence (``decoding.Decoded.confidence``: the probability of its least sure
choice, ``min``, or the geometric mean of its choices, ``mean``) decides: below the threshold the
request goes to the teacher. On validation requests (a seeded subset of ``val_requests``, which
the student never trained on as prompts of its split) both models answer, and
:func:`cascade_curve` sweeps the threshold: the share sent to the teacher, exact match, latency
and cost at each. The signal whose ranking sends the wrong answers first (the larger area under
its curve) is used, at the cheapest threshold whose validation exact match is at least the
teacher's (``serving.fallback``: ``auto``, or a number). The ``cascade`` row of the stage table
is that rule applied to the test requests, measured like every other stage.

Latency of a routed request is the final model's own answer time plus the teacher's batch-1 p50
(it answered first, then the teacher did); cost is the final model's on every request plus the
teacher's on those routed.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

from supertiny.parameters import CONFIDENCE_SIGNALS
from supertiny.inference import score_requests
from supertiny.latency import percentiles_ms

log = logging.getLogger(__name__)

CASCADE = "cascade"
AUTO = "auto"
# The routing shares the curve is drawn at (the least confident share sent to the teacher).
SHARES = np.round(np.linspace(0, 1, 21), 2)


def fallback_settings(serving: dict[str, Any]) -> dict[str, Any]:
    """``serving.fallback``, checked: ``threshold`` (``auto`` or a number in [0, 1]) and ``signal``
    (``auto``, ``min`` or ``mean``)."""
    from supertiny.parameters import check_section  # it imports this package's names

    check_section("serving", serving)  # the threshold's range and the signal's words: the parameters model's
    fallback = dict(serving.get("fallback") or {})
    return {"threshold": fallback.get("threshold", AUTO), "signal": fallback.get("signal", AUTO)}


def _paired(final: list[dict], teacher: list[dict], signal: str) -> pd.DataFrame:
    """One row per request both answered: the final model's confidence, time and correctness,
    and the teacher's correctness."""
    teacher_exact = {p["request_id"]: p["exact"] for p in teacher}
    rows = [
        {"request_id": p["request_id"], "confidence": p[f"confidence_{signal}"], "answer_ms": p["answer_ms"],
         "final_exact": bool(p["exact"]), "teacher_exact": bool(teacher_exact[p["request_id"]])}
        for p in final if p.get("exact") is not None and teacher_exact.get(p["request_id"]) is not None
    ]
    return pd.DataFrame(rows)


_POINT_COLUMNS = ["threshold", "share_to_teacher", "exact_match", "p50_ms", "p95_ms", "cost_per_1k_requests"]


def _point(pairs: pd.DataFrame, threshold: float, final_row: dict, teacher_row: dict) -> dict[str, Any]:
    """The cascade at one threshold: requests whose confidence is below it go to the teacher."""
    routed = pairs["confidence"] < threshold
    exact = np.where(routed, pairs["teacher_exact"], pairs["final_exact"])
    latency = pairs["answer_ms"] + np.where(routed, teacher_row["p50_ms"] or 0.0, 0.0)
    share = float(routed.mean())
    return {
        "threshold": round(float(threshold), 6),
        "share_to_teacher": round(share, 4),
        "exact_match": round(float(exact.mean()), 4),
        **percentiles_ms(latency),
        "cost_per_1k_requests": _cost(final_row, teacher_row, share),
    }


def _cost(final_row: dict, teacher_row: dict, share: float) -> float | None:
    final, teacher = final_row.get("cost_per_1k_requests"), teacher_row.get("cost_per_1k_requests")
    if final is None or teacher is None:
        return None
    return round(float(final) + share * float(teacher), 5)


def _curve(pairs: pd.DataFrame, final_row: dict, teacher_row: dict) -> list[dict[str, Any]]:
    """The cascade at thresholds that send each of ``SHARES`` (the least confident first)."""
    confidences = np.sort(pairs["confidence"].to_numpy())
    thresholds = [0.0] + [float(confidences[min(int(round(share * len(confidences))), len(confidences) - 1)]) for share in SHARES[1:-1]]
    thresholds.append(float(np.nextafter(confidences[-1], np.inf)))  # everything below it: all to the teacher
    points = {}
    for threshold in thresholds:
        point = _point(pairs, threshold, final_row, teacher_row)
        points.setdefault(point["share_to_teacher"], point)  # ties in confidence: one point per share
    return sorted(points.values(), key=lambda point: point["share_to_teacher"])


def cascade_curve(
    final_val_predictions: list[dict], teacher_val_predictions: list[dict], final_row: dict[str, Any], teacher_row: dict[str, Any],
    serving: dict[str, Any],
) -> tuple[pd.DataFrame, dict[str, Any], list[dict]]:
    """The threshold sweep on validation requests, per confidence signal; the choice (the signal
    and threshold the ``cascade`` row and ``supertiny serve --fallback`` use); and both models'
    validation predictions, kept."""
    kept = [*teacher_val_predictions, *final_val_predictions]
    settings = fallback_settings(serving)
    signals = CONFIDENCE_SIGNALS if settings["signal"] == AUTO else (settings["signal"],)
    pairs_by_signal = {signal: _paired(final_val_predictions, teacher_val_predictions, signal) for signal in signals}
    if pairs_by_signal[signals[0]].empty:
        log.warning("Cascade not measured: no labelled validation request was answered by both the final model and the teacher")
        return pd.DataFrame(columns=["signal", *_POINT_COLUMNS]), {"signal": None, "threshold": None, "reason": "no labelled validation requests"}, kept
    curves, areas = [], {}
    for signal, pairs in pairs_by_signal.items():
        points = _curve(pairs, final_row, teacher_row)
        # The area under exact match against share: higher when the answers sent first are the wrong ones.
        shares, exacts = [p["share_to_teacher"] for p in points], [p["exact_match"] for p in points]
        areas[signal] = float(np.trapz(exacts, shares)) if len(points) > 1 else exacts[0]
        curves += [{"signal": signal, **point} for point in points]
    curve = pd.DataFrame(curves)
    signal = max(areas, key=areas.get)
    chosen_points = curve[curve["signal"] == signal]
    pairs = pairs_by_signal[signal]
    teacher_exact, final_exact = float(pairs["teacher_exact"].mean()), float(pairs["final_exact"].mean())
    if settings["threshold"] == AUTO:
        # Cost grows with the share sent to the teacher: the cheapest good point sends the fewest.
        good = chosen_points[chosen_points["exact_match"] >= teacher_exact].sort_values("share_to_teacher")
        best = good.iloc[0] if len(good) else chosen_points.sort_values("exact_match").iloc[-1]
        threshold, reached = float(best["threshold"]), bool(len(good))
    else:
        threshold, reached = float(settings["threshold"]), None
    at = _point(pairs, threshold, final_row, teacher_row)
    choice = {
        "signal": signal,
        "threshold": threshold,
        "chosen_by": "validation" if settings["threshold"] == AUTO else "serving.fallback.threshold",
        "reaches_teacher": reached,
        "signal_areas": {name: round(value, 4) for name, value in areas.items()},
        "validation": {"requests": len(pairs), "teacher_exact_match": round(teacher_exact, 4),
                       "final_exact_match": round(final_exact, 4), **at},
    }
    log.info(
        "Cascade: signal %s, threshold %.4f: %.0f%% of validation requests to the teacher, exact match %.3f "
        "(final model alone %.3f, teacher %.3f)",
        signal, threshold, 100 * at["share_to_teacher"], at["exact_match"], final_exact, teacher_exact,
    )  # fmt: skip
    return curve, choice, kept


def evaluate_cascade(
    requests: list[dict], final_predictions: list[dict], teacher_predictions: list[dict], final_row: dict[str, Any],
    teacher_row: dict[str, Any], choice: dict[str, Any],
) -> tuple[dict[str, Any], list[dict]]:
    """The ``cascade`` row on the test requests at the chosen signal and threshold, and its
    predictions; none when the threshold could not be chosen."""
    from supertiny.pipelines.evaluation.nodes import per_function_accuracy

    signal, threshold = choice["signal"], choice["threshold"]
    if threshold is None:
        return {}, []
    if any(f"confidence_{signal}" not in p for p in final_predictions):
        log.warning("No cascade row: the final model's test answers have no confidence (evaluation.answers is not 'served')")
        return {}, []
    final_by_id = {p["request_id"]: p for p in final_predictions}
    teacher_by_id = {p["request_id"]: p for p in teacher_predictions}
    routed = [final_by_id[r["id"]][f"confidence_{signal}"] < threshold for r in requests]
    texts = [teacher_by_id[r["id"]]["text"] if to_teacher else final_by_id[r["id"]]["text"] for r, to_teacher in zip(requests, routed)]
    predictions, metrics = score_requests(requests, texts)
    teacher_ms = teacher_row["p50_ms"] or 0.0
    latency = np.array([final_by_id[r["id"]]["answer_ms"] + (teacher_ms if to_teacher else 0.0) for r, to_teacher in zip(requests, routed)])
    share = float(np.mean(routed))
    row = {
        "stage": CASCADE,
        "model_path": f"{final_row['stage']}, to the teacher below {signal} confidence {threshold:.4f}",
        "device": final_row.get("device"),
        "tools_mode": final_row.get("tools_mode"),
        "constrained": final_row.get("constrained"),
        # The final model answered every request before any went on to the teacher.
        "unconstrained_fallbacks": final_row.get("unconstrained_fallbacks"),
        "params": final_row.get("params"),
        "size_mb": final_row.get("size_mb"),
        **metrics,
        **percentiles_ms(latency),
        "cost_per_1k_requests": _cost(final_row, teacher_row, share),
        "share_to_teacher": round(share, 4),
        "reference": final_row.get("reference"),
        "per_function": per_function_accuracy(requests, predictions),
    }
    log.info("cascade: exact match %.3f with %.0f%% of test requests sent to the teacher", metrics["exact_match"] or 0, 100 * share)
    predictions = [{"stage": CASCADE, **p, "answered_by": "teacher" if to_teacher else "final"} for p, to_teacher in zip(predictions, routed)]
    return row, predictions


def plot_cascade_curve(curve: pd.DataFrame, choice: dict[str, Any]) -> Any:
    """Validation exact match against cost per 1,000 requests along the threshold: the final
    model alone at one end, the teacher behind it for every request at the other."""
    import plotly.express as px
    import plotly.graph_objects as go

    if choice["threshold"] is None:
        return go.Figure().update_layout(title=f"Cascade not measured: {choice['reason']}")
    shown = curve[curve["signal"] == choice["signal"]]
    x = "cost_per_1k_requests" if shown["cost_per_1k_requests"].notna().all() else "share_to_teacher"
    figure = px.line(shown, x=x, y="exact_match", markers=True, hover_data=["threshold", "share_to_teacher", "p50_ms", "p95_ms"],
                     labels={x: x.replace("_", " "), "exact_match": "exact match on validation"},
                     title=f"Cascade on validation requests ({choice['signal']} confidence)")
    validation = choice["validation"]
    figure.add_hline(y=validation["teacher_exact_match"], line_dash="dot", annotation_text="teacher alone")
    figure.add_scatter(x=[validation[x]], y=[validation["exact_match"]], mode="markers", marker={"size": 14, "symbol": "star"},
                       name=f"chosen: threshold {choice['threshold']:.3f}")
    figure.update_yaxes(range=[0, 1.05])
    return figure


def plot_reliability(validation_predictions: list[dict], choice: dict[str, Any], bins: int = 10) -> Any:
    """Calibration of the chosen confidence: the final model's validation exact match per
    confidence bin, with the number of answers in each (a calibrated signal follows the diagonal)."""
    import plotly.graph_objects as go

    if choice["threshold"] is None:
        return go.Figure().update_layout(title=f"Confidence not measured: {choice['reason']}")
    signal = choice["signal"]
    scored = [(p[f"confidence_{signal}"], bool(p["exact"])) for p in validation_predictions
              if p.get(f"confidence_{signal}") is not None and p.get("exact") is not None]
    edges = np.linspace(0, 1, bins + 1)
    centres, accuracy, counts = [], [], []
    for low, high in zip(edges[:-1], edges[1:]):
        inside = [exact for confidence, exact in scored if low <= confidence < high or (high == 1 and confidence == 1)]
        if inside:
            centres.append(round((low + high) / 2, 3))
            accuracy.append(float(np.mean(inside)))
            counts.append(len(inside))
    figure = go.Figure()
    figure.add_bar(x=centres, y=accuracy, text=[f"n={count}" for count in counts], name="exact match", width=1 / bins * 0.9)
    figure.add_scatter(x=[0, 1], y=[0, 1], mode="lines", line={"dash": "dot"}, name="calibrated")
    figure.update_layout(title=f"Reliability of the final model's {signal} confidence (validation requests)",
                         xaxis_title="confidence", yaxis_title="exact match", yaxis_range=[0, 1.05], xaxis_range=[0, 1])
    return figure
