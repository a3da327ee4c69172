"""Flow control of one workflow (wf.toml ``[[workflows]]``): how many of its instances may run at
once (in all, or per key), how many may start per period, and each instance's priority.

Plain data and checks; the stores enforce the limits when they claim (see ``flow_sql``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from wf.durations import to_seconds
from wf.errors import ValidationError

MAX_CONCURRENCY = 1_000_000
MAX_PRIORITY = 1_000_000  # priorities run from -MAX_PRIORITY to MAX_PRIORITY; 0 by default
MAX_KEY_LENGTH = 256  # a key value longer than this is cut (it is only compared)
FLOW_KEYS = ("concurrency", "concurrency_key", "rate_limit")
_RATE_KEYS = ("limit", "period", "key")


@dataclass(frozen=True)
class FlowControl:
    """``concurrency``: at most that many instances running (claimed and not in a wait) across
    every process on the database, per value of ``concurrency_key`` when given. ``rate_limit``
    starts (first claims) per ``rate_period`` seconds, per value of ``rate_key`` when given.
    Keys are dotted paths into the params (``params.customer.id``), read at create time."""

    concurrency: int | None = None
    concurrency_key: str | None = None
    rate_limit: int | None = None
    rate_period: float | None = None
    rate_key: str | None = None

    @property
    def limits_running(self) -> bool:
        """Whether a running instance holds a slot in the database (its waits then always leave
        memory, so that waking goes through a claim)."""
        return self.concurrency is not None

    @property
    def active(self) -> bool:
        return self.concurrency is not None or self.rate_limit is not None

    def as_json(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> FlowControl:
        return cls(**dict(data)) if data else NO_FLOW

    def keys_of(self, params_text: str) -> tuple[str | None, str | None]:
        """The (concurrency key, rate key) of an instance created with these params."""
        if self.concurrency_key is None and self.rate_key is None:
            return None, None
        try:
            params = json.loads(params_text)
        except ValueError:
            params = None
        return key_value(self.concurrency_key, params), key_value(self.rate_key, params)


NO_FLOW = FlowControl()


def key_value(path: str | None, params: Any) -> str | None:
    """The value at ``params.a.b`` as text (JSON for anything but a string); None when the path
    is not configured or leads nowhere (such instances share one key: the missing one)."""
    if path is None:
        return None
    value = params
    for part in path.split(".")[1:]:
        if isinstance(value, Mapping) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return None
    if value is None:
        return None
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return text[:MAX_KEY_LENGTH]


def parse_flow(entry: Mapping[str, Any]) -> FlowControl:
    """The flow control of a ``[[workflows]]`` table; ``FlowError`` names the key at fault."""
    concurrency = entry.get("concurrency")
    if concurrency is not None:
        concurrency = _count(concurrency, "concurrency")
    concurrency_key = entry.get("concurrency_key")
    if concurrency_key is not None:
        if concurrency is None:
            raise FlowError("concurrency_key", "needs concurrency = N (at most N per key)")
        concurrency_key = _key_path(concurrency_key, "concurrency_key")
    rate = entry.get("rate_limit")
    if rate is None:
        return FlowControl(concurrency, concurrency_key)
    if not isinstance(rate, Mapping):
        raise FlowError(
            "rate_limit",
            f'must be a table such as {{ limit = 100, period = "1 minute" }}, got {rate!r}',
        )
    unknown = [k for k in rate if k not in _RATE_KEYS]
    if unknown:
        raise FlowError(
            f"rate_limit.{unknown[0]}",
            f"is not a known key; expected one of {', '.join(_RATE_KEYS)}",
        )
    if "limit" not in rate or "period" not in rate:
        raise FlowError("rate_limit", "needs both limit and period")
    limit = _count(rate["limit"], "rate_limit.limit")
    period_value = rate["period"]
    try:
        if isinstance(period_value, bool):
            raise ValidationError("must be a duration")
        period = to_seconds(period_value, "period")
    except ValidationError:
        raise FlowError(
            "rate_limit.period",
            f'must be a duration such as "1 minute" or "10 seconds", got {period_value!r}',
        ) from None
    if not math.isfinite(period) or period <= 0 or period > 366 * 86400:
        raise FlowError(
            "rate_limit.period",
            f"must be longer than zero and at most a year, got {period_value!r}",
        )
    rate_key = rate.get("key")
    if rate_key is not None:
        rate_key = _key_path(rate_key, "rate_limit.key")
    return FlowControl(concurrency, concurrency_key, limit, period, rate_key)


class FlowError(ValueError):
    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key} {problem}")
        self.key = key
        self.problem = problem


def _count(value: Any, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_CONCURRENCY:
        raise FlowError(key, f"must be an integer from 1 to {MAX_CONCURRENCY}, got {value!r}")
    return value


def _key_path(value: Any, key: str) -> str:
    parts = value.split(".") if isinstance(value, str) else []
    if len(parts) < 2 or parts[0] != "params" or not all(parts[1:]):
        raise FlowError(
            key, f'must be a dotted path into the params such as "params.customerId", got {value!r}'
        )
    return str(value)


def check_priority(value: Any) -> int:
    """A create's ``priority``: a whole number; higher is claimed first (default 0)."""
    if value is None:
        return 0
    given = value  # shown as given (1e300, not its 301 digits)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or abs(value) > MAX_PRIORITY:
        raise ValidationError(
            f"priority must be a whole number from {-MAX_PRIORITY} to {MAX_PRIORITY}, got {given!r}"
        )
    return value
