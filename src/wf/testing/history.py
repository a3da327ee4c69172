"""Recorded histories of instances, as ``wf instances export`` writes them ("wf-history" JSON).

``History.load("cart-1.json")`` reads and checks one; ``replay()`` (``wf.testing.replay``) runs a
workflow's ``run()`` against it. A file that is not a history, or is damaged, is refused with one
line naming the file and what is wrong, with the JSON path of a bad key (``steps[2].kind``).
"""

from __future__ import annotations

import glob as _glob
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from wf.engine.model import ErrorInfo, StepKey, StepKind, StepState
from wf.errors import quote

FORMAT = "wf-history"
FORMAT_VERSION = 1

_JSON_TYPES: dict[type, str] = {
    dict: "an object",
    list: "an array",
    str: "a string",
    bool: "a boolean",
    int: "a number",
    float: "a number",
    type(None): "null",
}


class HistoryFormatError(ValueError):
    """A file (or value) is not a readable wf history. ``str()`` is one line: the file, then what
    is wrong (``cart-1.json: steps[2].kind is missing``). ``source`` names the file (``"history"``
    for a value given directly), ``problem`` is the rest."""

    def __init__(self, source: str, problem: str) -> None:
        super().__init__(f"{source}: {problem}")
        self.source = source
        self.problem = problem


@dataclass(frozen=True)
class HistoryAttempt:
    """One attempt of a ``do`` step: its number (from 1), when it started and ended, whether it
    succeeded, its error, and whether it was cut short by a graceful stop (``uncounted``)."""

    number: int
    start: datetime | None = None
    end: datetime | None = None
    success: bool | None = None
    error: ErrorInfo | None = None
    uncounted: bool = False


@dataclass(frozen=True)
class HistoryStep:
    """One recorded step: its identity (``kind``, ``name``, ``count``: the count is per kind and
    name, from 1), its ``state`` (running, succeeded or failed) and its outcome.

    ``output`` is the decoded JSON a ``do`` returned or the payload a ``wait`` received;
    ``error`` is ``{"name", "message"}`` when it failed; ``event_type`` and ``event_time`` belong
    to waits; ``config`` (as stored) and ``attempts`` to ``do`` steps; ``duration`` (seconds) is
    what a sleep asked for (None for ``sleep_until``) or a wait's ``timeout``. ``raw`` is the
    step's JSON object as read.
    """

    kind: StepKind
    name: str
    count: int
    state: StepState
    start: datetime | None = None
    end: datetime | None = None
    output: Any = None
    error: ErrorInfo | None = None
    attempts: list[HistoryAttempt] = field(default_factory=list)
    event_type: str | None = None
    event_time: datetime | None = None
    config: dict[str, Any] | None = None
    duration: float | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def identity(self) -> StepKey:
        """``(kind, name, count)``: what a step call must match on replay."""
        return (self.kind, self.name, self.count)

    @property
    def label(self) -> str:
        """The step as messages show it: ``do "charge card" (1st)``."""
        return describe_step(self.kind, self.name, self.count)


@dataclass(frozen=True)
class HistoryEvent:
    """An event sent to the instance: its ``type``, decoded ``payload``, when it was
    ``received``, and ``consumed_by``, the ``"<name>-<count>"`` of the wait that took it (or
    None)."""

    type: str
    payload: Any
    received: datetime | None = None
    consumed_by: str | None = None


@dataclass(frozen=True)
class History:
    """An instance's recorded history: what it was created with, every step it ran (in start
    order) and every event sent to it. Read one with ``History.load(path)``,
    ``History.from_json(text_or_dict)`` or ``History.glob(pattern)``.

    ``created`` is an aware UTC datetime; ``params`` and ``output`` are decoded JSON; ``error`` is
    the instance's ``{"name", "message"}`` or None. ``raw`` is the whole document as read (keys
    this wf does not know included); ``path`` the file it came from, if any. ``str()`` gives the
    file's name (or ``workflow/id``), so a list of histories reads well as pytest parameters.
    """

    workflow: str
    id: str
    version: str | None
    status: str | None
    params: Any
    created: datetime
    output: Any
    error: ErrorInfo | None
    steps: list[HistoryStep]
    events: list[HistoryEvent]
    raw: dict[str, Any] = field(repr=False, compare=False)
    path: Path | None = field(default=None, compare=False)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> History:
        """Read and check the history file at ``path``; ``HistoryFormatError`` (one line) if it
        cannot be read or is not a history this wf understands."""
        where = Path(path)
        source = str(path)
        try:
            data = where.read_bytes()
        except OSError as exc:
            raise HistoryFormatError(source, f"cannot read it: {exc.strerror or exc}") from None
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise HistoryFormatError(source, "is not UTF-8 text") from None
        return _parse_text(text, source, where)

    @classmethod
    def from_json(cls, value: str | bytes | Mapping[str, Any]) -> History:
        """A history from JSON text or from the decoded document (e.g. what
        ``Controller.history()`` returns); ``HistoryFormatError`` if it is not one."""
        if isinstance(value, bytes):
            try:
                value = value.decode("utf-8-sig")
            except UnicodeDecodeError:
                raise HistoryFormatError("history", "is not UTF-8 text") from None
        if isinstance(value, str):
            return _parse_text(value, "history", None)
        if isinstance(value, Mapping):
            try:  # a copy, and proof that it is JSON (to_json must be able to write it)
                text = json.dumps(dict(value), allow_nan=False)
            except (TypeError, ValueError, RecursionError) as exc:
                raise HistoryFormatError("history", f"is not JSON data: {exc}") from None
            return _parse_text(text, "history", None)
        raise HistoryFormatError(
            "history", f"must be JSON text or a dict, got {type(value).__name__}"
        )

    @classmethod
    def glob(cls, pattern: str | os.PathLike[str]) -> list[History]:
        """Every history file matching ``pattern`` (``**`` included), sorted by path, e.g.
        ``@pytest.mark.parametrize("history", History.glob("tests/histories/*.json"), ids=str)``.

        A relative pattern is relative to the current directory. A pattern that matches nothing
        raises ``FileNotFoundError``: a test over no history at all would check nothing.
        """
        text = os.fspath(pattern)
        paths = sorted(Path(p) for p in _glob.glob(text, recursive=True) if os.path.isfile(p))
        if not paths:
            raise FileNotFoundError(f"no history file matches {text!r} (in {os.getcwd()})")
        return [cls.load(p) for p in paths]

    def to_json(self) -> str:
        """The history as JSON text (indented, one trailing newline), as it was read: keys this
        wf does not know are kept."""
        return json.dumps(self.raw, indent=2, ensure_ascii=False) + "\n"

    def dump(self, path: str | os.PathLike[str]) -> None:
        """Write ``to_json()`` to ``path`` (UTF-8)."""
        Path(path).write_text(self.to_json(), encoding="utf-8")

    def step(self, name: str, count: int = 1, kind: StepKind | str = StepKind.DO) -> HistoryStep:
        """The recorded step with this identity; ``KeyError`` if there is none."""
        key = (StepKind(kind), name, count)
        for recorded in self.steps:
            if recorded.identity == key:
                return recorded
        raise KeyError(f"the history has no {describe_step(*key)}")

    def __str__(self) -> str:
        return self.path.name if self.path is not None else f"{self.workflow}/{self.id}"

    def __repr__(self) -> str:
        origin = f", from {self.path}" if self.path is not None else ""
        return f"<History {self.workflow}/{self.id}: {len(self.steps)} steps{origin}>"

    def __hash__(self) -> int:
        return hash((self.workflow, self.id, self.created, len(self.steps)))


def describe_step(kind: StepKind | str, name: str, count: int) -> str:
    """A step's identity as messages show it: ``do "charge card" (1st)``."""
    return f"{StepKind(kind).value} {quote(name)} ({ordinal(count)})"


def ordinal(number: int) -> str:
    """1st, 2nd, 3rd, 4th… 11th, 12th, 13th, 21st."""
    if 10 <= number % 100 <= 20:
        suffix = "th"
    else:
        suffix = {1: "st", 2: "nd", 3: "rd"}.get(number % 10, "th")
    return f"{number}{suffix}"


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _parse_text(text: str, source: str, path: Path | None) -> History:
    try:
        document = json.loads(text, parse_constant=_refuse_constant)
    except RecursionError:
        raise HistoryFormatError(source, "is not JSON: nested too deeply") from None
    except json.JSONDecodeError as exc:
        raise HistoryFormatError(
            source, f"is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except ValueError as exc:
        raise HistoryFormatError(source, f"is not JSON: {exc}") from None
    return _parse_document(document, source, path)


def _parse_document(document: Any, source: str, path: Path | None) -> History:
    if not isinstance(document, dict):
        raise HistoryFormatError(
            source, f"is not a wf history: it is {_json_type(document)}, not an object"
        )
    found = document.get("format")
    if found != FORMAT:
        what = "it has no format key" if found is None else f"its format is {_shown(found)}"
        raise HistoryFormatError(
            source, f'is not a wf history: {what}, expected "format": "{FORMAT}"'
        )
    reader = _Reader(source)
    version = reader.integer(document, "format_version", "format_version")
    if version > FORMAT_VERSION:
        raise HistoryFormatError(
            source,
            f"has format_version {version}, written by a newer wf; this wf reads "
            f"format_version {FORMAT_VERSION} (upgrade wf)",
        )
    if version < 1:
        raise HistoryFormatError(source, f"format_version must be 1 or more, got {version}")
    steps_raw = reader.array(document, "steps", "steps") or []
    steps = [reader.step(item, f"steps[{i}]") for i, item in enumerate(steps_raw)]
    seen: dict[StepKey, int] = {}
    for i, recorded in enumerate(steps):
        if recorded.identity in seen:
            raise HistoryFormatError(
                source,
                f"steps[{i}] is {recorded.label} again (steps[{seen[recorded.identity]}] is "
                "too); a step's identity appears once",
            )
        seen[recorded.identity] = i
    events_raw = reader.array(document, "events", "events", required=False) or []
    return History(
        workflow=reader.string(document, "workflow", "workflow"),
        id=reader.string(document, "id", "id"),
        version=reader.optional_string(document, "version", "version"),
        status=reader.optional_string(document, "status", "status"),
        params=document.get("params"),
        created=reader.time(document, "created", "created"),
        output=document.get("output"),
        error=reader.error(document, "error", "error"),
        steps=steps,
        events=[reader.event(item, f"events[{i}]") for i, item in enumerate(events_raw)],
        raw=document,
        path=path,
    )


def _json_type(value: Any) -> str:
    return _JSON_TYPES.get(type(value), type(value).__name__)


def _shown(value: Any) -> str:
    return quote(value, 40) if isinstance(value, str) else _json_type(value)


class _Reader:
    """Typed access to a document's keys; every refusal names the key's JSON path."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, path: str, problem: str) -> HistoryFormatError:
        return HistoryFormatError(self.source, f"{path} {problem}")

    def get(self, obj: dict[str, Any], key: str, path: str, required: bool) -> Any:
        if key not in obj:
            if required:
                raise self.fail(path, "is missing")
            return None
        return obj[key]

    def typed(
        self,
        obj: dict[str, Any],
        key: str,
        path: str,
        kind: type | tuple[type, ...],
        what: str,
        required: bool,
    ) -> Any:
        value = self.get(obj, key, path, required)
        if value is None and not required:
            return None
        if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
            raise self.fail(path, f"must be {what}, got {_json_type(value)}")
        if not isinstance(value, kind):
            raise self.fail(path, f"must be {what}, got {_json_type(value)}")
        return value

    def string(self, obj: dict[str, Any], key: str, path: str) -> str:
        value: str = self.typed(obj, key, path, str, "a string", True)
        if not value:
            raise self.fail(path, "must not be empty")
        return value

    def optional_string(self, obj: dict[str, Any], key: str, path: str) -> str | None:
        value: str | None = self.typed(obj, key, path, str, "a string or null", False)
        return value

    def integer(self, obj: dict[str, Any], key: str, path: str) -> int:
        value: int = self.typed(obj, key, path, int, "an integer", True)
        return value

    def number(self, obj: dict[str, Any], key: str, path: str) -> float | None:
        value = self.typed(obj, key, path, (int, float), "a number or null", False)
        return None if value is None else float(value)

    def array(
        self, obj: dict[str, Any], key: str, path: str, required: bool = True
    ) -> list[Any] | None:
        value: list[Any] | None = self.typed(obj, key, path, list, "an array", required)
        return value

    def obj(self, value: Any, path: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(path, f"must be an object, got {_json_type(value)}")
        return value

    def time(self, obj: dict[str, Any], key: str, path: str) -> datetime:
        found = self.optional_time(obj, key, path)
        if found is None:
            raise self.fail(path, "is missing" if key not in obj else "must not be null")
        return found

    def optional_time(self, obj: dict[str, Any], key: str, path: str) -> datetime | None:
        text = self.typed(obj, key, path, str, "an ISO-8601 time", False)
        if text is None:
            return None
        try:  # Python 3.10 does not read a "Z"
            stamp = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
        except ValueError:
            raise self.fail(
                path,
                f'must be an ISO-8601 time such as "2026-12-03T10:00:00.000Z", got '
                f"{quote(text, 40)}",
            ) from None
        if stamp.tzinfo is None or stamp.utcoffset() is None:
            raise self.fail(path, f"has no timezone: {quote(text, 40)} (write it in UTC, with Z)")
        return stamp.astimezone(timezone.utc)

    def error(self, obj: dict[str, Any], key: str, path: str) -> ErrorInfo | None:
        value = self.get(obj, key, path, False)
        if value is None:
            return None
        found = self.obj(value, path)
        return {
            "name": self.string(found, "name", f"{path}.name"),
            "message": self.typed(found, "message", f"{path}.message", str, "a string", True),
        }

    def enum(self, obj: dict[str, Any], key: str, path: str, choices: tuple[str, ...]) -> str:
        value: str = self.typed(obj, key, path, str, "a string", True)
        if value not in choices:
            raise self.fail(path, f"must be one of {', '.join(choices)}, got {quote(value, 40)}")
        return value

    def step(self, item: Any, path: str) -> HistoryStep:
        obj = self.obj(item, path)
        kind = StepKind(self.enum(obj, "kind", f"{path}.kind", tuple(k.value for k in StepKind)))
        state = StepState(
            self.enum(obj, "state", f"{path}.state", tuple(s.value for s in StepState))
        )
        count = self.integer(obj, "count", f"{path}.count")
        if count < 1:
            raise self.fail(f"{path}.count", f"must be 1 or more, got {count}")
        attempts_raw = self.array(obj, "attempts", f"{path}.attempts", required=False) or []
        return HistoryStep(
            kind=kind,
            name=self.string(obj, "name", f"{path}.name"),
            count=count,
            state=state,
            start=self.optional_time(obj, "start", f"{path}.start"),
            end=self.optional_time(obj, "end", f"{path}.end"),
            output=obj.get("output"),
            error=self.error(obj, "error", f"{path}.error"),
            attempts=[self.attempt(a, f"{path}.attempts[{i}]") for i, a in enumerate(attempts_raw)],
            event_type=(
                self.string(obj, "event_type", f"{path}.event_type")
                if kind is StepKind.WAIT
                else self.optional_string(obj, "event_type", f"{path}.event_type")
            ),
            event_time=self.optional_time(obj, "event_time", f"{path}.event_time"),
            config=self.typed(obj, "config", f"{path}.config", dict, "an object or null", False),
            duration=(  # a wait's length is its timeout
                self.number(obj, "timeout", f"{path}.timeout")
                if kind is StepKind.WAIT
                else self.number(obj, "duration", f"{path}.duration")
            ),
            raw=obj,
        )

    def attempt(self, item: Any, path: str) -> HistoryAttempt:
        obj = self.obj(item, path)
        return HistoryAttempt(
            number=self.integer(obj, "number", f"{path}.number"),
            start=self.optional_time(obj, "start", f"{path}.start"),
            end=self.optional_time(obj, "end", f"{path}.end"),
            success=self.typed(
                obj, "success", f"{path}.success", bool, "true, false or null", False
            ),
            error=self.error(obj, "error", f"{path}.error"),
            uncounted=bool(
                self.typed(obj, "uncounted", f"{path}.uncounted", bool, "true or false", False)
            ),
        )

    def event(self, item: Any, path: str) -> HistoryEvent:
        obj = self.obj(item, path)
        return HistoryEvent(
            type=self.string(obj, "type", f"{path}.type"),
            payload=obj.get("payload"),
            received=self.optional_time(obj, "received", f"{path}.received"),
            consumed_by=self.optional_string(obj, "consumed_by", f"{path}.consumed_by"),
        )
