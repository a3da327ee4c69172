"""JSON as wf stores it: strict (no NaN), compact, and always round-tripped before use."""

from __future__ import annotations

import json
from typing import Any

from wf.errors import ValidationError

_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


class NotSerialisable(ValueError):
    """The value cannot be stored as JSON; the message names the offending type."""


def encode(value: Any) -> str:
    try:
        text = _ENCODER.encode(value)
    except TypeError as exc:
        raise NotSerialisable(_describe_type_error(value, exc)) from None
    except ValueError as exc:  # NaN/Infinity or a circular reference
        raise NotSerialisable(str(exc)) from None
    except RecursionError:
        raise NotSerialisable("the value is nested too deeply") from None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        bad = text[exc.start : exc.end].encode("utf-8", "backslashreplace").decode()
        raise NotSerialisable(
            f"a string holds a lone surrogate ({bad}), which is not text and cannot be stored"
        ) from None
    return text


def _describe_type_error(value: Any, exc: TypeError) -> str:
    culprit = _find_unserialisable(value, set())
    if culprit is not None:
        return f"a value of type {type(culprit).__name__} is not JSON-serialisable"
    return str(exc)


def _find_unserialisable(value: Any, seen: set[int]) -> Any:
    if value is None or isinstance(value, (str, int, float, bool)):
        return None
    if id(value) in seen:
        return None
    seen.add(id(value))
    if isinstance(value, dict):
        for key, item in value.items():
            if not (key is None or isinstance(key, (str, int, float, bool))):
                return key
            found = _find_unserialisable(item, seen)
            if found is not None:
                return found
        return None
    if isinstance(value, (list, tuple)):
        for item in value:
            found = _find_unserialisable(item, seen)
            if found is not None:
                return found
        return None
    return value


def decode(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def encoded_size(text: str) -> int:
    return len(text.encode("utf-8"))


def encode_payload(value: Any, what: str, limit: int) -> str:
    """Encode params or an event payload, refusing what cannot be stored or is too large."""
    try:
        text = encode(value)
    except NotSerialisable as exc:
        raise ValidationError(f"{what}: {exc}") from None
    size = encoded_size(text)
    if size > limit:
        raise ValidationError(f"{what} is {size} bytes encoded; the limit is {limit} bytes")
    return text
