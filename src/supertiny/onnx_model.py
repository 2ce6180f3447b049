"""A causal LM exported to ONNX and run by ONNX Runtime: the final model's fast path on a CPU.

Batch-1 decoding of a model this small in eager PyTorch is bound by per-operation overhead, not
by its weights: a step of the 30-layer student is some 4,400 operations, each dispatched from
Python (``benchmarks/decode_paths.py`` measures where the time goes). ONNX Runtime runs the same
graph from C++, and INC's ONNX Runtime dynamic INT8 (``compression.quantization.runtime:
onnxruntime``) gives it int8 matmuls.

The exported graph is one forward step of the transformers model on a KV cache
(:class:`StepGraph`): ``input_ids`` (1 x new tokens) and the cache so far, ``past_keys`` and
``past_values`` (layers x 1 x KV heads x past tokens x head size), in; the logits of the last
new token and the cache with the new tokens appended, out. A prompt, one answer token or a
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
METADATA_FILE = "onnx_model.json"  # what the graph does not say: the float model's parameter count
OPSET = 17
INPUTS = ("input_ids", "past_keys", "past_values")
OUTPUTS = ("logits", "keys", "values")


class StepGraph(torch.nn.Module):
    """One forward step of a transformers causal LM on a KV cache held as two stacked tensors,
    with an explicit causal mask (query i sees every past token and the new tokens up to i), so
    the traced graph serves a prompt, one token and a chunk of forced tokens alike."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, past_keys: torch.Tensor, past_values: torch.Tensor) -> tuple[torch.Tensor, ...]:
        from transformers import DynamicCache

        past, new = past_keys.shape[3], input_ids.shape[1]
        cache = DynamicCache(config=self.model.config)
        for layer in range(past_keys.shape[0]):
            cache.update(past_keys[layer], past_values[layer], layer)
        positions = torch.arange(new) + past
        mask = (torch.arange(past + new)[None, :] <= positions[:, None])[None, None]
        output = self.model(input_ids=input_ids, position_ids=positions[None], attention_mask=mask,
                            past_key_values=cache, use_cache=True, logits_to_keep=1)
        keys = torch.stack([layer.keys for layer in cache.layers])
        values = torch.stack([layer.values for layer in cache.layers])
        return output.logits[:, -1, :], keys, values


def cache_shape(config: Any, past: int) -> tuple[int, int, int, int, int]:
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    return (config.num_hidden_layers, 1, config.num_key_value_heads, past, head_dim)


@torch.no_grad()
def export_onnx(model: torch.nn.Module, path: Path) -> None:
    """Write ``model``'s :class:`StepGraph` to ``path`` (float, as the model is).

    The TorchScript exporter (``dynamo=False``) traces the cache updates as concatenations with
    dynamic lengths; the shapes of the example inputs do not matter beyond being non-empty.
    Measured on the default run's recovered model: the dynamo exporter's graph has a third of the
    nodes (2,347 against 7,778), but after INC's INT8 its decode step took 14.1 ms, against
    9.9-11.3 ms for this exporter's in separate runs of the same script."""
    model = model.eval()
    past = torch.zeros(cache_shape(model.config, 2))
    torch.onnx.export(
        StepGraph(model), (torch.tensor([[1, 2, 3]]), past, past.clone()), str(path),
        input_names=list(INPUTS), output_names=list(OUTPUTS), opset_version=OPSET, dynamo=False,
        dynamic_axes={"input_ids": {1: "new"}, "past_keys": {3: "past"}, "past_values": {3: "past"},
                      "keys": {3: "total"}, "values": {3: "total"}},
    )  # fmt: skip


@dataclass
class OnnxCache:
    """The KV cache of an :class:`OnnxCausalLM` answer, as ``DynamicCache`` is used by the decoder."""

    keys: np.ndarray
    values: np.ndarray

    def get_seq_length(self) -> int:
        return self.keys.shape[3]

    def crop(self, max_length: int) -> None:
        """Keep the first ``max_length`` tokens; a negative one drops that many (``DynamicCache.crop``)."""
        keep = max_length if max_length >= 0 else self.get_seq_length() + max_length
        self.keys = np.ascontiguousarray(self.keys[:, :, :, :keep])
        self.values = np.ascontiguousarray(self.values[:, :, :, :keep])


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

    @classmethod
    def load_graph(cls, directory: Path, config: Any, generation_config: Any = None) -> OnnxCausalLM:
        """The model whose graph :meth:`save_graph` wrote in ``directory``; its config and
        generation config are the directory's too, read by ``quantized_model.load_quantized``."""
        graph, metadata = directory / GRAPH_FILE, directory / METADATA_FILE
        if not graph.exists() or not metadata.exists():
            raise SupertinyError(f"{directory}: no {GRAPH_FILE} with its {METADATA_FILE}; run the compression pipeline again to save the model")
        parameters = int(json.loads(metadata.read_text())["parameters"])
        # Read whole: the model does not change if its directory is replaced while it serves.
        return cls(graph.read_bytes(), config, parameters, generation_config)

    def save_graph(self, directory: Path) -> None:
        """The graph and its metadata (``quantized_model.save_quantized`` writes the rest)."""
        (directory / GRAPH_FILE).write_bytes(self.graph)
        (directory / METADATA_FILE).write_text(json.dumps({"parameters": self._parameters}) + "\n")

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
        empty = np.zeros(cache_shape(self.config, 0), dtype=np.float32)
        return OnnxCache(empty, empty.copy())

    def __call__(self, input_ids: torch.Tensor, past_key_values: OnnxCache, **_: Any) -> SimpleNamespace:
        """The last new token's logits (1 x 1 x vocab), ``past_key_values`` grown by the new tokens.
        Like the decoder's transformers calls (``use_cache=True, logits_to_keep=1``): other keywords
        are those, and change nothing."""
        feeds = {"input_ids": input_ids.cpu().numpy().astype(np.int64),
                 "past_keys": past_key_values.keys, "past_values": past_key_values.values}
        logits, past_key_values.keys, past_key_values.values = self._session().run(list(OUTPUTS), feeds)
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
