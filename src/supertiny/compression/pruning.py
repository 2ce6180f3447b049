"""Structured pruning of a Llama-style student: depth, then MLP channels, then slimming.

- Depth (ShortGPT, Minitron): a decoder layer whose output is nearly its input does little;
  its importance is one minus the cosine similarity of its input and output hidden states on
  calibration prompts, and the least important layers are removed. On CPU, where per-token
  overhead dominates small models, a layer less is time saved on every token.
- MLP channels: Intel Neural Compressor's training-time pruning (``prepare_compression`` with
  a ``WeightPruningConfig``) zeroes whole input columns of each ``down_proj`` (pattern
  ``channelx1``, one intermediate channel each) step by step while the model fine-tunes; its
  callbacks run inside a transformers ``Trainer`` through :class:`INCPruningCallback`.
- Slimming: INC's ``LinearCompressionIterator``, given each layer's (down_proj; gate_proj,
  up_proj) pair, removes the zeroed channels for real. INC's automatic ``model_slim`` finds no
  pairs on these models (its graph tracing fails) and silently returns the model unchanged.

Attention heads are not pruned: INC's head pruning (pattern ``mha``) traces the model to find
attention blocks, and that tracing fails on transformers 5 models before any pruning starts.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import torch
from transformers import TrainerCallback


def decoder_layers(model: torch.nn.Module) -> torch.nn.ModuleList:
    """The decoder layers of a ``*ForCausalLM`` model (``model.model.layers``)."""
    return model.model.layers


def parameter_count(model: Any) -> int:
    """Parameters, a tied tensor counted once (what ``save_pretrained`` stores); an ONNX Runtime
    model (``onnx_model.OnnxCausalLM``) has no torch parameters and knows its float model's."""
    if not isinstance(model, torch.nn.Module):
        return model.num_parameters()
    return sum(p.numel() for p in model.parameters())


# ---- depth ---------------------------------------------------------------------------------


@torch.no_grad()
def layer_importance(model: torch.nn.Module, batches: Iterable[dict[str, torch.Tensor]]) -> list[float]:
    """Each decoder layer's block influence: 1 - cos(input, output) of its hidden states, averaged
    over the real (unpadded) tokens of ``batches`` (tokenizer outputs with an attention mask)."""
    layers = decoder_layers(model)
    sums = torch.zeros(len(layers), dtype=torch.float64)
    count = 0
    captured: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def capture(index: int):
        def hook(module, args, kwargs, output):
            hidden_in = args[0] if args else kwargs["hidden_states"]
            hidden_out = output[0] if isinstance(output, tuple) else output
            captured[index] = (hidden_in, hidden_out)

        return hook

    handles = [layer.register_forward_hook(capture(i), with_kwargs=True) for i, layer in enumerate(layers)]
    try:
        model.eval()
        for batch in batches:
            model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False)
            real = batch["attention_mask"].bool()
            for index, (hidden_in, hidden_out) in captured.items():
                similarity = torch.nn.functional.cosine_similarity(hidden_in.float(), hidden_out.float(), dim=-1)
                sums[index] += (1 - similarity)[real].double().sum()
            count += int(real.sum())
    finally:
        for handle in handles:
            handle.remove()
    return (sums / max(count, 1)).tolist()


def drop_layers(model: torch.nn.Module, indices: Iterable[int]) -> None:
    """Remove the decoder layers at ``indices`` and renumber the rest (the KV cache is indexed
    by each attention block's ``layer_idx``)."""
    drop = set(indices)
    layers = decoder_layers(model)
    kept = [layer for index, layer in enumerate(layers) if index not in drop]
    for index, layer in enumerate(kept):
        layer.self_attn.layer_idx = index
    model.model.layers = torch.nn.ModuleList(kept)
    model.config.num_hidden_layers = len(kept)
    layer_types = getattr(model.config, "layer_types", None)
    if layer_types is not None:
        model.config.layer_types = [kind for index, kind in enumerate(layer_types) if index not in drop]


def least_important(importance: list[float], count: int) -> list[int]:
    """Indices of the ``count`` least important layers, never the first or the last: the first
    turns embeddings into the residual stream and the last prepares it for the output head, and
    their similarity score does not measure that (ShortGPT and Minitron both keep them)."""
    candidates = sorted(range(1, len(importance) - 1), key=lambda index: importance[index])
    return sorted(candidates[:count])


# ---- MLP channels --------------------------------------------------------------------------


def matching_modules(model: torch.nn.Module, op_names: list[str]) -> list[str]:
    """Linear layers whose names match any of ``op_names`` (regular expressions searched in the
    module name, as INC's pruning does), without the output head, which INC never prunes."""
    patterns = [re.compile(pattern) for pattern in op_names]
    return [
        name
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and name != "lm_head" and any(p.search(name) for p in patterns)
    ]


def mlp_pruning_config(settings: dict[str, Any]) -> Any:
    """INC's ``WeightPruningConfig`` for the MLP channels, from ``compression.pruning``.

    ``pruning_scope: local`` gives every matched layer the same sparsity, so every layer keeps
    the same number of channels: transformers' Llama has one ``intermediate_size`` for all
    layers, so per-layer widths could not be saved and loaded again.
    """
    from neural_compressor.training import WeightPruningConfig

    mlp = settings["mlp"]
    schedule = settings["schedule"]
    return WeightPruningConfig(
        [
            {
                "op_names": list(mlp["op_names"]),
                "pattern": "channelx1",
                "target_sparsity": float(mlp["target_sparsity"]),
                "pruning_scope": "local",
            }
        ],
        pruning_type=settings["criterion"],
        start_step=schedule["start_step"],
        end_step=schedule["end_step"],
        pruning_frequency=schedule["frequency"],
        sparsity_decay_type=schedule["decay"],
    )


class INCPruningCallback(TrainerCallback):
    """Runs INC's pruning callbacks at the matching points of a transformers ``Trainer`` step:
    masks are updated as a step begins, pruning scores read the gradients before the optimizer
    step, and the masks are applied again after it (the update would revive pruned weights)."""

    def __init__(self, compression_manager: Any) -> None:
        self.inc = compression_manager.callbacks

    def on_train_begin(self, args, state, control, **kwargs):
        self.inc.on_train_begin()

    def on_step_begin(self, args, state, control, **kwargs):
        self.inc.on_step_begin(state.global_step)

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        self.inc.on_before_optimizer_step()

    def on_optimizer_step(self, args, state, control, **kwargs):
        self.inc.on_after_optimizer_step()

    def on_step_end(self, args, state, control, **kwargs):
        self.inc.on_step_end()

    def on_train_end(self, args, state, control, **kwargs):
        self.inc.on_train_end()


def pruned_share(model: torch.nn.Module, names: list[str]) -> float:
    """Share of the zero weights in the named layers (what INC's masks reached)."""
    modules = dict(model.named_modules())
    zeros = sum(int((modules[name].weight == 0).sum()) for name in names)
    total = sum(modules[name].weight.numel() for name in names)
    return zeros / total if total else 0.0


@torch.no_grad()
def slim_mlp(model: torch.nn.Module, channel_multiple: int) -> int:
    """Physically remove the zeroed intermediate channels of every MLP with INC's
    ``LinearCompressionIterator``; returns the new ``intermediate_size``.

    Every layer keeps the same number of channels, its strongest by the norm of their
    ``down_proj`` column: the most any layer kept nonzero, rounded up to ``channel_multiple``
    (wide, regular matmuls). A layer that kept fewer keeps a few zero channels: exact, and a
    model that saves and loads with one ``intermediate_size``.
    """
    from neural_compressor.compression.pruner.model_slim.weight_slim import LinearCompressionIterator

    layers = decoder_layers(model)
    norms = [layer.mlp.down_proj.weight.norm(dim=0) for layer in layers]
    full = norms[0].numel()
    kept = max(int((norm > 0).sum()) for norm in norms)
    width = min(full, -(-kept // channel_multiple) * channel_multiple)
    masks = []
    for norm in norms:
        mask = torch.zeros(full, dtype=torch.int64)
        mask[norm.argsort(descending=True)[:width]] = 1
        masks.append(mask)
    pairs = [
        {"root_linear": layer.mlp.down_proj, "target_frontier_linears": [layer.mlp.gate_proj, layer.mlp.up_proj]}
        for layer in layers
    ]
    LinearCompressionIterator(pairs)(masks=masks, round_value=0)  # our masks already fix the width
    for layer in layers:
        layer.mlp.intermediate_size = width
    model.config.intermediate_size = width
    return width
