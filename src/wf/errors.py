"""Every error wf raises, in one tree.

    Exception
     ├── WfError                      wf refused something; ``code`` is stable, one line of text
     │    ├── ValidationError         bad input: an id, a name, params, a duration, a step config
     │    ├── WorkflowNotFound
     │    ├── InstanceNotFound
     │    ├── InstanceAlreadyExists
     │    ├── InvalidTransition       e.g. terminating an instance that already finished
     │    │    └── CannotRestart      restart from a step the history does not have
     │    ├── StepOutputError         a step returned something that cannot be stored
     │    └── StoreError              the database cannot be used
     │         ├── StoreLocked        another live wf process holds it
     │         ├── StoreTooNew        written by a newer wf
     │         └── StoreCorrupt       not a wf database, or damaged
     ├── NonRetryableError            raised by user code in a step: stop retrying
     │    └── WorkflowFatalError      a step call refused for good (e.g. during a rollback)
     ├── InstanceError                the error that failed an instance (rollback handlers)
     ├── StepError                    raised by ``step.do`` when a step failed for good
     └── EscapedBaseException         user code raised SystemExit & co.: contained
    BaseException
     └── EngineSignal                 engine control flow that user code must not swallow
          └── StepLimitExceeded       the instance reached its step limit

Engine signals derive from ``BaseException`` so that a user's ``except Exception`` in ``run()``
cannot swallow them.

An error is recorded as ``{name, message}`` (``error_info``, ``exception_info``): always text, cut
to ``MESSAGE_LIMIT`` characters, whatever the exception's ``__str__`` does.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

# An error message is stored three times (the attempt, the step, the instance) and printed on
# every failure: a 2 MB message must not become 6 MB of database and terminal.
MESSAGE_LIMIT = 16 * 1024
NAME_LIMIT = 256


def quote(value: object, limit: int = 80) -> str:
    """A value as error messages show it: in double quotes, on one line (control characters
    and lone surrogates escaped), cut after ``limit`` characters."""
    text = str(value)
    cut = text[:limit] + ("…" if len(text) > limit else "")
    shown = json.dumps(cut, ensure_ascii=False)
    # json escapes C0; escape every other invisible or line-breaking character too (C1, U+2028,
    # lone surrogates…) so the message stays one visible line.
    return "".join(c if c.isprintable() else _escape(c) for c in shown)


def _escape(char: str) -> str:
    code = ord(char)
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def text_of(value: object, convert: Callable[[object], object] = str) -> str:
    """``str(value)`` (or ``convert(value)``) that cannot fail: a ``__str__`` that raises or
    returns something other than a string gives the value's class name instead."""
    try:
        text = convert(value)
    except BaseException:  # user code's __str__: whatever it raises, fall back
        return type(value).__name__
    if not isinstance(text, str):
        return type(value).__name__
    return str.__str__(text)  # a plain str, whatever subclass __str__ returned


def cut(text: str, limit: int = MESSAGE_LIMIT) -> str:
    """``text`` if it has at most ``limit`` characters, else its start and a marker saying how
    long it was; never longer than ``limit`` (so cutting twice changes nothing)."""
    if len(text) <= limit:
        return text
    marker = f" … [truncated, {len(text):,} characters in all]"
    return text[: max(limit - len(marker), 0)] + marker


def error_info(name: object, message: object) -> dict[str, str]:
    """An error as wf records it: ``{"name", "message"}``, both text, both cut to size."""
    return {"name": cut(text_of(name), NAME_LIMIT), "message": cut(text_of(message))}


def exception_info(exc: BaseException) -> dict[str, str]:
    """How an exception that ended a step or ``run()`` is recorded."""
    if isinstance(exc, NonRetryableError):
        name = getattr(exc, "name", None)  # a subclass may not have called our __init__
        if not isinstance(name, str) or not name:
            name = "NonRetryableError"
        return error_info(name, getattr(exc, "message", ""))
    if isinstance(exc, (StepError, EngineSignal)):
        return error_info(exc.error_name, exc.message)
    if isinstance(exc, (EscapedBaseException, InstanceError)):
        return error_info(exc.name, exc.message)
    return error_info(type(exc).__name__, text_of(exc))


class WfError(Exception):
    """Base of the errors wf raises on purpose. ``code`` is stable and machine-readable."""

    code = "wf.error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class ValidationError(WfError):
    """Bad input (an id, a name, params, a duration, a step config); the message names the
    value."""

    code = "wf.invalid"


class WorkflowNotFound(WfError):
    """No workflow of that name in the project (or the deployed version)."""

    code = "workflow.not_found"


class InstanceNotFound(WfError):
    """No instance of that id in that workflow."""

    code = "instance.not_found"


class InstanceAlreadyExists(WfError):
    """An instance of that workflow already has that id."""

    code = "instance.already_exists"


class InvalidTransition(WfError):
    """The instance cannot do that from its status, e.g. terminating one that already
    finished."""

    code = "instance.invalid_transition"


class CannotRestart(InvalidTransition):
    """``restart(from_step=...)`` names no step of the instance's history (Cloudflare's text)."""

    code = "instance.cannot_restart"


class StepOutputError(WfError):
    """A step returned something that cannot be stored (not JSON, or over the size limit); the
    attempt fails with an error of this name."""

    code = "step.invalid_output"


class StoreError(WfError):
    """The database cannot be used."""

    code = "store.error"


class StoreLocked(StoreError):
    """Another live wf process holds the SQLite database."""

    code = "store.locked"


class StoreTooNew(StoreError):
    """The database was written by a newer wf."""

    code = "store.too_new"


class StoreCorrupt(StoreError):
    """Not a wf database, or a damaged one."""

    code = "store.corrupt"


class StoreUnavailable(StoreError):
    """The database cannot be reached for now (PostgreSQL restarting, a dropped connection): the
    request may be retried; nothing acknowledged was lost."""

    code = "store.unavailable"


class NonRetryableError(Exception):
    """Raise inside a step to fail it at once, skipping the remaining attempts.

    ``name`` is what the instance error shows (``NonRetryableError`` unless given), as Cloudflare's
    ``new NonRetryableError(message, name)``.
    """

    def __init__(self, message: str = "", name: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.name = name or "NonRetryableError"


class StepError(Exception):
    """A step failed for good: it exhausted its retries, raised ``NonRetryableError`` or timed out.

    Raised identically on the first run and on every replay.
    """

    def __init__(self, step_name: str, error_name: str, message: str, attempts: int) -> None:
        super().__init__(f"{error_name}: {message}" if message else error_name)
        self.step_name = step_name
        self.error_name = error_name
        self.message = message
        self.attempts = attempts

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.step_name, self.error_name, self.message, self.attempts))


class EscapedBaseException(Exception):
    """User code raised a ``BaseException`` (``SystemExit``, ``KeyboardInterrupt``…); it is
    carried as an ordinary error so it fails the step or the instance, not the whole process."""

    def __init__(self, original: BaseException) -> None:
        if isinstance(original, SystemExit):
            message = f"sys.exit({text_of(original.code, repr)}) was called"
        else:
            message = text_of(original) or f"{type(original).__name__} was raised"
        super().__init__(message)
        self.name = type(original).__name__
        self.message = message


class WorkflowFatalError(NonRetryableError):
    """A step call the engine refuses for good, as Cloudflare's ``WorkflowFatalError``: e.g. a
    step begun by a rollback handler ("Cannot execute steps during rollback phase")."""

    def __init__(self, message: str = "") -> None:
        super().__init__(message, "WorkflowFatalError")


class InstanceError(Exception):
    """The error that failed an instance, as recorded (``name``, ``message``): what a rollback
    handler gets as ``error``, on the first run and after a restart alike."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name = name
        self.message = message

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.name, self.message))


class EngineSignal(BaseException):
    """Engine control flow travelling through user code; never caught by ``except Exception``."""

    error_name = "WorkflowInternalError"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class StepLimitExceeded(EngineSignal):
    """The instance reached its step limit (``limits.steps``); it fails with
    WorkflowFatalError."""

    error_name = "WorkflowFatalError"


class NonDeterminismError(EngineSignal):
    """The code no longer matches a recorded history: a step it calls is not the one recorded
    there (another kind, name or count, or a wait for another event type), or a recorded step
    is never reached. ``index`` is the 0-based position of the call among run()'s step calls;
    ``expected`` and ``got`` describe the recorded step and the call (either may be None)."""

    error_name = "NonDeterminismError"

    def __init__(
        self,
        message: str,
        *,
        index: int | None = None,
        expected: str | None = None,
        got: str | None = None,
    ) -> None:
        super().__init__(message)
        self.index = index
        self.expected = expected
        self.got = got
