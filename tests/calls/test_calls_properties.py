"""Properties over generated answers: bounds, symmetry, and one notion of equality everywhere."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from supertiny.calls import (
    VALID_ANSWER_FLOOR,
    canonical_key,
    exact_match,
    format_calls,
    parse_calls,
    similarity,
)

# Few names, keys and values, so that generated answers often collide or nearly collide.
NAMES = ["set_lights", "set_thermostat", "set_fan", "g"]
KEYS = ["room", "brightness", "mode", "unit", "speed", "q"]
VALUES = [
    "red", "Red ", "red green", "red-green", "red  green blue", "low speed", "high speed", "heat", "celsius", "",
    21, 21.0, 22, 100, 0, 1, True, False, None, 2.5, [1, 2], [1.0, 2], [True], {"a": "X"}, {"a": " x"},
]

calls = st.builds(
    lambda name, arguments: {"name": name, "arguments": arguments},
    st.sampled_from(NAMES),
    st.dictionaries(st.sampled_from(KEYS), st.sampled_from(VALUES), max_size=3),
)
answers = st.lists(calls, max_size=4)
maybe_tools = st.booleans()
# Arguments each tool in conftest.TOOLS may drop at its default.
DEFAULTS = {"set_lights": ("brightness", 100), "set_thermostat": ("unit", "celsius")}


def equivalent_value(draw, value):
    """A value exact_match must treat as equal to `value`."""
    if isinstance(value, str):
        return draw(st.sampled_from([value, value.upper(), f"  {value.title()} ", value.replace(" ", " \n ")]))
    if isinstance(value, int) and not isinstance(value, bool):
        return draw(st.sampled_from([value, float(value)]))
    if isinstance(value, list):
        return [equivalent_value(draw, item) for item in value]
    if isinstance(value, dict):
        return {key: equivalent_value(draw, item) for key, item in value.items()}
    return value


@st.composite
def equivalent(draw, answer: list, with_tools: bool) -> list:
    """The same answer reordered, re-cased, re-spaced, ints as floats, defaults spelled out."""
    result = []
    for call in draw(st.permutations(answer)):
        arguments = {key: equivalent_value(draw, value) for key, value in call["arguments"].items()}
        default = DEFAULTS.get(call["name"])
        if with_tools and default and default[0] not in arguments and draw(st.booleans()):
            arguments[default[0]] = default[1]
        result.append({"name": call["name"], "arguments": arguments})
    return result


@st.composite
def answer_pairs(draw) -> tuple[list, list, bool]:
    """Two answers, often equivalent or one small edit apart, and whether tools are given."""
    with_tools = draw(maybe_tools)
    a = draw(answers)
    kind = draw(st.sampled_from(["independent", "equivalent", "edited"]))
    if kind == "independent":
        return a, draw(answers), with_tools
    b = draw(equivalent(a, with_tools))
    if kind == "edited":
        edit = draw(st.sampled_from(["add", "drop", "change", "reword"]))
        strings = [(c["arguments"], k) for c in b for k, v in c["arguments"].items() if isinstance(v, str)]
        if edit == "add" or not b:
            b.append(draw(calls))
        elif edit == "drop":
            b.pop(draw(st.integers(0, len(b) - 1)))
        elif edit == "reword" and strings:
            # Same word tokens, different text: the closest a wrong string gets.
            arguments, key = draw(st.sampled_from(strings))
            arguments[key] = "-".join(arguments[key].split()) + "!"
        else:
            target = b[draw(st.integers(0, len(b) - 1))]["arguments"]
            target[draw(st.sampled_from(KEYS))] = draw(st.sampled_from(VALUES))
    return a, b, with_tools


@settings(max_examples=400, deadline=None)
@given(answer_pairs())
def test_similarity_bounds_and_symmetry(tools, pair):
    a, b, with_tools = pair
    used = tools if with_tools else None
    score = similarity(a, b, used)
    assert VALID_ANSWER_FLOOR <= score <= 1.0
    assert score == similarity(b, a, used)


@settings(max_examples=400, deadline=None)
@given(answer_pairs())
def test_similarity_is_one_iff_exact_match(tools, pair):
    a, b, with_tools = pair
    used = tools if with_tools else None
    assert (similarity(a, b, used) == 1.0) == exact_match(a, b, used)


@settings(max_examples=400, deadline=None)
@given(answer_pairs())
def test_canonical_key_equal_iff_exact_match(tools, pair):
    a, b, with_tools = pair
    used = tools if with_tools else None
    assert (canonical_key(a, used) == canonical_key(b, used)) == exact_match(a, b, used)
    assert exact_match(a, b, used) == exact_match(b, a, used)


@settings(deadline=None)
@given(st.data(), answers, maybe_tools)
def test_equivalent_answers_match_exactly(tools, data, a, with_tools):
    used = tools if with_tools else None
    b = data.draw(equivalent(a, with_tools))
    assert exact_match(a, b, used)
    assert similarity(a, b, used) == 1.0


@given(answers, maybe_tools)
def test_answer_is_similar_to_itself(tools, a, with_tools):
    used = tools if with_tools else None
    assert similarity(a, a, used) == 1.0
    assert similarity(None, a, used) == 0.0 < similarity([], a, used)


@settings(deadline=None)
@given(st.data(), answers, answers)
def test_similarity_ignores_call_order(data, a, b):
    shuffled = data.draw(st.permutations(a))
    assert similarity(shuffled, b) == pytest.approx(similarity(a, b), abs=1e-12)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(), children, max_size=3),
    max_leaves=8,
)
free_calls = st.builds(
    lambda name, arguments: {"name": name, "arguments": arguments},
    st.text(min_size=1),
    st.dictionaries(st.text(), json_values, max_size=3),
)


@given(st.lists(free_calls, max_size=3))
def test_format_parse_round_trip(answer):
    result = parse_calls(format_calls(answer))
    assert result.ok, result.error
    assert result.calls == answer
