"""Quantisation: every method saves through the catalog's ModelDataset, smaller, and loads again
in a fresh process with the same layers and greedy output, from safetensors only (a crafted
pickle is never run); unsupported settings fail before any work."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from supertiny.compression.quantization import quantize, smooth_mlp
from supertiny.quantized_model import PICKLED_WEIGHTS, WEIGHTS_FILE, Recipe
from supertiny.compression.settings import check_quantization
from supertiny.compression.fine_tuning import calibration_batches
from supertiny.datasets import ModelBundle, ModelDataset
from supertiny.errors import ConfigError, SupertinyError
from supertiny.latency import weight_bytes_per_token

PROMPT = "turn on the kitchen lights"
RECIPES = [
    Recipe("rtn", bits=4, group_size=32),
    Recipe("rtn", bits=8, group_size=32, quantize_embedding=False),
    Recipe("gptq", bits=4, group_size=32),
    Recipe("inc_dynamic_int8"),
    Recipe("torch_dynamic_int8"),
    Recipe("inc_dynamic_int8", keep_float=("lm_head",)),
]
# Loads each saved directory through the catalog's dataset in a new interpreter, and prints the
# greedy continuation of PROMPT and the layer types for each.
LOADER = """
import json, sys
from supertiny.datasets import ModelDataset
out = {}
for path in sys.argv[1:]:
    directory = ModelDataset(filepath=path).load()
    model, tokenizer = directory.load_model(), directory.load_tokenizer()
    inputs = tokenizer(%r, return_tensors="pt")
    tokens = model.generate(**inputs, max_new_tokens=6, min_new_tokens=6, do_sample=False)
    layers = {name: type(module).__name__ for name, module in model.named_modules()}
    out[path] = [tokens[0, inputs["input_ids"].shape[1]:].tolist(), layers]
print(json.dumps(out))
""" % PROMPT


def _greedy(model, tokenizer) -> list[int]:
    inputs = tokenizer(PROMPT, return_tensors="pt")
    tokens = model.generate(**inputs, max_new_tokens=6, min_new_tokens=6, do_sample=False)
    return tokens[0, inputs["input_ids"].shape[1] :].tolist()


class _Payload:
    """Unpickling this runs ``os.system``: what a crafted weights file does."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.mark.e2e
def test_each_method_round_trips_through_the_catalog_in_a_fresh_process(tiny_model, distill_rows, tmp_path):
    import copy

    calibration = calibration_batches(distill_rows[:4], tiny_model.tokenizer, "names", batch_size=2)
    float_dataset = ModelDataset(filepath=str(tmp_path / "float"))
    float_dataset.save(tiny_model)
    float_size = float_dataset.load().size_bytes
    expected, paths = {}, []
    for recipe in RECIPES:
        model = quantize(copy.deepcopy(tiny_model.model), recipe, calibration)
        path = str(tmp_path / recipe.name / str(recipe.quantize_embedding))
        dataset = ModelDataset(filepath=path)
        dataset.save(ModelBundle(model, tiny_model.tokenizer, quantization=recipe))
        if recipe.quantize_embedding and not recipe.keep_float:
            # Otherwise a float table (or head) is stored besides its quantised twin, and the
            # tiny model, mostly embedding, grows.
            assert dataset.load().size_bytes < float_size, recipe
        layers = {name: type(module).__name__ for name, module in model.named_modules()}
        expected[path] = [_greedy(model, tiny_model.tokenizer), layers]
        paths.append(path)
        # Plain tensors only: the weights are one safetensors file, and no pickle is written.
        saved = Path(dataset.load().path)
        assert not [f.name for f in saved.iterdir() if f.suffix in (".pt", ".bin", ".pkl")], recipe
        with safe_open(str(saved / WEIGHTS_FILE), framework="pt") as weights:
            assert len(list(weights.keys())) > 0

    result = subprocess.run([sys.executable, "-c", LOADER, *paths], capture_output=True, text=True, timeout=600)

    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == expected


@pytest.mark.parametrize("weights_file", [WEIGHTS_FILE, *PICKLED_WEIGHTS])
def test_a_crafted_pickle_in_a_quantized_model_is_refused_without_running(tiny_model, tmp_path, weights_file):
    import copy

    recipe = Recipe("torch_dynamic_int8")
    dataset = ModelDataset(filepath=str(tmp_path / "q"))
    dataset.save(ModelBundle(quantize(copy.deepcopy(tiny_model.model), recipe), tiny_model.tokenizer, recipe))
    directory = dataset.load()
    marker = tmp_path / "payload-ran"
    (directory.path / WEIGHTS_FILE).unlink()
    (directory.path / weights_file).write_bytes(pickle.dumps({"weight": _Payload(marker)}))

    with pytest.raises(SupertinyError, match=r"quantized_model\.safetensors"):
        directory.load_model()
    assert not marker.exists()


@pytest.mark.parametrize("method", ["inc_dynamic_int8", "torch_dynamic_int8"])
def test_keep_float_leaves_the_named_layers_float_and_quantises_the_rest(fresh_tiny, method):
    model = quantize(fresh_tiny.model, Recipe(method, keep_float=["lm_head"]))
    assert type(model.lm_head) is torch.nn.Linear
    attention = model.model.layers[0].self_attn.q_proj
    quantised = attention if not list(attention.children()) else next(attention.children())
    assert hasattr(quantised, "_packed_params"), type(attention)
    assert Recipe.from_settings({"method": method, "keep_float": ["lm_head"]}).keep_float == ("lm_head",)


def _with_outlier_channels(model: torch.nn.Module) -> torch.nn.Module:
    """A few intermediate channels 50x larger than the rest, as trained LLM MLPs have."""
    with torch.no_grad():
        for layer in model.model.layers:
            layer.mlp.up_proj.weight[:2] *= 50
            layer.mlp.down_proj.weight[:, :2] /= 50  # the float model's output stays in range
    return model


def _logits(model: torch.nn.Module, batches: list[dict]) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([model(input_ids=b["input_ids"], attention_mask=b["attention_mask"], use_cache=False).logits.flatten(0, 1)
                          for b in batches])


def test_smoothing_keeps_the_float_model_and_lets_int8_keep_the_small_channels(fresh_tiny, distill_rows):
    import copy

    model = _with_outlier_channels(fresh_tiny.model).eval()
    batches = calibration_batches(distill_rows, fresh_tiny.tokenizer, "names", batch_size=4)
    reference = _logits(model, batches)
    plain_error = (_logits(quantize(copy.deepcopy(model), Recipe("torch_dynamic_int8")), batches) - reference).abs().mean()

    smoothed = copy.deepcopy(model)
    layers = smooth_mlp(smoothed, batches, alpha=0.5)
    assert layers == [f"model.layers.{i}.mlp.down_proj" for i in range(len(model.model.layers))]
    torch.testing.assert_close(_logits(smoothed, batches), reference, rtol=1e-4, atol=1e-4)  # exact in float
    smoothed_error = (_logits(quantize(smoothed, Recipe("torch_dynamic_int8")), batches) - reference).abs().mean()
    assert smoothed_error < 0.7 * plain_error, (smoothed_error, plain_error)


def test_smoothing_is_part_of_quantising_and_needs_calibration(fresh_tiny, distill_rows):
    recipe = Recipe.from_settings({"method": "inc_dynamic_int8", "smooth_alpha": 0.5})
    assert recipe.smooth_alpha == 0.5
    with pytest.raises(ValueError, match="smooth_alpha needs calibration"):
        quantize(fresh_tiny.model, recipe)


def test_dynamic_int8_reads_a_quarter_of_the_weight_bytes(fresh_tiny):
    float_bytes = weight_bytes_per_token(fresh_tiny.model)
    quantized = quantize(fresh_tiny.model, Recipe("torch_dynamic_int8"))
    assert weight_bytes_per_token(quantized) < 0.3 * float_bytes


def test_loading_a_quantized_model_with_from_pretrained_options_is_refused(tiny_model, tmp_path):
    import copy

    dataset = ModelDataset(filepath=str(tmp_path / "q"))
    dataset.save(ModelBundle(quantize(copy.deepcopy(tiny_model.model), Recipe("torch_dynamic_int8")), tiny_model.tokenizer, Recipe("torch_dynamic_int8")))
    with pytest.raises(TypeError, match="quantised model"):
        dataset.load().load_model(dtype=torch.float32)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"method": "static_int8"}, "not supported on this CPU.*IPEX"),
        ({"method": "dynamic_int8"}, "not supported on this CPU.*torchao.*inc_dynamic_int8"),
        ({"method": "awq4"}, "method must be one of"),
        ({"method": "rtn", "bits": 3, "group_size": 32}, r"bits: rtn supports \(4, 8\)"),
        ({"method": "gptq", "bits": 4, "group_size": 48, "calibration_rows": 4}, "group_size must be one of"),
        ({"method": "torch_dynamic_int8", "bits": 4}, "8 bits only"),
        ({"method": "gptq", "bits": 4, "group_size": 32, "calibration_rows": 0}, "calibration_rows"),
        ({"method": "rtn", "bits": 8, "group_size": 32, "keep_float": ["lm_head"]}, "keep_float applies to the dynamic"),
        ({"method": "inc_dynamic_int8", "keep_float": "lm_head"}, "keep_float: input should be a valid list; got 'lm_head'"),
        ({"method": "inc_dynamic_int8", "smooth_alpha": 1.5, "calibration_rows": 4}, r"smooth_alpha must be at most 1; got 1.5"),
        ({"method": "rtn", "bits": 8, "group_size": 32, "smooth_alpha": 0.5}, "smooth_alpha applies to the dynamic"),
        ({"method": "inc_dynamic_int8", "smooth_alpha": 0.5, "calibration_rows": 0}, "calibration_rows: smooth_alpha needs"),
    ],
)
def test_settings_that_cannot_run_here_are_refused(settings, message):
    with pytest.raises(ConfigError, match=f"compression.quantization.*{message}"):
        check_quantization(settings)
