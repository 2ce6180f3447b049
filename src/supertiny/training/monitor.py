"""What a stage did, per log step: the trainer's numbers, tokens/s and peak memory.

The rows become the stage's ``training_log`` dataset; each row is also one log line.
"""

from __future__ import annotations

import logging
import resource
import sys
import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

log = logging.getLogger(__name__)

# What each stage optimises, shown first in its log lines (kd's loss is the generalised JSD).
HEADLINES = {"sft": ("loss", "eval_loss"), "rl": ("reward", "kl", "frac_reward_zero_std"), "kd": ("loss",)}


def reset_peak_memory() -> None:
    """Start a new peak-RSS measurement (Linux: clear the high-water mark; elsewhere a no-op)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def peak_memory_mb() -> float:
    """Peak resident memory of this process since the last reset, in MiB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (2**20 if sys.platform == "darwin" else 2**10), 1)


class StageMonitor(TrainerCallback):
    """Collects one row per trainer log: step, elapsed time, the logged numbers, processed tokens
    (prompt and answer, padding excluded), tokens/s since the previous log, and peak memory."""

    def __init__(self, stage: str) -> None:
        self.stage = stage
        self.rows: list[dict[str, Any]] = []

    def on_train_begin(self, args, state, control, **kwargs) -> None:
        reset_peak_memory()
        self._start = self._last_time = time.perf_counter()
        self._last_tokens = 0

    def on_log(self, args, state, control, logs: dict[str, Any] | None = None, **kwargs) -> None:
        now = time.perf_counter()
        numbers = {key: value for key, value in (logs or {}).items() if isinstance(value, (int, float))}
        numbers.pop("num_tokens", None)  # the trainer state's count is kept up to date every step
        tokens = int(state.num_input_tokens_seen)
        elapsed = now - self._start
        if "train_loss" in numbers:  # the trainer's closing summary: rates over the whole stage
            rate = tokens / elapsed if elapsed else None
        elif any(key.startswith("eval_") for key in numbers):
            rate = None
            self._last_time = now  # the next training rate leaves the evaluation's time out
        else:
            rate = (tokens - self._last_tokens) / (now - self._last_time) if now > self._last_time else None
            self._last_time, self._last_tokens = now, tokens
        row = {
            "stage": self.stage,
            "status": "trained",
            "step": state.global_step,
            "max_steps": state.max_steps,
            "elapsed_s": round(elapsed, 2),
            "tokens": tokens,
            "tokens_per_s": round(rate, 1) if rate is not None else None,
            "peak_rss_mb": peak_memory_mb(),
            **numbers,
        }
        self.rows.append(row)
        shown = [f"{key} {row[key]:.4g}" for key in HEADLINES[self.stage] if row.get(key) is not None]
        if rate is not None:
            shown.append(f"{rate:.0f} tokens/s")
        log.info("%s step %d/%d: %s, peak %.0f MiB", self.stage, state.global_step, state.max_steps, ", ".join(shown), row["peak_rss_mb"])

