"""Step configuration: parse what users write, fill Cloudflare's defaults, compute backoff."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, is_dataclass
from typing import Any

from wf.durations import format_duration, to_seconds
from wf.engine.model import DYNAMIC_DELAY, ResolvedConfig, StepConfig
from wf.errors import ValidationError, quote

DEFAULT_LIMIT = 5
DEFAULT_DELAY = 10.0
DEFAULT_BACKOFF = "exponential"
DEFAULT_TIMEOUT = 600.0
MAX_RETRIES = 10_000
BACKOFFS = ("constant", "linear", "exponential")

DEFAULT = ResolvedConfig(DEFAULT_LIMIT, DEFAULT_DELAY, DEFAULT_BACKOFF, DEFAULT_TIMEOUT)

_CONFIG_KEYS = {"retries", "timeout", "sensitive"}
SENSITIVE_VALUES = ("output",)
_RETRY_KEYS = {"limit", "delay", "backoff"}


def _as_mapping(value: object, what: str, kind: str) -> Mapping[str, Any]:
    if isinstance(value, Mapping):
        return value
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    raise ValidationError(f"{what} must be a dict or a {kind}, got {type(value).__name__}")


def _first(keys: set[Any]) -> str:
    shown = sorted(key if isinstance(key, str) else repr(key) for key in keys)
    return quote(shown[0], 40)


def resolve(step_name: str, config: object = None, **overrides: Any) -> ResolvedConfig:
    """Merge a user's config (dict, StepConfig or keywords) over the defaults, validating it.

    A partial ``retries`` keeps the defaults for the keys it leaves out, as Cloudflare merges it.
    """
    if config is None and not any(value is not None for value in overrides.values()):
        return DEFAULT
    where = f"step {quote(step_name)}"
    raw: dict[str, Any] = {}
    if config is not None:
        if isinstance(config, StepConfig):
            raw = {"retries": config.retries, "timeout": config.timeout}
            if config.retries is None:
                del raw["retries"]
            if config.sensitive is not None:
                raw["sensitive"] = config.sensitive
        else:
            raw = dict(_as_mapping(config, f"config of {where}", "StepConfig"))
    raw.update({k: v for k, v in overrides.items() if v is not None})
    unknown = set(raw) - _CONFIG_KEYS
    if unknown:
        raise ValidationError(
            f"config of {where} has unknown key {_first(unknown)}; "
            "expected retries, timeout, sensitive"
        )
    limit, delay, backoff = DEFAULT_LIMIT, DEFAULT_DELAY, DEFAULT_BACKOFF
    delay_function = None
    retries = raw.get("retries")
    if retries is not None:
        retry_map = dict(_as_mapping(retries, f"retries of {where}", "RetryConfig"))
        unknown = set(retry_map) - _RETRY_KEYS
        if unknown:
            raise ValidationError(
                f"retries of {where} has unknown key {_first(unknown)}; "
                "expected limit, delay, backoff"
            )
        limit = retry_map.get("limit", limit)
        if isinstance(limit, bool) or not isinstance(limit, int) or not 0 <= limit <= MAX_RETRIES:
            raise ValidationError(
                f"retries.limit of {where} must be an integer from 0 to {MAX_RETRIES}, "
                f"got {limit!r}"
            )
        if callable(retry_map.get("delay")):  # called after each failed attempt that retries
            delay_function, delay = retry_map["delay"], 0.0
        elif "delay" in retry_map:
            delay = to_seconds(retry_map["delay"], f"retries.delay of {where}")
        backoff = retry_map.get("backoff", backoff)
        if backoff not in BACKOFFS:
            raise ValidationError(
                f"retries.backoff of {where} must be constant, linear or exponential, "
                f"got {backoff!r}"
            )
    timeout = DEFAULT_TIMEOUT
    if "timeout" in raw:
        timeout = to_seconds(raw["timeout"], f"timeout of {where}")
        if timeout <= 0:
            raise ValidationError(f"timeout of {where} must be more than zero")
    sensitive = raw.get("sensitive")
    if sensitive is not None and sensitive not in SENSITIVE_VALUES:
        raise ValidationError(f'sensitive of {where} must be "output", got {sensitive!r}')
    return ResolvedConfig(limit, delay, backoff, timeout, delay_function, sensitive is not None)


MAX_RETRY_DELAY = 365 * 86400.0  # as long as the longest sleep: beyond that, a wait is a bug


def retry_delay(config: ResolvedConfig, attempts_made: int, base: float | None = None) -> float:
    """Seconds to wait before the next attempt, after ``attempts_made`` (≥ 1) failed ones.
    ``base`` (what a delay function returned) replaces the configured delay; the backoff
    applies to it all the same, as Cloudflare's local engine does."""
    n = max(1, attempts_made)
    d = config.delay if base is None else base
    if config.backoff == "constant":
        delay = d
    elif config.backoff == "linear":
        delay = d * n
    else:
        delay = d * 2.0 ** min(n - 1, 64)
    return min(delay, MAX_RETRY_DELAY)


_JSON_FORMS: dict[ResolvedConfig, dict[str, Any]] = {}


def to_json(config: ResolvedConfig) -> dict[str, Any]:
    """The config as instance details show it, durations in words. One dict per distinct config,
    shared (nobody changes it), so the store encodes it once."""
    found = _JSON_FORMS.get(config)
    if found is None:
        if len(_JSON_FORMS) > 1024:
            _JSON_FORMS.clear()
        delay = DYNAMIC_DELAY if config.delay_function else format_duration(config.delay)
        found = _JSON_FORMS[config] = {
            "retries": {"limit": config.limit, "delay": delay, "backoff": config.backoff},
            "timeout": format_duration(config.timeout),
        }
        if config.sensitive:
            found["sensitive"] = "output"
    return found
