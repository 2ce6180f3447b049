"""GRPO rewards: graded by the call module's similarity, plus the format term."""

from __future__ import annotations

import json

import pytest

from supertiny.training.rewards import format_reward, similarity_reward

REFERENCE = [{"name": "set_lights", "arguments": {"room": "kitchen", "on": True}}, {"name": "start_timer", "arguments": {"minutes": 5}}]
EXACT = '[{"name": "set_lights", "arguments": {"room": "kitchen", "on": true}}, {"name": "start_timer", "arguments": {"minutes": 5}}]'
NEAR = '[{"name": "set_lights", "arguments": {"room": "bedroom", "on": true}}, {"name": "start_timer", "arguments": {"minutes": 5}}]'
HALF = '[{"name": "start_timer", "arguments": {"minutes": 5}}]'
GARBAGE = "sure! the lights are on"


@pytest.fixture
def total(tool_catalog):
    """reward(texts) with the default weights (similarity 1.0, format 0.2), as GRPO sums them."""

    def reward(texts: list[str], reference=REFERENCE) -> list[float]:
        columns = {"reference_json": [json.dumps(reference)] * len(texts), "tools_json": [json.dumps(tool_catalog)] * len(texts)}
        return [s + 0.2 * f for s, f in zip(similarity_reward(texts, **columns), format_reward(texts, **columns))]

    return reward


def test_rewards_are_graded_from_exact_to_garbage(total):
    exact, near, half, garbage = total([EXACT, NEAR, HALF, GARBAGE])
    assert exact == pytest.approx(1.2)  # the maximum: similarity 1 and a perfect format
    assert exact > near > half > garbage == 0.0
    assert near > 0.5  # one wrong argument keeps most of the credit


def test_format_term_counts_parse_schema_and_nothing_else(tool_catalog):
    tools = [json.dumps(tool_catalog)]
    assert format_reward([EXACT], tools) == [1.0]
    assert format_reward([f"Here you go: {EXACT}"], tools) == [pytest.approx(2 / 3)]  # prose around the answer
    unknown_argument = '[{"name": "start_timer", "arguments": {"minutes": 5, "volume": 3}}]'
    assert format_reward([unknown_argument], tools) == [pytest.approx(2 / 3)]  # invalid against the schema
    assert format_reward([GARBAGE], tools) == [0.0]


def test_no_call_is_rewarded_when_no_call_is_right(total):
    assert total(["[]", EXACT], reference=[]) == [pytest.approx(1.0), pytest.approx(0.1 + 0.2)]


def test_no_call_is_not_a_safe_answer_when_calls_are_needed(total):
    """Any well-formed call beats "[]" on a request that needs calls, so a weak student cannot
    settle on never calling anything (what GRPO found while "[]" earned the format term)."""
    no_call, wrong_function = total(["[]", '[{"name": "set_lights", "arguments": {"room": "bedroom", "on": false}}]'])
    assert no_call == pytest.approx(0.1) and wrong_function > no_call


def test_a_group_of_equal_answers_gets_equal_rewards(total):
    """GRPO's advantage (reward minus the group mean) is then zero: the group adds no gradient."""
    rewards = total([NEAR] * 4)
    assert len(set(rewards)) == 1
