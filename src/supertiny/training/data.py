"""``distill_train`` rows as TRL datasets, in the shared prompt format, and the checks on them
that must pass before a stage trains.

Prompts are plain text already rendered with the chat template (``prompt.prompt_text``), so
every trainer tokenizes exactly what evaluation and serving send to the model. Nested values
(references, tool schemas) travel as JSON text: Arrow would merge differing argument objects
into one struct type and fill the gaps with nulls.
"""

from __future__ import annotations

import json
from typing import Any

from datasets import Dataset

from supertiny.errors import ConfigError
from supertiny.prompt import prompt_text, target_text


def row_answer(row: dict[str, Any]) -> list[dict]:
    """The answer SFT learns: the verified teacher answer the filter kept."""
    return row["calls"]


def reward_reference(row: dict[str, Any]) -> list[dict]:
    """What RL rewards closeness to: the request's reference when labelled, else the verified teacher answer."""
    return row["reference"] if row.get("reference") is not None else row["calls"]


def sft_dataset(rows: list[dict], tokenizer: Any, tools_mode: str) -> Dataset:
    """Prompt-completion pairs: the trainer computes the loss on the completion (the answer) only."""
    return Dataset.from_list(
        [{"prompt": prompt_text(row, tokenizer, tools_mode), "completion": target_text(row_answer(row), tokenizer)} for row in rows]
    )


def rl_dataset(rows: list[dict], tokenizer: Any, tools_mode: str) -> Dataset:
    """Prompts, with what the reward functions need: the reference answer and the request's tools."""
    return Dataset.from_list(
        [
            {
                "prompt": prompt_text(row, tokenizer, tools_mode),
                "reference_json": json.dumps(reward_reference(row), ensure_ascii=False),
                "tools_json": json.dumps(row["tools"], ensure_ascii=False),
            }
            for row in rows
        ]
    )


def prompt_dataset(rows: list[dict], tokenizer: Any, tools_mode: str) -> Dataset:
    """Prompts only: on-policy distillation samples the answers itself."""
    return Dataset.from_list([{"prompt": prompt_text(row, tokenizer, tools_mode)} for row in rows])


def check_lengths(
    rows: list[dict], tokenizer: Any, student: dict[str, Any], context_length: int | None, completion: tuple[str, int] | None = None
) -> None:
    """Every example must fit ``student.max_length``, and that the model's context, before training.

    SFT (no ``completion``): the longest prompt plus its answer. RL and distillation generate the
    answer: ``completion`` is the stage's ``(setting, max_completion_length)``, which must hold
    the longest reference answer, and the longest prompt plus that room must fit.
    Nothing is truncated silently: a cut answer would teach the model to stop mid-call.
    """
    tools_mode, max_length = student["tools_mode"], student["max_length"]
    if context_length is not None and max_length > context_length:
        raise ConfigError(f"student.max_length={max_length} is longer than the model's context ({context_length} tokens, max_position_embeddings)")
    prompts = [len(tokenizer(prompt_text(row, tokenizer, tools_mode))["input_ids"]) for row in rows]
    answer_of = row_answer if completion is None else reward_reference
    answers = [len(tokenizer(target_text(answer_of(row), tokenizer))["input_ids"]) for row in rows]
    if completion is not None:
        setting, room = completion
        if max(answers) > room:
            raise ConfigError(f"{setting}={room} is shorter than the longest reference answer ({max(answers)} tokens); raise it")
        answers = [room] * len(rows)
    lengths = [prompt + answer for prompt, answer in zip(prompts, answers)]
    longest = max(range(len(rows)), key=lengths.__getitem__)
    if lengths[longest] > max_length:
        what = f"prompt and {completion[0]}" if completion else "prompt and answer"
        hint = " or a shorter student.tools_mode (full -> names -> none)" if tools_mode != "none" else ""
        raise ConfigError(
            f"student.max_length={max_length} is shorter than the longest example ({lengths[longest]} tokens of {what}, "
            f"request {rows[longest].get('id')!r}, student.tools_mode={tools_mode}); raise student.max_length "
            f"(the model's context is {context_length} tokens){hint}"
        )
