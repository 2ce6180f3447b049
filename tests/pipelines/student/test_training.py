"""Each training stage on the tiny model: a few steps, a loadable plain model whose weights
changed, the log; and the SFT data's loss mask. Learning itself is measured by the benchmark."""

from __future__ import annotations

import copy

import pytest
import torch

from supertiny.datasets import ModelDataset, ModelDirectory
from supertiny.errors import ConfigError
from supertiny.pipelines.student.nodes import finish_student, train_kd, train_rl, train_sft
from supertiny.prompt import prompt_text, target_text
from supertiny.runtime import CPU
from supertiny.training import rl as rl_stage
from supertiny.training.kd import run_kd
from supertiny.training.monitor import StageMonitor
from supertiny.training.rl import run_rl
from supertiny.training.sft import build_trainer, run_sft

LORA = {"enabled": True, "r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]}
NO_LORA = {"enabled": False}
RUNTIME = {"device": "cpu"}


@pytest.fixture
def student() -> dict:
    """Tiny settings: two steps a stage, a large learning rate so that weights visibly move."""
    return {
        "stages": ["sft", "rl", "kd"],
        "tools_mode": "none",
        "max_length": 256,
        "seed": 0,
        "sft": {"early_stopping_patience": 1, "lora": NO_LORA,
                "args": {"max_steps": 2, "per_device_train_batch_size": 2, "learning_rate": 1e-2, "logging_steps": 1, "activation_checkpointing": False}},
        "rl": {"reward": {"similarity": 1.0, "format": 0.2}, "lora": NO_LORA,
               "args": {"max_steps": 2, "per_device_train_batch_size": 4, "num_generations": 2, "max_completion_length": 64,
                        "learning_rate": 1e-2, "beta": 0.02, "logging_steps": 1, "activation_checkpointing": False}},
        "kd": {"teacher_model_dir": None, "lora": NO_LORA,
               "args": {"max_steps": 2, "per_device_train_batch_size": 2, "max_completion_length": 64, "learning_rate": 1e-2,
                        "logging_steps": 1, "activation_checkpointing": False}},
    }


@pytest.fixture
def rows(tool_catalog) -> list[dict]:
    """distill_train rows: requests with the verified answer to learn."""
    examples = [
        ("Kitchen lights on", [{"name": "set_lights", "arguments": {"room": "kitchen", "on": True}}]),
        ("bedroom lights off please", [{"name": "set_lights", "arguments": {"room": "bedroom", "on": False}}]),
        ("start a 5 minute timer", [{"name": "start_timer", "arguments": {"minutes": 5}}]),
        ("tea timer, 3 minutes", [{"name": "start_timer", "arguments": {"minutes": 3, "label": "tea"}}]),
        ("how are you?", []),
        ("lights on in the kitchen and a 10 minute timer", [
            {"name": "set_lights", "arguments": {"room": "kitchen", "on": True}},
            {"name": "start_timer", "arguments": {"minutes": 10}},
        ]),
    ]
    return [
        {"id": f"d{n}", "messages": [{"role": "user", "content": text}], "tools": tool_catalog, "reference": calls, "meta": {},
         "calls": calls, "sample": 0, "verifiers_passed": ["format", "schema", "reference"]}
        for n, (text, calls) in enumerate(examples)
    ]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory, tiny_model) -> ModelDirectory:
    dataset = ModelDataset(filepath=str(tmp_path_factory.mktemp("models") / "tiny"))
    dataset.save(tiny_model)
    return dataset.load()


def weights(directory_or_model) -> dict[str, torch.Tensor]:
    model = directory_or_model.load_model() if isinstance(directory_or_model, ModelDirectory) else directory_or_model
    return {name: tensor.clone() for name, tensor in model.state_dict().items()}


def saved(bundle, tmp_path, name: str) -> ModelDirectory:
    """Save as the catalog does and load back: the stage's output is an ordinary model directory."""
    dataset = ModelDataset(filepath=str(tmp_path / name))
    dataset.save(bundle)
    return dataset.load()


def changed(before: dict, after: dict) -> list[str]:
    assert before.keys() == after.keys(), "a saved model has the same plain parameters (no adapter left)"
    return [name for name in before if not torch.equal(before[name], after[name])]


def test_sft_masks_the_prompt_and_learns_the_answer_tokens(tiny_dir, rows, student, tmp_path):
    trainer = build_trainer(tiny_dir, rows, [], student, str(tmp_path), StageMonitor("sft"), CPU)
    tokenizer = trainer.processing_class
    example = trainer.train_dataset[0]
    prompt_ids = tokenizer(prompt_text(rows[0], tokenizer, "none"))["input_ids"]
    labels = example["labels"]
    assert labels[: len(prompt_ids)] == [-100] * len(prompt_ids)
    answer = [token for token in labels if token != -100]
    assert answer == example["input_ids"][len(prompt_ids):]
    assert tokenizer.decode(answer) == target_text(rows[0]["calls"], tokenizer)
    # Padding in a batch is masked too.
    batch = trainer.data_collator([trainer.train_dataset[0], trainer.train_dataset[5]])
    assert ((batch["labels"] != -100) == (batch["attention_mask"].bool() & (batch["labels"] != -100))).all()
    shorter = batch["attention_mask"].sum(dim=1).argmin()
    assert (batch["labels"][shorter][batch["attention_mask"][shorter] == 0] == -100).all()


def test_sft_trains_saves_a_plain_model_and_logs(tiny_dir, rows, student, tmp_path):
    bundle, log = run_sft(tiny_dir, rows, rows[:2], student, CPU)
    after = saved(bundle, tmp_path, "sft")
    assert changed(weights(tiny_dir), weights(after))
    assert after.load_model().config.use_cache is True
    steps = [row for row in log if "loss" in row]
    assert [row["step"] for row in steps] == [1, 2]
    assert all(row["tokens_per_s"] > 0 and row["peak_rss_mb"] > 0 for row in steps)
    assert any("eval_loss" in row for row in log), "early stopping evaluates on distill_val"


def test_sft_with_lora_saves_the_merged_model(tiny_dir, rows, student, tmp_path):
    student["sft"]["lora"] = LORA
    bundle, _ = run_sft(tiny_dir, rows, [], student, CPU)
    moved = changed(weights(tiny_dir), weights(saved(bundle, tmp_path, "lora")))
    assert moved and all(".q_proj." in name or ".v_proj." in name for name in moved)


def length_reward(completions: list[str], **_) -> list[float]:
    """A reward that differs within a group (the random model's answers differ in length)."""
    return [len(text) / 100 for text in completions]


@pytest.mark.slow
def test_rl_moves_the_policy_when_rewards_differ(tiny_dir, rows, student, tmp_path, monkeypatch):
    monkeypatch.setattr(rl_stage, "similarity_reward", length_reward)
    bundle, log = run_rl(tiny_dir, rows, student, CPU)
    assert changed(weights(tiny_dir), weights(saved(bundle, tmp_path, "rl")))
    assert [row["step"] for row in log if "reward" in row] == [1, 2]
    assert all(row["tokens_per_s"] > 0 for row in log)


@pytest.mark.slow
def test_rl_skips_groups_of_equal_rewards(tiny_dir, rows, student):
    """The random model never writes a parseable answer: every reward is 0, every group equal,
    so every advantage is 0 and the policy does not move."""
    bundle, log = run_rl(tiny_dir, rows, student, CPU)
    assert not changed(weights(tiny_dir), weights(bundle.model))
    assert all(row["frac_reward_zero_std"] == 1.0 for row in log if "reward" in row)


@pytest.mark.slow
def test_kd_moves_the_student_toward_another_teacher(tiny_dir, rows, student, tmp_path, default_source, tiny_overrides):
    from supertiny.model_sources import random_like, resolve_source

    teacher = saved(random_like(resolve_source(default_source), tiny_overrides, seed=1), tmp_path, "teacher")
    student["kd"]["teacher_model_dir"] = str(teacher.path)
    bundle, log = run_kd(tiny_dir, rows, student, CPU)
    assert changed(weights(tiny_dir), weights(saved(bundle, tmp_path, "kd")))
    assert all(row["loss"] > 0 for row in log if "loss" in row)


def test_kd_teacher_must_be_a_model_with_the_students_vocabulary(tiny_dir, tiny_model, rows, student, tmp_path):
    student["kd"]["teacher_model_dir"] = str(tmp_path / "nowhere")
    with pytest.raises(ConfigError, match="student.kd.teacher_model_dir: .* is not a model directory"):
        run_kd(tiny_dir, rows, student, CPU)
    other = copy.deepcopy(tiny_model.tokenizer)
    other.add_tokens(["<room>"])
    other_dir = saved(type(tiny_model)(tiny_model.model, other), tmp_path, "other")
    student["kd"]["teacher_model_dir"] = str(other_dir.path)
    with pytest.raises(ConfigError, match="student.kd.teacher_model_dir: .* has another tokenizer than the student"):
        run_kd(tiny_dir, rows, student, CPU)


def test_stages_left_out_pass_their_input_on(tiny_dir, rows, student):
    student["stages"] = ["sft"]
    model, log = train_rl(tiny_dir, rows, student, RUNTIME)
    assert model is tiny_dir and log.to_dict("records") == [{"stage": "rl", "status": "skipped", "reason": "not in student.stages"}]
    _, kd_log = train_kd(tiny_dir, rows, student, RUNTIME)
    _, summary = finish_student(tiny_dir, log, log, kd_log)
    assert summary["kd"] == {"status": "skipped", "reason": "not in student.stages"}


def test_nodes_refuse_an_empty_distill_train_before_loading_anything(student):
    student["stages"] = ["sft"]
    with pytest.raises(ConfigError, match="distill_train is empty"):
        train_sft(ModelDirectory(path=None), [], [], student, RUNTIME)


def test_a_bad_lora_target_fails_before_training(tiny_dir, rows, student):
    student["sft"]["lora"] = {**LORA, "target_modules": ["c_attn"]}
    with pytest.raises(ConfigError, match=r"student.sft.lora.target_modules: \['c_attn'\] not in the model"):
        run_sft(tiny_dir, rows, [], student, CPU)
