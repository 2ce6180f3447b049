"""A quantised model: its recipe, its layers and its saved form.

The compression pipeline makes one (``supertiny.compression.quantization.quantize``), the model
dataset saves it and loads it back (``supertiny.datasets.model``); both build a recipe's layers
with the functions here, so a loaded model has the very layers the quantiser made.

Methods (``compression.quantization.method``): ``rtn`` and ``gptq``, INC's weight-only layers;
``inc_dynamic_int8``, INC's dynamic INT8 (int8 weights per output channel, activations
quantised per batch at run time, int8 matmuls); ``torch_dynamic_int8``, torch's own
``quantize_dynamic``, the reference point.

Runtimes (``compression.quantization.runtime``): ``torch``, the quantised layers in the
transformers model; ``onnxruntime`` (``inc_dynamic_int8`` only), the model exported to ONNX and
quantised there by INC's ONNX Runtime dynamic INT8 (``supertiny.onnx_model``), saved as its
graph, ``model.onnx``.

A saved torch quantised model is a directory with the model's ``config.json`` and tokenizer, the
quantised weights in ``quantized_model.safetensors`` and ``quantization.json`` (the recipe).
safetensors holds plain tensors only, so a quantised tensor is stored as its integers, scales
and zero points, and the few non-tensor entries of a state dict (a packed layer's dtype, its
(weight, bias) pair) are described in the file's metadata. :func:`load_quantized` rebuilds the
quantised layers on an empty model of that config and loads the weights into them: no pickle is
read, so a crafted weights file cannot run code.
"""

from __future__ import annotations

import copy
import json
import re
import tempfile
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from supertiny.errors import SupertinyError

# The quantisation methods, and those whose layers are INC's weight-only ones.
METHODS = ("rtn", "gptq", "inc_dynamic_int8", "torch_dynamic_int8")
WEIGHT_ONLY = ("rtn", "gptq")

RECIPE_FILE = "quantization.json"
WEIGHTS_FILE = "quantized_model.safetensors"
# Earlier saves were pickles, which only an unrestricted (code-running) load reads: refused.
PICKLED_WEIGHTS = ("quantized_model.pt", "quantized_weight.pt")
LAYOUT_KEY = "supertiny.layout"


@dataclass(frozen=True)
class Recipe:
    """What a quantised model needs to be rebuilt: the method and its settings."""

    method: str
    bits: int = 8
    group_size: int = 32
    quantize_embedding: bool = True
    # Regular expressions searched in linear layer names: the layers the dynamic INT8 methods leave float.
    keep_float: tuple[str, ...] = ()
    # SmoothQuant's migration strength for the MLP's down projections (None: not smoothed).
    smooth_alpha: float | None = None
    runtime: str = "torch"

    def __post_init__(self) -> None:
        object.__setattr__(self, "keep_float", tuple(self.keep_float))  # a list from JSON or YAML

    @classmethod
    def from_settings(cls, settings: dict[str, Any]) -> Recipe:
        return cls(
            method=settings["method"],
            bits=int(settings.get("bits", 8)),
            group_size=int(settings.get("group_size", 32)),
            quantize_embedding=bool(settings.get("quantize_embedding", True)),
            keep_float=tuple(settings.get("keep_float") or ()),
            smooth_alpha=None if settings.get("smooth_alpha") is None else float(settings["smooth_alpha"]),
            runtime=settings.get("runtime", "torch"),
        )

    @property
    def name(self) -> str:
        """A short name for tables: ``rtn_int4_g32``, ``torch_dynamic_int8``, ``inc_dynamic_int8_onnxrt``."""
        if self.method in WEIGHT_ONLY:
            group = "" if self.group_size == -1 else f"_g{self.group_size}"
            return f"{self.method}_int{self.bits}{group}"
        return self.method + ("_onnxrt" if self.runtime == "onnxruntime" else "")


# ---- the layers of a recipe --------------------------------------------------------------------


def inc_dynamic_int8(model: torch.nn.Module, recipe: Recipe) -> torch.nn.Module:
    """``model`` with INC's dynamic INT8 layers (``PostTrainingQuantConfig(approach="dynamic")``)."""
    from neural_compressor import PostTrainingQuantConfig, quantization

    # INC quantises embedding tables too (8 bits per row), unless told to keep them float.
    op_types = {} if recipe.quantize_embedding else {"Embedding": INC_FLOAT}
    config = PostTrainingQuantConfig(approach="dynamic", op_type_dict=op_types)
    # INC 3.7's dynamic FX path quantises a Linear named in op_name_dict all the same, so the
    # layers kept in float are put back after it, as they were.
    floats = {name: copy.deepcopy(model.get_submodule(name)) for name in kept_float(model, recipe.keep_float)}
    with inc_workspace():
        quantized = quantization.fit(model, config).model
    for name, module in floats.items():
        quantized.set_submodule(name, module)
    return quantized


# INC's setting for an operator (by type or by name) that stays float.
INC_FLOAT = {"weight": {"dtype": ["fp32"]}, "activation": {"dtype": ["fp32"]}}


@contextmanager
def inc_workspace() -> Iterator[str]:
    """INC's workspace, where it writes a tuning history (./nc_workspace by default), in a
    temporary folder for the block, out of the project; the folder's path."""
    from neural_compressor.config import options

    default_workspace = options.workspace
    with tempfile.TemporaryDirectory(prefix="supertiny-inc-") as workspace:
        options.workspace = workspace
        try:
            yield workspace
        finally:
            options.workspace = default_workspace


def kept_float(model: torch.nn.Module, patterns: tuple[str, ...] | list[str]) -> list[str]:
    """Names of the linear layers that ``patterns`` (regular expressions, searched) keep float."""
    return [name for name, module in model.named_modules()
            if isinstance(module, torch.nn.Linear) and any(re.search(pattern, name) for pattern in patterns)]


def torch_dynamic_int8(model: torch.nn.Module, recipe: Recipe) -> torch.nn.Module:
    """``model`` with torch's dynamic INT8 layers (``quantize_dynamic``)."""
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    # Per output channel, like INC's dynamic INT8: one scale per row of each weight.
    if recipe.keep_float:
        # Per layer name: every Linear but those kept float.
        kept = set(kept_float(model, recipe.keep_float))
        targets = {name: per_channel_dynamic_qconfig for name, module in model.named_modules()
                   if isinstance(module, torch.nn.Linear) and name not in kept}
        return quantize_dynamic(model, targets, inplace=True)
    return quantize_dynamic(model, {torch.nn.Linear: per_channel_dynamic_qconfig}, inplace=True)


def quantize_embedding_table(model: torch.nn.Module) -> None:
    """The input embedding table in 8 bits per row (torch's weight-only quantised ``Embedding``)."""
    from torch.ao.nn.quantized import Embedding as QuantizedEmbedding
    from torch.ao.quantization import float_qparams_weight_only_qconfig

    embedding = model.get_input_embeddings()
    embedding.qconfig = float_qparams_weight_only_qconfig  # 8 bits per row, float scale and offset
    model.model.embed_tokens = QuantizedEmbedding.from_float(embedding)


# ---- saving and loading --------------------------------------------------------------------


def save_quantized(model: Any, tokenizer: Any, recipe: Recipe, directory: Path) -> None:
    """Write a quantised model as :func:`load_quantized` reads it (config, tokenizer, weights or
    ONNX graph, recipe); nothing but the quantised weights is stored."""
    from safetensors.torch import save_file

    from supertiny.datasets.model import save_tokenizer

    directory.mkdir(parents=True, exist_ok=True)
    model.config.save_pretrained(directory)
    if model.generation_config is not None:
        model.generation_config.save_pretrained(directory)
    save_tokenizer(tokenizer, directory)
    if recipe.runtime == "onnxruntime":
        model.save_graph(directory)  # an onnx_model.OnnxCausalLM
    else:
        tensors, layout = _flatten_state(model.state_dict())
        save_file(tensors, directory / WEIGHTS_FILE, metadata={LAYOUT_KEY: json.dumps(layout)})
    (directory / RECIPE_FILE).write_text(json.dumps(asdict(recipe), indent=2) + "\n")


def is_quantized(directory: Path) -> bool:
    return (Path(directory) / RECIPE_FILE).exists()


def read_recipe(directory: Path) -> Recipe:
    return Recipe(**json.loads((Path(directory) / RECIPE_FILE).read_text()))


def load_quantized(directory: Path) -> Any:
    """Rebuild a model saved by :func:`save_quantized`: an empty model of its config, its
    layers replaced by the recipe's quantised ones, then every saved tensor loaded (strictly:
    a tensor missing from the files is an error, not a silently random weight). An ONNX Runtime
    model is its graph (``onnx_model.OnnxCausalLM``)."""
    from transformers import AutoConfig, AutoModelForCausalLM, GenerationConfig

    directory = Path(directory)
    recipe = read_recipe(directory)
    config = AutoConfig.from_pretrained(directory)
    generation = GenerationConfig.from_pretrained(directory) if (directory / "generation_config.json").exists() else None
    if recipe.runtime == "onnxruntime":
        from supertiny.onnx_model import OnnxCausalLM

        return OnnxCausalLM.load_graph(directory, config, generation)
    state = read_quantized_state(directory)
    empty = AutoModelForCausalLM.from_config(config, dtype=torch.float32).eval()
    model = _REBUILD[recipe.method](empty, recipe, state)
    model.load_state_dict(state, strict=True)
    if generation is not None:
        model.generation_config = generation
    return model.eval()


def read_quantized_state(directory: Path) -> dict[str, Any]:
    """The saved state dict, quantised tensors and all, read from safetensors only."""
    from safetensors import SafetensorError, safe_open

    directory = Path(directory)
    path = directory / WEIGHTS_FILE
    if not path.exists():
        pickled = [name for name in PICKLED_WEIGHTS if (directory / name).exists()]
        found = f" (it has {', '.join(pickled)}, a pickle, which is not loaded: it could run code)" if pickled else ""
        raise SupertinyError(f"{directory}: no {WEIGHTS_FILE}{found}; run the compression pipeline again to save the model")
    try:
        with safe_open(str(path), framework="pt") as weights:
            layout = json.loads((weights.metadata() or {})[LAYOUT_KEY])
            tensors = {name: weights.get_tensor(name) for name in weights.keys()}
    except (SafetensorError, KeyError, ValueError, OSError) as error:
        raise SupertinyError(f"{path} is not a quantised model saved by supertiny (safetensors with its layout): {error}") from None
    return _unflatten_state(tensors, layout)


# ---- state dicts as plain tensors (safetensors) ------------------------------------------------
# The layout's entries say how to rebuild each state-dict value from the stored tensors:
# {"tensor": name} | {"qtensor": ...} | {"dtype": "qint8"} | {"tuple": [entries]} | {"none": true}.


def _flatten_state(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors: dict[str, torch.Tensor] = {}
    seen: set[int] = set()

    def store(name: str, tensor: torch.Tensor) -> str:
        tensor = tensor.detach().contiguous()
        if tensor.untyped_storage().data_ptr() in seen:  # safetensors refuses tensors that share memory
            tensor = tensor.clone()
        seen.add(tensor.untyped_storage().data_ptr())
        tensors[name] = tensor
        return name

    def entry(name: str, value: Any) -> dict[str, Any]:
        if value is None:
            return {"none": True}
        if isinstance(value, torch.dtype):
            return {"dtype": str(value).removeprefix("torch.")}
        if isinstance(value, (tuple, list)):
            return {"tuple": [entry(f"{name}.{position}", item) for position, item in enumerate(value)]}
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"cannot store {name} ({type(value).__name__}) in safetensors")
        if not value.is_quantized:
            return {"tensor": store(name, value)}
        scheme = value.qscheme()
        if scheme in (torch.per_tensor_affine, torch.per_tensor_symmetric):
            return {"qtensor": "per_tensor", "int_repr": store(f"{name}:int_repr", value.int_repr()),
                    "scale": value.q_scale(), "zero_point": value.q_zero_point()}
        return {"qtensor": "per_channel", "int_repr": store(f"{name}:int_repr", value.int_repr()),
                "scales": store(f"{name}:scales", value.q_per_channel_scales()),
                "zero_points": store(f"{name}:zero_points", value.q_per_channel_zero_points()),
                "axis": value.q_per_channel_axis()}

    layout = {name: entry(name, value) for name, value in state.items()}
    # Each module's state-dict version (torch's quantised layers read their saved form by it).
    versions = {prefix: meta["version"] for prefix, meta in getattr(state, "_metadata", {}).items() if "version" in meta}
    return tensors, {"entries": layout, "versions": versions}


def _unflatten_state(tensors: dict[str, torch.Tensor], layout: dict[str, Any]) -> dict[str, Any]:
    def value(entry: dict[str, Any]) -> Any:
        if "none" in entry:
            return None
        if "dtype" in entry:
            dtype = getattr(torch, entry["dtype"], None)
            if not isinstance(dtype, torch.dtype):
                raise ValueError(f"unknown dtype {entry['dtype']!r}")
            return dtype
        if "tuple" in entry:
            return tuple(value(item) for item in entry["tuple"])
        if "tensor" in entry:
            return tensors[entry["tensor"]]
        integers = tensors[entry["int_repr"]]
        if entry["qtensor"] == "per_tensor":
            return torch._make_per_tensor_quantized_tensor(integers, entry["scale"], entry["zero_point"])
        # The zero points' dtype keeps the scheme: float ones are per_channel_affine_float_qparams.
        return torch._make_per_channel_quantized_tensor(integers, tensors[entry["scales"]], tensors[entry["zero_points"]], entry["axis"])

    state = OrderedDict((name, value(entry)) for name, entry in layout["entries"].items())
    state._metadata = OrderedDict((prefix, {"version": version}) for prefix, version in layout["versions"].items())
    return state


# ---- rebuilding the quantised layers -----------------------------------------------------------


def _rebuild_weight_only(model: torch.nn.Module, recipe: Recipe, state: dict[str, Any]) -> torch.nn.Module:
    """INC's weight-only layers where the saved state has packed weights, built as INC's own
    loader builds them (without quantising anything); the state fills them."""
    from neural_compressor.torch.algorithms.weight_only.modules import INCWeightOnlyLinear

    if recipe.quantize_embedding:
        quantize_embedding_table(model)
    linears = [(name, module) for name, module in model.named_modules() if isinstance(module, torch.nn.Linear) and f"{name}.qweight" in state]
    for name, linear in linears:
        layer = INCWeightOnlyLinear(
            linear.in_features, linear.out_features, dtype="int", bits=recipe.bits, group_size=recipe.group_size,
            zp=f"{name}.qzeros" in state, bias=linear.bias is not None, g_idx=f"{name}.g_idx" in state, use_optimum_format=True,
        )  # fmt: skip
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, child, layer)
    return model


def _rebuild_dynamic(model: torch.nn.Module, recipe: Recipe, state: dict[str, Any]) -> torch.nn.Module:
    # Quantising the empty model gives the same layers; their (meaningless) weights are then
    # replaced by the saved ones.
    model = inc_dynamic_int8(model, recipe) if recipe.method == "inc_dynamic_int8" else torch_dynamic_int8(model, recipe)
    if recipe.quantize_embedding and isinstance(model.get_input_embeddings(), torch.nn.Embedding):
        quantize_embedding_table(model)
    return model


_REBUILD: dict[str, Callable[[torch.nn.Module, Recipe, dict[str, Any]], torch.nn.Module]] = {
    "rtn": _rebuild_weight_only,
    "gptq": _rebuild_weight_only,
    "inc_dynamic_int8": _rebuild_dynamic,
    "torch_dynamic_int8": _rebuild_dynamic,
}
