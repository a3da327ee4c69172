"""JSON as wf stores it: strict (no NaN), compact, and always round-tripped before use."""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Iterator
from typing import Any

from wf.errors import ValidationError, quote, text_of

_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


class NotSerialisable(ValueError):
    """The value cannot be stored as JSON: ``problem`` says what is wrong (``NaN``, ``a circular
    reference``, ``a dict key of type tuple``…), ``path`` where (``["a"][2]``; empty for the
    value itself, ``None`` when unknown)."""

    def __init__(self, problem: str, path: str | None = "") -> None:
        super().__init__(self._where(problem, path, "value"))
        self.problem = problem
        self.path = path

    def at(self, root: str) -> str:
        """The problem and where, the value being called ``root``: ``NaN at result["a"][2]``."""
        return self._where(self.problem, self.path, root)

    @staticmethod
    def _where(problem: str, path: str | None, root: str) -> str:
        return problem if path is None else f"{problem} at {root}{path}"


def encode(value: Any) -> str:
    try:
        text = _ENCODER.encode(value)
    except RecursionError:
        raise NotSerialisable("values nested too deeply to store", None) from None
    except Exception as exc:  # the encoder's refusal, or a dict subclass's items() raising
        raise _locate(value, exc) from None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise _locate(value, exc) from None
    return text


def _locate(value: Any, exc: Exception) -> NotSerialisable:
    """Find what the encoder refused, and where: it only says what (and not always that)."""
    try:
        found = _first_problem(value)
    except Exception:  # user code in a dict subclass again
        found = None
    if found is not None:
        problem, path = found
        return NotSerialisable(problem, "".join(path))
    if isinstance(exc, (TypeError, ValueError)):
        return NotSerialisable(text_of(exc), None)
    return NotSerialisable(f"reading it raised {type(exc).__name__}: {text_of(exc)}", None)


def _first_problem(value: Any) -> tuple[str, list[str]] | None:
    """Walk the value as the encoder does (its own stack, not Python's, so any depth) and
    return the first thing JSON cannot hold, with the path to it."""
    problem = _scalar_problem(value)
    if problem is not None:
        return problem, []
    if not isinstance(value, (dict, list, tuple)):
        return None
    path: list[str] = []
    stack: list[tuple[Any, Iterator[tuple[str, Any, Any]]]] = [(value, _children(value))]
    inside = {id(value)}  # containers on the current path: meeting one again is a cycle
    clean: set[int] = set()  # containers already walked without a problem (shared, not cycles)
    while stack:
        container, children = stack[-1]
        step = next(children, None)
        if step is None:
            stack.pop()
            inside.discard(id(container))
            clean.add(id(container))
            if path:
                path.pop()
            continue
        where, key, item = step
        if key is not _NO_KEY:
            problem = _key_problem(key)
            if problem is not None:
                return problem, path
        path.append(where)
        problem = _scalar_problem(item)
        if problem is not None:
            return problem, path
        if isinstance(item, (dict, list, tuple)) and id(item) not in clean:
            if id(item) in inside:
                return "a circular reference", path
            inside.add(id(item))
            stack.append((item, _children(item)))
        else:
            path.pop()
    return None


_NO_KEY = object()


def _children(container: Any) -> Iterator[tuple[str, Any, Any]]:
    """(path step, dict key or ``_NO_KEY``, item) for each item of a container."""
    if isinstance(container, dict):
        for key, item in container.items():
            shown = quote(key, 40) if isinstance(key, str) else repr(key)
            yield f"[{shown}]", key, item
    else:
        for index, item in enumerate(container):
            yield f"[{index}]", _NO_KEY, item


def _key_problem(key: Any) -> str | None:
    if isinstance(key, str):
        return _text_problem(key, "a dict key")
    if key is None or isinstance(key, (bool, int)):
        return _int_problem(key)
    if isinstance(key, float):
        return None if math.isfinite(key) else f"a dict key {_float_name(key)}"
    return f"a dict key of type {type(key).__name__}"


def _scalar_problem(value: Any) -> str | None:
    """What is wrong with a value that is not a container, if anything."""
    if value is None or isinstance(value, (bool, dict, list, tuple)):
        return None
    if isinstance(value, str):
        return _text_problem(value, "a string")
    if isinstance(value, int):
        return _int_problem(value)
    if isinstance(value, float):
        return None if math.isfinite(value) else _float_name(value)
    return f"a value of type {type(value).__name__}"


def _text_problem(text: str, what: str) -> str | None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        bad = text[exc.start : exc.end].encode("utf-8", "backslashreplace").decode()
        return f"a lone surrogate ({bad}) in {what}"
    return None


def _int_problem(value: int | None) -> str | None:
    # Python 3.11+ refuses to turn an int of more digits than this into text (so into JSON).
    digits: int = getattr(sys, "get_int_max_str_digits", lambda: 0)()
    if not isinstance(value, int) or digits <= 0 or value.bit_length() < digits * 3:
        return None
    try:
        int.__repr__(value)
    except ValueError:
        return f"an integer of more than {digits:,} digits"
    return None


def _float_name(value: float) -> str:
    return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")


def decode(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def encoded_size(text: str) -> int:
    return len(text.encode("utf-8"))


def encode_payload(value: Any, what: str, limit: int) -> str:
    """Encode params or an event payload, refusing what cannot be stored or is too large."""
    try:
        text = encode(value)
    except NotSerialisable as exc:
        raise ValidationError(f"{what} cannot be stored as JSON: {exc.at(what)}") from None
    size = encoded_size(text)
    if size > limit:
        raise ValidationError(f"{what} is {size} bytes encoded; the limit is {limit} bytes")
    return text
