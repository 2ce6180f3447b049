"""Post-training quantisation on CPU, and the saved form of a quantised model.

Methods (``compression.quantization.method``):

- ``rtn``: Intel Neural Compressor 3.x ``RTNConfig``, weight-only, round to nearest, INT8 or
  INT4 in groups of ``group_size`` input channels.
- ``gptq``: INC 3.x ``GPTQConfig``, weight-only, rounding that compensates each column's error
  using activations of calibration prompts (``calibration_rows`` of ``distill_train``).
- ``inc_dynamic_int8``: INC's dynamic INT8 on CPU, ``PostTrainingQuantConfig(approach=
  "dynamic")``: int8 weights per output channel, activations quantised per batch at run time,
  int8 matmuls (fbgemm). INC 3.x's ``DynamicQuantConfig`` goes through torch's PT2E
  quantizer, which torch 2.13 moved out to torchao (not installed).
- ``torch_dynamic_int8``: torch's own ``quantize_dynamic``, the reference point.

INC's weight-only layers keep int4/int8 weights for storage, but on CPU they unpack them into
float32 on their first call and compute in float32: smaller on disk, not faster. Dynamic INT8
computes in int8. Measure with ``benchmarks/compression_table.py`` before choosing.

``smooth_mlp`` (``compression.quantization.smooth_alpha``) moves the outliers of the MLP's
gated activations into the down projection's weights before dynamic INT8 quantises them (the
SmoothQuant transform): per-tensor activation scales then keep the small channels. It is exact in
float, and the saved model is the smoothed one.

``quantize_embedding`` also stores the input embedding table in 8 bits per row: with 49k
tokens it is a fifth of SmolLM2's parameters, and once the output head is quantised the two
are no longer one tied tensor, so a float table would be stored besides the quantised head.
INC's dynamic INT8 quantises the table itself; for the others torch's weight-only quantised
``Embedding`` does (INC 3.x's weight-only methods quantise linear layers only).

A saved quantised model is a directory with the model's ``config.json`` and tokenizer, the
quantised weights in ``quantized_model.safetensors`` and ``quantization.json`` (this module's
recipe). safetensors holds plain tensors only, so a quantised tensor is stored as its integers,
scales and zero points, and the few non-tensor entries of a state dict (a packed layer's dtype,
its (weight, bias) pair) are described in the file's metadata. :func:`load_quantized` rebuilds
the quantised layers on an empty model of that config and loads the weights into them: no
pickle is read, so a crafted weights file cannot run code.
"""

from __future__ import annotations

import copy
import json
import re
import tempfile
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from supertiny.compression.settings import WEIGHT_ONLY
from supertiny.errors import SupertinyError

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
        )

    @property
    def name(self) -> str:
        """A short name for tables: ``rtn_int4_g32``, ``torch_dynamic_int8``."""
        if self.method in WEIGHT_ONLY:
            group = "" if self.group_size == -1 else f"_g{self.group_size}"
            return f"{self.method}_int{self.bits}{group}"
        return self.method


# ---- quantising ----------------------------------------------------------------------------


def quantize(model: torch.nn.Module, recipe: Recipe, calibration: list[dict[str, torch.Tensor]] | None = None) -> torch.nn.Module:
    """Quantise ``model`` (consumed: INC and torch replace its layers) as ``recipe`` says.

    ``calibration``: tokenised prompts (``input_ids``, ``attention_mask``), used by GPTQ and
    by the smoothing.
    """
    model.eval()
    if recipe.smooth_alpha is not None:
        if not calibration:
            raise ValueError("smooth_alpha needs calibration prompts")
        smooth_mlp(model, calibration, recipe.smooth_alpha)
    if recipe.method in WEIGHT_ONLY:
        model = _inc_weight_only(model, recipe, calibration)
    elif recipe.method == "inc_dynamic_int8":
        model = _inc_dynamic(model, recipe)
    else:
        model = _torch_dynamic(model, recipe)
    if recipe.quantize_embedding and isinstance(model.get_input_embeddings(), torch.nn.Embedding):
        _quantize_embedding(model)
    return model


@torch.no_grad()
def smooth_mlp(model: torch.nn.Module, calibration: list[dict[str, torch.Tensor]], alpha: float) -> list[str]:
    """SmoothQuant on every MLP's down projection, in place; the smoothed layers' names.

    The down projection reads ``act(gate(x)) * up(x)``, whose few outlier channels make a
    per-tensor INT8 scale too coarse for the rest. Channel j is divided by
    ``s_j = max|a_j|^alpha / max|W_j|^(1 - alpha)`` (``a``: the activations on calibration
    prompts, real tokens only; ``W_j``: the down projection's column j) by scaling ``up``'s row
    j, which the product carries through, and the column is multiplied by ``s_j``: the float
    model computes the same. INC's SmoothQuant folds scales only into a norm or linear layer
    directly before the smoothed one, and here a product stands between, so it is done here.
    """
    mlps = [(name, module) for name, module in model.named_modules()
            if isinstance(getattr(module, "up_proj", None), torch.nn.Linear) and isinstance(getattr(module, "down_proj", None), torch.nn.Linear)]
    if not mlps:
        raise SupertinyError("compression.quantization.smooth_alpha: the model has no MLP with up_proj and down_proj layers")
    peaks: dict[str, torch.Tensor] = {}
    mask: list[torch.Tensor] = []  # the current batch's real-token positions

    def record(name: str) -> Callable:
        def hook(module: torch.nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
            activations = inputs[0][mask[0]] if inputs[0].dim() == 3 else inputs[0]
            peak = activations.abs().amax(dim=0).float()
            peaks[name] = torch.maximum(peaks[name], peak) if name in peaks else peak
        return hook

    handles = [mlp.down_proj.register_forward_pre_hook(record(name)) for name, mlp in mlps]
    try:
        for batch in calibration:
            mask[:] = [batch["attention_mask"].bool()]
            model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False)
    finally:
        for handle in handles:
            handle.remove()
    for name, mlp in mlps:
        weight_peak = mlp.down_proj.weight.abs().amax(dim=0).float()
        scales = (peaks[name].clamp(min=1e-5) ** alpha / weight_peak.clamp(min=1e-5) ** (1 - alpha)).clamp(min=1e-5)
        mlp.down_proj.weight.mul_(scales.to(mlp.down_proj.weight.dtype))
        mlp.up_proj.weight.div_(scales.to(mlp.up_proj.weight.dtype)[:, None])
        if mlp.up_proj.bias is not None:
            mlp.up_proj.bias.div_(scales.to(mlp.up_proj.bias.dtype))
    return [f"{name}.down_proj" for name, _ in mlps]


def _inc_weight_only_config(recipe: Recipe) -> Any:
    from neural_compressor.torch.quantization import GPTQConfig, RTNConfig

    config_class = RTNConfig if recipe.method == "rtn" else GPTQConfig
    # The output head is the largest matmul: quantise it too (INC leaves it alone by default).
    return config_class(bits=recipe.bits, group_size=recipe.group_size, use_sym=True, quant_lm_head=True)


@torch.no_grad()
def _inc_weight_only(model: torch.nn.Module, recipe: Recipe, calibration: list[dict[str, torch.Tensor]] | None) -> torch.nn.Module:
    from neural_compressor.torch.quantization import convert, prepare

    model = prepare(model, _inc_weight_only_config(recipe))
    if recipe.method == "gptq":
        if not calibration:
            raise ValueError("gptq needs calibration prompts")
        for batch in calibration:  # GPTQ collects each layer's input activations here
            model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False)
    return convert(model)


def _inc_dynamic(model: torch.nn.Module, recipe: Recipe) -> torch.nn.Module:
    from neural_compressor import PostTrainingQuantConfig, quantization
    from neural_compressor.config import options

    # INC quantises embedding tables too (8 bits per row), unless told to keep them float.
    keep_float = {"weight": {"dtype": ["fp32"]}, "activation": {"dtype": ["fp32"]}}
    op_types = {} if recipe.quantize_embedding else {"Embedding": keep_float}
    config = PostTrainingQuantConfig(approach="dynamic", op_type_dict=op_types)
    # INC 3.7's dynamic FX path quantises a Linear named in op_name_dict all the same, so the
    # layers kept in float are put back after it, as they were.
    floats = {name: copy.deepcopy(model.get_submodule(name)) for name in kept_float(model, recipe.keep_float)}
    # INC writes a tuning history into its workspace (./nc_workspace by default): keep it out
    # of the project.
    default_workspace = options.workspace
    with tempfile.TemporaryDirectory(prefix="supertiny-inc-") as workspace:
        options.workspace = workspace
        try:
            quantized = quantization.fit(model, config).model
        finally:
            options.workspace = default_workspace
    for name, module in floats.items():
        quantized.set_submodule(name, module)
    return quantized


def kept_float(model: torch.nn.Module, patterns: tuple[str, ...] | list[str]) -> list[str]:
    """Names of the linear layers that ``patterns`` (regular expressions, searched) keep float."""
    return [name for name, module in model.named_modules()
            if isinstance(module, torch.nn.Linear) and any(re.search(pattern, name) for pattern in patterns)]


def _torch_dynamic(model: torch.nn.Module, recipe: Recipe) -> torch.nn.Module:
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    # Per output channel, like INC's dynamic INT8: one scale per row of each weight.
    if recipe.keep_float:
        # Per layer name: every Linear but those kept float.
        kept = set(kept_float(model, recipe.keep_float))
        targets = {name: per_channel_dynamic_qconfig for name, module in model.named_modules()
                   if isinstance(module, torch.nn.Linear) and name not in kept}
        return quantize_dynamic(model, targets, inplace=True)
    return quantize_dynamic(model, {torch.nn.Linear: per_channel_dynamic_qconfig}, inplace=True)


def _quantize_embedding(model: torch.nn.Module) -> None:
    from torch.ao.nn.quantized import Embedding as QuantizedEmbedding
    from torch.ao.quantization import float_qparams_weight_only_qconfig

    embedding = model.get_input_embeddings()
    embedding.qconfig = float_qparams_weight_only_qconfig  # 8 bits per row, float scale and offset
    model.model.embed_tokens = QuantizedEmbedding.from_float(embedding)


# ---- saving and loading --------------------------------------------------------------------


def save_quantized(model: torch.nn.Module, tokenizer: Any, recipe: Recipe, directory: Path) -> None:
    """Write a quantised model as :func:`load_quantized` reads it (config, tokenizer, weights,
    recipe); nothing but the quantised weights is stored."""
    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    model.config.save_pretrained(directory)
    if model.generation_config is not None:
        model.generation_config.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    tensors, layout = _flatten_state(model.state_dict())
    save_file(tensors, directory / WEIGHTS_FILE, metadata={LAYOUT_KEY: json.dumps(layout)})
    (directory / RECIPE_FILE).write_text(json.dumps(asdict(recipe), indent=2) + "\n")


def is_quantized(directory: Path) -> bool:
    return (Path(directory) / RECIPE_FILE).exists()


def read_recipe(directory: Path) -> Recipe:
    return Recipe(**json.loads((Path(directory) / RECIPE_FILE).read_text()))


def load_quantized(directory: Path) -> torch.nn.Module:
    """Rebuild a model saved by :func:`save_quantized`: an empty model of its config, its
    layers replaced by the recipe's quantised ones, then every saved tensor loaded (strictly:
    a tensor missing from the files is an error, not a silently random weight)."""
    from transformers import AutoConfig, AutoModelForCausalLM, GenerationConfig

    directory = Path(directory)
    recipe = read_recipe(directory)
    state = read_quantized_state(directory)
    empty = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(directory), dtype=torch.float32).eval()
    model = _REBUILD[recipe.method](empty, recipe, state)
    model.load_state_dict(state, strict=True)
    if (directory / "generation_config.json").exists():
        model.generation_config = GenerationConfig.from_pretrained(directory)
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
        _quantize_embedding(model)
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
    model = _inc_dynamic(model, recipe) if recipe.method == "inc_dynamic_int8" else _torch_dynamic(model, recipe)
    if recipe.quantize_embedding and isinstance(model.get_input_embeddings(), torch.nn.Embedding):
        _quantize_embedding(model)
    return model


_REBUILD: dict[str, Callable[[torch.nn.Module, Recipe, dict[str, Any]], torch.nn.Module]] = {
    "rtn": _rebuild_weight_only,
    "gptq": _rebuild_weight_only,
    "inc_dynamic_int8": _rebuild_dynamic,
    "torch_dynamic_int8": _rebuild_dynamic,
}
