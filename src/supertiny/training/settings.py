"""The ``student`` parameters: what must hold before any stage trains, and the trainer settings
every stage shares.

Each stage section holds ``args``: settings of its TRL config class (``SFTConfig``,
``GRPOConfig``, ``DistillationConfig``), passed as they are, so TRL's documentation is the
reference for them. The settings in ``MANAGED_ARGS`` belong to the pipeline (where checkpoints
go, what is logged, the seed, the device) and are refused in ``args``. ``bf16`` and ``fp16``
(mixed precision: the weights, and so the saved models, stay float32) are the stage's own,
checked against the device ``runtime.device`` resolves to.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from supertiny.errors import ConfigError
from supertiny.prompt import TOOLS_MODES
from supertiny.runtime import PRECISION_NEEDS, Device

# The pipeline's order: each stage starts from the model of the stage before it.
STAGES = ("sft", "rl", "kd")
TRAINER_CONFIGS = {"sft": "SFTConfig", "rl": "GRPOConfig", "kd": "DistillationConfig"}
MANAGED_ARGS = frozenset({
    "output_dir", "report_to", "seed", "use_cpu", "dataloader_num_workers",
    "save_strategy", "load_best_model_at_end", "metric_for_best_model", "eval_strategy",
    "max_length", "completion_only_loss", "reward_weights", "teacher_model_name_or_path",
})
# Mixed-precision settings of the TRL configs, and the precision each one needs of the device.
PRECISION_ARGS = {"bf16": "bf16", "bf16_full_eval": "bf16", "fp16": "fp16", "fp16_full_eval": "fp16"}


def check_params(student: dict[str, Any], device: Device) -> None:
    """Raise ConfigError, naming the setting, for ``student`` parameters that cannot work on
    ``device``: the parameters model's checks (types, ranges, known stages and modes), then the
    rules between settings, TRL's own config fields and the device."""
    from supertiny.parameters import check_section  # it imports this module's STAGES

    check_section("student", student)
    stages = student["stages"]
    if list(stages) != [stage for stage in STAGES if stage in stages]:
        raise ConfigError(
            f"student.stages: {stages} is not in the pipeline's order {' -> '.join(STAGES)} "
            "(each stage starts from the previous stage's model); list each stage once, in that order"
        )
    for stage in STAGES:
        section = student.get(stage)
        if not isinstance(section, dict):
            raise ConfigError(f"student.{stage} is missing: every stage needs its section, even when it does not run")
        check_trainer_args(f"student.{stage}.args", TRAINER_CONFIGS[stage], section.get("args") or {})
        check_precision(f"student.{stage}.args", section.get("args") or {}, device)
        _check_lora(f"student.{stage}.lora", section.get("lora") or {"enabled": False})
    weights = student["rl"].get("reward") or {}
    if set(weights) != {"similarity", "format"}:
        raise ConfigError(f"student.rl.reward must give weights for both 'similarity' and 'format'; got {weights!r}")
    if "kd" in stages and not student["kd"].get("teacher_model_dir"):
        raise ConfigError("student.kd.teacher_model_dir is required when student.stages includes kd (a model directory of the same tokenizer family)")


def check_examples(rows: list[dict]) -> None:
    """An empty ``distill_train`` means the filter rejected every candidate: nothing to learn from."""
    if not rows:
        raise ConfigError(
            "distill_train is empty: filtering kept no examples, so the student has nothing to learn. "
            "See filter_report / filter_summary for where candidates were rejected (filtering.verifiers, "
            "filtering.reference.min_similarity, the teacher settings)"
        )


def check_trainer_args(setting: str, config_name: str, args: dict[str, Any]) -> None:
    """``args`` (the ``setting``) hold only fields of ``trl.<config_name>`` that the pipeline does not set itself."""
    import trl  # imported here: a run that does not train never pays for it

    managed = sorted(MANAGED_ARGS & set(args))
    if managed:
        raise ConfigError(f"{setting}: {managed} are set by the pipeline, not in args")
    config_class = getattr(trl, config_name)
    known = {field.name for field in dataclasses.fields(config_class)}
    unknown = sorted(set(args) - known)
    if unknown:
        raise ConfigError(f"{setting}: {unknown} are not settings of trl.{config_class.__name__} (TRL {trl.__version__})")


def check_precision(setting: str, args: dict[str, Any], device: Device) -> None:
    """Mixed precision in ``args`` (the ``setting``) only where ``device`` has it."""
    for arg, precision in PRECISION_ARGS.items():
        value = args.get(arg, False)
        if not isinstance(value, bool):
            raise ConfigError(f"{setting}.{arg} must be true or false; got {value!r}")
        if value and not getattr(device, precision):
            raise ConfigError(
                f"{setting}.{arg}: {PRECISION_NEEDS[precision]}; runtime.device resolved to {device.name} "
                f"({device.type}). Set it to false (float32), or run where the device has it"
            )
    if args.get("bf16") and args.get("fp16"):
        raise ConfigError(f"{setting}: bf16 and fp16 are both true; choose one")


def _check_lora(setting: str, lora: dict[str, Any]) -> None:
    """An enabled adapter needs its rank, scale and target modules (their types and ranges are the model's)."""
    if not lora.get("enabled"):
        return
    missing = [key for key in ("r", "alpha", "target_modules") if lora.get(key) is None]
    if missing:
        raise ConfigError(f"{setting}: an enabled LoRA adapter needs {', '.join(missing)}")


def trainer_settings(stage: str, student: dict[str, Any], output_dir: str, device: Device) -> dict[str, Any]:
    """Keyword arguments of a student stage's TRL config (``student.<stage>.args``)."""
    return trainer_args(student[stage].get("args"), seed=student.get("seed", 0), output_dir=output_dir, device=device)


def trainer_args(args: dict[str, Any] | None, *, seed: int, output_dir: str, device: Device) -> dict[str, Any]:
    """Keyword arguments of a TRL config, for every trainer of the project (the student's stages,
    fine-tuning while pruning, recovery): ``args`` as given, and the pipeline's own settings.

    The device is ``runtime.device``'s. Float32 unless ``args`` ask for mixed precision (the
    weights stay float32 either way, so every saved model is an ordinary float32 directory).
    No checkpoints unless a stage asks for them (into ``output_dir``, a temporary directory), no
    reporting integrations, one process for data loading.
    """
    return {
        "bf16": False,
        "fp16": False,
        # Every parameter takes part in every forward pass: DDP need not search for unused ones.
        "ddp_find_unused_parameters": False,
        **(args or {}),
        "output_dir": output_dir,
        "report_to": [],
        "seed": seed,
        "use_cpu": device.use_cpu,
        "dataloader_num_workers": 0,
        "save_strategy": "no",
    }


def lora_config(setting: str, lora: dict[str, Any] | None, model: Any) -> Any:
    """A peft ``LoraConfig`` when ``lora.enabled``, else None; target modules must exist in the model."""
    if not lora or not lora.get("enabled"):
        return None
    from peft import LoraConfig

    targets = lora["target_modules"]
    if targets != "all-linear":
        available = linear_module_names(model)
        missing = [name for name in targets if name not in available]
        if missing:
            raise ConfigError(f"{setting}.target_modules: {missing} not in the model; its Linear modules are {sorted(available)} (or use 'all-linear')")
    return LoraConfig(
        task_type="CAUSAL_LM", r=lora["r"], lora_alpha=lora["alpha"], lora_dropout=lora.get("dropout", 0.0), target_modules=targets
    )


def linear_module_names(model: Any) -> set[str]:
    """The last name part of every Linear layer (``q_proj``, ``down_proj``, ``lm_head``...): what LoRA can target."""
    import torch

    return {name.rsplit(".", 1)[-1] for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)}
