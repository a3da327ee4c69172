"""Hooks through which a test kit (``wf.testing``) stands in for step bodies, sleeps, retry
delays and events, and kills a life as a SIGKILL would. An engine asks them only when it was
given an interceptor; a production engine has none and pays one ``is None`` test per step."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol

from wf.engine.model import StepKind


@dataclass(frozen=True)
class StepCall:
    """Which step of which instance: the step's name and its count (1-based, per kind)."""

    workflow: str
    instance_id: str
    kind: StepKind
    name: str
    count: int


@dataclass(frozen=True)
class MockedResult:
    """The attempt returns ``value`` (stored through the real codec and limits)."""

    value: Any


@dataclass(frozen=True)
class MockedError:
    """The attempt raises ``error`` (a ``NonRetryableError`` ends the step at once)."""

    error: BaseException


@dataclass(frozen=True)
class ForcedTimeout:
    """The attempt fails as if its time ran out."""


Answer = MockedResult | MockedError | ForcedTimeout


class Interceptor(Protocol):
    """**Protocol:** what the engine asks a test kit (always on the engine's loop)."""

    def attempt(self, call: StepCall, number: int) -> Answer | None:
        """Before attempt ``number`` of a ``step.do``: an answer instead of the body, or None to
        run the body. Called for every attempt (a kit counts them)."""
        ...

    def skip_sleep(self, call: StepCall) -> bool:
        """Whether a sleep (new, not replayed) ends at once."""
        ...

    def skip_retry_delay(self, call: StepCall) -> bool:
        """Whether a failed attempt of this step is retried without its backoff delay."""
        ...

    async def wait_begins(self, call: StepCall, event_type: str) -> Literal["timeout"] | None:
        """A ``wait_for_event`` begins (the first time: not on replay). The kit may send the
        instance an event now, through the engine, or answer "timeout" to end the wait at once
        with its timeout error."""
        ...

    def kill_after(self, call: StepCall) -> bool:
        """The step's outcome was just made durable: True ends the life right here, writing
        nothing more, as a SIGKILL of its process would."""
        ...
