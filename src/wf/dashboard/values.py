"""Values from workflows (params, outputs, errors, event payloads) as the instance page shows
them: indented JSON, or, over 64 KiB of JSON text, a collapsed placeholder whose "show" button
fetches the whole value on demand (``GET /w/{name}/i/{id}/value``), so that a page with large
outputs stays light and quick to refresh live."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from wf.engine.model import EventRecord

COLLAPSE_BYTES = 64 * 1024
INSTANCE_PARTS = ("params", "output", "error")


@dataclass(frozen=True)
class Shown:
    size: int  # bytes of the value's compact JSON text
    text: str | None  # indented JSON; None when collapsed

    @property
    def collapsed(self) -> bool:
        return self.text is None

    @property
    def kib(self) -> str:
        return f"{self.size / 1024:.1f}"


def _compact(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


def pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def shown(value: Any) -> Shown:
    """The value in full, or collapsed when its JSON text is over ``COLLAPSE_BYTES``."""
    size = len(_compact(value).encode())
    return Shown(size, None if size > COLLAPSE_BYTES else pretty(value))


def query(**where: object) -> str:
    """The value route's query string for one value (``of=output&step=2``)."""
    return urlencode({k: str(v) for k, v in where.items() if v is not None})


class NoSuchValue(LookupError):
    """The query names no value of this instance (bad or stale coordinates)."""


def _index(raw: str | None, what: str, first: int = 0) -> int:
    text = (raw or "").strip()
    if not (text.isascii() and text.isdigit() and len(text) <= 9) or int(text) < first:
        raise NoSuchValue(f"{what} must be a whole number from {first}")
    return int(text)


def _item(items: Sequence[Any], index: int, what: str) -> Any:
    if index >= len(items):
        raise NoSuchValue(f"this instance has no {what} {index}")
    return items[index]


def find(
    details: Mapping[str, Any], events: Sequence[EventRecord], where: Mapping[str, str]
) -> tuple[Any, str]:
    """The value that ``where`` (the route's query) names, and the data-testid it is shown
    with: ``of=params|output|error`` for the instance's own; with ``step=<index>`` (in the
    details' steps) ``of=output|error`` for a step's, and ``attempt=<n>`` (from 1) for an
    attempt's error; ``event=<index>`` for an event's payload."""
    of = where.get("of", "")
    if "event" in where:
        event = _item(events, _index(where.get("event"), "event"), "event")
        return json.loads(event.payload), "event-payload"
    if "step" in where:
        steps = details.get("steps") or []
        step = _item(steps, _index(where.get("step"), "step"), "step")
        if "attempt" in where:
            number = _index(where.get("attempt"), "attempt", first=1)
            attempt = _item(step.get("attempts") or [], number - 1, "attempt")
            return attempt.get("error"), "attempt-error"
        if of not in ("output", "error") or of not in step:
            raise NoSuchValue(f'a step has "of=output" or "of=error", not "of={of}"')
        return step[of], f"step-{of}"
    if of not in INSTANCE_PARTS:
        raise NoSuchValue(f'"of" must be one of {", ".join(INSTANCE_PARTS)}')
    return details.get(of), f"instance-{of}"
