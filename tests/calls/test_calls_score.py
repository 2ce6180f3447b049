"""similarity: graded examples of the reward."""

import pytest

from supertiny.calls import VALID_ANSWER_FLOOR, similarity

FLOOR = VALID_ANSWER_FLOOR


def call(name: str, **arguments) -> dict:
    return {"name": name, "arguments": arguments}


def scaled(content: float) -> float:
    return FLOOR + (1 - FLOOR) * content


def test_floor_constant():
    assert VALID_ANSWER_FLOOR == 0.1


def test_identical_answers_score_one(tools):
    answer = [call("set_lights", room="hall"), call("set_fan", speed="low speed")]
    assert similarity(answer, list(reversed(answer)), tools) == 1.0
    assert similarity([], []) == 1.0


def test_parse_failure_scores_below_any_valid_answer():
    reference = [call("f", a=1)]
    assert similarity(None, reference) == 0.0
    assert similarity(None, []) == 0.0
    assert similarity([call("zzz", q="nothing alike")], reference) == FLOOR > 0.0


def test_no_call_mismatch_scores_the_floor():
    assert similarity([], [call("f", a=1)]) == FLOOR
    assert similarity([call("f", a=1)], []) == FLOOR


def test_one_wrong_string_token_gets_partial_credit():
    predicted = [call("send_message", body="turn on the kitchen light")]
    reference = [call("send_message", body="turn on the bedroom light")]
    # token F1 = 4/5; call = (1 + 0.8) / (1 + 1)
    assert similarity(predicted, reference) == pytest.approx(scaled(0.9))


def test_string_differing_only_in_punctuation_is_not_full_credit():
    score = similarity([call("f", q="new york.")], [call("f", q="New York")])
    assert scaled(0.9) < score < 1.0


def test_wrong_enum_gets_no_argument_credit(tools):
    predicted = [call("set_fan", speed="low speed")]
    reference = [call("set_fan", speed="high speed")]
    assert similarity(predicted, reference, tools) == pytest.approx(scaled(0.5))
    # Without the schema the same strings share a token.
    assert similarity(predicted, reference) == pytest.approx(scaled((1 + 0.5) / 2))


def test_numbers_and_booleans_are_all_or_nothing():
    reference = [call("f", t=21, on=True)]
    assert similarity([call("f", t=21.0, on=True)], reference) == 1.0
    assert similarity([call("f", t=22, on=True)], reference) == pytest.approx(scaled(2 / 3))
    assert similarity([call("f", t=21, on=1)], reference) == pytest.approx(scaled(2 / 3))


def test_missing_and_extra_arguments_cost():
    reference = [call("f", a=1, b=2)]
    assert similarity([call("f", a=1)], reference) == pytest.approx(scaled(2 / 3))
    assert similarity([call("f", a=1, b=2, c=3)], reference) == pytest.approx(scaled(3 / 4))


def test_defaults_are_free_with_tools(tools):
    assert similarity([call("set_lights", room="hall", brightness=100)], [call("set_lights", room="hall")], tools) == 1.0


def test_extra_call_lowers_the_score():
    reference = [call("f", a=1)]
    assert similarity(reference + [call("g", b=2)], reference) == pytest.approx(scaled(1 / 2))


def test_missing_call_lowers_the_score():
    reference = [call("f", a=1), call("g", b=2), call("h")]
    assert similarity(reference[:2], reference) == pytest.approx(scaled(2 / 3))


def test_wrong_function_name_scores_like_a_missing_and_an_extra_call():
    assert similarity([call("f", a=1), call("g", a=1)], [call("f", a=1), call("h", a=1)]) == pytest.approx(scaled(1 / 3))


@pytest.mark.parametrize("flip", [False, True])
def test_same_name_calls_take_the_best_pairing(flip):
    reference = [call("f", q="red green blue"), call("f", q="red")]
    predicted = [call("f", q="red"), call("f", q="red green")]
    if flip:
        predicted.reverse()
    # Best pairing: "red"-"red" (1) and "red green"-"red green blue" (F1 0.8 -> 0.9).
    assert similarity(predicted, reference) == pytest.approx(scaled((1 + 0.9) / 2))


def test_many_same_name_calls():
    reference = [call("f", i=i) for i in range(6)]
    predicted = [call("f", i=i) for i in reversed(range(1, 7))]
    assert similarity(predicted, reference) == pytest.approx(scaled((5 + 0.5) / 6))
