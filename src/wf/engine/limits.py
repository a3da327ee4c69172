"""Limits on what users send: ids, names, payload sizes (DESIGN §1, Cloudflare's defaults)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from wf.errors import ValidationError, quote

ID_PATTERN = re.compile(r"[a-zA-Z0-9_][a-zA-Z0-9\-_]*")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")  # C0, DEL and C1
_SURROGATE = re.compile(r"[\ud800-\udfff]")
MIB = 1024 * 1024


@dataclass(frozen=True)
class Limits:
    id_length: int = 100
    workflow_name_length: int = 64
    step_name_length: int = 256
    payload_bytes: int = MIB
    step_output_bytes: int = MIB
    steps: int = 10_000
    sleep_seconds: float = 365 * 86400.0
    event_timeout_min: float = 1.0
    event_timeout_max: float = 365 * 86400.0
    batch_size: int = 100


DEFAULT_LIMITS = Limits()


def check_identifier(value: object, what: str, max_length: int) -> str:
    """Ids, workflow names and event types share Cloudflare's pattern."""
    if not isinstance(value, str):
        raise ValidationError(f"{what} must be a string, got {type(value).__name__}")
    if not value:
        raise ValidationError(f"{what} must not be empty")
    if len(value) > max_length:
        raise ValidationError(f"{what} is {len(value)} characters long; the limit is {max_length}")
    if not ID_PATTERN.fullmatch(value):
        raise ValidationError(
            f'{what} {quote(value)} may only contain letters, digits, "-" and "_", '
            'and must not start with "-"'
        )
    return value


def check_step_name(value: object, limits: Limits = DEFAULT_LIMITS) -> str:
    if not isinstance(value, str):
        raise ValidationError(f"step name must be a string, got {type(value).__name__}")
    if not value:
        raise ValidationError("step name must not be empty")
    if len(value) > limits.step_name_length:
        raise ValidationError(
            f"step name {quote(value, 40)} is {len(value)} characters long; "
            f"the limit is {limits.step_name_length}"
        )
    if _CONTROL.search(value):
        raise ValidationError(f"step name {quote(value)} contains a control character")
    if _SURROGATE.search(value):
        raise ValidationError(f"step name {quote(value)} is not valid text (a lone surrogate)")
    return value


def whole_number(value: object) -> int | None:
    """``value`` as an int when it is a whole number, else None. JSON has one number type, so
    ``2.0`` (what a JavaScript client may send) is 2, as Cloudflare's API reads it; a bool is
    not a number."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None
