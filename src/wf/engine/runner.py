"""One life of one instance: drive ``run()`` from the top, replay, wait in memory or hibernate.

A life begins when this process claims the instance and ends when ``run()`` returns or raises, or
when the life gives up memory: it hibernates (every pending step is a wait longer than the horizon),
reaches a requested pause, loses its claim (terminate, restart) or the engine stops. Ending a life
cancels the ``run()`` task; the next life replays ``run()`` against what was recorded.

Every step call is a *branch* of the life while it runs. A branch is *busy* unless it sleeps in a
wait (or is parked at a requested pause); the life hibernates only when no branch is busy, so a
branch that is committing, waiting for a slot or running an attempt is never cut short.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar

from wf.engine import codec
from wf.engine.clock import Clock
from wf.engine.counters import EngineStats
from wf.engine.cron import schedule_of
from wf.engine.entrypoint import ExecutionContext
from wf.engine.intercept import Interceptor, StepCall
from wf.engine.limits import Limits
from wf.engine.model import (
    AttemptRecord,
    Claim,
    ErrorInfo,
    InstanceRow,
    Status,
    StepKey,
    StepKind,
    StepRecord,
    WorkflowEvent,
    to_datetime,
)
from wf.engine.replay import Identities
from wf.engine.rollback import Rollbacks, refuse_step, run_then_roll_back
from wf.engine.store.base import PendingWrite, Store
from wf.engine.threads import StepThreadPool
from wf.engine.tracing import Tracer
from wf.errors import EngineSignal, StoreError, error_info, exception_info

if TYPE_CHECKING:
    from wf.engine.engine import WorkflowSpec
    from wf.engine.scheduler import Scheduler, Slots

T = TypeVar("T")
log = logging.getLogger("wf.engine")

# Idleness is judged a moment after the last change, once user code resumed by that change (which
# may be a few event-loop hops away, behind asyncio.gather) has entered its next step.
SETTLE_SECONDS = 0.005

# Why a graceful stop happens, as whoever stops the engine knows it: wf dev reloads on a change,
# a server shuts down on SIGTERM or Ctrl-C, wf serve restarts a version's worker.
StopCause = Literal["reload", "shutdown", "restart"]
_STOP_CAUSES: dict[StopCause | None, str] = {
    "reload": "the server reloaded",
    "shutdown": "the server shut down",
    "restart": "the server restarted the process running it",
    None: "the server stopped",
}


def stopped_attempt(cause: StopCause | None) -> ErrorInfo:
    """The error of an attempt a graceful stop cut short (describe shows it)."""
    return {
        "name": "WorkflowInternalError",
        "message": f"the attempt was cut short because {_STOP_CAUSES[cause]}; it does not count "
        "toward the retry limit",
    }


@dataclass(frozen=True)
class Notice:
    """Something that happened to an instance, for whoever shows progress (the dev server)."""

    # queued, started, step_done, attempt_failed, step_failed, sleeping, waiting_event,
    # event_sent, event_received, hibernated, paused, resumed, terminated, restarted,
    # completed, errored, child_started (a run_workflow step created its child: detail
    # {workflow, id}; the child itself gets "queued" with trigger "parent")
    kind: str
    workflow: str
    instance_id: str
    step: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    at: float | None = None  # when it happened (epoch seconds, engine clock)


class Host(Protocol):
    """What a life needs from the engine that runs it."""

    store: Store
    clock: Clock
    slots: Slots
    threads: StepThreadPool
    env: Any
    hibernate_after: float
    limits: Limits
    observed: bool  # whether anyone listens to notices (so they are not built for nobody)
    scheduler: Scheduler
    interceptor: Interceptor | None  # a test kit's hooks (wf.testing); None in production
    tracer: Tracer | None  # told of lives and attempts (wf.server.tracing); None: not tracing
    version_id: str  # the version this engine's code is: children are created under it
    counters: EngineStats  # figures for metrics (wf.engine.counters)

    def emit(self, notice: Notice) -> None: ...

    def child_ended(self, child: InstanceRow) -> None:
        """A child instance (one with a parent) ended here: wake its parent wherever it is."""
        ...


class Wait:
    """One pending wait of a life: a timer, and for ``wait_for_event`` an event type too; for
    ``run_workflow``, the child's pk and no timer (``until`` is infinite)."""

    __slots__ = ("_wakeup", "child", "event_seen", "event_type", "life", "until")

    def __init__(
        self, life: Life, until: float, event_type: str | None, child: int | None = None
    ) -> None:
        self.life = life
        self.until = until
        self.event_type = event_type
        self.child = child
        self.event_seen = False
        self._wakeup: asyncio.Future[None] | None = None

    def notify(self) -> None:
        self.event_seen = True
        if self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)

    async def sleep(self) -> str:
        """Wait until the timer fires ("timer") or an event of the type arrives ("event")."""
        life = self.life
        await life.hold_at_pause()
        if not self.event_seen and self.until > life.clock.now():
            self._wakeup = asyncio.get_running_loop().create_future()
            waiting: set[asyncio.Future[Any]] = {self._wakeup}
            if math.isfinite(self.until):
                waiting.add(asyncio.ensure_future(life.clock.sleep_until(self.until)))
            life.waits.add(self)
            life.busy -= 1
            life.poke()
            try:
                await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            finally:
                life.busy += 1
                life.waits.discard(self)
                for waited in waiting:
                    waited.cancel()
                self._wakeup = None
            await life.hold_at_pause()  # it ended just as a pause was asked for
            await life.take_slot()
        if self.event_seen:
            self.event_seen = False
            return "event"
        return "timer"


class _Branch:
    """``with life.branch():`` around one step call: the life is busy while it runs."""

    __slots__ = ("life",)

    def __init__(self, life: Life) -> None:
        self.life = life

    def __enter__(self) -> None:
        self.life.busy += 1

    def __exit__(self, *exc: object) -> None:
        self.life.busy -= 1
        self.life.poke()


class _Fenced(Exception):
    """A lazy write was refused: this life's claim is gone."""


class Life:
    def __init__(self, host: Host, claim: Claim, spec: WorkflowSpec, generation: int) -> None:
        self.host = host
        self.store = host.store
        self.clock = host.clock
        self.claim = claim
        self.row = claim.row
        self.pk = claim.row.pk
        self.epoch = claim.epoch
        self.spec = spec
        self.intercept = host.interceptor
        self.generation = generation  # which claim round of this process made it
        self.loop = asyncio.get_running_loop()  # asked once: asyncio asks the OS for its pid
        self.suspect = claim.row.crashes > 0  # it was running when a process died
        self.identities = Identities({}, spec.step_limit)
        self.rollbacks = Rollbacks(claim.row)
        self.busy = 0  # branches doing something other than sleeping in a wait
        self.running_ops = 0  # attempts in flight (what a graceful stop waits for)
        self.parked = 0  # branches parked at a requested pause
        self.waits: set[Wait] = set()
        self.event_waits: set[Wait] = set()
        self.child_waits: set[Wait] = set()
        self.attempts: dict[StepKey, tuple[StepRecord, AttemptRecord]] = {}
        self.holds_slot = True
        self.shown = Status.RUNNING
        self.pause_requested = False
        self.ending: str | None = None
        self.ended_as: str | None = None  # the instance's end, once this life wrote it
        self.ended_error: ErrorInfo | None = None  # and its error
        self.trace: object = None  # the tracer's handle for this life
        self.final_write: Any = None
        # Writes submitted and not awaited (see ``lazily``), checked at the next commit.
        self.lazy: list[PendingWrite] = []
        self.poison: EngineSignal | None = None
        self.task: asyncio.Task[Any] | None = None
        self.op_tasks: set[asyncio.Task[Any]] = set()
        self._unpark: asyncio.Future[None] | None = None
        self._poke: asyncio.TimerHandle | None = None

    @property
    def has_ended(self) -> bool:
        return self.ending is not None

    def blocked(self) -> bool:
        """Whether this life only waits, on a timer or an event, or at a requested pause, and
        has settled (what it does about it is decided)."""
        return (
            self.ending is None
            and self.busy == 0
            and self.running_ops == 0
            and self._poke is None
            and bool(self.waits or self.parked)
        )

    # ---- helpers for step.py -----------------------------------------------------------------
    def now(self) -> float:
        return self.clock.now()

    def emit(self, kind: str, step: str | None = None, **detail: Any) -> None:
        if self.host.observed:
            self.host.emit(Notice(kind, self.row.workflow, self.row.id, step, detail, self.now()))

    def branch(self) -> _Branch:
        return _Branch(self)

    def identify(self, name: str, kind: StepKind) -> tuple[int, StepRecord | None]:
        self.check_alive()
        if self.poison is not None:
            raise self.poison
        if self.rollbacks.rolling_back:
            raise refuse_step()
        try:
            return self.identities.next(name, kind)
        except EngineSignal as signal:
            self.poison = signal
            raise

    def call(self, kind: StepKind, name: str, count: int) -> StepCall:
        """The step as the interceptor knows it."""
        return StepCall(self.row.workflow, self.row.id, kind, name, count)

    def kill(self) -> None:
        """End this life writing nothing more, as a SIGKILL of its process would (the test
        kit's crash injection): its claim stays taken until the engine restarts."""
        self.host.scheduler.killed.add(self.pk)
        self.end("killed")
        raise asyncio.CancelledError()

    def check_alive(self) -> None:
        if self.ending is not None:
            raise asyncio.CancelledError()

    def lazily(self, write: PendingWrite) -> None:
        """A write this life goes on without awaiting (an attempt's start, a sleep's end): the
        writer keeps writes in order, so the next commit settles it too and checks it. One lost
        to a store failure must end the life before a later write (the finish) lands without it;
        the next life replays from what was written."""
        self.lazy.append(write)

    async def commit(self, pending: Any) -> Any:
        """Await a write; a fenced write (the claim is gone) or a store failure ends this life."""
        try:
            result = await pending
            if self.lazy:
                await self._settle_lazy()
        except StoreError as exc:
            log.error("instance %s/%s: %s", self.row.workflow, self.row.id, exc)
            self.end("store-failure")
            raise asyncio.CancelledError() from None
        except _Fenced:
            result = False
        if result is False:
            self.end("fenced")
            raise asyncio.CancelledError()
        return result

    async def _settle_lazy(self) -> None:
        """Await the lazy writes: raise the ``StoreError`` one ended with, ``_Fenced`` if one
        was refused."""
        lazy, self.lazy = self.lazy, []
        for write in lazy:
            if await write is False:
                raise _Fenced()

    async def lazy_writes_landed(self) -> bool:
        """Whether every lazy write was committed (the finish checks before it is written)."""
        try:
            await self._settle_lazy()
        except (StoreError, _Fenced) as exc:
            log.error("instance %s/%s: a write was lost: %s", self.row.workflow, self.row.id, exc)
            return False
        return True

    async def begin_op(self) -> asyncio.Task[Any] | None:
        """Start new step work: wait at a requested pause or a stop, hold a concurrency slot.
        Pair with ``end_op`` (given what this returned)."""
        self.check_alive()
        while self.pause_requested or self.host.scheduler.draining:
            await self._park(pausing=self.pause_requested)
        if not self.holds_slot or self.shown is not Status.RUNNING:
            await self.take_slot()
        self.running_ops += 1
        task = asyncio.current_task(self.loop)
        if task is not None:
            self.op_tasks.add(task)
        return task

    async def hold_at_pause(self) -> None:
        """A step about to begin or complete waits here while a pause is requested: once the
        pause is acknowledged, the step in flight ends and nothing else happens until resume
        (the life ends paused meanwhile)."""
        self.check_alive()
        while self.pause_requested:
            await self._park(pausing=True)

    async def _park(self, pausing: bool) -> None:
        if pausing:  # parked at a pause boundary: not busy, so the pause can happen
            self.parked += 1
            self.busy -= 1
        if self._unpark is None or self._unpark.done():
            self._unpark = asyncio.get_running_loop().create_future()
        unpark = self._unpark
        self.poke()
        try:
            await unpark
        finally:
            if pausing:
                self.parked -= 1
                self.busy += 1
        self.check_alive()

    def end_op(self, task: asyncio.Task[Any] | None) -> None:
        self.running_ops -= 1
        if task is not None:
            self.op_tasks.discard(task)

    @contextlib.contextmanager
    def waiter(
        self, until: float, event_type: str | None = None, child: int | None = None
    ) -> Iterator[Wait]:
        wait = Wait(self, until, event_type, child)
        if event_type is not None:
            self.event_waits.add(wait)
        if child is not None:
            self.child_waits.add(wait)
        try:
            yield wait
        finally:
            self.event_waits.discard(wait)
            self.child_waits.discard(wait)

    async def take_slot(self) -> None:
        if not self.holds_slot:
            await self.host.slots.acquire()
            self.holds_slot = True
            if self.ending is not None:
                return
        if self.shown is Status.WAITING:
            self.shown = Status.RUNNING
            # Not awaited: the writer keeps writes in order, and a lost flip is harmless.
            self.store.set_status(self.pk, self.epoch, Status.RUNNING, self.now())

    # ---- control from the engine -------------------------------------------------------------
    def notify_event(self, event_type: str) -> None:
        for wait in list(self.event_waits):
            if wait.event_type == event_type:
                wait.notify()

    def notify_child(self, child: int | None = None) -> None:
        """A child ended (``child``: its pk; None: any of them): its waits look again."""
        for wait in list(self.child_waits):
            if child is None or wait.child == child:
                wait.notify()

    def request_pause(self) -> None:
        if not self.pause_requested:
            self.pause_requested = True
            self.poke()

    def cancel_pause(self) -> None:
        self.pause_requested = False
        self._release_parked()

    def _release_parked(self) -> None:
        if self._unpark is not None and not self._unpark.done():
            self._unpark.set_result(None)

    # ---- deciding what to do when idle -------------------------------------------------------
    def poke(self) -> None:
        """Reconsider in a moment (see ``SETTLE_SECONDS``)."""
        if self._poke is None and self.ending is None:
            self._poke = asyncio.get_running_loop().call_later(SETTLE_SECONDS, self._reconsider)

    def _reconsider(self) -> None:
        self._poke = None
        if self.ending is not None or self.busy > 0:
            return
        if self.pause_requested and (self.waits or self.parked):
            self.end("pause")
            return
        if not self.waits:
            return
        earliest = min(w.until for w in self.waits)
        # A workflow with a concurrency limit never waits in memory: hibernating frees its
        # slot in the database, and waking goes through a claim, which honours the limit.
        if earliest - self.now() > self.host.hibernate_after or self.spec.flow.limits_running:
            # Waiting for children only: no timer, their ends wake it.
            self.end("hibernate", wake_at=earliest if math.isfinite(earliest) else None)
            return
        # A short wait: stay in memory, but give the slot back and show the instance waiting.
        if self.holds_slot:
            self.holds_slot = False
            self.host.slots.release()
        if self.shown is Status.RUNNING:
            self.shown = Status.WAITING
            self.store.set_status(self.pk, self.epoch, Status.WAITING, self.now(), earliest)

    def end(
        self, reason: str, wake_at: float | None = None, cause: StopCause | None = None
    ) -> None:
        """End this life now: write what the reason needs, then cancel ``run()``. ``cause``
        says why a "stop" happens."""
        if self.ending is not None:
            return
        self.ending = reason
        now = self.now()
        if reason == "hibernate":
            types = [w.event_type for w in self.event_waits if w.event_type is not None]
            children = [w.child for w in self.child_waits if w.child is not None]
            self.final_write = self.store.hibernate(
                self.pk, self.epoch, wake_at, now, types, children
            )
            self.host.counters.hibernations += 1
            self.emit("hibernated", wake_at=wake_at)
        elif reason == "pause":
            self.final_write = self.store.reach_pause(self.pk, self.epoch, now)
            self.emit("paused")
        elif reason == "stop":
            self._record_stopped_attempts(now, cause)
            self.final_write = self.store.release(self.pk, self.epoch)
        elif reason == "store-failure":
            # The database refused a write (a full disk, say). Keep the claim: the lease loop
            # gives it back in a while, so the instance does not spin through its retries; and
            # the attempts cut short will not count when it runs again.
            failed = self.host.scheduler.store_failures.setdefault(self.pk, set())
            failed.update(self.attempts)
            self.attempts.clear()
        self._release_parked()
        if self._poke is not None:
            self._poke.cancel()
            self._poke = None
        if self.task is not None:
            self.task.cancel()
        for task in self.op_tasks:
            task.cancel()

    def _record_stopped_attempts(self, now: float, cause: StopCause | None) -> None:
        """Attempts cut short by a graceful stop are recorded as such and not counted."""
        for step, attempt in self.attempts.values():
            attempt.ended, attempt.success = now, False
            attempt.error, attempt.uncounted = stopped_attempt(cause), True
            step.wake_at = now
            self.store.end_attempt(self.pk, self.epoch, step, attempt)
        self.attempts.clear()


async def run_life(host: Host, life: Life) -> None:
    """Run one life of a claimed instance to its end, and write how it ended."""
    from wf.engine.step import WorkflowStep

    row, spec = life.row, life.spec
    coro: Any = None
    if host.tracer is not None:
        life.trace = host.tracer.life_began(row, life.claim.fresh)
    try:
        if not life.claim.fresh:
            try:
                history = await host.store.load_history(row.pk)
            except StoreError as exc:
                log.error("instance %s/%s: %s", row.workflow, row.id, exc)
                life.end("store-failure")
                return
            life.identities = Identities(history.by_key(), spec.step_limit)
        if life.has_ended:
            return
        try:
            entry = spec.cls(ExecutionContext(), host.env)
            event = WorkflowEvent(
                payload=codec.decode(row.params),
                timestamp=to_datetime(row.created),
                instance_id=row.id,
                workflow_name=row.workflow,
                schedule=schedule_of(row.trigger, row.id),
            )
            coro = entry.run(event, WorkflowStep(life))
        except Exception as exc:
            await _finish(life, None, exc)
            return
        if life.claim.fresh:
            life.emit("started")
        task: asyncio.Task[Any] = asyncio.ensure_future(run_then_roll_back(life, coro))
        life.task = task
        try:
            await asyncio.wait({task})
        except asyncio.CancelledError:
            life.end("stop")
            await asyncio.wait({task})
            raise
        if not life.has_ended:
            await _finish(life, task, None)
    finally:
        if coro is not None and (life.task is None or life.task.done()):
            # A task cancelled before its first step never starts ``run()``; closing the
            # coroutine spares a "never awaited" warning (a no-op once it has run).
            coro.close()
        for op in life.op_tasks:
            op.cancel()
        if life.final_write is not None:
            with contextlib.suppress(StoreError):
                await life.final_write
        if host.scheduler.lives.get(row.pk) is life:
            del host.scheduler.lives[row.pk]
        if life.holds_slot:
            life.holds_slot = False
            host.slots.release()
        if host.tracer is not None:
            _trace_end(host.tracer, life)


def _trace_end(tracer: Tracer, life: Life) -> None:
    """Tell the tracer how the life ended: the instance's end, or why the life let go."""
    reason = life.ended_as or life.ending or "stop"
    if reason == "finished":  # run() ended but its end was not written: the claim was given back
        reason = "released"
    tracer.life_ended(life.trace, reason, life.ended_error)


async def _finish(life: Life, task: asyncio.Task[Any] | None, early: BaseException | None) -> None:
    """``run()`` is over: record its output, or its error as ``{name, message}``."""
    life.ending = "finished"
    output: str | None = None
    error: dict[str, str] | None = None
    exc: BaseException | None = early
    if task is not None:
        if task.cancelled():
            exc = asyncio.CancelledError("run() was cancelled")
        else:
            exc = task.exception()
    if life.poison is not None:
        exc = life.poison
    if exc is None and task is not None:
        try:
            output = codec.encode(task.result())
        except codec.NotSerialisable as problem:
            error = error_info(
                "TypeError",
                f"run() returned a value that cannot be stored as JSON: {problem.at('output')}",
            )
    elif exc is not None:
        error = exception_info(exc)
    status = Status.ERRORED if error else Status.COMPLETE
    if life.rollbacks.ends_terminated:  # a terminate that asked for the rollbacks
        status, output, error = Status.TERMINATED, None, None
    if life.lazy and not await life.lazy_writes_landed():
        # Finishing now would leave a step as it was before that write: give the claim back,
        # and the next life replays it.
        life.final_write = life.store.release(life.pk, life.epoch)
        return
    try:
        ok = await life.store.finish(life.pk, life.epoch, status, life.now(), output, error)
    except StoreError as problem:
        log.error("instance %s/%s: %s", life.row.workflow, life.row.id, problem)
        # Give the claim back so the instance runs again (it replays to the same end).
        life.final_write = life.store.release(life.pk, life.epoch)
        return
    if ok:
        life.ended_as = status.value
        life.ended_error = error
        if life.row.parent is not None:
            life.host.child_ended(life.row)
        seconds = max(0.0, life.now() - life.row.created)  # its whole life, for metrics
        if status is Status.TERMINATED:
            life.emit("terminated", source=life.row.termination, seconds=seconds)
        elif error:
            life.emit("errored", error=error, seconds=seconds)
        else:
            life.emit("completed", output=output, seconds=seconds)
