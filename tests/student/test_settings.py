"""Bad settings and bad input fail before training, with a message that names the setting."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from supertiny.errors import ConfigError
from supertiny.runtime import CPU
from supertiny.training.data import check_lengths
from supertiny.training.settings import check_examples, check_params, lora_config

CONF = Path(__file__).resolve().parents[2] / "conf"
CALLS = [{"name": "set_lights", "arguments": {"room": "kitchen", "on": True}}]


@pytest.fixture
def student() -> dict:
    """The shipped default `student` parameters."""
    return yaml.safe_load((CONF / "base" / "parameters_student.yml").read_text())["student"]


@pytest.fixture
def rows(tool_catalog) -> list[dict]:
    message = [{"role": "user", "content": "Kitchen lights on, please"}]
    return [{"id": "r1", "messages": message, "tools": tool_catalog, "reference": CALLS, "calls": CALLS}]


def test_the_shipped_parameters_pass(student):
    check_params(student, CPU)
    smoke = yaml.safe_load((CONF / "smoke" / "parameters_student.yml").read_text())["student"]
    assert smoke["stages"] == ["sft", "rl", "kd"]


def with_change(student: dict, path: str, value) -> dict:
    changed = copy.deepcopy(student)
    *parents, key = path.split(".")
    target = changed
    for part in parents:
        target = target[part]
    target[key] = value
    return changed


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("stages", ["sft", "dpo"], "student.stages[1] must be one of 'sft', 'rl' or 'kd'; got 'dpo'"),
        ("stages", [], "student.stages must have at least 1 item; got []"),
        ("stages", ["rl", "sft"], "student.stages: ['rl', 'sft'] is not in the pipeline's order sft -> rl -> kd"),
        ("tools_mode", "schemas", "student.tools_mode must be one of 'none', 'names', 'signatures' or 'full'; got 'schemas'"),
        ("max_length", 0, "student.max_length must be at least 8; got 0"),
        ("sft.args.learning_rat", 0.1, "student.sft.args: ['learning_rat'] are not settings of trl.SFTConfig"),
        ("rl.args.output_dir", "/tmp/x", "student.rl.args: ['output_dir'] are set by the pipeline"),
        ("sft.lora", {"enabled": True, "r": 0, "alpha": 16, "target_modules": ["q_proj"]}, "student.sft.lora.r must be at least 1; got 0"),
        ("kd.lora", {"enabled": True, "r": 8, "alpha": 16, "target_modules": []}, "student.kd.lora.target_modules must have at least 1 item; got []"),
        ("sft.early_stopping_patience", 0, "student.sft.early_stopping_patience must be at least 1; got 0"),
        ("rl.reward", {"similarity": 1.0}, "student.rl.reward must give weights for both 'similarity' and 'format'"),
        ("rl.reward", {"similarity": -1.0, "format": 1.0}, "student.rl.reward.similarity must be at least 0; got -1.0"),
        ("stages", ["sft", "kd"], "student.kd.teacher_model_dir is required when student.stages includes kd"),
    ],
)
def test_bad_settings_are_named(student, path, value, message):
    with pytest.raises(ConfigError) as error:
        check_params(with_change(student, path, value), CPU)
    assert message in str(error.value)


def test_an_empty_distill_train_points_at_the_filter_report():
    with pytest.raises(ConfigError, match=r"distill_train is empty: filtering kept no examples.*filter_report / filter_summary"):
        check_examples([])


def test_a_prompt_longer_than_max_length_names_the_setting(student, rows, tiny_model):
    tokenizer = tiny_model.tokenizer
    check_lengths(rows, tokenizer, student, 8192)
    with pytest.raises(ConfigError, match=r"student.max_length=32 is shorter than the longest example \(\d+ tokens of prompt and answer, request 'r1'"):
        check_lengths(rows, tokenizer, {**student, "max_length": 32}, 8192)
    with pytest.raises(ConfigError, match="or a shorter student.tools_mode"):
        check_lengths(rows, tokenizer, {**student, "tools_mode": "full", "max_length": 64}, 8192)
    with pytest.raises(ConfigError, match=r"student.max_length=256 is longer than the model's context \(128 tokens"):
        check_lengths(rows, tokenizer, student, 128)


def test_generation_room_must_hold_the_reference_answer(student, rows, tiny_model):
    setting = "student.rl.args.max_completion_length"
    check_lengths(rows, tiny_model.tokenizer, student, 8192, (setting, 96))
    with pytest.raises(ConfigError, match=r"student.rl.args.max_completion_length=8 is shorter than the longest reference answer"):
        check_lengths(rows, tiny_model.tokenizer, student, 8192, (setting, 8))
    with pytest.raises(ConfigError, match=r"tokens of prompt and student.rl.args.max_completion_length"):
        check_lengths(rows, tiny_model.tokenizer, {**student, "max_length": 100}, 8192, (setting, 96))


def test_a_lora_target_that_is_not_in_the_model_lists_the_real_ones(tiny_model):
    lora = {"enabled": True, "r": 4, "alpha": 8, "target_modules": ["q_proj", "qkv_proj"]}
    with pytest.raises(ConfigError) as error:
        lora_config("student.sft.lora", lora, tiny_model.model)
    assert "student.sft.lora.target_modules: ['qkv_proj'] not in the model" in str(error.value)
    assert "'down_proj'" in str(error.value) and "'q_proj'" in str(error.value)
    assert lora_config("student.sft.lora", {**lora, "target_modules": ["q_proj", "v_proj"]}, tiny_model.model).r == 4
    assert lora_config("student.sft.lora", {"enabled": False}, tiny_model.model) is None
