"""Nodes of the compression pipeline: prune, recover by distillation, quantise.

The recipe of "Efficient AI in Practice" on the distilled student: structured pruning while
fine-tuning on ``distill_train`` (Intel Neural Compressor's training-time pruning, then its
slimming so the model really shrinks), distillation from the unpruned student to win back
what pruning cost, then post-training quantisation. Each node returns its model and a log;
``summarize_compression`` joins the logs into ``compression_log``.

Fine-tuning while pruning and recovery train on ``runtime.device``; layer importance, slimming
and quantisation run on the CPU (every quantisation method here makes CPU kernels).
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import asdict
from typing import Any

import torch

from supertiny.compression.pruning import (
    INCPruningCallback,
    drop_layers,
    layer_importance,
    least_important,
    matching_modules,
    mlp_pruning_config,
    parameter_count,
    pruned_share,
    slim_mlp,
)
from supertiny.compression.quantization import quantize
from supertiny.quantized_model import Recipe
from supertiny.compression.settings import check_against_model, check_params, recovery_steps
from supertiny.compression.fine_tuning import calibration_batches, distil, fine_tune
from supertiny.datasets import ModelBundle, ModelDirectory
from supertiny.errors import SupertinyError
from supertiny.runtime import resolve_device
from supertiny.training.data import check_lengths, sft_dataset

log = logging.getLogger(__name__)

__all__ = ["check_params", "prune_student", "quantize_recovered", "recover_pruned", "summarize_compression"]


def _training_rows(distill_train: list[dict], compression: dict[str, Any], tokenizer: Any, student: dict[str, Any]) -> list[dict]:
    """A seeded sample of ``train_rows`` rows (all of them when there are fewer), each of which
    fits the student's ``max_length`` in the student's prompt format (checked, never cut)."""
    if not distill_train:
        raise SupertinyError("distill_train is empty: there is nothing to fine-tune the pruned model on")
    count = min(compression["train_rows"], len(distill_train))
    rows = random.Random(compression["seed"]).sample(distill_train, count)
    check_lengths(rows, tokenizer, student, context_length=None)
    return rows


def _shape(model: torch.nn.Module) -> dict[str, int]:
    config = model.config
    return {
        "params": parameter_count(model),
        "layers": config.num_hidden_layers,
        "intermediate_size": config.intermediate_size,
        "attention_heads": config.num_attention_heads,
        "kv_heads": config.num_key_value_heads,
    }


def prune_student(
    student_model: ModelDirectory, distill_train: list[dict], compression: dict[str, Any], student: dict[str, Any],
    runtime: dict[str, Any],
) -> tuple[ModelBundle, dict]:
    """Drop the least important decoder layers, prune MLP channels with INC while fine-tuning,
    then slim the zeroed channels away: a smaller model, not a sparse one.

    ``student``: the student's settings, whose prompt format (``tools_mode``) and ``max_length``
    the compressed models keep."""
    started = time.perf_counter()
    pruning = compression["pruning"]
    device = resolve_device(runtime)
    model = student_model.load_model(dtype=torch.float32)
    tokenizer = student_model.load_tokenizer()
    check_against_model(compression, model)
    rows = _training_rows(distill_train, compression, tokenizer, student)
    before = _shape(model)

    dropped: list[int] = []
    importance: list[float] = []
    if pruning["depth"]["drop_layers"]:
        batches = calibration_batches(rows[: pruning["depth"]["calibration_rows"]], tokenizer, student["tools_mode"])
        importance = layer_importance(model, batches)
        dropped = least_important(importance, pruning["depth"]["drop_layers"])
        drop_layers(model, dropped)
        log.info("Dropped decoder layers %s (lowest block influence)", dropped)

    from neural_compressor.training import prepare_compression

    # INC makes its masks on the weights' device: the model goes there first.
    manager = prepare_compression(model.to(device.type), mlp_pruning_config(pruning))
    dataset = sft_dataset(rows, tokenizer, student["tools_mode"])
    losses = fine_tune(
        model, tokenizer, dataset, pruning["training"]["args"], student["max_length"], compression["seed"], device,
        callbacks=[INCPruningCallback(manager)],
    )
    pruned_layers = matching_modules(model, pruning["mlp"]["op_names"])
    sparsity = pruned_share(model, pruned_layers)
    width = slim_mlp(model, pruning["mlp"]["channel_multiple"])
    after = _shape(model)
    log.info("Pruned: %s -> %s parameters (intermediate size %d)", f"{before['params']:,}", f"{after['params']:,}", width)
    report = {
        "before": before,
        "after": after,
        "params_removed_share": round(1 - after["params"] / before["params"], 4),
        "layers_dropped": dropped,
        "layer_importance": [round(value, 5) for value in importance],
        "pruned_layers": len(pruned_layers),
        "target_sparsity": pruning["mlp"]["target_sparsity"],
        "sparsity_reached": round(sparsity, 4),
        "intermediate_size": width,
        "attention": "not pruned: INC's head pruning cannot trace transformers 5 models",
        "train_rows": len(rows),
        "device": device.name,
        "losses": losses,
        "seconds": round(time.perf_counter() - started, 1),
    }
    return ModelBundle(model, tokenizer), report


def recover_pruned(
    pruned_model: ModelDirectory,
    student_model: ModelDirectory,
    distill_train: list[dict],
    compression: dict[str, Any],
    student: dict[str, Any],
    runtime: dict[str, Any],
) -> tuple[ModelBundle, dict]:
    """Distil the unpruned student into the pruned one on the answers (logit KL plus the answer
    cross-entropy), to win back what pruning cost."""
    started = time.perf_counter()
    recovery = compression["recovery"]
    device = resolve_device(runtime)
    model = pruned_model.load_model(dtype=torch.float32)
    tokenizer = pruned_model.load_tokenizer()
    steps = recovery_steps(recovery)
    report: dict[str, Any] = {"steps": steps, "device": device.name}
    if steps:
        teacher = student_model.load_model(dtype=torch.float32)
        rows = _training_rows(distill_train, compression, tokenizer, student)
        dataset = sft_dataset(rows, tokenizer, student["tools_mode"])
        report.update(distil(model, teacher, tokenizer, dataset, recovery, student["max_length"], compression["seed"], device))
    report["seconds"] = round(time.perf_counter() - started, 1)
    return ModelBundle(model, tokenizer), report


def quantize_recovered(
    pruned_recovered: ModelDirectory, distill_train: list[dict], compression: dict[str, Any], student: dict[str, Any],
    runtime: dict[str, Any],
) -> tuple[ModelBundle, dict]:
    """Quantise the recovered model with the configured method (calibrated on ``distill_train``
    prompts where the method needs it); it is saved in its quantised form. On the CPU whatever
    ``runtime.device`` says: the quantised layers are CPU kernels."""
    started = time.perf_counter()
    settings = compression["quantization"]
    recipe = Recipe.from_settings(settings)
    if not resolve_device(runtime).use_cpu:
        log.info("Quantising with %s on the CPU, not runtime.device: its quantised layers run on the CPU only", recipe.method)
    model = pruned_recovered.load_model(dtype=torch.float32)
    tokenizer = pruned_recovered.load_tokenizer()
    calibration = None
    if recipe.method == "gptq" or recipe.smooth_alpha is not None:
        rows = _training_rows(distill_train, compression, tokenizer, student)[: settings["calibration_rows"]]
        calibration = calibration_batches(rows, tokenizer, student["tools_mode"])
    params = parameter_count(model)
    model = quantize(model, recipe, calibration)
    report = {"recipe": asdict(recipe), "name": recipe.name, "params": params, "device": "cpu",
              "seconds": round(time.perf_counter() - started, 1)}
    return ModelBundle(model, tokenizer, quantization=recipe), report


def summarize_compression(
    pruning_log: dict, recovery_log: dict, quantization_log: dict, pruned_model: ModelDirectory, quantized_model: ModelDirectory, student_model: ModelDirectory
) -> dict[str, Any]:
    """One record of what compression did, with the sizes on disk of what it produced."""
    student_bytes = student_model.size_bytes
    return {
        "pruning": pruning_log,
        "recovery": recovery_log,
        "quantization": quantization_log,
        "size_mb": {"student": student_model.size_mb, "pruned": pruned_model.size_mb, "quantized": quantized_model.size_mb},
        "quantized_share_of_student_size": round(quantized_model.size_bytes / student_bytes, 4),
    }
