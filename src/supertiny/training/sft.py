"""Stage ``sft``: rejection-sampling fine-tuning on the verified teacher answers, with TRL's SFTTrainer.

The examples are prompt-completion pairs in the shared prompt format, so the loss is on the
answer only. With ``student.sft.early_stopping_patience`` and a non-empty ``distill_val`` the
trainer evaluates after every epoch (or every ``args.eval_steps``), stops when the validation
loss has not improved that many times, and ends on the best model; those checkpoints go to a
temporary directory, never into the project (one that every process of an ``accelerate launch``
sees: the main process writes the best checkpoint, every process loads it).
"""

from __future__ import annotations

import logging
from typing import Any

from transformers import EarlyStoppingCallback
from trl import SFTConfig, SFTTrainer

from supertiny.datasets import ModelBundle, ModelDirectory
from supertiny.runtime import Device, shared_workdir
from supertiny.training.data import check_lengths, sft_dataset
from supertiny.training.models import load_for_training, trained_model
from supertiny.training.monitor import StageMonitor
from supertiny.training.settings import lora_config, trainer_settings

log = logging.getLogger(__name__)


def build_trainer(
    start: ModelDirectory, train_rows: list[dict], val_rows: list[dict], student: dict[str, Any], workdir: str, monitor: StageMonitor,
    device: Device,
) -> SFTTrainer:
    """An SFTTrainer for the model at ``start``, after the checks that must pass before training."""
    params = student["sft"]
    model, tokenizer = load_for_training(start)
    check_lengths(train_rows + val_rows, tokenizer, student, getattr(model.config, "max_position_embeddings", None))
    peft_config = lora_config("student.sft.lora", params.get("lora"), model)
    train = sft_dataset(train_rows, tokenizer, student["tools_mode"])
    val = sft_dataset(val_rows, tokenizer, student["tools_mode"]) if val_rows else None

    # GRPO and distillation count their tokens in the trainer state; SFT's trainer counts there when asked.
    settings = trainer_settings("sft", student, workdir, device) | {"include_num_input_tokens_seen": "non_padding"}
    patience = params.get("early_stopping_patience")
    if patience and val is None:
        log.warning("sft: distill_val is empty, so no early stopping: training runs every epoch")
    early_stopping = bool(patience) and val is not None
    if early_stopping:
        settings |= {
            "eval_strategy": "steps" if settings.get("eval_steps") else "epoch",
            "save_strategy": "best",  # a checkpoint only when the validation loss improves
            "save_only_model": True,
            "save_total_limit": 1,
            "load_best_model_at_end": True,
            "metric_for_best_model": "eval_loss",
        }
    return SFTTrainer(
        model=model,
        args=SFTConfig(**settings, max_length=student["max_length"], completion_only_loss=True),
        train_dataset=train,
        eval_dataset=val if early_stopping else None,
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=[monitor] + ([EarlyStoppingCallback(early_stopping_patience=patience)] if early_stopping else []),
    )


def run_sft(
    start: ModelDirectory, train_rows: list[dict], val_rows: list[dict], student: dict[str, Any], device: Device
) -> tuple[ModelBundle, list[dict[str, Any]]]:
    """Fine-tune the model at ``start`` on ``train_rows`` on ``device``; return the trained model and the stage's log."""
    monitor = StageMonitor("sft")
    with shared_workdir("supertiny-sft-") as workdir:
        trainer = build_trainer(start, train_rows, val_rows, student, workdir, monitor, device)
        trainer.train()
        model = trained_model(trainer)
    return ModelBundle(model, trainer.processing_class), monitor.rows
