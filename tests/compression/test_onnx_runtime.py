"""The ONNX Runtime fast path: the exported step graph computes what the transformers model does
(a prompt, one token, a chunk after a cache, a cropped cache), the decoder answers the same on
both, and INC's ONNX Runtime dynamic INT8 saves through the catalog and loads in a fresh process
with the same answers, its matmuls int8 but the layers kept float."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from collections import Counter

import onnx
import pytest
import torch
from transformers import DynamicCache

from supertiny.compression.quantization import quantize
from supertiny.compression.settings import check_quantization
from supertiny.datasets import ModelBundle, ModelDataset
from supertiny.decoding import Decoder
from supertiny.errors import ConfigError, SupertinyError
from supertiny.inference import AnswerGrammars, generate_answers
from supertiny.latency import weight_bytes_per_token
from supertiny.onnx_model import GRAPH_FILE, METADATA_FILE, OnnxCausalLM, cache_names, export_onnx
from supertiny.prompt import prompt_text
from supertiny.quantized_model import Recipe

ONNX_INT8 = Recipe("inc_dynamic_int8", runtime="onnxruntime")


@pytest.fixture(scope="module")
def float_graph(tiny_model, tmp_path_factory) -> OnnxCausalLM:
    """The tiny model exported in float: it must compute what the torch model computes."""
    path = tmp_path_factory.mktemp("onnx") / "float.onnx"
    export_onnx(tiny_model.model, path)
    return OnnxCausalLM(path.read_bytes(), tiny_model.model.config, parameters=0)


@pytest.fixture(scope="module")
def int8_bundle(tiny_model) -> ModelBundle:
    return ModelBundle(quantize(copy.deepcopy(tiny_model.model), ONNX_INT8), tiny_model.tokenizer, ONNX_INT8)


@pytest.fixture
def light_request(distill_rows) -> dict:
    """A request with its tools' schemas."""
    return distill_rows[0]


def _torch_logits(model, ids: list[int], cache: DynamicCache) -> torch.Tensor:
    with torch.inference_mode():
        return model(input_ids=torch.tensor([ids]), past_key_values=cache, use_cache=True, logits_to_keep=1).logits[:, -1, :]


def test_the_exported_graph_computes_the_models_logits_for_a_prompt_a_token_a_chunk_and_a_cropped_cache(tiny_model, float_graph):
    model = tiny_model.model.eval()
    torch_cache, onnx_cache = DynamicCache(config=model.config), float_graph.new_cache()
    for ids in ([5, 17, 203, 9, 44], [71], [300, 301, 302]):  # prompt, one step, a jump-forward chunk
        expected = _torch_logits(model, ids, torch_cache)
        got = float_graph(input_ids=torch.tensor([ids]), past_key_values=onnx_cache).logits[:, -1, :]
        torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
    assert onnx_cache.get_seq_length() == torch_cache.get_seq_length() == 9
    # A rolled-back jump-forward: drop the last two tokens and feed others in their place.
    torch_cache.crop(-2)
    onnx_cache.crop(-2)
    assert onnx_cache.get_seq_length() == 7
    torch.testing.assert_close(
        float_graph(input_ids=torch.tensor([[88, 89]]), past_key_values=onnx_cache).logits[:, -1, :],
        _torch_logits(model, [88, 89], torch_cache), atol=1e-4, rtol=1e-4,
    )


def test_the_decoder_answers_the_same_on_the_exported_graph_as_on_the_model(tiny_model, float_graph, light_request):
    tokenizer = tiny_model.tokenizer
    prompt = prompt_text(light_request, tokenizer, "names")
    grammar = AnswerGrammars(tokenizer, tiny_model.model.config.vocab_size, max_calls=2).compile(light_request["tools"])
    for grammar_used in (None, grammar):
        on_torch = Decoder(tiny_model.model, tokenizer, prefix_ids=tokenizer(prompt[:20])["input_ids"][:3]).generate(prompt, grammar_used, 24)
        on_onnx = Decoder(float_graph, tokenizer, prefix_ids=tokenizer(prompt[:20])["input_ids"][:3]).generate(prompt, grammar_used, 24)
        assert on_onnx.token_ids == on_torch.token_ids and on_onnx.forward_calls == on_torch.forward_calls
        assert len(on_onnx.token_ids) > 0


def test_onnx_int8_round_trips_through_the_catalog_in_a_fresh_process(tiny_model, int8_bundle, tmp_path, light_request):
    float_dataset = ModelDataset(filepath=str(tmp_path / "float"))
    float_dataset.save(tiny_model)
    dataset = ModelDataset(filepath=str(tmp_path / "int8"))
    dataset.save(int8_bundle)
    saved = dataset.load()
    assert (saved.path / GRAPH_FILE).exists() and saved.size_bytes < float_dataset.load().size_bytes
    assert not [f.name for f in saved.path.iterdir() if f.suffix in (".pt", ".bin", ".pkl", ".safetensors")]
    operators = Counter(node.op_type for node in onnx.load(str(saved.path / GRAPH_FILE)).graph.node)
    # Every linear layer (2 layers x 7, and the head) is an int8 matmul; attention's own stay float.
    assert operators["MatMulInteger"] == 15 and operators["MatMul"] == 4
    prompt = prompt_text(light_request, tiny_model.tokenizer, "names")
    expected = Decoder(int8_bundle.model, tiny_model.tokenizer).generate(prompt, None, 12).token_ids
    loader = (
        "import json, sys\nfrom supertiny.datasets import ModelDataset\nfrom supertiny.decoding import Decoder\n"
        "bundle = ModelDataset(filepath=sys.argv[1]).load().load()\n"
        "print(type(bundle.model).__name__, json.dumps(Decoder(bundle.model, bundle.tokenizer).generate(sys.argv[2], None, 12).token_ids))\n"
    )
    result = subprocess.run([sys.executable, "-c", loader, str(tmp_path / "int8"), prompt], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    kind, tokens = result.stdout.strip().splitlines()[-1].split(" ", 1)
    assert kind == "OnnxCausalLM" and json.loads(tokens) == expected
    # A decode step reads about a quarter of the float model's matmul bytes.
    assert weight_bytes_per_token(int8_bundle.model) < 0.5 * weight_bytes_per_token(tiny_model.model)


def test_the_graph_holds_each_layers_cache_once_and_a_graph_of_another_interface_is_refused(tiny_model, float_graph, int8_bundle, tmp_path):
    graph = onnx.load_model_from_string(float_graph.graph).graph
    layers = tiny_model.model.config.num_hidden_layers
    assert [i.name for i in graph.input] == ["input_ids", *cache_names(layers)]
    assert [o.name for o in graph.output] == ["logits", *cache_names(layers, prefix="")]
    # Grouped heads read the cache as it is: nothing expands it to every query head.
    assert not [node.name for node in graph.node if node.op_type == "Expand" and "self_attn" in node.name]
    dataset = ModelDataset(filepath=str(tmp_path / "int8"))
    dataset.save(int8_bundle)
    metadata = tmp_path / "int8" / METADATA_FILE
    metadata.write_text(json.dumps({"parameters": 1}))  # as an earlier supertiny saved it
    with pytest.raises(SupertinyError, match=f"{tmp_path / 'int8'}.*run the compression pipeline again"):
        dataset.load().load()


def test_keep_float_and_a_float_embedding_table_are_kept_in_the_graph(tiny_model):
    recipe = Recipe("inc_dynamic_int8", runtime="onnxruntime", keep_float=("lm_head", r"layers\.0\.mlp\.down_proj$"), quantize_embedding=False)
    graph = onnx.load_model_from_string(quantize(copy.deepcopy(tiny_model.model), recipe).graph).graph
    float_matmuls = {node.name for node in graph.node if node.op_type == "MatMul"}
    assert {"/model/lm_head/MatMul", "/model/model/layers.0/mlp/down_proj/MatMul"} <= float_matmuls
    assert sum(node.op_type == "MatMulInteger" for node in graph.node) == 13
    embedding = next(node for node in graph.node if node.op_type == "Gather" and "embed_tokens" in node.name)
    table = next(tensor for tensor in graph.initializer if tensor.name == embedding.input[0])
    assert table.data_type == onnx.TensorProto.FLOAT


def test_answers_without_batched_generate_are_the_served_ones(tiny_model, int8_bundle, light_request):
    requests = [light_request, dict(light_request, id="r2", messages=[{"role": "user", "content": "a timer for ten minutes"}])]
    batched = generate_answers(int8_bundle.model, tiny_model.tokenizer, requests, "names", 16, 4, constrained=True, max_calls=2)
    served = generate_answers(int8_bundle.model, tiny_model.tokenizer, requests, "names", 16, 4, constrained=True, max_calls=2,
                              fast_path={})
    assert batched.texts == served.texts and batched.decoded is not None


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"method": "rtn", "bits": 8, "group_size": 32, "runtime": "onnxruntime"}, "runtime: onnxruntime runs inc_dynamic_int8 only; 'rtn'"),
        ({"method": "inc_dynamic_int8", "runtime": "tensorrt"}, "runtime must be one of"),
    ],
)
def test_a_runtime_that_cannot_run_the_method_is_refused(settings, message):
    with pytest.raises(ConfigError, match=f"compression.quantization.*{message}"):
        check_quantization(settings)
