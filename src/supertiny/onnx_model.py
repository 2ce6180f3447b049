"""A causal LM exported to ONNX and run by ONNX Runtime: the final model's fast path on a CPU.

Batch-1 decoding of a model this small in eager PyTorch is bound by per-operation overhead, not
by its weights: a step of the 30-layer student is some 4,400 operations, each dispatched from
Python (``benchmarks/decode_paths.py`` measures where the time goes). ONNX Runtime runs the same
graph from C++, and INC's ONNX Runtime dynamic INT8 (``compression.quantization.runtime:
onnxruntime``) gives it int8 matmuls.

The exported graph is one forward step of the transformers model on a KV cache
(:class:`StepGraph`): ``input_ids`` (1 x new tokens) and the cache so far, a key and a value
tensor a layer (``past_key_0``, ``past_value_0``, ...: 1 x KV heads x past tokens x head size),
in; the logits of the last new token and the cache with the new tokens appended (``key_0``,
``value_0``, ...), out. A prompt, one answer token or a
jump-forward's forced text are all one call. :class:`OnnxCausalLM` is called like a
transformers model (``input_ids``, ``past_key_values``), so ``decoding.Decoder`` drives both.

Loading an ONNX file runs no code: ONNX Runtime reads a protobuf graph of its own operators.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch

from supertiny.errors import SupertinyError

GRAPH_FILE = "model.onnx"
# What the graph does not say: the float model's parameter count, and the step graph's inputs.
METADATA_FILE = "onnx_model.json"
# The step graph's interface; a graph saved with another one is refused, naming the directory.
STEP_GRAPH = "per-layer-cache-1"
OPSET = 17
ATTENTION = "supertiny_grouped"  # the attention function the exported model runs (grouped_attention)


def cache_names(layers: int, prefix: str = "past_") -> list[str]:
    """The graph's cache inputs (``past_key_0``, ``past_value_0``, ...) or, with ``prefix=""``, outputs."""
    return [f"{prefix}{kind}_{layer}" for layer in range(layers) for kind in ("key", "value")]


def grouped_attention(
    module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, attention_mask: torch.Tensor,
    scaling: float, dropout: float = 0.0, **_: Any,
) -> tuple[torch.Tensor, None]:
    """Attention for grouped key/value heads without repeating the keys and values per query head.

    transformers' own implementations (eager, sdpa) expand each layer's whole cache to every query
    head before the matmuls; traced into the graph, that is three copies of the cache a layer a
    step, and the step's time grew with the cache (measured on the default run's final model:
    7.6 ms at an empty cache, 15.2 ms at 300 tokens). Here the query heads that share a key/value
    head are stacked as rows of one matrix instead. ``attention_mask`` is additive, broadcast over
    the heads (``StepGraph``'s). Registered in transformers' ``AttentionInterface`` as
    ``ATTENTION``; same signature and output layout (batch x queries x heads x head size)."""
    batch, heads, queries, head_dim = query.shape
    kv_heads = key.shape[1]
    grouped = query.reshape(batch, kv_heads, -1, head_dim)  # the heads of a group are consecutive
    scores = torch.matmul(grouped, key.transpose(2, 3)) * scaling
    scores = scores.reshape(batch, kv_heads, -1, queries, scores.shape[-1]) + attention_mask[:, :, None]
    weights = torch.softmax(scores, dim=-1).reshape(batch, kv_heads, -1, scores.shape[-1])
    output = torch.matmul(weights, value).reshape(batch, heads, queries, head_dim)
    return output.transpose(1, 2).contiguous(), None


class StepGraph(torch.nn.Module):
    """One forward step of a transformers causal LM on a KV cache, held as one key and one value
    tensor a layer (1 x KV heads x past tokens x head size), so that no step copies the cache
    into or out of a stacked tensor; with an explicit additive causal mask (query i sees every
    past token and the new tokens up to i), so the traced graph serves a prompt, one token and a
    chunk of forced tokens alike. The model runs ``grouped_attention``."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, *past: torch.Tensor) -> tuple[torch.Tensor, ...]:
        from transformers import DynamicCache

        past_length, new = past[0].shape[2], input_ids.shape[1]
        cache = DynamicCache(config=self.model.config)
        for layer in range(len(past) // 2):
            cache.update(past[2 * layer], past[2 * layer + 1], layer)
        positions = torch.arange(new) + past_length
        visible = torch.arange(past_length + new)[None, :] <= positions[:, None]
        mask = torch.zeros(visible.shape).masked_fill(~visible, torch.finfo(torch.float32).min)[None, None]
        output = self.model(input_ids=input_ids, position_ids=positions[None], attention_mask=mask,
                            past_key_values=cache, use_cache=True, logits_to_keep=1)
        present = [tensor for layer in cache.layers for tensor in (layer.keys, layer.values)]
        return (output.logits[:, -1, :], *present)


def layer_cache_shape(config: Any, past: int) -> tuple[int, int, int, int]:
    """One layer's key (or value) cache: 1 x KV heads x ``past`` tokens x head size."""
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    return (1, config.num_key_value_heads, past, head_dim)


@torch.no_grad()
def export_onnx(model: torch.nn.Module, path: Path) -> None:
    """Write ``model``'s :class:`StepGraph` to ``path`` (float, as the model is), running
    ``grouped_attention`` (the model's attention implementation is put back afterwards).

    The TorchScript exporter (``dynamo=False``) traces the cache updates as concatenations with
    dynamic lengths; the shapes of the example inputs do not matter beyond being non-empty.
    Measured on the default run's recovered model: the dynamo exporter's graph has a third of the
    nodes (2,347 against 7,778), but after INC's INT8 its decode step took 14.1 ms, against
    9.9-11.3 ms for this exporter's in separate runs of the same script."""
    from transformers import AttentionInterface

    AttentionInterface.register(ATTENTION, grouped_attention)
    model = model.eval()
    layers = model.config.num_hidden_layers
    before = model.config._attn_implementation
    model.set_attn_implementation(ATTENTION)
    try:
        past = [torch.zeros(layer_cache_shape(model.config, 2)) for _ in range(2 * layers)]
        inputs, outputs = cache_names(layers), cache_names(layers, prefix="")
        torch.onnx.export(
            StepGraph(model), (torch.tensor([[1, 2, 3]]), *past), str(path),
            input_names=["input_ids", *inputs], output_names=["logits", *outputs], opset_version=OPSET, dynamo=False,
            dynamic_axes={"input_ids": {1: "new"}, **{name: {2: "past"} for name in inputs}, **{name: {2: "total"} for name in outputs}},
        )  # fmt: skip
    finally:
        model.set_attn_implementation(before)


@dataclass
class OnnxCache:
    """The KV cache of an :class:`OnnxCausalLM` answer (a key and a value array a layer), as
    ``DynamicCache`` is used by the decoder."""

    tensors: list[np.ndarray]  # key and value of layer 0, of layer 1, ... (``cache_names``' order)

    def get_seq_length(self) -> int:
        return self.tensors[0].shape[2]

    def crop(self, max_length: int) -> None:
        """Keep the first ``max_length`` tokens; a negative one drops that many (``DynamicCache.crop``)."""
        keep = max_length if max_length >= 0 else self.get_seq_length() + max_length
        self.tensors = [np.ascontiguousarray(tensor[:, :, :keep]) for tensor in self.tensors]


class OnnxCausalLM:
    """An exported :class:`StepGraph` in ONNX Runtime, called like a transformers causal LM.

    The session uses as many threads as torch does when it is first called (``torch_threads``
    around a harness sets both alike), one session per thread count.
    """

    device = torch.device("cpu")

    def __init__(self, graph: bytes, config: Any, parameters: int, generation_config: Any = None, profile: str | None = None) -> None:
        self.graph = graph
        self.config = config
        self.generation_config = generation_config
        self._parameters = parameters
        self._profile = profile  # a file prefix: ONNX Runtime's per-operator profile of the sessions
        self._sessions: dict[int, Any] = {}
        self._cache_inputs = cache_names(config.num_hidden_layers)  # named once: a step runs many times
        self._outputs = ["logits", *cache_names(config.num_hidden_layers, prefix="")]

    @classmethod
    def load_graph(cls, directory: Path, config: Any, generation_config: Any = None) -> OnnxCausalLM:
        """The model whose graph :meth:`save_graph` wrote in ``directory``; its config and
        generation config are the directory's too, read by ``quantized_model.load_quantized``."""
        graph, metadata = directory / GRAPH_FILE, directory / METADATA_FILE
        if not graph.exists() or not metadata.exists():
            raise SupertinyError(f"{directory}: no {GRAPH_FILE} with its {METADATA_FILE}; run the compression pipeline again to save the model")
        saved = json.loads(metadata.read_text())
        if saved.get("step_graph") != STEP_GRAPH:
            raise SupertinyError(f"{directory}: its {GRAPH_FILE} has an earlier step graph interface than this supertiny's "
                                 f"({STEP_GRAPH}); run the compression pipeline again to save the model")
        parameters = int(saved["parameters"])
        # Read whole: the model does not change if its directory is replaced while it serves.
        return cls(graph.read_bytes(), config, parameters, generation_config)

    def save_graph(self, directory: Path) -> None:
        """The graph and its metadata (``quantized_model.save_quantized`` writes the rest)."""
        (directory / GRAPH_FILE).write_bytes(self.graph)
        (directory / METADATA_FILE).write_text(json.dumps({"parameters": self._parameters, "step_graph": STEP_GRAPH}) + "\n")

    # ---- what the decoder, the harness and the tables use --------------------------------------

    def eval(self) -> OnnxCausalLM:
        return self

    def to(self, device: Any) -> OnnxCausalLM:
        if torch.device(device).type != "cpu":
            raise SupertinyError(f"an ONNX Runtime model runs on the CPU here, not on {device}")
        return self

    def num_parameters(self) -> int:
        """The float model's parameters (the graph stores the tied embedding twice, quantised)."""
        return self._parameters

    def new_cache(self) -> OnnxCache:
        empty = np.zeros(layer_cache_shape(self.config, 0), dtype=np.float32)
        return OnnxCache([empty] * (2 * self.config.num_hidden_layers))  # replaced, never written to

    def __call__(self, input_ids: torch.Tensor, past_key_values: OnnxCache, **_: Any) -> SimpleNamespace:
        """The last new token's logits (1 x 1 x vocab), ``past_key_values`` grown by the new tokens.
        Like the decoder's transformers calls (``use_cache=True, logits_to_keep=1``): other keywords
        are those, and change nothing."""
        feeds = {"input_ids": input_ids.cpu().numpy().astype(np.int64), **dict(zip(self._cache_inputs, past_key_values.tensors, strict=True))}
        logits, *past_key_values.tensors = self._session().run(self._outputs, feeds)
        return SimpleNamespace(logits=torch.from_numpy(logits)[:, None, :])

    def end_profiling(self) -> list[str]:
        """The profile files of the sessions (``profile``), closed."""
        return [session.end_profiling() for session in self._sessions.values()]

    def weight_bytes(self) -> int:
        """Bytes a decode step reads: every initializer but the input embedding table (one row of it)."""
        import onnx

        graph = onnx.load_model_from_string(self.graph).graph
        gathered = {node.input[0] for node in graph.node if node.op_type == "Gather"}
        return sum(math.prod(tensor.dims) * onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type).itemsize
                   for tensor in graph.initializer if tensor.name not in gathered or len(tensor.dims) < 2)  # fmt: skip

    def _session(self) -> Any:
        import onnxruntime

        threads = torch.get_num_threads()
        if threads not in self._sessions:
            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
            options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
            if self._profile:
                options.enable_profiling = True
                options.profile_file_prefix = self._profile
            self._sessions[threads] = onnxruntime.InferenceSession(self.graph, options, providers=["CPUExecutionProvider"])
        return self._sessions[threads]
