"""Rollbacks (sagas): ``step.do(name, [config], callback, rollback=handler, rollback_config=…)``.

A handler is registered when its ``step.do`` is called; it runs only when the instance fails for
good (``run()`` raises) or when a terminate asks for rollbacks. Then, before the instance's end
is recorded, the *rollback phase* runs every registered handler whose step started, newest step
first (reverse order of start), each as a durable step of kind ``rollback`` under its step's
name and count: with its own retries and timeout (``rollback_config`` over the step defaults),
run at most once after it committed. A handler that fails for good halts the chain (the older
ones do not run); the instance still ends with its original error.

Handlers are closures held in memory. The phase is recorded on the instance (its trigger error,
then its outcome) before the first handler runs, so a later life (after a crash, a reload, a
hibernation, or a ``terminate(rollback=True)``) *replays* ``run()`` against the history only to
register the handlers again, as Cloudflare's local engine does: recorded steps return their
recorded outcome, steps that never finished and new ones return ``None`` without running,
sleeps and waits return at once. Then the chain goes on where it stopped.

While the chain runs, any step call (a handler's, or a branch of ``run()`` still going) raises
``WorkflowFatalError("Cannot execute steps during rollback phase")``.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from wf.engine import codec, config
from wf.engine.model import (
    ErrorInfo,
    InstanceRow,
    ResolvedConfig,
    StepContext,
    StepKey,
    StepKind,
    StepRecord,
    StepState,
    WorkflowStepEvent,
    to_datetime,
)
from wf.engine.replay import (
    INTERRUPTED,
    Cached,
    CachedError,
    CloseInterrupted,
    GiveUp,
    WaitRetry,
    plan_do,
)
from wf.errors import (
    InstanceError,
    StepError,
    StoreError,
    ValidationError,
    WorkflowFatalError,
    exception_info,
)

if TYPE_CHECKING:
    from wf.engine.runner import Life

log = logging.getLogger("wf.engine")

ROLLING_BACK = "Cannot execute steps during rollback phase"

# What handlers get as ``error`` when a terminate asked for the rollbacks (as Cloudflare's local
# engine passes it).
TERMINATED: ErrorInfo = {"name": "Terminated", "message": "Instance terminated during rollback"}

# The outcome of a phase that found no handler to run (``rollback`` shows null, as when an
# instance with no handler fails).
NOTHING = "nothing"

# A rollback phase that a plain terminate (or a delete) cut short, as ``rollback`` shows it.
CUT_SHORT: ErrorInfo = {
    "name": "Terminated",
    "message": "the rollback was cut short: the instance was terminated before it ended",
}


@dataclass(frozen=True)
class RollbackContext:
    """What a rollback handler gets: ``ctx`` (its step's context: name, count, attempt, config),
    ``error`` (the error that failed the instance, an ``InstanceError`` with ``name`` and
    ``message``) and ``output`` (what the step returned; None for a step that failed or never
    finished). Readable as a dict too: ``context["output"]``."""

    ctx: StepContext
    error: InstanceError
    output: Any

    def __getitem__(self, key: str) -> Any:
        if key not in ("ctx", "error", "output"):
            raise KeyError(key)
        return getattr(self, key)


@dataclass(frozen=True)
class RollbackOptions:
    """The validated ``rollback=`` / ``rollback_config=`` of one ``step.do``."""

    handler: Callable[..., Any]
    config: ResolvedConfig


def options(name: str, handler: object, rollback_config: object) -> RollbackOptions | None:
    """Check a ``step.do``'s rollback options (Cloudflare's wording); None when it has none."""
    if handler is None and rollback_config is None:
        return None
    if not callable(handler):
        raise ValidationError(f'Rollback for "{name}" must be a function')
    try:
        resolved = config.resolve(name, rollback_config)
    except ValidationError as exc:
        raise ValidationError(f'Rollback config for "{name}" is invalid: {exc}') from None
    return RollbackOptions(handler, resolved)


@dataclass(frozen=True)
class _Registered:
    options: RollbackOptions
    step_config: ResolvedConfig  # the step's own, for the handler's ``ctx``


class Rollbacks:
    """One life's rollbacks: the handlers registered so far, and where the phase stands.

    ``stored`` is the phase a previous life (or a terminate) recorded: this life replays ``run()``
    (``replaying``) and then goes on with the chain. ``rolling_back``: the chain runs; no step
    may begin."""

    __slots__ = ("ends_terminated", "registered", "replaying", "rolling_back", "stored")

    def __init__(self, row: InstanceRow) -> None:
        self.registered: dict[StepKey, _Registered] = {}
        self.stored = phase_of(row)
        self.replaying = self.stored is not None
        self.rolling_back = False
        # A terminate asked for the rollbacks: the instance ends terminated, not errored.
        self.ends_terminated = self.stored is not None and row.termination is not None

    def register(
        self, name: str, count: int, rollback: RollbackOptions, step_config: ResolvedConfig
    ) -> None:
        self.registered[StepKind.DO, name, count] = _Registered(rollback, step_config)


def phase_of(row: InstanceRow) -> dict[str, Any] | None:
    """The instance's recorded rollback phase: ``{"error", "outcome", "failure"}``, or None."""
    if row.rollback is None:
        return None
    phase: dict[str, Any] = json.loads(row.rollback)
    return phase


def begin(trigger: ErrorInfo) -> str:
    """The phase as stored when it begins (also what a terminate with rollbacks stores)."""
    return json.dumps({"error": trigger, "outcome": None, "failure": None})


def view(row: InstanceRow) -> dict[str, Any] | None:
    """``rollback`` as ``status()`` and the details show it, Cloudflare's
    ``{outcome: "complete" | "failed", error: {name, message} | null}``: null while the phase
    runs (the instance reports ``running``), and when no handler was registered."""
    phase = phase_of(row)
    if phase is None:
        return None
    if phase.get("outcome") == NOTHING:
        return None
    if phase.get("outcome") is not None:
        return {"outcome": phase["outcome"], "error": phase.get("failure")}
    if row.status.finished:
        return {"outcome": "failed", "error": dict(CUT_SHORT)}
    return None


# ---- replaying run() to register the handlers again -------------------------------------------
def replayed_do(name: str, record: StepRecord | None) -> Any:
    """A ``step.do`` met while replaying for the phase: its recorded outcome; nothing runs."""
    if record is None or record.state is StepState.RUNNING:
        return None
    if record.state is StepState.SUCCEEDED:
        return codec.decode(record.output)
    error = record.error or INTERRUPTED
    raise StepError(name, error["name"], error["message"], len(record.attempts) or 1)


def replayed_wait(name: str, record: StepRecord | None) -> Any:
    """A ``wait_for_event`` met while replaying for the phase: its recorded outcome, else None."""
    if record is None or record.state is StepState.RUNNING or record.event_type is None:
        return None
    if record.state is StepState.SUCCEEDED:
        received = record.event_time if record.event_time is not None else record.started
        payload = codec.decode(record.output)
        return WorkflowStepEvent(record.event_type, payload, to_datetime(received))
    error = record.error or INTERRUPTED
    raise StepError(name, error["name"], error["message"], 1)


# ---- the phase --------------------------------------------------------------------------------
async def run_then_roll_back(life: Life, run: Awaitable[Any]) -> Any:
    """Await ``run()``, then the rollback phase when one is due; what the life's task runs.

    An engine signal (non-determinism, the step limit) fails the instance without rollbacks,
    as a fatal error does on Cloudflare."""
    from wf.engine.step import contain

    rollbacks = life.rollbacks
    stored = rollbacks.stored
    if stored is not None:
        with contextlib.suppress(Exception):
            await contain(run)  # only to register the handlers again
        trigger: ErrorInfo = stored["error"]
        await _roll_back(life, trigger)
        raise InstanceError(trigger["name"], trigger["message"])
    try:
        return await contain(run)
    except Exception as exc:
        if not rollbacks.registered or life.has_ended:
            raise
        trigger = exception_info(exc)
        await life.commit(life.store.set_rollback(life.pk, life.epoch, begin(trigger)))
        await _roll_back(life, trigger)
        raise


async def _roll_back(life: Life, trigger: ErrorInfo) -> None:
    """Run the chain, newest step first; record its outcome."""
    rollbacks = life.rollbacks
    rollbacks.replaying, rollbacks.rolling_back = False, True
    with life.branch():
        try:
            history = await life.store.load_history(life.pk)
        except StoreError as exc:
            log.error("instance %s/%s: %s", life.row.workflow, life.row.id, exc)
            life.end("store-failure")
            raise asyncio.CancelledError() from None
        recorded = history.by_key()
        started = [
            s for s in history.steps if s.kind is StepKind.DO and s.key in rollbacks.registered
        ]
        error = InstanceError(trigger["name"], trigger["message"])
        failure: ErrorInfo | None = None
        if started:
            life.emit("rollback_started", steps=len(started), error=trigger)
        for step in reversed(started):
            done = recorded.get((StepKind.ROLLBACK, step.name, step.count))
            failure = await _run_handler(life, step, done, rollbacks.registered[step.key], error)
            if failure is not None:
                break  # a handler that failed for good halts the chain
        outcome = "complete" if failure is None else "failed"
        if not started:  # a terminate asked, but no step with a handler had started
            outcome = NOTHING
        phase = {"error": trigger, "outcome": outcome, "failure": failure}
        await life.commit(life.store.set_rollback(life.pk, life.epoch, json.dumps(phase)))
        if started:
            life.emit("rolled_back", outcome=outcome, error=failure)


async def _run_handler(
    life: Life,
    step: StepRecord,
    record: StepRecord | None,
    registered: _Registered,
    error: InstanceError,
) -> ErrorInfo | None:
    """Run one handler as a durable step (or find it ran); its error if it failed for good."""
    from wf.engine.step import _attempt, _close_interrupted

    resolved = registered.options.config
    if record is None:
        record = StepRecord(step.name, step.count, StepKind.ROLLBACK, life.now())
        record.config = config.to_json(resolved)
    output = codec.decode(step.output) if step.state is StepState.SUCCEEDED else None
    context = RollbackContext(
        StepContext(
            step.name,
            step.count,
            len(step.attempts) or 1,
            registered.step_config.as_step_config(),
        ),
        error,
        output,
    )
    body = _body(registered.options.handler, context)
    while True:
        plan = plan_do(record, resolved, life.now())
        if isinstance(plan, Cached):
            return None
        if isinstance(plan, CachedError):
            return plan.error
        if life.pause_requested:  # held until resume, then planned afresh
            await life.hold_at_pause()
            continue
        if isinstance(plan, CloseInterrupted):
            _close_interrupted(life, record, resolved)
        elif isinstance(plan, GiveUp):
            record.state, record.error, record.ended = StepState.FAILED, plan.error, life.now()
            await life.commit(life.store.end_step(life.pk, life.epoch, record, record.state))
            life.emit("step_failed", record.display_name, attempt=plan.attempts, error=plan.error)
            return plan.error
        elif isinstance(plan, WaitRetry):
            with life.waiter(plan.until) as wait:
                await wait.sleep()
        else:
            try:
                record = await _attempt(
                    life, step.name, step.count, record, plan.number, resolved, body
                )
            except StepError:
                return record.error or INTERRUPTED


def _body(handler: Callable[..., Any], context: RollbackContext) -> Callable[[], Any]:
    """The handler as a step body taking no argument and returning None (what it returns is
    not kept). An ``async def`` one runs on the loop; a ``def`` one in a worker thread."""
    from wf.engine.step import _is_async

    if _is_async(handler):

        async def run_async() -> None:
            await handler(context)

        return run_async

    def run_sync() -> Any:
        result = handler(context)
        return _discard(result) if inspect.isawaitable(result) else None

    return run_sync


async def _discard(awaitable: Awaitable[Any]) -> None:
    await awaitable


def refuse_step() -> WorkflowFatalError:
    return WorkflowFatalError(ROLLING_BACK)
