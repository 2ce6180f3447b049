"""Bad compression settings fail with a ConfigError naming the setting, before any work."""

from __future__ import annotations

import copy

import pytest

from supertiny.compression.settings import check_against_model, check_params
from supertiny.errors import ConfigError


def _with(params: dict, path: str, value) -> dict:
    changed = copy.deepcopy(params)
    *parents, key = path.split(".")
    section = changed
    for parent in parents:
        section = section[parent]
    section[key] = value
    return changed


def test_the_shipped_settings_pass(compression_params):
    check_params(compression_params)


@pytest.mark.parametrize("sparsity", [0, 1, 1.5, -0.2, "half", True])
def test_a_sparsity_outside_zero_one_is_refused(compression_params, sparsity):
    # (0, 1) exclusive, a number: "must be greater than 0", "must be less than 1", "input should be a valid number".
    with pytest.raises(ConfigError, match=rf"compression.pruning.mlp.target_sparsity(:| must).*; got {sparsity!r}"):
        check_params(_with(compression_params, "pruning.mlp.target_sparsity", sparsity))


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("pruning.schedule.end_step", 99, "end_step .* must be below compression.pruning.training.args.max_steps"),
        ("recovery.args", {"max_steps": 4, "warmup_stepz": 1}, r"compression.recovery.args: \['warmup_stepz'\] are not settings of trl.SFTConfig"),
        ("recovery.args", {"max_steps": 4, "output_dir": "x"}, r"compression.recovery.args: \['output_dir'\] are set by the pipeline"),
        ("pruning.training.args", {"per_device_train_batch_size": 2}, "compression.pruning.training.args.max_steps must be an integer of at least 1"),
        ("pruning.criterion", "random", "compression.pruning.criterion must be one of"),
        ("pruning.depth.drop_layers", -1, "compression.pruning.depth.drop_layers must be at least 0; got -1"),
        ("recovery.kl_weight", 1.5, r"compression.recovery.kl_weight must be at most 1; got 1.5"),
        ("quantization.method", "static_int8", "compression.quantization.method: 'static_int8' is not supported on this CPU"),
    ],
)
def test_other_settings_that_cannot_work_are_named(compression_params, path, value, message):
    with pytest.raises(ConfigError, match=message):
        check_params(_with(compression_params, path, value))


def test_a_layer_pattern_that_matches_nothing_lists_layer_names(compression_params, tiny_model):
    params = _with(compression_params, "pruning.mlp.op_names", ["feed_forward\\.w2"])
    with pytest.raises(ConfigError, match=r"op_names \['feed_forward\\\\.w2'\] match no linear layer.*model.layers.0.self_attn.q_proj"):
        check_against_model(params, tiny_model.model)


def test_dropping_more_layers_than_can_go_is_refused(compression_params, tiny_model):
    params = _with(compression_params, "pruning.depth.drop_layers", 1)  # the tiny model has 2 layers
    with pytest.raises(ConfigError, match="drop_layers: 1 of the model's 2 decoder layers.*at most 0"):
        check_against_model(params, tiny_model.model)


def test_a_keep_float_pattern_that_matches_no_layer_is_refused(compression_params, tiny_model):
    check_against_model(_with(compression_params, "quantization.keep_float", ["mlp\\.down_proj$"]), tiny_model.model)
    with pytest.raises(ConfigError, match=r"keep_float: 'ffn_w2' matches no linear layer"):
        check_against_model(_with(compression_params, "quantization.keep_float", ["ffn_w2"]), tiny_model.model)
    with pytest.raises(ConfigError, match="keep_float: '\\(' is not a regular expression"):
        check_params(_with(compression_params, "quantization.keep_float", ["("]))
