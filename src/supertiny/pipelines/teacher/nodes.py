"""Nodes of the teacher pipeline: seed examples, then teacher labels for train and val requests."""

from __future__ import annotations

import logging
import random
from collections import defaultdict
from pathlib import Path
from typing import Any

from supertiny.datasets import JSONLinesDataset, ModelDirectory
from supertiny.errors import ConfigError
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


def select_teacher_requests(
    requests: list[dict], teacher: dict[str, Any], tools_mode: str, evaluation: dict[str, Any], runtime: dict[str, Any]
) -> tuple[list[dict], list[dict]]:
    """The train requests the teacher labels (``teacher.max_requests`` of them), in their original
    order, and why each was chosen or not (``teacher_selection``: request id, confidence, selected).

    ``teacher.selection.labelled``, an earlier round's ``teacher_selection``: the requests it chose
    are kept (their answers are in the teacher cache) and the rest of the budget is chosen from
    the others. ``teacher.select: random``: a seeded random subset. ``least_confident``: an earlier
    round's model (``teacher.selection.model_dir``, prompted with ``student.tools_mode``) answers a
    seeded random ``teacher.selection.pool`` of them on the served path, and the budget goes to
    those it is least sure of (``teacher.selection.signal``, the cascade's confidence).
    """
    from supertiny.pipelines.evaluation.nodes import local_predictions

    config = TeacherConfig.from_params(teacher)
    selection = config.selection
    kept_ids = _labelled_before(selection.labelled, requests)
    rest = [request for request in requests if request["id"] not in kept_ids]
    budget = None if config.max_requests is None else config.max_requests - len(kept_ids)
    if budget is not None and budget < 0:
        raise ConfigError(f"teacher.max_requests ({config.max_requests}) is below the {len(kept_ids)} requests of "
                          f"teacher.selection.labelled ({selection.labelled}), which are kept: raise it")
    confidence: dict[str, float] = {}
    if config.select == "random":
        new = sample_requests(rest, budget, config.seed)
    else:
        pool = sample_requests(rest, selection.pool, config.seed)
        if len(pool) < budget:
            raise ConfigError(f"teacher.selection.pool ({len(pool)} requests) is smaller than the {budget} requests to choose: "
                              "raise it, or lower teacher.max_requests")
        log.info("teacher.select least_confident: %s answers %d train requests to rank them", selection.model_dir, len(pool))
        predictions = local_predictions(ModelDirectory(Path(selection.model_dir)), pool, tools_mode, evaluation, runtime, stage="selection")
        confidence = {p["request_id"]: p[f"confidence_{selection.signal}"] for p in predictions}
        new = sorted(pool, key=lambda request: confidence[request["id"]])[:budget]
        if new:
            log.info("teacher.select least_confident: %d requests at %s confidence up to %.3f (the pool's median: %.3f)", len(new),
                     selection.signal, confidence[new[-1]["id"]], sorted(confidence.values())[len(confidence) // 2])
    chosen_ids = kept_ids | {request["id"] for request in new}
    log.info("Teacher labels %d of %d train requests (%d kept from an earlier round, %d chosen %s)", len(chosen_ids), len(requests),
             len(kept_ids), len(new), "at random" if config.select == "random" else "least confident first")
    record = [{"request_id": request["id"], "confidence": confidence.get(request["id"]), "selected": request["id"] in chosen_ids}
              for request in requests]
    return [request for request in requests if request["id"] in chosen_ids], record


def _labelled_before(path: str | None, requests: list[dict]) -> set[str]:
    """The ids an earlier round's ``teacher_selection`` chose, of these requests."""
    if path is None:
        return set()
    chosen = {row["request_id"] for row in JSONLinesDataset(filepath=path).load() if row.get("selected")}
    ids = {request["id"] for request in requests}
    if chosen - ids:
        log.warning("teacher.selection.labelled: %d of its %d requests are not train requests of this run; they are left out",
                    len(chosen - ids), len(chosen))
    return chosen & ids


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
