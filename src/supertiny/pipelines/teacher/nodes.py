"""Nodes of the teacher pipeline: seed examples, then teacher labels for train and val requests."""

from __future__ import annotations

import logging
import random
from collections import defaultdict
from typing import Any

from supertiny.datasets import ModelDirectory
from supertiny.inference import sample_requests
from supertiny.teacher import TeacherConfig, label_requests

log = logging.getLogger(__name__)


def _answer_shape(request: dict) -> tuple[str, ...]:
    """The functions a reference answer calls (empty: no call); seeds cover each shape in turn."""
    return tuple(sorted({call["name"] for call in request["reference"]}))


def select_seed_examples(train_requests: list[dict], teacher: dict[str, Any]) -> tuple[list[dict], list[dict]]:
    """Set aside ``teacher.seed_examples`` labelled train requests as the teacher's few-shot pool.

    They stand for the few hand-checked examples a team has before it has a dataset, so they
    are kept out of what the teacher labels (and so out of distillation). Picked round-robin
    over answer shapes (which functions the reference calls), so that every function has
    examples before any shape gets a second one.
    """
    config = TeacherConfig.from_params(teacher)
    rng = random.Random(config.seed)
    by_shape: dict[tuple[str, ...], list[dict]] = defaultdict(list)
    for request in train_requests:
        if request.get("reference") is not None:
            by_shape[_answer_shape(request)].append(request)
    shapes = sorted(by_shape)
    rng.shuffle(shapes)
    for shape in shapes:
        rng.shuffle(by_shape[shape])
    chosen: set[str] = set()
    depth = 0
    while len(chosen) < config.seed_examples and any(len(by_shape[s]) > depth for s in shapes):
        for shape in shapes:
            if len(chosen) < config.seed_examples and len(by_shape[shape]) > depth:
                chosen.add(by_shape[shape][depth]["id"])
        depth += 1
    seeds = [request for request in train_requests if request["id"] in chosen]
    rest = [request for request in train_requests if request["id"] not in chosen]
    log.info("Teacher seed examples: %d of %d train requests (%d answer shapes)", len(seeds), len(train_requests), len(shapes))
    return seeds, rest


def label_with_teacher(
    requests: list[dict],
    teacher_seed_examples: list[dict],
    base_model: ModelDirectory,
    teacher: dict[str, Any],
    max_requests: int | None,
) -> tuple[list[dict], dict[str, Any]]:
    """Teacher candidates (``teacher.k_samples`` per request) for at most ``max_requests``
    requests (a seeded random subset, in their original order), and the run's usage record."""
    config = TeacherConfig.from_params(teacher)
    requests = sample_requests(requests, max_requests, config.seed)
    return label_requests(requests, teacher_seed_examples, config, model_dir=base_model.path)
