"""A create's ``priority``: a whole number in range, refused in one short line otherwise."""

from __future__ import annotations

import pytest

from wf.engine.flow import MAX_PRIORITY, check_priority
from wf.errors import ValidationError


@pytest.mark.parametrize("value", [None, 0, 7, -MAX_PRIORITY, MAX_PRIORITY, 3.0])
def test_good_priorities(value: object) -> None:
    assert check_priority(value) == (0 if value is None else int(value))  # type: ignore[call-overload]


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("high", "'high'"),
        (True, "True"),
        (1.5, "1.5"),
        (MAX_PRIORITY + 1, str(MAX_PRIORITY + 1)),
        (1e300, "1e+300"),  # as given, not as a 301-digit whole number
        (float("nan"), "nan"),
        (float("inf"), "inf"),
    ],
)
def test_bad_priorities_are_one_short_line(value: object, shown: str) -> None:
    with pytest.raises(ValidationError) as caught:
        check_priority(value)
    message = str(caught.value)
    assert message == (
        f"priority must be a whole number from {-MAX_PRIORITY} to {MAX_PRIORITY}, got {shown}"
    )
