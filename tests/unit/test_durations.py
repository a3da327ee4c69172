"""wf.durations: what users write as a duration, and how wf shows one."""

from __future__ import annotations

import math
from datetime import timedelta

import pytest

from wf.durations import exact_duration, format_duration, to_seconds
from wf.errors import ValidationError


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (0, 0.0),
        (5, 5.0),
        (2.5, 2.5),
        (0.001, 0.001),
        (86400, 86400.0),
    ],
)
def test_numbers_are_seconds(value: float, seconds: float) -> None:
    result = to_seconds(value)
    assert result == seconds
    assert type(result) is float


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90 seconds", 90.0),
        ("1 second", 1.0),
        ("3 days", 3 * 86400.0),
        ("1 day", 86400.0),
        ("1.5 hours", 5400.0),
        ("1 hour", 3600.0),
        ("2 hrs", 7200.0),
        ("1 h", 3600.0),
        ("250 ms", 0.25),
        ("1 millisecond", 0.001),
        ("500 milliseconds", 0.5),
        ("1 minute", 60.0),
        ("5 minutes", 300.0),
        ("5 mins", 300.0),
        ("5 min", 300.0),
        ("30 s", 30.0),
        ("30 sec", 30.0),
        ("30 secs", 30.0),
        ("2 weeks", 14 * 86400.0),
        ("1 week", 7 * 86400.0),
        ("1 month", 30 * 86400.0),
        ("2 months", 60 * 86400.0),
        ("1 year", 365.25 * 86400.0),
        ("2 years", 2 * 365.25 * 86400.0),
        (".5 seconds", 0.5),
        ("0 seconds", 0.0),
    ],
)
def test_strings_with_units(text: str, seconds: float) -> None:
    assert to_seconds(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["2 Hours", "2 HOURS", " 2 hours ", "2hours", "2  hours"])
def test_strings_ignore_case_and_spacing(text: str) -> None:
    assert to_seconds(text) == 7200.0


def test_singular_and_plural_agree() -> None:
    for unit in ("millisecond", "second", "minute", "hour", "day", "week", "month", "year"):
        assert to_seconds(f"3 {unit}") == to_seconds(f"3 {unit}s")


@pytest.mark.parametrize(
    ("delta", "seconds"),
    [
        (timedelta(0), 0.0),
        (timedelta(seconds=90), 90.0),
        (timedelta(days=3), 3 * 86400.0),
        (timedelta(milliseconds=250), 0.25),
        (timedelta(hours=1, minutes=30), 5400.0),
    ],
)
def test_timedelta(delta: timedelta, seconds: float) -> None:
    assert to_seconds(delta) == seconds


@pytest.mark.parametrize("value", [True, False])
def test_bools_are_refused(value: bool) -> None:
    with pytest.raises(ValidationError) as info:
        to_seconds(value, "retries.delay")
    assert "retries.delay" in str(info.value)
    assert repr(value) in str(info.value)


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (-1, "-1"),
        (-0.5, "-0.5"),
        (float("nan"), "nan"),
        (float("inf"), "inf"),
        (float("-inf"), "-inf"),
        (timedelta(seconds=-1), "timedelta"),
        ("9" * 400 + " seconds", "9999"),  # overflows to infinity
    ],
)
def test_negative_and_non_finite_are_refused(value: object, shown: str) -> None:
    with pytest.raises(ValidationError) as info:
        to_seconds(value, "timeout")
    message = str(info.value)
    assert message.startswith("timeout")
    assert shown in message


@pytest.mark.parametrize("text", ["90", "1.5", "0", " 10 "])
def test_bare_numeric_strings_are_refused(text: str) -> None:
    # Ambiguous: Cloudflare's numbers are milliseconds, wf's are seconds.
    with pytest.raises(ValidationError) as info:
        to_seconds(text, "sleep")
    message = str(info.value)
    assert f'"{text}"' in message
    assert "unit" in message


@pytest.mark.parametrize(
    ("text", "unit"),
    [
        ("5 fortnights", "fortnights"),
        ("5 secondss", "secondss"),
        ("2 ss", "ss"),
        ("3 msecs", "msecs"),
        ("1 eon", "eon"),
    ],
)
def test_unknown_units_are_refused_naming_value_and_unit(text: str, unit: str) -> None:
    with pytest.raises(ValidationError) as info:
        to_seconds(text, "retention")
    message = str(info.value)
    assert message.startswith("retention")
    assert f'"{text}"' in message
    assert f'unknown unit "{unit}"' in message


@pytest.mark.parametrize(
    "text",
    ["", "soon", "-5 seconds", "1e3 seconds", "1,5 hours", "5 seconds ago", "seconds", "5 s s"],
)
def test_malformed_strings_are_refused_naming_the_value(text: str) -> None:
    with pytest.raises(ValidationError) as info:
        to_seconds(text, "duration of sleep")
    assert f'"{text}"' in str(info.value)


@pytest.mark.parametrize(
    ("value", "type_name"), [(None, "NoneType"), ([1], "list"), (b"5 s", "bytes")]
)
def test_other_types_are_refused_naming_the_type(value: object, type_name: str) -> None:
    with pytest.raises(ValidationError) as info:
        to_seconds(value, "hibernate_after")
    message = str(info.value)
    assert message.startswith("hibernate_after")
    assert type_name in message


def test_default_what_is_duration() -> None:
    with pytest.raises(ValidationError, match=r'^duration "soon"'):
        to_seconds("soon")


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0 milliseconds"),
        (0.001, "1 millisecond"),
        (0.25, "250 milliseconds"),
        (0.0005, "0.5 milliseconds"),
        (1, "1 second"),
        (1.5, "1.5 seconds"),
        (10, "10 seconds"),
        (60, "1 minute"),
        (90, "1.5 minutes"),
        (600, "10 minutes"),
        (3600, "1 hour"),
        (5400, "1.5 hours"),
        (86400, "1 day"),
        (3 * 86400, "3 days"),
        (365.25 * 86400, "1 year"),
    ],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize("seconds", [0.25, 1, 10, 90, 600, 5400, 86400, 3 * 86400])
def test_format_duration_parses_back(seconds: float) -> None:
    assert math.isclose(to_seconds(format_duration(seconds)), seconds)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0 seconds"),
        (0.0004, "0.4 milliseconds"),
        (0.25, "250 milliseconds"),
        (0.9999, "999.9 milliseconds"),
        (1, "1 second"),
        (59.999, "59.999 seconds"),
        (90, "1 minute and 30 seconds"),
        (93784.5, "1 day, 2 hours, 3 minutes and 4.5 seconds"),
        (365 * 86400, "365 days"),
        (365 * 86400 + 1, "365 days and 1 second"),
        (365 * 86400 + 0.0004, "365 days and 0.0004 seconds"),
        (366 * 86400, "366 days"),
        (2_000_000 * 86400, "2,000,000 days"),
        (8.64e11 + 1, "8.64e+11 seconds"),
        (1e308, "1e+308 seconds"),
    ],
)
def test_exact_duration_rounds_nothing_away(seconds: float, text: str) -> None:
    assert exact_duration(seconds) == text


@pytest.mark.parametrize(
    ("seconds", "text"), [(1e-7, "0.0001 milliseconds"), (3e-12, "0.000000003 milliseconds")]
)
def test_format_duration_never_rounds_a_positive_duration_to_zero(
    seconds: float, text: str
) -> None:
    assert format_duration(seconds) == text
    assert to_seconds(text) > 0
