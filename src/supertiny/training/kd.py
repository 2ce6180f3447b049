"""Stage ``kd``: on-policy distillation from a white-box teacher, with TRL's DistillationTrainer.

The student samples answers to the training prompts and learns to match the teacher's
next-token distribution on them, under the generalised Jensen-Shannon divergence
(``args.beta``: 0 forward KL, 0.5 JSD, 1 reverse KL). It runs after supervised training, the
order of "Efficient AI in Practice": the student first learns the task from verified answers,
then corrects the mistakes it makes itself. The teacher must share the student's tokenizer,
since the two distributions are compared token by token.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from trl import DistillationConfig, DistillationTrainer

from supertiny.datasets import ModelBundle, ModelDirectory
from supertiny.errors import ConfigError
from supertiny.runtime import Device, shared_workdir
from supertiny.training.data import check_lengths, prompt_dataset
from supertiny.training.models import load_for_training, trained_model
from supertiny.training.monitor import StageMonitor
from supertiny.training.settings import lora_config, trainer_settings


def load_teacher(teacher_dir: str | Path, student_tokenizer: Any) -> Any:
    """The teacher model, after checking it is a model directory with the student's vocabulary."""
    directory = ModelDirectory(Path(teacher_dir))
    if not (directory.path / "config.json").exists():
        raise ConfigError(f"student.kd.teacher_model_dir: {str(teacher_dir)!r} is not a model directory (no config.json)")
    if directory.load_tokenizer().get_vocab() != student_tokenizer.get_vocab():
        raise ConfigError(
            f"student.kd.teacher_model_dir: the model at {str(teacher_dir)!r} has another tokenizer than the student; "
            "distillation compares token distributions, so teacher and student need the same vocabulary"
        )
    teacher, _ = load_for_training(directory)
    return teacher


def run_kd(
    start: ModelDirectory, train_rows: list[dict], student: dict[str, Any], device: Device
) -> tuple[ModelBundle, list[dict[str, Any]]]:
    """Distil the configured teacher into the model at ``start`` on the prompts of ``train_rows``, on ``device``."""
    params = student["kd"]
    model, tokenizer = load_for_training(start)
    room = (params.get("args") or {}).get("max_completion_length", DistillationConfig.max_completion_length)
    check_lengths(train_rows, tokenizer, student, getattr(model.config, "max_position_embeddings", None), ("student.kd.args.max_completion_length", room))
    teacher = load_teacher(params["teacher_model_dir"], tokenizer)
    peft_config = lora_config("student.kd.lora", params.get("lora"), model)
    prompts = prompt_dataset(train_rows, tokenizer, student["tools_mode"])

    monitor = StageMonitor("kd")
    with shared_workdir("supertiny-kd-") as workdir:
        trainer = DistillationTrainer(
            model=model,
            teacher_model=teacher,
            args=DistillationConfig(**trainer_settings("kd", student, workdir, device)),
            train_dataset=prompts,
            processing_class=tokenizer,
            peft_config=peft_config,
            callbacks=[monitor],
        )
        trainer.train()
        model = trained_model(trainer)
    return ModelBundle(model, tokenizer), monitor.rows
