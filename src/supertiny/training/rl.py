"""Stage ``rl``: GRPO from the SFT model, rewarded by the call module.

For each prompt the policy samples ``args.num_generations`` answers; each answer's reward is
``student.rl.reward.similarity`` x the graded similarity to the reference plus
``student.rl.reward.format`` x the format term (see ``rewards``); its advantage is the reward
minus its group's mean (scaled as ``args.scale_rewards`` says). A group whose rewards are all
equal therefore has zero advantage: it adds no policy gradient, which is TRL's way of skipping
it, and ``frac_reward_zero_std`` in the log says how many groups that was. ``args.beta``
weighs the KL term to the reference model: the model this stage starts from (the SFT model).
"""

from __future__ import annotations

from typing import Any

from trl import GRPOConfig, GRPOTrainer

from supertiny.datasets import ModelBundle, ModelDirectory
from supertiny.runtime import Device, shared_workdir
from supertiny.training.data import check_lengths, rl_dataset
from supertiny.training.models import load_for_training, trained_model
from supertiny.training.monitor import StageMonitor
from supertiny.training.rewards import format_reward, similarity_reward
from supertiny.training.settings import lora_config, trainer_settings


def run_rl(
    start: ModelDirectory, train_rows: list[dict], student: dict[str, Any], device: Device
) -> tuple[ModelBundle, list[dict[str, Any]]]:
    """Improve the model at ``start`` with GRPO on the prompts of ``train_rows`` on ``device``; return it and the stage's log."""
    params = student["rl"]
    model, tokenizer = load_for_training(start)
    room = (params.get("args") or {}).get("max_completion_length", GRPOConfig.max_completion_length)
    check_lengths(train_rows, tokenizer, student, getattr(model.config, "max_position_embeddings", None), ("student.rl.args.max_completion_length", room))
    peft_config = lora_config("student.rl.lora", params.get("lora"), model)
    prompts = rl_dataset(train_rows, tokenizer, student["tools_mode"])

    monitor = StageMonitor("rl")
    weights = params["reward"]
    with shared_workdir("supertiny-rl-") as workdir:
        trainer = GRPOTrainer(
            model=model,
            reward_funcs=[similarity_reward, format_reward],
            args=GRPOConfig(**trainer_settings("rl", student, workdir, device), reward_weights=[weights["similarity"], weights["format"]]),
            train_dataset=prompts,
            processing_class=tokenizer,
            peft_config=peft_config,
            callbacks=[monitor],
        )
        trainer.train()
        model = trained_model(trainer)
    return ModelBundle(model, tokenizer), monitor.rows
