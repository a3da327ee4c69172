"""Histories for the replay tests: hand-written ones (``document``, ``do``, ``sleep``, ``wait``)
and ones exported from instances a real engine ran (``export``)."""

from __future__ import annotations

from typing import Any

from wf.engine.engine import Engine

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


async def export(engine: Engine, workflow: str, instance_id: str) -> dict[str, Any]:
    """What ``wf instances export`` writes for this instance (the engine's own export)."""
    return await engine.history(workflow, instance_id)
