"""exact_match and canonical_key: the rules of answer equality."""

import pytest

from supertiny.calls import canonical_key, exact_match


def call(name: str, **arguments) -> dict:
    return {"name": name, "arguments": arguments}


def same(a: list, b: list, tools=None) -> bool:
    """exact_match, checked to agree with canonical_key and to be symmetric."""
    result = exact_match(a, b, tools)
    assert exact_match(b, a, tools) == result
    assert (canonical_key(a, tools) == canonical_key(b, tools)) == result
    return result


def test_numbers_compare_by_value():
    assert same([call("f", t=21)], [call("f", t=21.0)])
    assert not same([call("f", t=21)], [call("f", t=21.5)])


def test_booleans_are_not_numbers():
    assert not same([call("f", on=True)], [call("f", on=1)])
    assert not same([call("f", on=False)], [call("f", on=0)])
    assert not same([call("f", on=[True])], [call("f", on=[1])])


def test_strings_ignore_case_and_whitespace():
    assert same([call("f", room="  Living   Room\n")], [call("f", room="living room")])
    assert not same([call("f", room="livingroom")], [call("f", room="living room")])
    assert not same([call("f", t="21")], [call("f", t=21)])


def test_names_must_be_equal():
    assert not same([call("f", a=1)], [call("g", a=1)])
    assert not same([call("F", a=1)], [call("f", a=1)])


def test_argument_sets_must_be_equal():
    assert not same([call("f", a=1)], [call("f", a=1, b=2)])
    assert not same([call("f", a=None)], [call("f")])


def test_defaults_count_as_omitted_only_with_tools(tools):
    explicit = [call("set_lights", room="hall", brightness=100)]
    omitted = [call("set_lights", room="hall")]
    assert same(explicit, omitted, tools)
    assert same([call("set_thermostat", mode="heat", temperature=20, unit="Celsius")],
                [call("set_thermostat", mode="heat", temperature=20.0)], tools)
    assert not same(explicit, omitted)
    assert not same([call("set_lights", room="hall", brightness=90)], omitted, tools)


def test_nested_values_are_normalised_recursively():
    a = [call("f", items=[{"name": " Milk ", "qty": 2.0}, {"name": "eggs", "qty": 12}])]
    b = [call("f", items=[{"qty": 2, "name": "milk"}, {"name": "EGGS", "qty": 12.0}])]
    assert same(a, b)
    assert not same(a, [call("f", items=list(reversed(b[0]["arguments"]["items"])))])


def test_parallel_calls_are_order_insensitive():
    a, b = call("f", x=1), call("g", y="z")
    assert same([a, b], [b, a])


def test_duplicates_count():
    a, b = call("f", x=1), call("f", x=2)
    assert not same([a, a], [a])
    assert not same([a, a, b], [a, b, b])
    assert same([a, b, a], [a, a, b])


def test_no_call_cases():
    assert same([], [])
    assert not same([], [call("f")])
    assert not same([call("f")], [])


def test_parse_failure_never_matches():
    assert exact_match(None, []) is False
    assert exact_match(None, [call("f")]) is False


@pytest.mark.parametrize(
    ("with_tools", "expected"),
    [
        (False, '[["set_fan",{"speed":"low speed"}],["set_lights",{"brightness":100,"room":"hall"}]]'),
        (True, '[["set_fan",{"speed":"low speed"}],["set_lights",{"room":"hall"}]]'),
    ],
)
def test_canonical_key_is_deterministic_text(tools, with_tools, expected):
    answer = [call("set_lights", room=" Hall ", brightness=100.0), call("set_fan", speed="Low Speed")]
    used = tools if with_tools else None
    assert canonical_key(answer, used) == expected
    assert canonical_key(list(reversed(answer)), used) == expected
    assert canonical_key([]) == "[]"
