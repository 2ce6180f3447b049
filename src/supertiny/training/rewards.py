"""GRPO reward functions, built only from the call module.

The main reward is graded, as in STAR's similarity-guided RL: the similarity of the sampled
answer to the reference (0 unparseable, at least 0.1 for any parseable answer, 1 only when
exact). A 0/1 exact-match reward would give most groups of a small student equal rewards, and
a group of equal rewards teaches nothing. A small format term rewards what makes an answer
usable by the caller, even when its content is wrong. TRL calls each function with the
completions and the dataset's columns, and weighs and logs them separately
(``student.rl.reward`` gives the weights).
"""

from __future__ import annotations

import json
from typing import Any

from supertiny.calls import format_calls, parse_calls, similarity, validate_calls


def similarity_reward(completions: list[str], reference_json: list[str], tools_json: list[str], **_: Any) -> list[float]:
    """Graded similarity in [0, 1] of each completion's calls to its reference answer."""
    return [
        similarity(parse_calls(text).calls, json.loads(reference), json.loads(tools))
        for text, reference, tools in zip(completions, reference_json, tools_json)
    ]


def format_reward(completions: list[str], tools_json: list[str], **_: Any) -> list[float]:
    """In [0, 1], a third for each: the text parses into calls; the calls are valid against the
    request's tool schemas; the text is nothing but the canonical answer (no prose, no fences).

    "No call" (``[]``) earns nothing here: it is trivially well formed, and paying for it made
    "never call anything" the safe policy of a weak student (every answer ``[]``, rewarded on
    every request). Where no call is right, the similarity reward already gives it 1."""
    rewards = []
    for text, tools in zip(completions, tools_json):
        parsed = parse_calls(text)
        if not parsed.ok or not parsed.calls:
            rewards.append(0.0)
            continue
        valid = not validate_calls(parsed.calls, json.loads(tools))
        canonical = text.strip() == format_calls(parsed.calls)
        rewards.append((1 + valid + canonical) / 3)
    return rewards
