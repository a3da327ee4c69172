"""How long a finished instance is kept: per instance (``create(..., retention=...)``), per
workflow (``default_retention`` in wf.toml), else the engine's ``retention``. Resolved when the
instance is created; the purge reads what was stored."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from wf.durations import to_seconds
from wf.errors import ValidationError

# Cloudflare's keys, in Python's spelling and in JavaScript's.
_KEYS = {
    "success_retention": "success",
    "successRetention": "success",
    "error_retention": "error",
    "errorRetention": "error",
}


@dataclass(frozen=True)
class Retention:
    """Seconds a complete (``success``) or errored/terminated (``error``) instance is kept;
    None: whatever applies next (the workflow's default, then the engine's)."""

    success: float | None = None
    error: float | None = None

    def over(self, default: Retention) -> Retention:
        """This retention, each side not set taken from ``default``."""
        return Retention(
            self.success if self.success is not None else default.success,
            self.error if self.error is not None else default.error,
        )

    def as_json(self) -> dict[str, float | None]:
        return {"success_retention": self.success, "error_retention": self.error}


NO_RETENTION = Retention()


def parse_retention(
    value: Any, where: str = "retention", *, numbers_are_ms: bool = False
) -> Retention:
    """``{"success_retention": "7 days", "error_retention": "30 days"}`` (either side optional;
    durations, or numbers: seconds in Python, milliseconds over Cloudflare's REST API)."""
    if value is None:
        return NO_RETENTION
    if isinstance(value, Retention):
        return value
    if not isinstance(value, Mapping):
        raise ValidationError(
            f'{where} must be an object such as {{"success_retention": "7 days", '
            f'"error_retention": "30 days"}}, got {type(value).__name__}'
        )
    sides: dict[str, float] = {}
    for key, raw in value.items():
        side = _KEYS.get(key) if isinstance(key, str) else None
        if side is None:
            raise ValidationError(
                f"{where} has unknown key {key!r}; use success_retention and error_retention"
            )
        if raw is None:
            continue
        if numbers_are_ms and isinstance(raw, (int, float)) and not isinstance(raw, bool):
            try:
                # A positive count of ms stays positive (5e-324 / 1000 would round to zero).
                raw = max(raw / 1000, math.ulp(0.0)) if raw > 0 else raw / 1000
            except OverflowError:  # an int beyond any float
                raise ValidationError(f"{where}.{key} is far too long") from None
        seconds = to_seconds(raw, f"{where}.{key}")
        if seconds <= 0:
            raise ValidationError(f"{where}.{key} must be longer than zero")
        sides[side] = seconds
    return Retention(sides.get("success"), sides.get("error"))
