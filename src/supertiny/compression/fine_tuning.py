"""Fine-tuning during pruning, and recovery by distillation, both with TRL's ``SFTTrainer``.

The data is the student's (``supertiny.training.data.sft_dataset``): each ``distill_train`` row
becomes its prompt in the student's format and the answer to learn, and the loss counts the
answer's tokens only; ``max_length`` is the student's, which no example exceeds (checked, never
cut). Pruning adds INC's callbacks to the trainer; recovery overrides ``compute_loss`` (the
trainer's documented extension point) to learn from the unpruned student's logits too.

Both take their trainer settings as the student's stages do: ``args`` of TRL's ``SFTConfig``
passed through (``compression.pruning.training.args``, ``compression.recovery.args``), the
pipeline's own settings added by ``training.settings.trainer_args``. Both train on the device
``runtime.device`` resolves to, in float32 unless ``args`` ask for mixed precision, and hand
the model back on the CPU, where slimming and quantisation work on it.
"""

from __future__ import annotations

import tempfile
from typing import Any

import torch
import torch.nn.functional as F
from datasets import Dataset
from trl import SFTConfig, SFTTrainer

from supertiny.prompt import prompt_text, target_text
from supertiny.runtime import Device
from supertiny.training.settings import trainer_args


def calibration_batches(rows: list[dict], tokenizer: Any, tools_mode: str, batch_size: int = 8) -> list[dict]:
    """Prompts with their answers, tokenised in padded batches: the activations that layer
    importance and GPTQ measure are those of the student's own task."""
    texts = [prompt_text(row, tokenizer, tools_mode) + target_text(row["calls"], tokenizer) for row in rows]
    return [
        tokenizer(
            texts[start : start + batch_size],
            return_tensors="pt",
            padding=True,
            add_special_tokens=False,  # the chat template wrote them
        )
        for start in range(0, len(texts), batch_size)
    ]


def _config(output_dir: str, args: dict[str, Any], max_length: int, seed: int, device: Device) -> SFTConfig:
    """The trainer settings every trainer of the project has (``training.settings.trainer_args``),
    from ``args`` (TRL's ``SFTConfig`` fields, as in the student's stages), for a short run
    whose loss is the answer's."""
    return SFTConfig(
        **{"disable_tqdm": True, **trainer_args(args, seed=seed, output_dir=output_dir, device=device)},
        max_length=max_length,
        completion_only_loss=True,
    )


def _losses(trainer: SFTTrainer) -> list[float]:
    return [round(entry["loss"], 4) for entry in trainer.state.log_history if "loss" in entry]


def fine_tune(
    model: torch.nn.Module,
    tokenizer: Any,
    dataset: Dataset,
    args: dict[str, Any],
    max_length: int,
    seed: int,
    device: Device,
    callbacks: list | None = None,
) -> list[float]:
    """Fine-tune ``model`` in place on the answers, on ``device``; returns the loss of every step.

    INC's pruning masks live on the device of the weights they were made for, so a model pruned
    with ``callbacks`` must already be on ``device`` when ``prepare_compression`` sees it."""
    with tempfile.TemporaryDirectory(prefix="supertiny-train-") as output_dir:
        trainer = SFTTrainer(
            model=model,
            args=_config(output_dir, args, max_length, seed, device),
            train_dataset=dataset,
            processing_class=tokenizer,
            callbacks=callbacks,
        )
        trainer.train()
    model.cpu().eval()
    return _losses(trainer)


class AnswerDistillationTrainer(SFTTrainer):
    """SFT whose loss on the answer tokens also matches a teacher's next-token distribution:
    ``kl_weight * T² * KL(teacher_T || student_T) + (1 - kl_weight) * cross-entropy``, with both
    distributions softened by the temperature ``T`` (Hinton et al.); T² keeps the gradient scale
    independent of T.

    The project's one hand-written distillation loss. The student's ``kd`` stage uses TRL's
    ``DistillationTrainer`` as it is, but that trainer (TRL 1.16) learns on the student's own
    sampled completions only; recovery learns on the verified answers, and needs their
    cross-entropy beside the divergence, which neither it nor the experimental ``GKDTrainer``
    (``lmbda=0``: dataset answers, divergence alone) computes."""

    def __init__(self, *args: Any, teacher: torch.nn.Module, temperature: float, kl_weight: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.teacher = teacher.to(self.accelerator.device).eval().requires_grad_(False)
        self.temperature = temperature
        self.kl_weight = kl_weight

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        forward = {key: inputs[key] for key in ("input_ids", "attention_mask", "position_ids") if key in inputs}
        # Position t predicts token t + 1; the labels are -100 outside the answer.
        targets = inputs["labels"][:, 1:]
        answer = targets != -100
        student_logits = model(**forward, use_cache=False).logits[:, :-1][answer]
        with torch.no_grad():
            teacher_logits = self.teacher(**forward, use_cache=False).logits[:, :-1][answer]
        cross_entropy = F.cross_entropy(student_logits, targets[answer])
        t = self.temperature
        kl = F.kl_div(
            F.log_softmax(student_logits / t, dim=-1),
            F.log_softmax(teacher_logits / t, dim=-1),
            log_target=True,
            reduction="batchmean",
        ) * (t * t)
        loss = self.kl_weight * kl + (1 - self.kl_weight) * cross_entropy
        mode = "train" if model.training else "eval"
        self._metrics[mode]["kl"].append(kl.item())
        self._metrics[mode]["cross_entropy"].append(cross_entropy.item())
        return (loss, None) if return_outputs else loss


def distil(
    student: torch.nn.Module,
    teacher: torch.nn.Module,
    tokenizer: Any,
    dataset: Dataset,
    recovery: dict[str, Any],
    max_length: int,
    seed: int,
    device: Device,
) -> dict[str, list[float]]:
    """Train ``student`` in place towards ``teacher`` on the answers, on ``device``; returns per-step losses."""
    with tempfile.TemporaryDirectory(prefix="supertiny-distil-") as output_dir:
        trainer = AnswerDistillationTrainer(
            model=student,
            args=_config(output_dir, recovery["args"], max_length, seed, device),
            train_dataset=dataset,
            processing_class=tokenizer,
            teacher=teacher,
            temperature=recovery["temperature"],
            kl_weight=recovery["kl_weight"],
        )
        trainer.train()
    student.cpu().eval()
    history = trainer.state.log_history
    return {
        "loss": _losses(trainer),
        "kl": [round(entry["kl"], 4) for entry in history if "kl" in entry],
        "cross_entropy": [round(entry["cross_entropy"], 4) for entry in history if "cross_entropy" in entry],
    }
