"""Histories for the replay tests: hand-written ones (``document``, ``do``, ``sleep``, ``wait``)
and ones exported from instances a real engine ran (``export``).

``history_json`` is a stand-in for ``wf.engine.history_json.history_json`` (being written in
parallel): it follows the schema in testing-design.md, so these tests check replay against the
agreed format; once the engine's own lands, ``export`` should call it instead.
"""

from __future__ import annotations

from typing import Any

from wf.engine import codec
from wf.engine.details import iso, trigger_source
from wf.engine.engine import Engine
from wf.engine.model import History as StoredHistory
from wf.engine.model import InstanceRow, StepKind, StepRecord

CREATED = "2026-12-03T10:00:00.000Z"


def document(*steps: dict[str, Any], **top: Any) -> dict[str, Any]:
    """A complete wf-history document for checkout/cart-1; ``top`` replaces top-level keys."""
    doc: dict[str, Any] = {
        "format": "wf-history",
        "format_version": 1,
        "workflow": "checkout",
        "id": "cart-1",
        "version": "v-1",
        "status": "complete",
        "trigger": "api",
        "params": {"cartId": "cart-1"},
        "created": CREATED,
        "start": CREATED,
        "end": "2026-12-03T10:00:05.000Z",
        "output": None,
        "error": None,
        "steps": list(steps),
        "events": [],
    }
    doc.update(top)
    return doc


def do(
    name: str,
    output: Any = None,
    *,
    count: int = 1,
    state: str = "succeeded",
    error: dict[str, str] | None = None,
    attempts: int = 1,
) -> dict[str, Any]:
    failed = state == "failed"
    return {
        "kind": "do",
        "name": name,
        "count": count,
        "state": state,
        "start": CREATED,
        "end": None if state == "running" else CREATED,
        "output": output,
        "error": error,
        "config": {"retries": {"limit": 5, "delay": 10.0, "backoff": "exponential"}},
        "attempts": [
            {
                "number": n,
                "start": CREATED,
                "end": CREATED,
                "success": not failed and n == attempts,
                "error": error if failed or n < attempts else None,
                "uncounted": False,
            }
            for n in range(1, attempts + 1)
        ],
    }


def sleep(name: str, *, count: int = 1, state: str = "succeeded") -> dict[str, Any]:
    return {
        "kind": "sleep",
        "name": name,
        "count": count,
        "state": state,
        "start": CREATED,
        "end": None if state == "running" else CREATED,
        "duration": 60.0,
        "wake_at": CREATED,
    }


def wait(
    name: str,
    event_type: str,
    payload: Any = None,
    *,
    count: int = 1,
    state: str = "succeeded",
    error: dict[str, str] | None = None,
    event_time: str | None = "2026-12-03T10:00:03.000Z",
) -> dict[str, Any]:
    return {
        "kind": "wait",
        "name": name,
        "count": count,
        "state": state,
        "start": CREATED,
        "end": None if state == "running" else CREATED,
        "event_type": event_type,
        "timeout": 86400.0,
        "wake_at": CREATED,
        "output": payload,
        "event_time": event_time if state == "succeeded" else None,
        "error": error,
    }


def _step_json(record: StepRecord) -> dict[str, Any]:
    step: dict[str, Any] = {
        "kind": record.kind.value,
        "name": record.name,
        "count": record.count,
        "state": record.state.value,
        "start": iso(record.started),
        "end": iso(record.ended),
    }
    if record.kind is StepKind.DO:
        step.update(
            output=codec.decode(record.output),
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
    elif record.kind is StepKind.SLEEP:
        step.update(duration=record.duration, wake_at=iso(record.wake_at))
    else:
        step.update(
            event_type=record.event_type,
            timeout=record.duration,
            wake_at=iso(record.wake_at),
            output=codec.decode(record.output),
            event_time=iso(record.event_time),
            error=record.error,
        )
    return step


def history_json(row: InstanceRow, history: StoredHistory) -> dict[str, Any]:
    """The wf-history document of an instance (events left out: the store cannot list them
    yet, and replay does not read them)."""
    return {
        "format": "wf-history",
        "format_version": 1,
        "workflow": row.workflow,
        "id": row.id,
        "version": row.version_id,
        "status": row.status.value,
        "trigger": trigger_source(row.trigger),
        "params": codec.decode(row.params),
        "created": iso(row.created),
        "start": iso(row.started),
        "end": iso(row.ended),
        "output": codec.decode(row.output),
        "error": row.error,
        "steps": [_step_json(s) for s in history.steps],
        "events": [],
    }


async def export(engine: Engine, workflow: str, instance_id: str) -> dict[str, Any]:
    """What ``wf instances export`` would write for this instance, read from the engine's store."""
    row = await engine.store.get_instance(workflow, instance_id)
    assert row is not None
    return history_json(row, await engine.store.load_history(row.pk))
