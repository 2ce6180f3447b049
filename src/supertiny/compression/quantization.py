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

``quantize_embedding`` also stores the input embedding table in 8 bits per row: with 49k
tokens it is a fifth of SmolLM2's parameters, and once the output head is quantised the two
are no longer one tied tensor, so a float table would be stored besides the quantised head.
INC's dynamic INT8 quantises the table itself; for the others torch's weight-only quantised
``Embedding`` does (INC 3.x's weight-only methods quantise linear layers only).

A saved quantised model is a directory with the model's ``config.json`` and tokenizer, the
quantised weights (INC's own ``save`` for its weight-only methods, the state dict for the
dynamic ones), and ``quantization.json`` (this module's recipe). :func:`load_quantized`
rebuilds the quantised layers on an empty model of that config and loads the weights into
them, so the files on disk hold the quantised bytes only.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from supertiny.compression.settings import WEIGHT_ONLY

RECIPE_FILE = "quantization.json"
TORCH_WEIGHTS_FILE = "quantized_model.pt"


@dataclass(frozen=True)
class Recipe:
    """What a quantised model needs to be rebuilt: the method and its settings."""

    method: str
    bits: int = 8
    group_size: int = 32
    quantize_embedding: bool = True

    @classmethod
    def from_settings(cls, settings: dict[str, Any]) -> Recipe:
        return cls(
            method=settings["method"],
            bits=int(settings.get("bits", 8)),
            group_size=int(settings.get("group_size", 32)),
            quantize_embedding=bool(settings.get("quantize_embedding", True)),
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

    ``calibration``: tokenised prompts (``input_ids``, ``attention_mask``), used by GPTQ only.
    """
    model.eval()
    if recipe.method in WEIGHT_ONLY:
        model = _inc_weight_only(model, recipe, calibration)
    elif recipe.method == "inc_dynamic_int8":
        model = _inc_dynamic(model, recipe)
    else:
        model = _torch_dynamic(model)
    if recipe.quantize_embedding and isinstance(model.get_input_embeddings(), torch.nn.Embedding):
        _quantize_embedding(model)
    return model


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
    # INC writes a tuning history into its workspace (./nc_workspace by default): keep it out
    # of the project.
    default_workspace = options.workspace
    with tempfile.TemporaryDirectory(prefix="supertiny-inc-") as workspace:
        options.workspace = workspace
        try:
            return quantization.fit(model, config).model
        finally:
            options.workspace = default_workspace


def _torch_dynamic(model: torch.nn.Module) -> torch.nn.Module:
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    # Per output channel, like INC's dynamic INT8: one scale per row of each weight.
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
    directory.mkdir(parents=True, exist_ok=True)
    model.config.save_pretrained(directory)
    if model.generation_config is not None:
        model.generation_config.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    if recipe.method in WEIGHT_ONLY:
        from neural_compressor.torch.quantization import save

        save(model, str(directory))  # INC's format: quantized_weight.pt and qconfig.json
    else:
        torch.save(model.state_dict(), directory / TORCH_WEIGHTS_FILE)
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
    empty = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(directory), dtype=torch.float32).eval()
    model = _REBUILD[recipe.method](empty, recipe, directory)
    if (directory / "generation_config.json").exists():
        model.generation_config = GenerationConfig.from_pretrained(directory)
    return model.eval()


def _rebuild_weight_only(model: torch.nn.Module, recipe: Recipe, directory: Path) -> torch.nn.Module:
    from neural_compressor.torch.quantization import load
    from neural_compressor.torch.utils.utility import WEIGHT_NAME

    if recipe.quantize_embedding:
        _quantize_embedding(model)
    # INC's load builds the weight-only layers from qconfig.json and fills them; it takes other
    # tensors (norms, embedding) from the model it is given, so load those from the file too.
    quantized = load(str(directory), original_model=model)
    quantized.load_state_dict(torch.load(directory / WEIGHT_NAME, weights_only=False), strict=True)
    return quantized


def _rebuild_dynamic(model: torch.nn.Module, recipe: Recipe, directory: Path) -> torch.nn.Module:
    # Quantising the empty model gives the same layers; their (meaningless) weights are then
    # replaced by the saved ones.
    model = _inc_dynamic(model, recipe) if recipe.method == "inc_dynamic_int8" else _torch_dynamic(model)
    if recipe.quantize_embedding and isinstance(model.get_input_embeddings(), torch.nn.Embedding):
        _quantize_embedding(model)
    model.load_state_dict(torch.load(directory / TORCH_WEIGHTS_FILE, weights_only=False), strict=True)
    return model


_REBUILD: dict[str, Callable[[torch.nn.Module, Recipe, Path], torch.nn.Module]] = {
    "rtn": _rebuild_weight_only,
    "gptq": _rebuild_weight_only,
    "inc_dynamic_int8": _rebuild_dynamic,
    "torch_dynamic_int8": _rebuild_dynamic,
}
