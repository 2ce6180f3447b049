"""Nodes of the student pipeline: SFT, RL and distillation, one node a stage.

The stages form a fixed chain, ``base_model -> student_sft -> student_rl -> student_kd ->
student_model``, so that every intermediate model is in the catalog under its own name and one
stage can be re-run alone (``kedro run --from-nodes train_rl``). ``student.stages`` says which
stages train; a stage that does not passes its input model on unchanged, and its log says it
was skipped, so the catalog always holds a model for every name. Every stage trains on the
device ``runtime.device`` resolves to, in as many processes as ``accelerate launch`` started.
"""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd

from supertiny.datasets import ModelDirectory
from supertiny.runtime import resolve_device
from supertiny.training.settings import check_examples, check_params

log = logging.getLogger(__name__)


def _skip(stage: str, model: ModelDirectory) -> tuple[ModelDirectory, pd.DataFrame]:
    log.info("Stage %s is not in student.stages: its model is its input, unchanged", stage)
    return model, pd.DataFrame([{"stage": stage, "status": "skipped", "reason": "not in student.stages"}])


def train_sft(
    base_model: ModelDirectory, distill_train: list[dict], distill_val: list[dict], student: dict[str, Any], runtime: dict[str, Any]
) -> tuple[ModelBundle | ModelDirectory, pd.DataFrame]:
    """Stage sft: fine-tune the base model on the verified teacher answers (early stopping on ``distill_val``)."""
    device = resolve_device(runtime)
    check_params(student, device)
    if "sft" not in student["stages"]:
        return _skip("sft", base_model)
    check_examples(distill_train)
    from supertiny.training.sft import run_sft  # TRL is imported only when a stage trains

    bundle, rows = run_sft(base_model, distill_train, distill_val, student, device)
    return bundle, pd.DataFrame(rows)


def train_rl(
    student_sft: ModelDirectory, distill_train: list[dict], student: dict[str, Any], runtime: dict[str, Any]
) -> tuple[ModelBundle | ModelDirectory, pd.DataFrame]:
    """Stage rl: GRPO from the SFT model, rewarded by similarity to the reference and answer format."""
    device = resolve_device(runtime)
    check_params(student, device)
    if "rl" not in student["stages"]:
        return _skip("rl", student_sft)
    check_examples(distill_train)
    from supertiny.training.rl import run_rl

    bundle, rows = run_rl(student_sft, distill_train, student, device)
    return bundle, pd.DataFrame(rows)


def train_kd(
    student_rl: ModelDirectory, distill_train: list[dict], student: dict[str, Any], runtime: dict[str, Any]
) -> tuple[ModelBundle | ModelDirectory, pd.DataFrame]:
    """Stage kd: on-policy distillation from ``student.kd.teacher_model_dir``."""
    device = resolve_device(runtime)
    check_params(student, device)
    if "kd" not in student["stages"]:
        return _skip("kd", student_rl)
    check_examples(distill_train)
    from supertiny.training.kd import run_kd

    bundle, rows = run_kd(student_rl, distill_train, student, device)
    return bundle, pd.DataFrame(rows)


def _stage_summary(stage_log: pd.DataFrame) -> dict[str, Any]:
    """Status, steps, wall time, tokens/s, peak memory and the last logged objective of one stage."""
    rows = stage_log.to_dict("records")
    if rows[0].get("status") == "skipped":
        return {"status": "skipped", "reason": rows[0].get("reason")}
    closing = rows[-1]  # the trainer's closing log: totals over the whole stage
    summary = {
        "status": "trained",
        "steps": int(closing["step"]),
        "wall_s": round(float(closing["elapsed_s"]), 1),
        "tokens": int(closing["tokens"]),
        "tokens_per_s": round(float(closing["tokens_per_s"]), 1),
        "peak_rss_mb": float(stage_log["peak_rss_mb"].max()),
    }
    for key in ("loss", "reward", "kl", "frac_reward_zero_std"):
        values = [row[key] for row in rows[:-1] if pd.notna(row.get(key))]
        if values:
            summary[f"last_{key}"] = round(float(values[-1]), 4)
    if "eval_loss" in stage_log and stage_log["eval_loss"].notna().any():
        summary["best_eval_loss"] = round(float(stage_log["eval_loss"].min()), 4)
    return summary


def finish_student(
    student_kd: ModelDirectory, student_sft_log: pd.DataFrame, student_rl_log: pd.DataFrame, student_kd_log: pd.DataFrame
) -> tuple[ModelDirectory, dict[str, Any]]:
    """The student is the last stage's model; the summary says, per stage, what training did."""
    summary = {
        stage: _stage_summary(stage_log)
        for stage, stage_log in (("sft", student_sft_log), ("rl", student_rl_log), ("kd", student_kd_log))
    }
    trained = [stage for stage, entry in summary.items() if entry["status"] == "trained"]
    log.info("Student model: the result of %s", " -> ".join(["base_model", *trained]))
    return student_kd, summary
