"""An instance's full history as JSON (format "wf-history"): what ``wf instances export`` and
``GET …/instances/{id}/history`` return, and what ``wf.testing.History`` reads back to replay.

Unlike the instance details (Cloudflare's shape, for people), this is a record for programs: every
step keeps its kind, name and count apart, every time is an ISO string, every JSON value is
decoded, and the events sent to the instance come along, consumed or not.
"""

from __future__ import annotations

from typing import Any

from wf.engine import codec, rollback
from wf.engine.details import extras, iso, shown_output
from wf.engine.model import EventRecord, History, InstanceRow, StepKind, StepRecord

FORMAT = "wf-history"
FORMAT_VERSION = 1


def history_json(
    row: InstanceRow, history: History, events: list[EventRecord], *, redact: bool = True
) -> dict[str, Any]:
    """The history of ``row``'s current run: its steps in start order, then its events. The
    output of a ``sensitive="output"`` step is ``"[REDACTED]"`` unless ``redact`` is False (the
    test kit's own reads, which never leave the test's process)."""
    shown = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "workflow": row.workflow,
        "id": row.id,
        "version": row.version_id,
        "status": row.status.value,
        "trigger": row.trigger,
        "params": codec.decode(row.params),
        "created": iso(row.created),
        "start": iso(row.started),
        "end": iso(row.ended),
        "output": codec.decode(row.output),
        "error": row.error,
        "rollback": rollback.view(row),
        "steps": [step_json(s, redact=redact) for s in history.steps],
        "events": [event_json(e) for e in events],
    }
    shown.update(extras(row))
    return shown


def step_json(record: StepRecord, *, redact: bool = True) -> dict[str, Any]:
    shown: dict[str, Any] = {
        "kind": record.kind.value,
        "name": record.name,
        "count": record.count,
        "state": record.state.value,
        "start": iso(record.started),
        "end": iso(record.ended),
    }
    if record.kind in (StepKind.DO, StepKind.ROLLBACK):  # a rollback is a do step's handler
        shown.update(
            output=shown_output(record) if redact else codec.decode(record.output),
            error=record.error,
            config=record.config,
            attempts=[
                {
                    "number": a.number,
                    "start": iso(a.started),
                    "end": iso(a.ended),
                    "success": a.success,
                    "error": a.error,
                    "uncounted": a.uncounted,
                }
                for a in record.attempts
            ],
        )
    elif record.kind is StepKind.CHILD:  # config: the child's {workflow, id}
        shown.update(output=codec.decode(record.output), error=record.error, config=record.config)
    elif record.kind is StepKind.SLEEP:
        # ``duration`` is None for a sleep_until: it asked for a time, not a length.
        shown.update(duration=record.duration, wake_at=iso(record.wake_at))
    else:
        # A wait keeps its timeout in ``duration``, and its deadline in ``wake_at``.
        shown.update(
            event_type=record.event_type,
            timeout=record.duration,
            wake_at=iso(record.wake_at),
            output=codec.decode(record.output),
            event_time=iso(record.event_time),
            error=record.error,
        )
    return shown


def event_json(event: EventRecord) -> dict[str, Any]:
    taken = event.consumed_by
    return {
        "type": event.type,
        "payload": codec.decode(event.payload),
        "received": iso(event.received),
        "consumed_by": None if taken is None else f"{taken[0]}-{taken[1]}",
    }
