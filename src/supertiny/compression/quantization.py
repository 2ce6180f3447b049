"""Post-training quantisation on CPU.

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

``runtime: onnxruntime`` (``inc_dynamic_int8`` only): the (smoothed) float model is exported to
ONNX (``supertiny.onnx_model``) and INC's ONNX Runtime adaptor quantises the graph, with the same
``PostTrainingQuantConfig(approach="dynamic")``: int8 weights per output channel in
``MatMulInteger``, activations quantised per call. ONNX Runtime runs the graph from C++, which
batch-1 decoding of this small a model needs more than anything (``benchmarks/decode_paths.py``).

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

The recipe, the layers it builds and the saved form are ``supertiny.quantized_model``'s: the
model dataset loads a saved model with the same layers this module's quantiser made.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from supertiny.errors import SupertinyError
from supertiny.quantized_model import (
    INC_FLOAT,
    WEIGHT_ONLY,
    Recipe,
    inc_dynamic_int8,
    inc_workspace,
    kept_float,
    quantize_embedding_table,
    torch_dynamic_int8,
)

# ---- quantising ----------------------------------------------------------------------------


def quantize(model: torch.nn.Module, recipe: Recipe, calibration: list[dict[str, torch.Tensor]] | None = None) -> Any:
    """Quantise ``model`` (consumed: INC and torch replace its layers) as ``recipe`` says: a
    torch model, or for ``runtime: onnxruntime`` an ``onnx_model.OnnxCausalLM``.

    ``calibration``: tokenised prompts (``input_ids``, ``attention_mask``), used by GPTQ and
    by the smoothing.
    """
    model.eval()
    if recipe.smooth_alpha is not None:
        if not calibration:
            raise ValueError("smooth_alpha needs calibration prompts")
        smooth_mlp(model, calibration, recipe.smooth_alpha)
    if recipe.runtime == "onnxruntime":
        return inc_dynamic_int8_onnx(model, recipe)
    if recipe.method in WEIGHT_ONLY:
        model = _inc_weight_only(model, recipe, calibration)
    elif recipe.method == "inc_dynamic_int8":
        model = inc_dynamic_int8(model, recipe)
    else:
        model = torch_dynamic_int8(model, recipe)
    if recipe.quantize_embedding and isinstance(model.get_input_embeddings(), torch.nn.Embedding):
        quantize_embedding_table(model)
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


# ---- ONNX Runtime ------------------------------------------------------------------------------


def inc_dynamic_int8_onnx(model: torch.nn.Module, recipe: Recipe) -> Any:
    """``model`` exported to ONNX and quantised there by INC's dynamic INT8, as an
    ``onnx_model.OnnxCausalLM`` (``recipe.keep_float`` and ``quantize_embedding`` as in torch).

    INC 3.7 still ships this ONNX Runtime adaptor (deprecated since 3.4, with a warning; its
    successor, the separate onnx-neural-compressor package, is not in the pinned set)."""
    import onnx
    from neural_compressor import PostTrainingQuantConfig, quantization

    from supertiny.compression.pruning import parameter_count
    from supertiny.onnx_model import OnnxCausalLM, export_onnx

    kept = set(kept_float(model, recipe.keep_float))
    with inc_workspace() as workspace:
        exported = Path(workspace) / "float.onnx"
        export_onnx(model, exported)
        graph = onnx.load(str(exported))
        op_names = {node.name: INC_FLOAT for node in graph.graph.node if node.op_type == "MatMul" and layer_of(node.name) in kept}
        op_types = {} if recipe.quantize_embedding else {"Gather": INC_FLOAT}
        quantized = quantization.fit(graph, PostTrainingQuantConfig(approach="dynamic", op_type_dict=op_types, op_name_dict=op_names))
    if quantized is None:
        raise SupertinyError("INC's ONNX Runtime dynamic INT8 returned no model (its log above says why)")
    return OnnxCausalLM(quantized.model.SerializeToString(), model.config, parameter_count(model), model.generation_config)


def layer_of(node_name: str) -> str:
    """The torch layer an exported node belongs to: the TorchScript exporter names a layer's node
    ``/model/<module path with />/MatMul`` (its first part is ``StepGraph``'s attribute)."""
    return ".".join(node_name.strip("/").split("/")[1:-1])
