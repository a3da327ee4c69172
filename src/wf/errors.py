"""Every error wf raises, in one tree.

    Exception
     ├── WfError                      wf refused something; ``code`` is stable, one line of text
     │    ├── ValidationError         bad input: an id, a name, params, a duration, a step config
     │    ├── WorkflowNotFound
     │    ├── InstanceNotFound
     │    ├── InstanceAlreadyExists
     │    ├── InvalidTransition       e.g. terminating an instance that already finished
     │    ├── StepOutputError         a step returned something that cannot be stored
     │    └── StoreError              the database cannot be used
     │         ├── StoreLocked        another live wf process holds it
     │         ├── StoreTooNew        written by a newer wf
     │         └── StoreCorrupt       not a wf database, or damaged
     ├── NonRetryableError            raised by user code in a step: stop retrying
     ├── StepError                    raised by ``step.do`` when a step failed for good
     └── EscapedBaseException         user code raised SystemExit & co.: contained
    BaseException
     └── EngineSignal                 engine control flow that user code must not swallow
          ├── NonDeterminismError     a replay met a recorded step of another kind
          └── StepLimitExceeded       the instance reached its step limit

Engine signals derive from ``BaseException`` so that a user's ``except Exception`` in ``run()``
cannot swallow them.
"""

from __future__ import annotations

import json
from typing import Any


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


class WfError(Exception):
    """Base of the errors wf raises on purpose. ``code`` is stable and machine-readable."""

    code = "wf.error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class ValidationError(WfError):
    code = "wf.invalid"


class WorkflowNotFound(WfError):
    code = "workflow.not_found"


class InstanceNotFound(WfError):
    code = "instance.not_found"


class InstanceAlreadyExists(WfError):
    code = "instance.already_exists"


class InvalidTransition(WfError):
    code = "instance.invalid_transition"


class StepOutputError(WfError):
    code = "step.invalid_output"


class StoreError(WfError):
    code = "store.error"


class StoreLocked(StoreError):
    code = "store.locked"


class StoreTooNew(StoreError):
    code = "store.too_new"


class StoreCorrupt(StoreError):
    code = "store.corrupt"


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
            message = f"sys.exit({original.code!r}) was called"
        else:
            message = str(original) or f"{type(original).__name__} was raised"
        super().__init__(message)
        self.name = type(original).__name__
        self.message = message


class EngineSignal(BaseException):
    """Engine control flow travelling through user code; never caught by ``except Exception``."""

    error_name = "WorkflowInternalError"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NonDeterminismError(EngineSignal):
    error_name = "NonDeterminismError"


class StepLimitExceeded(EngineSignal):
    error_name = "WorkflowFatalError"
