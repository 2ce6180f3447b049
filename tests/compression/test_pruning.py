"""Pruning: INC's channel pruning during fine-tuning, slimming, depth pruning; all reload smaller."""

from __future__ import annotations

import pytest

import torch
from transformers import AutoModelForCausalLM

from supertiny.compression.pruning import (
    INCPruningCallback,
    decoder_layers,
    drop_layers,
    layer_importance,
    least_important,
    matching_modules,
    mlp_pruning_config,
    parameter_count,
    pruned_share,
    slim_mlp,
)
from supertiny.compression.fine_tuning import calibration_batches, fine_tune
from supertiny.runtime import CPU
from supertiny.training.data import sft_dataset


def _greedy(model, tokenizer, text: str = "turn on the kitchen lights", tokens: int = 6) -> list[int]:
    inputs = tokenizer(text, return_tensors="pt")
    output = model.generate(**inputs, max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False)
    return output[0, inputs["input_ids"].shape[1] :].tolist()


@pytest.mark.slow
def test_inc_pruning_during_fine_tuning_then_slimming_gives_a_smaller_model_that_reloads(
    fresh_tiny, distill_rows, compression_params, tmp_path
):
    from neural_compressor.training import prepare_compression

    model, tokenizer = fresh_tiny.model, fresh_tiny.tokenizer
    pruning = compression_params["pruning"]
    manager = prepare_compression(model, mlp_pruning_config(pruning))
    dataset = sft_dataset(distill_rows[:4], tokenizer, "names")
    losses = fine_tune(model, tokenizer, dataset, pruning["training"]["args"], max_length=256, seed=0, device=CPU,
                       callbacks=[INCPruningCallback(manager)])
    assert len(losses) == pruning["training"]["args"]["max_steps"]

    names = matching_modules(model, pruning["mlp"]["op_names"])
    assert names == [f"model.layers.{i}.mlp.down_proj" for i in range(len(decoder_layers(model)))]
    assert pruned_share(model, names) >= pruning["mlp"]["target_sparsity"] - 0.05
    before = parameter_count(model)
    full_width = model.config.intermediate_size

    width = slim_mlp(model, channel_multiple=8)

    assert width < full_width and width % 8 == 0
    assert parameter_count(model) < before
    for layer in decoder_layers(model):
        assert layer.mlp.down_proj.weight.shape[1] == layer.mlp.up_proj.weight.shape[0] == width
    assert len(_greedy(model, tokenizer)) == 6
    model.save_pretrained(tmp_path)
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path)
    assert reloaded.config.intermediate_size == width
    assert parameter_count(reloaded) == parameter_count(model)
    assert _greedy(reloaded, tokenizer) == _greedy(model, tokenizer)


def test_slimming_keeps_one_width_for_all_layers_and_the_same_function(fresh_tiny):
    model, tokenizer = fresh_tiny.model, fresh_tiny.tokenizer
    layers = decoder_layers(model)
    with torch.no_grad():  # zero different numbers of channels per layer: 40 and 30 of 64
        layers[0].mlp.down_proj.weight[:, :40] = 0
        layers[1].mlp.down_proj.weight[:, 10:40] = 0
    inputs = tokenizer("set a timer for five minutes", return_tensors="pt")
    with torch.no_grad():
        expected = model(**inputs).logits

    width = slim_mlp(model, channel_multiple=8)

    assert width == 40  # the most any layer kept (34), rounded up to a multiple of 8
    assert {layer.mlp.gate_proj.out_features for layer in layers} == {40}
    with torch.no_grad():
        torch.testing.assert_close(model(**inputs).logits, expected, rtol=1e-4, atol=1e-4)


def test_depth_pruning_drops_the_least_important_middle_layers_and_reloads(tiny_model, distill_rows, tmp_path):
    config = tiny_model.model.config.to_dict() | {"num_hidden_layers": 4}
    model = AutoModelForCausalLM.from_config(type(tiny_model.model.config)(**config))
    tokenizer = tiny_model.tokenizer
    batches = calibration_batches(distill_rows[:4], tokenizer, "names", batch_size=2)

    importance = layer_importance(model, batches)
    assert len(importance) == 4 and all(value >= 0 for value in importance)
    dropped = least_important(importance, 1)
    assert dropped in ([1], [2])  # never the first or the last layer
    kept = [layer for i, layer in enumerate(decoder_layers(model)) if i not in dropped]
    drop_layers(model, dropped)

    assert model.config.num_hidden_layers == 3
    assert list(decoder_layers(model)) == kept
    assert [layer.self_attn.layer_idx for layer in decoder_layers(model)] == [0, 1, 2]
    tokens = _greedy(model, tokenizer)  # generation uses the KV cache, indexed by layer_idx
    model.save_pretrained(tmp_path)
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path)
    assert reloaded.config.num_hidden_layers == 3
    assert parameter_count(reloaded) == parameter_count(model)
    assert _greedy(reloaded, tokenizer) == tokens
