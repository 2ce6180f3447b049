"""Graded similarity of two answers, for rewards and evaluation."""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

from supertiny.calls.match import NormalCall, ToolHints, normalise_call, value_key

# Every parseable answer beats every parse failure (which scores 0).
VALID_ANSWER_FLOOR = 0.1
# A string that differs after normalisation never earns full credit, so only exact answers score 1.
_NEAR_MISS_CAP = 0.9
_WORD = re.compile(r"\w+")


def similarity(predicted: list[dict] | None, reference: list[dict], tools: list[dict] | None = None) -> float:
    """Score in [0, 1]: 0 for a parse failure (None), else at least `VALID_ANSWER_FLOOR`, 1 iff exact match.

    Calls are paired one-to-one by name (best total when names repeat); a pair scores
    (1 + argument credits) / (1 + union of argument keys); the answer scores the sum of
    pair scores over the union of calls, so extra and missing calls cost.
    """
    if predicted is None:
        return 0.0
    hints = ToolHints.from_tools(tools)
    content = _content_score(
        [normalise_call(call, hints) for call in predicted],
        [normalise_call(call, hints) for call in reference],
        hints,
    )
    return VALID_ANSWER_FLOOR + (1.0 - VALID_ANSWER_FLOOR) * content


def _content_score(predicted: list[NormalCall], reference: list[NormalCall], hints: ToolHints) -> float:
    if not predicted and not reference:
        return 1.0
    groups: dict[str, tuple[list[dict], list[dict]]] = defaultdict(lambda: ([], []))
    for name, arguments in predicted:
        groups[name][0].append(arguments)
    for name, arguments in reference:
        groups[name][1].append(arguments)
    pair_scores: list[float] = []
    for name, (left, right) in groups.items():
        if left and right:
            pair_scores.extend(_best_pairs(left, right, hints.enums.get(name, frozenset())))
    union = len(predicted) + len(reference) - len(pair_scores)
    return math.fsum(pair_scores) / union


def _best_pairs(left: list[dict], right: list[dict], enums: frozenset[str]) -> list[float]:
    """Scores of the one-to-one pairing of same-name calls with the largest total."""
    if len(left) == 1 or len(right) == 1:
        return [max(_call_score(a, b, enums) for a in left for b in right)]
    # Orient by content so that swapping the two answers builds the same matrix: exact symmetry.
    if sorted(map(value_key, left)) > sorted(map(value_key, right)):
        left, right = right, left
    matrix = np.array([[_call_score(a, b, enums) for b in right] for a in left])
    rows, cols = linear_sum_assignment(matrix, maximize=True)
    return matrix[rows, cols].tolist()


def _call_score(left: dict, right: dict, enums: frozenset[str]) -> float:
    keys = left.keys() | right.keys()
    credits = [_credit(left[key], right[key], key in enums) for key in keys if key in left and key in right]
    return (1.0 + math.fsum(credits)) / (1 + len(keys))


def _credit(left: Any, right: Any, exact: bool) -> float:
    """Credit for one argument: token F1 for free-text strings, otherwise all or nothing."""
    if isinstance(left, str) and isinstance(right, str):
        if left == right:
            return 1.0
        return 0.0 if exact else min(_token_f1(left, right), _NEAR_MISS_CAP)
    return 1.0 if value_key(left) == value_key(right) else 0.0


def _token_f1(left: str, right: str) -> float:
    left_tokens, right_tokens = _WORD.findall(left), _WORD.findall(right)
    if not left_tokens or not right_tokens:
        return 0.0
    common = sum((Counter(left_tokens) & Counter(right_tokens)).values())
    return 2 * common / (len(left_tokens) + len(right_tokens))
