"""What a restart asks for: the step to start again from (``restart(from_step=...)``, Cloudflare's
``restart({from})``), and the record of it kept on the instance for describe and the history."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from wf.engine.limits import DEFAULT_LIMITS, whole_number
from wf.engine.model import RESTART_TYPES, RestartFrom
from wf.errors import ValidationError

_FROM_KEYS = ("name", "count", "type")


def parse_from_step(value: Any, where: str = "from_step") -> RestartFrom | None:
    """``{"name": "charge card", "count": 1, "type": "do"}`` (count and type optional; count is
    1-based, type one of do, sleep, waitForEvent) as a ``RestartFrom``; None stays None."""
    if value is None or isinstance(value, RestartFrom):
        return value
    if not isinstance(value, Mapping):
        raise ValidationError(
            f'{where} must be an object such as {{"name": "charge card", "count": 1, '
            f'"type": "do"}}, got {type(value).__name__}'
        )
    for key in value:
        if key not in _FROM_KEYS:
            raise ValidationError(f"{where} has unknown key {key!r}; use name, count and type")
    name = value.get("name")
    if not isinstance(name, str) or not name:
        raise ValidationError(f"{where}.name must be the name of a step (a non-empty string)")
    if len(name) > DEFAULT_LIMITS.step_name_length:
        raise ValidationError(
            f"{where}.name is {len(name)} characters long; the limit is "
            f"{DEFAULT_LIMITS.step_name_length}"
        )
    given = value.get("count", 1)
    count = 1 if given is None else whole_number(given)
    if count is None or count < 1:
        raise ValidationError(f"{where}.count must be a whole number from 1, got {given!r}")
    kind_name = value.get("type", "do")
    if kind_name is None:
        kind_name = "do"
    kind = RESTART_TYPES.get(kind_name) if isinstance(kind_name, str) else None
    if kind is None:
        raise ValidationError(
            f"{where}.type must be one of {', '.join(RESTART_TYPES)}, got {kind_name!r}"
        )
    return RestartFrom(name, count, kind)


def restart_record(at: float, from_step: RestartFrom | None, new_params: bool) -> str:
    """The JSON kept as the instance's latest restart."""
    return json.dumps(
        {
            "at": at,
            "from": None if from_step is None else from_step.as_json(),
            "new_params": new_params,
        }
    )


def read_record(text: str | None) -> dict[str, Any] | None:
    """A stored restart record as it is shown (the time as epoch seconds; callers format it)."""
    if text is None:
        return None
    record = json.loads(text)
    return record if isinstance(record, dict) else None
