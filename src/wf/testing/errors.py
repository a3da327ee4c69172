"""What the test kit raises at a test."""

from __future__ import annotations

from typing import Any


class TestKitError(Exception):
    """The kit was used wrongly (an unknown workflow, a mock given twice, a clock that cannot
    move): the message says what and how to fix it."""

    __test__ = False  # not a test class, whatever pytest's name patterns say


class InstanceFailed(Exception):
    """``result()`` of an instance that did not complete: it errored (``name`` and ``message``
    are its error's) or was terminated. The message ends with the instance's timeline."""

    def __init__(self, message: str, status: str, error: dict[str, Any] | None) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.name: str | None = error.get("name") if error else None
        self.message: str | None = error.get("message") if error else None


class StatusUnreachable(AssertionError):
    """``wait_for_status`` asked for a status the instance can no longer reach: it finished
    otherwise. The message ends with its timeline."""


class WaitTimedOut(AssertionError):
    """A ``wait_for_…`` or ``result()`` ran out of (real) time. The message ends with the
    instance's timeline."""
