"""Retry delays a function decides: ``retries.delay`` given as a callable, as Cloudflare has it.

The function is called once per failed attempt that will be retried (not after the last one,
not for a ``NonRetryableError``), with the step's context (``attempt`` is the attempt that just
failed) and the error. It returns seconds, a duration string or a ``timedelta``, sync or async;
what it returns is the base the configured backoff applies to, as Cloudflare's local engine
does (``backoff: "constant"`` to use it as it is). It has 5 seconds (wall time, whatever clock
the engine runs on): a function that raises, is slow or returns no duration fails the step
without further retries, with ``NonRetryableDelayError``.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from dataclasses import dataclass
from typing import Any

from wf.durations import to_seconds
from wf.engine import config
from wf.engine.dictview import ReadsAsDict
from wf.engine.model import DelayFunction, ErrorInfo, ResolvedConfig, StepContext
from wf.errors import EngineSignal, ValidationError, cut, error_info, text_of

TIMEOUT = 5.0
ERROR_NAME = "NonRetryableDelayError"


@dataclass(frozen=True)
class DelayInput(ReadsAsDict):
    """Cloudflare's one argument to a delay function, ``{ctx, error}``: read ``arg.ctx`` or
    ``arg["ctx"]``."""

    ctx: StepContext
    error: BaseException


class AttemptFailed(Exception):
    """The error a delay function gets for a failed attempt that raised nothing of its own (it
    timed out, or returned what cannot be stored): ``name`` and ``message`` as recorded."""

    def __init__(self, info: ErrorInfo) -> None:
        super().__init__(info["message"])
        self.name = info["name"]
        self.message = info["message"]


class DelayFunctionFailed(Exception):
    """The delay function could not say how long to wait: the step fails with ``error``."""

    def __init__(self, error: ErrorInfo) -> None:
        super().__init__(error["message"])
        self.error = error


async def next_delay(
    resolved: ResolvedConfig,
    attempts_made: int,
    ctx: StepContext,
    error: BaseException,
) -> float:
    """Seconds before the next attempt, after ``attempts_made`` counted failed ones. Raises
    ``DelayFunctionFailed`` when the step's delay function fails."""
    function = resolved.delay_function
    if function is None:
        return config.retry_delay(resolved, attempts_made)
    where = f'The delay function for step "{ctx.step_name}-{ctx.count}"'
    value = await _call(function, ctx, error, where)
    try:
        base = to_seconds(value, "delay")
    except ValidationError:
        shown = cut(repr(value), 60)
        raise DelayFunctionFailed(
            error_info(ERROR_NAME, f"{where} returned an invalid delay value ({shown})")
        ) from None
    return config.retry_delay(resolved, attempts_made, base)


async def _call(function: DelayFunction, ctx: StepContext, error: BaseException, where: str) -> Any:
    args: tuple[Any, ...] = (ctx, error) if _takes_two(function) else (DelayInput(ctx, error),)
    started = time.monotonic()
    try:
        result = function(*args)
        if inspect.isawaitable(result):
            result = await _within_timeout(result, where)
    except DelayFunctionFailed:
        raise
    except (asyncio.CancelledError, EngineSignal):
        raise
    except BaseException as exc:  # SystemExit and the like from user code fail the step too
        message = text_of(exc) or type(exc).__name__
        failed = error_info(ERROR_NAME, f"{where} threw an error: {message}")
        raise DelayFunctionFailed(failed) from None
    if time.monotonic() - started > TIMEOUT:  # a sync function cannot be stopped, only judged
        raise _too_slow(where)
    return result


async def _within_timeout(awaitable: Any, where: str) -> Any:
    task = asyncio.ensure_future(awaitable)
    try:
        done, _ = await asyncio.wait({task}, timeout=TIMEOUT)
    finally:
        if not task.done():
            task.cancel()
    if task not in done:
        raise _too_slow(where)
    return task.result()


def _too_slow(where: str) -> DelayFunctionFailed:
    return DelayFunctionFailed(
        error_info(ERROR_NAME, f"{where} did not return within {TIMEOUT:g} seconds")
    )


def _takes_two(function: DelayFunction) -> bool:
    """``(ctx, error)`` (wf's form) rather than Cloudflare's one ``{ctx, error}`` argument: the
    function takes two positional arguments, or any number."""
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return True
    positional = 0
    for parameter in parameters:
        if parameter.kind is inspect.Parameter.VAR_POSITIONAL:
            return True
        if parameter.kind in (
            inspect.Parameter.POSITIONAL_ONLY,
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
        ):
            positional += 1
    return positional >= 2
