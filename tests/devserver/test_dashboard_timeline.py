"""The instance page's timeline data (``wf.dashboard.timeline``) on hand-made details: where
each segment sits on the axis, and what each row says, as ``wf instances describe`` does."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from wf.dashboard.timeline import timeline

NOW = datetime(2026, 1, 2, 10, 0, 10, tzinfo=timezone.utc)


def at(second: float) -> str:
    return f"2026-01-02T10:00:{second:06.3f}Z"


def test_a_step_waiting_for_its_retry_runs_to_now() -> None:
    details: dict[str, Any] = {
        "start": at(0),
        "end": None,
        "steps": [
            {
                "type": "step",
                "name": "charge-1",
                "start": at(0),
                "end": None,
                "success": None,
                "retries_at": at(12),
                "attempts": [
                    {"start": at(0), "end": at(2), "success": False},
                    {"start": at(4), "end": at(5), "success": False},
                ],
            },
            {
                "type": "rollback",
                "name": "reserve-1",
                "start": at(5),
                "end": at(6),
                "success": True,
            },
        ],
    }
    found = timeline(details, now=NOW)
    assert found is not None
    assert (found.begin, found.end, found.ended, found.total) == (at(0), at(10), False, "10 s")
    charge, undo = found.rows
    spans = [(s.kind, round(s.start, 2), round(s.end, 2)) for s in charge.segments]
    assert spans == [
        ("failed", 0.0, 0.2),
        ("retry", 0.2, 0.4),
        ("failed", 0.4, 0.5),
        ("retry", 0.5, 1.0),  # still waiting: open-ended to now
    ]
    assert (charge.status, charge.tone, charge.open) == ("… retry 3 at 10:00:12Z", "pending", True)
    assert [s.title for s in charge.segments][:2] == [
        "attempt 1: failed attempt, 2 s",
        "retry wait, 2 s",
    ]
    assert (undo.label, undo.type, undo.status, undo.open) == (
        "reserve-1 ↩",
        "rollback",
        "✓ 1 s",
        False,
    )
    assert [key for key, _ in found.legend] == ["ok", "failed", "retry"]
    assert [mark.glyph for _, mark in found.legend] == ["█", "▓", "─"]


def test_an_instance_not_started_has_no_timeline() -> None:
    assert timeline({"start": None, "steps": []}, now=NOW) is None


def test_a_wait_that_timed_out_and_a_termination() -> None:
    details: dict[str, Any] = {
        "start": at(0),
        "end": at(8),
        "steps": [
            {
                "type": "waitForEvent",
                "name": "approve-1",
                "start": at(0),
                "end": at(8),
                "finished": True,
                "error": {"name": "WorkflowTimeoutError", "message": "timed out"},
            },
            {"type": "termination", "trigger": {"source": "api", "via": "cli"}},
        ],
    }
    found = timeline(details, now=NOW)
    assert found is not None and found.ended and found.end == at(8)
    wait, cross = found.rows
    assert (wait.segments[0].kind, wait.status, wait.tone) == (
        "wait_failed",
        "✗ WorkflowTimeoutError",
        "bad",
    )
    assert (cross.segments[0].kind, cross.segments[0].start, cross.status) == (
        "terminated",
        1.0,
        "by wf CLI",
    )
