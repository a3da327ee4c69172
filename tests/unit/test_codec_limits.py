"""wf.engine.codec (JSON as stored) and wf.engine.limits (ids, names)."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

import pytest

from wf.engine import codec
from wf.engine.codec import NotSerialisable, decode, encode, encode_payload, encoded_size
from wf.engine.limits import DEFAULT_LIMITS, Limits, check_identifier, check_step_name
from wf.errors import ValidationError, quote

# ---- codec -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        0,
        -7,
        2**70,
        1.5,
        "",
        "héllo ✓ 🎉",
        [],
        {},
        {"a": [1, 2.5, None, True, {"b": "c"}], "d": {"e": []}},
        [[[[]]]],
    ],
)
def test_round_trip(value: Any) -> None:
    assert decode(encode(value)) == value


def test_encoding_is_compact_and_keeps_unicode() -> None:
    assert encode({"a": [1, 2], "b": "é"}) == '{"a":[1,2],"b":"é"}'


def test_tuples_become_lists_and_keys_strings() -> None:
    assert decode(encode({"pair": (1, 2), "nested": [(3, (4,))]})) == {
        "pair": [1, 2],
        "nested": [[3, [4]]],
    }
    assert decode(encode({1: "a", 2.5: "b", False: "c", None: "d"})) == {
        "1": "a",
        "2.5": "b",
        "false": "c",
        "null": "d",
    }


def test_decode_none_is_none() -> None:
    assert decode(None) is None
    assert decode("null") is None


@pytest.mark.parametrize(
    ("value", "where"),
    [
        (float("nan"), "NaN at result"),
        (float("inf"), "Infinity at result"),
        ({"a": [1, float("-inf")]}, '-Infinity at result["a"][1]'),
        ({"k": {float("nan"): 1}}, 'a dict key NaN at result["k"]'),
    ],
)
def test_nan_and_infinity_are_refused_saying_where(value: Any, where: str) -> None:
    with pytest.raises(NotSerialisable) as info:
        encode(value)
    assert info.value.at("result") == where
    assert issubclass(NotSerialisable, ValueError)


class Custom:
    pass


@pytest.mark.parametrize(
    ("value", "where"),
    [
        (object(), "a value of type object at value"),
        (Custom(), "a value of type Custom at value"),
        ({1, 2}, "a value of type set at value"),
        (b"bytes", "a value of type bytes at value"),
        (datetime(2024, 1, 1, tzinfo=timezone.utc), "a value of type datetime at value"),
        ({"a": [1, 2, {"b": {3}}]}, 'a value of type set at value["a"][2]["b"]'),
        ([1, "two", [3, [Custom()]]], "a value of type Custom at value[2][1][0]"),
        ({"ok": 1, "deep": ({"x": b"\x00"},)}, 'a value of type bytes at value["deep"][0]["x"]'),
        ({(1, 2): "tuple key"}, "a dict key of type tuple at value"),
        ({"outer": {frozenset(): 1}}, 'a dict key of type frozenset at value["outer"]'),
        ({1: [None, {2.5: {None}}]}, "a value of type set at value[1][1][2.5]"),
        (
            {"a\nb": {"x" * 50: 1j}},
            'a value of type complex at value["a\\nb"]["' + "x" * 40 + '…"]',
        ),
    ],
)
def test_unserialisable_values_name_their_type_and_path(value: Any, where: str) -> None:
    with pytest.raises(NotSerialisable) as info:
        encode(value)
    assert str(info.value) == where


def test_circular_references_are_refused_where_the_cycle_closes() -> None:
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(NotSerialisable) as info:
        encode(loop)
    assert info.value.at("result") == "a circular reference at result[0]"
    parent: dict[str, Any] = {"kids": [{}]}
    parent["kids"][0]["up"] = parent
    with pytest.raises(NotSerialisable) as info:
        encode({"tree": parent})
    assert str(info.value) == 'a circular reference at value["tree"]["kids"][0]["up"]'


def test_a_shared_value_is_not_a_cycle() -> None:
    shared = {"x": [1, 2]}
    assert decode(encode([shared, shared, {"again": shared}])) == [
        {"x": [1, 2]},
        {"x": [1, 2]},
        {"again": {"x": [1, 2]}},
    ]
    with pytest.raises(NotSerialisable) as info:
        encode([shared, shared, {"bad": {1}}])
    assert str(info.value) == 'a value of type set at value[2]["bad"]'


def test_lone_surrogates_are_refused_in_strings_and_keys() -> None:
    with pytest.raises(NotSerialisable) as info:
        encode({"ok": ["fine", "a\udc80b"]})
    assert str(info.value) == 'a lone surrogate (\\udc80) in a string at value["ok"][1]'
    with pytest.raises(NotSerialisable) as info:
        encode([{"k\ud800": 1}])
    assert str(info.value) == "a lone surrogate (\\ud800) in a dict key at value[0]"


def test_deep_nesting_is_refused_without_a_path() -> None:
    deep: list[Any] = []
    for _ in range(100_000):
        deep = [deep]
    with pytest.raises(NotSerialisable) as info:
        encode(deep)
    assert str(info.value) == "values nested too deeply to store"
    assert info.value.path is None


def test_encoded_size_counts_utf8_bytes() -> None:
    assert encoded_size("abc") == 3
    assert encoded_size("é") == 2
    assert encoded_size("🎉") == 4


def test_encode_payload_accepts_up_to_the_limit() -> None:
    value = {"k": "x" * 100}
    size = len(json.dumps(value, separators=(",", ":")))
    assert encode_payload(value, "params", size) == encode(value)
    with pytest.raises(ValidationError) as info:
        encode_payload(value, "params", size - 1)
    assert str(info.value) == f"params is {size} bytes encoded; the limit is {size - 1} bytes"


def test_encode_payload_limit_is_in_bytes_not_characters() -> None:
    value = "é" * 10  # 10 characters, 22 bytes with the quotes
    assert encode_payload(value, "event payload", 22) == '"éééééééééé"'
    with pytest.raises(ValidationError, match=r"^event payload is 22 bytes encoded"):
        encode_payload(value, "event payload", 21)


def test_encode_payload_default_limit_is_one_mib() -> None:
    limit = DEFAULT_LIMITS.payload_bytes
    assert limit == 1024 * 1024
    fits = "x" * (limit - 2)
    assert encoded_size(encode_payload(fits, "params", limit)) == limit
    with pytest.raises(ValidationError):
        encode_payload(fits + "x", "params", limit)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            {"when": datetime(2024, 1, 1)},
            'params cannot be stored as JSON: a value of type datetime at params["when"]',
        ),
        ([float("nan")], "params cannot be stored as JSON: NaN at params[0]"),
    ],
)
def test_encode_payload_refuses_what_cannot_be_stored(value: Any, message: str) -> None:
    with pytest.raises(ValidationError) as info:
        encode_payload(value, "params", 1000)
    assert str(info.value) == message


def test_codec_module_exports() -> None:
    assert codec.encode is encode
    assert codec.decode is decode


# ---- limits: identifiers -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "value", ["a", "A", "0", "_", "_private", "order-123", "a_b-c", "x" * 100, "9lives", "a--"]
)
def test_valid_identifiers(value: str) -> None:
    assert check_identifier(value, "instance id", 100) == value


@pytest.mark.parametrize(
    "value",
    [
        "-starts-with-dash",
        "has space",
        "dot.ted",
        "sl/ash",
        "colon:",
        "é",
        "emoji🎉",
        " lead",
        "trail ",
        "tab\there",
        "abc\n",  # a regex "$" also matches before a final newline
        "\nabc",
        "a\nb",
        "nul\x00",
    ],
)
def test_invalid_identifiers_are_refused_naming_the_value(value: str) -> None:
    with pytest.raises(ValidationError) as info:
        check_identifier(value, "instance id", 100)
    message = str(info.value)
    assert message.startswith(f"instance id {quote(value)}")  # escaped: one line
    assert "\n" not in message
    assert 'may only contain letters, digits, "-" and "_"' in message


def test_identifier_length_limit() -> None:
    assert check_identifier("x" * 100, "instance id", DEFAULT_LIMITS.id_length)
    with pytest.raises(ValidationError) as info:
        check_identifier("x" * 101, "instance id", DEFAULT_LIMITS.id_length)
    assert str(info.value) == "instance id is 101 characters long; the limit is 100"
    assert DEFAULT_LIMITS.id_length == 100


def test_empty_identifier_is_refused() -> None:
    with pytest.raises(ValidationError, match=r"^event type must not be empty$"):
        check_identifier("", "event type", 100)


@pytest.mark.parametrize(("value", "type_name"), [(5, "int"), (None, "NoneType"), (b"a", "bytes")])
def test_identifier_must_be_a_string(value: object, type_name: str) -> None:
    with pytest.raises(ValidationError) as info:
        check_identifier(value, "workflow name", 64)
    assert str(info.value) == f"workflow name must be a string, got {type_name}"


# ---- limits: step names ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["a", "fetch user", "ünïcode ✓ 🎉", "with: punctuation/and.dots", "x" * 256, "-dash"]
)
def test_valid_step_names(name: str) -> None:
    assert check_step_name(name) == name


def test_step_name_length_limit() -> None:
    assert DEFAULT_LIMITS.step_name_length == 256
    with pytest.raises(ValidationError) as info:
        check_step_name("x" * 257)
    assert "257 characters long; the limit is 256" in str(info.value)


def test_step_name_length_follows_the_given_limits() -> None:
    small = Limits(step_name_length=5)
    assert check_step_name("abcde", small) == "abcde"
    with pytest.raises(ValidationError, match="the limit is 5"):
        check_step_name("abcdef", small)


@pytest.mark.parametrize("name", ["a\nb", "tab\t", "\x00", "bell\x07", "del\x7f", "cr\r", "\x1f"])
def test_control_characters_are_refused(name: str) -> None:
    with pytest.raises(ValidationError) as info:
        check_step_name(name)
    assert str(info.value) == f"step name {quote(name)} contains a control character"


def test_empty_step_name_is_refused() -> None:
    with pytest.raises(ValidationError, match=r"^step name must not be empty$"):
        check_step_name("")


@pytest.mark.parametrize(("value", "type_name"), [(5, "int"), (None, "NoneType"), (["a"], "list")])
def test_step_name_must_be_a_string(value: object, type_name: str) -> None:
    with pytest.raises(ValidationError) as info:
        check_step_name(value)
    assert str(info.value) == f"step name must be a string, got {type_name}"
