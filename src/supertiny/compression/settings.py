"""Checks of ``compression`` settings: before a run starts (``check_params``, light enough for
the project's hook to import at start-up), and against the model before any work."""

from __future__ import annotations

import re
from typing import Any

from supertiny.errors import ConfigError

# INC's pruning criteria (``pruning_type``) that work with a channel pattern during training.
CRITERIA = ("magnitude", "snip", "snip_momentum", "snip_progressive", "snip_momentum_progressive")
SPARSITY_DECAYS = ("exp", "linear", "cos", "cube")
# What runs the quantised model (supertiny.quantized_model), and the methods ONNX Runtime has.
RUNTIMES = ("torch", "onnxruntime")
ONNX_METHODS = ("inc_dynamic_int8",)

# Quantisation methods are supertiny.quantized_model.METHODS (it imports torch: read at check time).
WEIGHT_ONLY_BITS = (4, 8)
# INC's weight-only group sizes (RTNConfig.register_supported_configs); -1: one group per row.
GROUP_SIZES = (-1, 32, 64, 128, 256, 512, 1024)
# INC methods that exist but cannot run on this CPU set-up, and why.
UNSUPPORTED = {
    "dynamic_int8": "INC 3.x DynamicQuantConfig needs torch's PT2E quantizer, which torch 2.13 moved to torchao "
    "(not installed); INC's dynamic INT8 that runs here is inc_dynamic_int8",
    "static_int8": "INC's static INT8 on CPU needs intel-extension-for-pytorch (IPEX), not installed",
    "smoothquant": "INC's SmoothQuant on CPU needs intel-extension-for-pytorch (IPEX), not installed",
    "fp8": "INC's FP8 quantisation needs an Intel Gaudi (HPU) device",
}


def _integer(value: Any, setting: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{setting} must be an integer of at least {minimum}; got {value!r}")
    return value


def _training(args: dict[str, Any], setting: str, minimum_steps: int) -> None:
    """TRL ``SFTConfig`` fields, as a student stage's ``args``; a run of a fixed ``max_steps``."""
    from supertiny.training.settings import check_trainer_args

    check_trainer_args(setting, "SFTConfig", args)
    _integer(args.get("max_steps"), f"{setting}.max_steps", minimum_steps)


def recovery_steps(recovery: dict[str, Any]) -> int:
    """Steps of recovery training; 0 skips it (``max_steps: 0`` would mean epochs to TRL)."""
    return (recovery.get("args") or {}).get("max_steps", 0)


def check_params(compression: dict[str, Any]) -> None:
    """Raise ConfigError, naming the setting, for compression settings that cannot work: the
    parameters model's checks (types, ranges, the criterion and decay words), then the rules
    between settings."""
    from supertiny.parameters import check_section  # it imports this module's word lists

    check_section("compression", compression)
    pruning = compression["pruning"]
    _training(pruning["training"]["args"], "compression.pruning.training.args", minimum_steps=1)
    schedule = pruning["schedule"]
    start, end = schedule["start_step"], schedule["end_step"]
    if end < start:
        raise ConfigError(f"compression.pruning.schedule.end_step ({end}) must be at least start_step ({start})")
    if end >= pruning["training"]["args"]["max_steps"]:
        raise ConfigError(
            f"compression.pruning.schedule.end_step ({end}) must be below compression.pruning.training.args.max_steps "
            f"({pruning['training']['args']['max_steps']}): the target sparsity is reached at end_step"
        )
    _training(compression["recovery"]["args"], "compression.recovery.args", minimum_steps=0)
    check_quantization(compression["quantization"])


def check_precision(compression: dict[str, Any], device: Any) -> None:
    """Mixed precision in the trainers' ``args`` only where the device (``runtime.device``) has it."""
    from supertiny.training.settings import check_precision as check_args_precision

    check_args_precision("compression.pruning.training.args", compression["pruning"]["training"]["args"], device)
    check_args_precision("compression.recovery.args", compression["recovery"]["args"], device)


def check_quantization(settings: dict[str, Any], setting: str = "compression.quantization") -> None:
    """Raise ConfigError for a method, bit width or group size that cannot run here."""
    from supertiny.parameters import check_section
    from supertiny.quantized_model import METHODS, WEIGHT_ONLY

    check_section("compression", {"quantization": settings})  # types and ranges: the parameters model's
    method = settings.get("method")
    if method in UNSUPPORTED:
        raise ConfigError(f"{setting}.method: {method!r} is not supported on this CPU: {UNSUPPORTED[method]}; use one of {METHODS}")
    if method not in METHODS:
        raise ConfigError(f"{setting}.method must be one of {METHODS}; got {method!r}")
    if settings.get("runtime", "torch") == "onnxruntime" and method not in ONNX_METHODS:
        raise ConfigError(f"{setting}.runtime: onnxruntime runs {', '.join(ONNX_METHODS)} only; {method!r} runs in torch (runtime: torch)")
    bits = settings.get("bits", 8)
    if method in WEIGHT_ONLY:
        if bits not in WEIGHT_ONLY_BITS:
            raise ConfigError(f"{setting}.bits: {method} supports {WEIGHT_ONLY_BITS} bits here; got {bits!r}")
        if settings.get("group_size", 32) not in GROUP_SIZES:
            raise ConfigError(f"{setting}.group_size must be one of {GROUP_SIZES} for {method}; got {settings.get('group_size')!r}")
    elif bits != 8:
        raise ConfigError(f"{setting}.bits: {method} quantises to 8 bits only; got {bits!r}")
    keep_float = settings.get("keep_float") or []
    for pattern in keep_float:
        try:
            re.compile(pattern)
        except re.error as error:
            raise ConfigError(f"{setting}.keep_float: {pattern!r} is not a regular expression ({error})") from None
    if keep_float and method in WEIGHT_ONLY:
        raise ConfigError(f"{setting}.keep_float applies to the dynamic INT8 methods, not {method}")
    alpha = settings.get("smooth_alpha")
    if alpha is not None:
        if method in WEIGHT_ONLY:
            raise ConfigError(f"{setting}.smooth_alpha applies to the dynamic INT8 methods, not {method}")
    if (method == "gptq" or alpha is not None) and int(settings.get("calibration_rows", 0)) < 1:
        raise ConfigError(f"{setting}.calibration_rows: {'gptq' if method == 'gptq' else 'smooth_alpha'} needs at least one calibration prompt")


def check_against_model(compression: dict[str, Any], model: Any) -> None:
    """The settings that depend on the model: layer patterns that match, layers that exist."""
    import torch

    from supertiny.compression.pruning import decoder_layers, matching_modules

    op_names = compression["pruning"]["mlp"]["op_names"]
    if not matching_modules(model, op_names):
        linears = [name for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)]
        raise ConfigError(
            f"compression.pruning.mlp.op_names {op_names} match no linear layer of the model; "
            f"its layers are named like {linears[:4]}"
        )
    from supertiny.quantized_model import kept_float

    for pattern in compression["quantization"].get("keep_float") or []:
        if not kept_float(model, [pattern]):
            raise ConfigError(f"compression.quantization.keep_float: {pattern!r} matches no linear layer of the model; "
                              "its layers are named like lm_head, model.layers.0.mlp.down_proj")
    layers = len(decoder_layers(model))
    drop = compression["pruning"]["depth"]["drop_layers"]
    if drop > layers - 2:
        raise ConfigError(
            f"compression.pruning.depth.drop_layers: {drop} of the model's {layers} decoder layers; the first and "
            f"the last are always kept, so at most {max(layers - 2, 0)} can be dropped"
        )
