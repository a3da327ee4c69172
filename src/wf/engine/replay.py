"""Replay decisions, pure: given what was recorded for a step, what happens next.

``run()`` is replayed from the top on every life. Each step call gets an identity (kind, name,
count): the count is how many calls of that kind with that name came before in this run, as
Cloudflare counts, so a sleep named like a step neither shifts the step's count nor ever meets
its record (histories of different kinds never mix).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from wf.engine.config import retry_delay
from wf.engine.model import ErrorInfo, ResolvedConfig, StepKey, StepKind, StepRecord, StepState
from wf.errors import StepLimitExceeded

INTERRUPTED: ErrorInfo = {
    "name": "WorkflowInternalError",
    "message": "the attempt was interrupted: the process running it stopped (or lost the "
    "instance) before it finished",
}


STORE_REFUSED: ErrorInfo = {
    "name": "WorkflowInternalError",
    "message": "the attempt's outcome could not be recorded (the database refused a write: a "
    "full disk?); it does not count toward the retry limit",
}


class Identities:
    """Hands out step identities in call order, each with what was recorded under it, and
    enforces the step limit."""

    def __init__(self, recorded: dict[StepKey, StepRecord], step_limit: int) -> None:
        self._recorded = recorded
        self._counts: Counter[tuple[StepKind, str]] = Counter()
        self._limited_steps = 0
        self._step_limit = step_limit

    def next(self, name: str, kind: StepKind) -> tuple[int, StepRecord | None]:
        self._counts[kind, name] += 1
        count = self._counts[kind, name]
        if kind is not StepKind.SLEEP:  # sleeps do not count toward the limit, as on Cloudflare
            self._limited_steps += 1
            if self._limited_steps > self._step_limit:
                raise StepLimitExceeded(
                    f"The limit of {self._step_limit} steps has been reached. This limit can be "
                    "changed in your wf.toml (limits.steps)."
                )
        return count, self._recorded.get((kind, name, count))


@dataclass(frozen=True)
class Cached:
    output: str | None


@dataclass(frozen=True)
class CachedError:
    error: ErrorInfo
    attempts: int


@dataclass(frozen=True)
class CloseInterrupted:
    """The last attempt started but never ended: the process died during it."""

    number: int


@dataclass(frozen=True)
class WaitRetry:
    until: float


@dataclass(frozen=True)
class Attempt:
    number: int


@dataclass(frozen=True)
class GiveUp:
    error: ErrorInfo
    attempts: int


DoPlan = Cached | CachedError | CloseInterrupted | WaitRetry | Attempt | GiveUp


def plan_do(record: StepRecord | None, config: ResolvedConfig, now: float) -> DoPlan:
    """What ``step.do`` does next for this step."""
    if record is None or not record.attempts:
        return Attempt(1)
    if record.state is StepState.SUCCEEDED:
        return Cached(record.output)
    attempts = record.attempts
    last = attempts[-1]
    if record.state is StepState.FAILED:
        return CachedError(record.error or last.error or INTERRUPTED, len(attempts))
    if last.ended is None:
        return CloseInterrupted(last.number)
    if not retries_left(record, config):
        return GiveUp(last.error or INTERRUPTED, len(attempts))
    retry_at = record.wake_at
    if retry_at is None:
        counted = sum(1 for attempt in attempts if not attempt.uncounted)
        retry_at = last.ended + retry_delay(config, max(1, counted))
    if retry_at > now:
        return WaitRetry(retry_at)
    return Attempt(last.number + 1)


def retries_left(record: StepRecord, config: ResolvedConfig) -> bool:
    """Whether a step whose last attempt failed tries again. Attempts cut short by a graceful
    stop (a reload, a shutdown) do not use up the retry limit."""
    counted = sum(1 for attempt in record.attempts if not attempt.uncounted)
    return not record.non_retryable and counted <= config.limit
