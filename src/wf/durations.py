"""Durations as users write them ("90 seconds", 3.5, timedelta) and as wf shows them."""

from __future__ import annotations

import math
import re
from datetime import timedelta
from decimal import Decimal

from wf.errors import ValidationError, quote

Duration = timedelta | int | float | str

_SECOND = 1.0
_UNITS: dict[str, float] = {
    "ms": 0.001,
    "millisecond": 0.001,
    "s": _SECOND,
    "sec": _SECOND,
    "second": _SECOND,
    "m": 60.0,
    "min": 60.0,
    "minute": 60.0,
    "h": 3600.0,
    "hr": 3600.0,
    "hour": 3600.0,
    "d": 86400.0,
    "day": 86400.0,
    "w": 7 * 86400.0,
    "week": 7 * 86400.0,
    # Cloudflare's parser (itty-time) counts a month as 30 days and a year as 365.25.
    "month": 30 * 86400.0,
    "y": 365.25 * 86400.0,
    "year": 365.25 * 86400.0,
}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?|\.\d+)\s*([a-zA-Z]+)\s*$")


def positive_text_pattern() -> str:
    """A regular expression (ECMAScript's, for JSON Schema) of the duration strings longer than
    zero that ``to_seconds`` accepts: a number, then a unit in any case (plural or not)."""

    def any_case(word: str) -> str:
        return "".join(f"[{c.lower()}{c.upper()}]" for c in word)

    words = sorted(_UNITS, key=lambda w: (-len(w), w))
    units = "|".join(any_case(w) + ("[sS]?" if len(w) > 1 else "") for w in words)
    # Not zero: a digit from 1 somewhere in the number.
    number = r"[0-9]*[1-9][0-9]*(\.[0-9]+)?|[0-9]+\.[0-9]*[1-9][0-9]*|\.[0-9]*[1-9][0-9]*"
    return rf"^\s*({number})\s*({units})\s*$"


def _unit_seconds(word: str) -> float | None:
    word = word.lower()
    if word in _UNITS:
        return _UNITS[word]
    if word.endswith("s") and word[:-1] in _UNITS and len(word) > 2:
        return _UNITS[word[:-1]]
    return None


def to_seconds(value: object, what: str = "duration") -> float:
    """Turn a duration into seconds; raise ``ValidationError`` naming ``what`` if it is not one.

    Numbers are seconds (not Cloudflare's milliseconds: this is Python). A bare numeric string is
    refused because it is ambiguous between the two.
    """
    if isinstance(value, bool):
        raise ValidationError(f"{what} must be a duration, got {value!r}")
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, (int, float)):
        try:
            seconds = float(value)
        except OverflowError:
            raise ValidationError(f"{what} is far too long: {quote(value, 40)} seconds") from None
    elif isinstance(value, str):
        match = _PATTERN.match(value)
        if not match:
            raise ValidationError(
                f"{what} {quote(value)} is not a duration; write a number and a unit, "
                'e.g. "30 seconds"'
            )
        unit = _unit_seconds(match.group(2))
        if unit is None:
            raise ValidationError(
                f"{what} {quote(value)} has an unknown unit {quote(match.group(2))}; use "
                "milliseconds, seconds, minutes, hours, days, weeks, months or years"
            )
        seconds = float(match.group(1)) * unit
    else:
        raise ValidationError(
            f"{what} must be a timedelta, a number of seconds or a string such as "
            f'"5 minutes", got {type(value).__name__}'
        )
    if not math.isfinite(seconds) or seconds < 0:
        raise ValidationError(
            f"{what} must be a finite, non-negative duration, got {quote(repr(value), 40)}"
        )
    return seconds


_HUMAN_UNITS = (
    ("year", 365.25 * 86400.0),
    ("day", 86400.0),
    ("hour", 3600.0),
    ("minute", 60.0),
    ("second", 1.0),
)


def format_duration(seconds: float) -> str:
    """A short human form, rounded: '10 seconds', '1 minute', '1.5 hours', '250 milliseconds'.
    Where a duration is compared with a limit, ``exact_duration`` says it without rounding."""
    if seconds < 1:
        text = _plain(seconds * 1000, 3)
        if text == "0" and seconds > 0:  # not rounded to nothing: "0 milliseconds" is not > 0
            text = f"{(Decimal(repr(seconds)) * 1000).normalize():f}"
        return f"{text} millisecond" if text == "1" else f"{text} milliseconds"
    for unit, size in _HUMAN_UNITS:
        if seconds >= size:
            text = _plain(seconds / size, 2)
            return f"{text} {unit}" if text == "1" else f"{text} {unit}s"
    raise AssertionError("unreachable")  # pragma: no cover


def _plain(amount: float, digits: int) -> str:
    """Rounded, without an exponent (so it parses back): 1.5, 2, 1000000."""
    return f"{amount:.{digits}f}".rstrip("0").rstrip(".")


# Beyond this many seconds (over 27,000 years) a count of days stops being readable.
_EXACT_IN_DAYS_UP_TO = Decimal(10**7 * 86400)
_EXACT_UNITS = ((86400, "day"), (3600, "hour"), (60, "minute"), (1, "second"))


def exact_duration(seconds: float) -> str:
    """Every unit spelled out, nothing rounded: '365 days and 1 second', '366 days',
    '1 day, 2 hours and 30.5 seconds', '999.9 milliseconds' ('1e+308 seconds' past 27,000
    years). For messages that compare a duration with a limit, where a rounded one could look
    within it ('365 days long; the limit is 365 days')."""
    value = max(float(seconds), 0.0)
    amount = Decimal(repr(value))  # the shortest decimal that is this float, as Python shows it
    if not amount.is_finite() or amount > _EXACT_IN_DAYS_UP_TO:
        return f"{value:.6g} seconds"
    if not amount:
        return "0 seconds"
    if amount < 1:
        return _count(amount * 1000, "millisecond")
    parts = []
    for size, unit in _EXACT_UNITS:
        whole, amount = divmod(amount, size) if size > 1 else (amount, Decimal(0))
        if whole:
            parts.append(_count(whole, unit))
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def _count(amount: Decimal, unit: str) -> str:
    text = f"{amount.normalize():,f}"
    return f"{text} {unit}" if text == "1" else f"{text} {unit}s"


def short_duration(seconds: float) -> str:
    """``42 ms``, ``20 s``, ``1.5 min``, ``2 h``, ``3 d``: for one-line notices and the timeline."""
    seconds = max(seconds, 0.0)
    if seconds < 1:
        return f"{round(seconds * 1000):d} ms"
    for size, unit in ((86400.0, "d"), (3600.0, "h"), (60.0, "min")):
        if seconds >= size:
            return f"{trim_decimal(seconds / size)} {unit}"
    return f"{trim_decimal(seconds)} s"


def trim_decimal(amount: float) -> str:
    """``1.5``, ``2`` (not ``2.0``): one decimal, none when it is zero."""
    text = f"{amount:.1f}"
    return text[:-2] if text.endswith(".0") else text
