"""An instance's steps as plain text, for the messages of failed test expectations."""

from __future__ import annotations

import json
from typing import Any

MAX_VALUE = 120


def timeline(details: dict[str, Any]) -> str:
    """``details`` (the REST describe shape) as a few indented lines: one per step."""
    head = f"{details['workflow']}/{details['id']} is {details['status']}"
    error = details.get("error")
    if error:
        head += f": {error.get('name')}: {error.get('message')}"
    lines = [head]
    steps = details.get("steps") or []
    if not any(step.get("type") != "termination" for step in steps):
        lines.append("  (no steps yet)")
    for step in steps:
        lines.append("  " + _step_line(step))
    return "\n".join(lines)


def _step_line(step: dict[str, Any]) -> str:
    kind = step.get("type")
    if kind == "termination":
        return f"terminated (by {step.get('trigger', {}).get('source', 'api')})"
    name = step.get("name")
    if kind == "sleep":
        return f'sleep "{name}": ' + ("done" if step.get("finished") else "sleeping")
    if kind == "waitForEvent":
        what = f'wait "{name}" for "{step.get("event_type")}": '
        if not step.get("finished"):
            return what + "waiting"
        if step.get("error"):
            return what + _error(step["error"])
        return what + "received " + _value(step.get("output"))
    attempts = step.get("attempts") or []
    tries = f"{len(attempts)} attempt{'s' if len(attempts) != 1 else ''}"
    line = f'do "{name}": '
    if step.get("success") is True:
        return line + f"succeeded after {tries}: " + _value(step.get("output"))
    if step.get("success") is False:
        return line + f"failed after {tries}: " + _error(step.get("error"))
    last = attempts[-1] if attempts else None
    if last and last.get("error"):
        return line + f"retrying after {tries}, last: " + _error(last["error"])
    return line + "running"


def _error(error: dict[str, Any] | None) -> str:
    if not error:
        return "an error"
    return f"{error.get('name')}: {error.get('message')}"


def _value(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= MAX_VALUE else text[: MAX_VALUE - 1] + "…"
