"""Loading a model directory for training, and taking the trained model back out of a trainer."""

from __future__ import annotations

from typing import Any

import torch

from supertiny.datasets import ModelDirectory


def load_for_training(model_dir: ModelDirectory) -> tuple[Any, Any]:
    """The model in float32 and its tokenizer; the model's config keeps its directory as its name,
    which is where TRL loads a reference model from (GRPO's KL term)."""
    return model_dir.load_model(dtype=torch.float32), model_dir.load_tokenizer()


def trained_model(trainer: Any) -> Any:
    """The trainer's model as an ordinary model: a LoRA adapter merged into the weights, the
    generation cache on again (activation checkpointing turns it off)."""
    model = trainer.accelerator.unwrap_model(trainer.model)
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    if model.is_activation_checkpointing:
        model.activation_checkpointing_disable()
    model.config.use_cache = True
    return model.eval()
