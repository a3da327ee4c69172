"""Retention values as the REST API takes them (Cloudflare's milliseconds, or words)."""

from __future__ import annotations

import pytest

from wf.engine.retention import parse_retention
from wf.errors import ValidationError


def test_milliseconds_become_seconds() -> None:
    kept = parse_retention(
        {"success_retention": 1500, "error_retention": "2 days"}, numbers_are_ms=True
    )
    assert (kept.success, kept.error) == (1.5, 172800.0)


def test_the_smallest_positive_number_of_milliseconds_is_still_longer_than_zero() -> None:
    # The schema says "a number above zero": 5e-324 ms divided by 1000 rounded to 0.0 and was
    # refused as "must be longer than zero" (found by the schema fuzzer).
    kept = parse_retention({"error_retention": 5e-324}, numbers_are_ms=True)
    assert kept.error is not None and kept.error > 0


@pytest.mark.parametrize("value", [0, -1, 0.0, "0 seconds"])
def test_zero_or_less_is_refused(value: object) -> None:
    with pytest.raises(ValidationError, match=r"longer than zero|non-negative"):
        parse_retention({"success_retention": value}, numbers_are_ms=True)
