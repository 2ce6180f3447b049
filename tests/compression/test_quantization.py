"""Quantisation: every method saves through the catalog's ModelDataset, smaller, and loads again
in a fresh process with the same greedy output; unsupported settings fail before any work."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from supertiny.compression.quantization import Recipe, quantize
from supertiny.compression.settings import check_quantization
from supertiny.compression.training import calibration_batches
from supertiny.datasets import ModelBundle, ModelDataset
from supertiny.errors import ConfigError
from supertiny.latency import weight_bytes_per_token

PROMPT = "turn on the kitchen lights"
RECIPES = [
    Recipe("rtn", bits=4, group_size=32),
    Recipe("rtn", bits=8, group_size=32, quantize_embedding=False),
    Recipe("gptq", bits=4, group_size=32),
    Recipe("inc_dynamic_int8"),
    Recipe("torch_dynamic_int8"),
]
# Loads each saved directory through the catalog's dataset in a new interpreter, and prints the
# greedy continuation of PROMPT for each.
LOADER = """
import json, sys
from supertiny.datasets import ModelDataset
out = {}
for path in sys.argv[1:]:
    directory = ModelDataset(filepath=path).load()
    model, tokenizer = directory.load_model(), directory.load_tokenizer()
    inputs = tokenizer(%r, return_tensors="pt")
    tokens = model.generate(**inputs, max_new_tokens=6, min_new_tokens=6, do_sample=False)
    out[path] = tokens[0, inputs["input_ids"].shape[1]:].tolist()
print(json.dumps(out))
""" % PROMPT


def _greedy(model, tokenizer) -> list[int]:
    inputs = tokenizer(PROMPT, return_tensors="pt")
    tokens = model.generate(**inputs, max_new_tokens=6, min_new_tokens=6, do_sample=False)
    return tokens[0, inputs["input_ids"].shape[1] :].tolist()


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
        if recipe.quantize_embedding:
            # Otherwise the float table is stored besides the quantised head it was tied to,
            # and the tiny model, mostly embedding, grows.
            assert dataset.load().size_bytes < float_size, recipe
        expected[path] = _greedy(model, tiny_model.tokenizer)
        paths.append(path)

    result = subprocess.run([sys.executable, "-c", LOADER, *paths], capture_output=True, text=True, timeout=600)

    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == expected


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
    ],
)
def test_settings_that_cannot_run_here_are_refused(settings, message):
    with pytest.raises(ConfigError, match=f"compression.quantization.*{message}"):
        check_quantization(settings)
