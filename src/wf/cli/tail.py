"""``wf instances tail``: an instance's progress from the server's event stream
(``GET .../subscribe``), one line per event in the style of ``wf dev``'s notices."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from wf.client import StreamEvent

FAILED_ENDS = ("errored", "terminated")
# Statuses said by a step event already, or too fleeting to be worth a line.
QUIET_STATUSES = frozenset({"waiting", "waitingForPause", "complete", "errored", "terminated"})
STATUS_KINDS = {"queued": "queued", "running": "started", "paused": "paused"}


@dataclass(frozen=True)
class TailNotice:
    """What ``render.notice_line`` reads of an engine notice."""

    kind: str
    workflow: str
    instance_id: str
    step: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    at: float | None = None


def epoch(stamp: object) -> float | None:
    """An ISO 8601 time of the API as epoch seconds."""
    if not isinstance(stamp, str):
        return None
    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def notices(event: StreamEvent, workflow: str, instance_id: str) -> list[TailNotice]:
    """The notices one stream event makes (none for an event that says nothing new)."""
    data = event.data

    def notice(kind: str, step: str | None = None, at: Any = None, **detail: Any) -> TailNotice:
        return TailNotice(kind, workflow, instance_id, step, detail, epoch(at))

    name = data.get("name")
    if event.event == "step":
        kind, state = data.get("type"), data.get("state")
        if state == "running":
            if kind == "sleep":
                return [
                    notice("sleeping", name, data.get("start"), until=epoch(data.get("wake_at")))
                ]
            if kind == "waitForEvent":
                until = epoch(data.get("timeout_at"))
                event_type = data.get("event_type", "?")
                return [
                    notice(
                        "waiting_event", name, data.get("start"), event_type=event_type, until=until
                    )
                ]
            return [notice("step_started", name, data.get("start"))]
        start, end = epoch(data.get("start")), epoch(data.get("end"))
        attempt = data.get("attempt")
        if state == "succeeded":
            took = {} if start is None or end is None else {"total_ms": (end - start) * 1000}
            if attempt in (None, 1):
                took = {"ms": took["total_ms"]} if took else {}
            return [notice("step_done", name, data.get("end"), attempt=attempt, **took)]
        if state == "failed":
            return [
                notice(
                    "step_failed", name, data.get("end"), attempt=attempt, error=data.get("error")
                )
            ]
        if kind == "waitForEvent":
            event_type = data.get("event_type", "?")
            return [notice("event_received", name, data.get("end"), event_type=event_type)]
        return [notice("woke", name, data.get("end"))]
    if event.event == "attempt":
        retry_at, end = epoch(data.get("retries_at")), epoch(data.get("end"))
        delay = retry_at - end if retry_at is not None and end is not None else None
        return [
            notice(
                "attempt_failed",
                name,
                data.get("end"),
                attempt=data.get("attempt"),
                error=data.get("error"),
                delay=delay,
            )
        ]
    if event.event == "end":
        status = data.get("status")
        if status == "complete":
            return [notice("completed")]
        if status == "errored":
            return [notice("errored", error=data.get("error"))]
        if status == "terminated":
            return [notice("terminated")]
        return [notice("deleted")]
    if event.event == "status":
        kind = STATUS_KINDS.get(str(data.get("status")))
        return [notice(kind)] if kind is not None else []
    return []
