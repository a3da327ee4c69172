"""Reading a batch body one element at a time gives what ``json.loads`` gives, errors included."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wf.devserver.batch_body import NotAnArray, array_items

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(st.lists(json_values, max_size=6), st.sampled_from([None, 0, 2]), st.booleans())
def test_arrays_read_as_json_loads_reads_them(
    value: list[Any], indent: int | None, padded: bool
) -> None:
    text = json.dumps(value, indent=indent)
    if padded:
        text = f" \n\t{text}\r\n "
    assert list(array_items(text)) == json.loads(text)


@given(st.text(alphabet='[]{},:"0123456789 \n-.eEtruefalsn', max_size=24))
def test_any_text_is_read_as_json_loads_reads_it_or_refused(text: str) -> None:
    try:
        expected = json.loads(text)
    except ValueError:
        with pytest.raises((ValueError, RecursionError)):
            list(array_items(text))
        return
    if isinstance(expected, list):
        assert list(array_items(text)) == expected
    else:
        with pytest.raises(NotAnArray):
            list(array_items(text))


@pytest.mark.parametrize(
    "text",
    ["[", "[1 2]", "[1, 2", '[{"id": "x"}] [', "[1,,2]", "  [1]  x", "[\n  1\n  2\n]", "x", ""],
)
def test_syntax_errors_have_json_loads_message_and_position(text: str) -> None:
    with pytest.raises(json.JSONDecodeError) as expected:
        json.loads(text)
    with pytest.raises(json.JSONDecodeError) as got:
        list(array_items(text))
    assert (got.value.msg, got.value.pos) == (expected.value.msg, expected.value.pos)


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ('{"id": 1}', "object"),
        ('"x"', "string"),
        ("5", "number"),
        ("-1", "number"),
        ("true", "boolean"),
        ("false", "boolean"),
        ("null", "null"),
        (" \n{", "object"),
    ],
)
def test_other_values_are_named_without_being_decoded(text: str, kind: str) -> None:
    with pytest.raises(NotAnArray) as caught:
        list(array_items(text))
    assert caught.value.kind == kind


def test_elements_are_decoded_only_as_they_are_asked_for() -> None:
    items = array_items('[{"a": 1}, [2], oops]')
    assert next(items) == {"a": 1}
    assert next(items) == [2]
    with pytest.raises(json.JSONDecodeError, match="Expecting value"):
        next(items)


def test_nan_and_infinity_are_refused() -> None:
    for text in ("[NaN]", "[1, -Infinity]"):
        with pytest.raises(ValueError, match="is not valid JSON"):
            list(array_items(text))
