"""The hooks a tracer gets from the engine: a life begins and ends, a step attempt begins and ends.

The engine imports no tracing library. A server that traces (``wf.server.tracing``, with
OpenTelemetry) gives the engine an object with these four methods; without one (the default)
the engine calls nothing, so tracing off costs a ``None`` check per life and per attempt.
"""

from __future__ import annotations

import re
from typing import Protocol

from wf.engine.model import AttemptRecord, ErrorInfo, InstanceRow, StepRecord, StepState

# How an attempt ended, as ``attempt_ended`` is told.
SUCCESS = "success"  # the step succeeded
RETRY = "retry"  # it failed and the step will be retried
FAILED = "failed"  # it failed and the step failed with it
INTERRUPTED = "interrupted"  # it never finished here: the life ended (stop, lost claim, crash)


class Tracer(Protocol):
    """What the engine tells a tracer. A handle returned by a ``began`` is given back to the
    matching ``ended``; the engine never looks into it. No method may raise or block: they
    run on the engine's loop, in the middle of a life."""

    def life_began(self, row: InstanceRow, fresh: bool) -> object:
        """A life of ``row`` began (``fresh``: its first; ``row.traceparent`` is the W3C
        trace context of the request that created it, if any)."""
        ...

    def life_ended(self, life: object, reason: str, error: ErrorInfo | None) -> None:
        """The life ended: ``reason`` is the instance's end (complete, errored, terminated) or
        why the life let go (hibernate, pause, stop, fenced, store-failure, released, …)."""
        ...

    def attempt_began(self, life: object, step: str, count: int, attempt: int) -> object:
        """Attempt ``attempt`` (from 1) of the ``count``-th step named ``step`` began."""
        ...

    def attempt_ended(self, attempt: object, outcome: str, error: ErrorInfo | None) -> None:
        """The attempt ended: ``outcome`` is one of SUCCESS, RETRY, FAILED, INTERRUPTED."""
        ...


def attempt_outcome(record: StepRecord, attempt: AttemptRecord) -> str:
    """How an attempt ended, from what was recorded of it."""
    if attempt.ended is None or attempt.uncounted:  # uncounted: cut short by a stop
        return INTERRUPTED
    if attempt.success:
        return SUCCESS
    if record.state is StepState.FAILED:
        return FAILED
    return RETRY


_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?")


def valid_traceparent(header: str | None) -> str | None:
    """A W3C ``traceparent`` header as stored with a new instance, or None when there is none or
    it is malformed (the W3C spec says to ignore such a header, not to refuse the request)."""
    if header is None:
        return None
    value = header.strip()
    found = _TRACEPARENT.fullmatch(value)
    if found is None:
        return None
    version, trace_id, parent_id, _, rest = found.groups()
    if version == "ff" or (version == "00" and rest is not None):
        return None
    if trace_id == "0" * 32 or parent_id == "0" * 16:
        return None
    return value
