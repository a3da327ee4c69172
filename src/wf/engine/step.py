"""``WorkflowStep``: the durable steps ``run()`` is made of, over the store.

Every call first gets its identity (name, count) and looks it up in the recorded history: a
recorded outcome is returned (or re-raised) without running anything; otherwise the step runs and
its outcome is committed before the call returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import math
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

from wf.durations import Duration, exact_duration, format_duration, to_seconds
from wf.engine import codec, config, retry_delays, rollback
from wf.engine.child_step import run_workflow
from wf.engine.clock import SystemClock
from wf.engine.cpu import CpuMeter, Metered
from wf.engine.decorated import accepts_decorator_form, accepts_positional_event_type
from wf.engine.intercept import MockedError, MockedResult, StepCall
from wf.engine.limits import check_identifier, check_step_name
from wf.engine.model import (
    PAUSING,
    AttemptRecord,
    ErrorInfo,
    EventRecord,
    ResolvedConfig,
    StepContext,
    StepKind,
    StepRecord,
    StepState,
    WorkflowStepEvent,
    to_datetime,
)
from wf.engine.replay import (
    INTERRUPTED,
    STORE_REFUSED,
    Attempt,
    Cached,
    CachedError,
    CloseInterrupted,
    GiveUp,
    WaitRetry,
    plan_do,
    retries_left,
)
from wf.engine.rollback import options as rollback_options
from wf.engine.threads import Job
from wf.engine.tracing import attempt_outcome
from wf.errors import (
    EngineSignal,
    EscapedBaseException,
    NonRetryableError,
    StepError,
    ValidationError,
    error_info,
    exception_info,
)

if TYPE_CHECKING:
    from wf.engine.runner import Life


T = TypeVar("T")


class _AttemptTimedOut(Exception):
    pass


class WorkflowStep:
    """The second argument of ``run()``."""

    __slots__ = ("_decorated", "_life")

    def __init__(self, life: Life) -> None:
        self._life = life
        self._decorated = None  # Cloudflare's decorated steps (wf.engine.decorated), once used

    @accepts_decorator_form
    async def do(
        self,
        name: str,
        *args: Any,
        retries: Any = None,
        timeout: Duration | None = None,
        rollback: Callable[..., Any] | None = None,
        rollback_config: Any = None,
    ) -> Any:
        """Run ``callback`` as a durable step: ``do(name, callback)`` or
        ``do(name, config, callback)``; ``retries=`` / ``timeout=`` may be given as keywords.

        Returns the callback's result as decoded from its stored JSON form, on the first run and
        on every replay alike. Raises ``StepError`` once the step failed for good.

        ``rollback``: a handler (``def`` or ``async def``) taking a ``RollbackContext``, run if
        the instance fails for good (or is terminated with rollbacks) once this step started;
        ``rollback_config``: its retries and timeout (see ``wf.engine.rollback``).
        """
        options = None  # the common case costs no call: step.do is the hot path
        if rollback is not None or rollback_config is not None:
            options = rollback_options(name, rollback, rollback_config)
        with self._life.branch():
            return await _do(self._life, name, args, retries, timeout, options)

    async def sleep(self, name: str, duration: Duration) -> None:
        """Sleep durably: survives restarts, and an instance sleeping longer than about a second
        leaves memory until its timer fires."""
        with self._life.branch():
            return await _sleep(self._life, name, duration)

    async def sleep_until(self, name: str, when: datetime | float) -> None:
        """Sleep until an aware ``datetime`` (or epoch seconds); a past time returns at once."""
        with self._life.branch():
            return await _sleep_until(self._life, name, when)

    async def run_workflow(
        self, workflow: str, params: Any = None, *, id: str | None = None, name: str | None = None
    ) -> Any:
        """Run an instance of another workflow of this project as a child, and wait for it.

        The child is created once (with this step's record, in one commit: a replay after a
        crash finds it), with ``params`` (checked as ``create`` checks them) and ``id`` (by
        default ``<this id>-<step name>-<count>-<random>``). The parent leaves memory while it
        waits; the child's end wakes it. Returns the child's output (as decoded from its stored
        JSON); raises ``StepError`` with the child's error name and message if it errored,
        ``WorkflowTerminated`` if it was terminated, ``WorkflowNotFound`` for an unknown
        workflow. The step is named ``name`` (default: the workflow's name)."""
        with self._life.branch():
            return await run_workflow(self._life, name or workflow, workflow, params, id)

    @accepts_positional_event_type
    async def wait_for_event(
        self, name: str, *, type: str, timeout: Duration = "24 hours"
    ) -> WorkflowStepEvent:
        """Wait for ``send_event(type, payload)``. Events sent earlier are buffered, oldest first.
        Raises ``StepError`` (``WorkflowTimeoutError``) when ``timeout`` passes first."""
        with self._life.branch():
            return await _wait_for_event(self._life, name, type, timeout)


async def _do(
    life: Life,
    name: str,
    args: tuple[Any, ...],
    retries: Any,
    timeout: Duration | None,
    options: rollback.RollbackOptions | None = None,
) -> Any:
    check_step_name(name, life.host.limits)
    config_arg, callback = split_do_args(name, args)
    resolved = config.resolve(name, config_arg, retries=retries, timeout=timeout)
    count, record = life.identify(name, StepKind.DO)
    if options is not None:
        life.rollbacks.register(name, count, options, resolved)
    if life.rollbacks.replaying:
        return rollback.replayed_do(name, record)
    while True:
        plan = plan_do(record, resolved, life.now())
        if isinstance(plan, Cached):
            return codec.decode(plan.output)
        if isinstance(plan, CachedError):
            raise StepError(name, plan.error["name"], plan.error["message"], plan.attempts)
        if life.pause_requested:  # held until resume, then planned afresh
            await life.hold_at_pause()
            continue
        assert record is not None or isinstance(plan, Attempt)
        if isinstance(plan, CloseInterrupted):
            assert record is not None
            _close_interrupted(life, record, resolved)
        elif isinstance(plan, GiveUp):
            assert record is not None
            record.state, record.error, record.ended = StepState.FAILED, plan.error, life.now()
            await life.commit(life.store.end_step(life.pk, life.epoch, record, record.state))
            life.emit("step_failed", record.display_name, attempt=plan.attempts, error=plan.error)
            raise StepError(name, plan.error["name"], plan.error["message"], plan.attempts)
        elif isinstance(plan, WaitRetry):
            with life.waiter(plan.until) as wait:
                await wait.sleep()
        else:
            record = await _attempt(life, name, count, record, plan.number, resolved, callback)


async def _sleep(life: Life, name: str, duration: Duration) -> None:
    check_step_name(name, life.host.limits)
    seconds = to_seconds(duration, f'duration of sleep "{name}"')
    _check_max_sleep(life, name, seconds)
    count, record = life.identify(name, StepKind.SLEEP)
    if life.rollbacks.replaying or (record is not None and record.state is StepState.SUCCEEDED):
        return
    await life.hold_at_pause()
    now = life.now()
    if record is None:
        record = StepRecord(name, count, StepKind.SLEEP, now, wake_at=now + seconds)
        record.duration = seconds
        _maybe_skip_sleep(life, record)
        life.lazily(life.store.start_step(life.pk, life.epoch, record))
    elif record.duration is not None and not math.isclose(record.duration, seconds):
        # The code now asks for another duration (an edit and a reload): sleep anew from now.
        record.wake_at, record.duration, record.started = now + seconds, seconds, now
        life.lazily(life.store.update_step_timer(life.pk, life.epoch, record, started=now))
    await _finish_sleep(life, record)


async def _sleep_until(life: Life, name: str, when: datetime | float) -> None:
    check_step_name(name, life.host.limits)
    target = to_epoch(when, name)
    count, record = life.identify(name, StepKind.SLEEP)
    if life.rollbacks.replaying or (record is not None and record.state is StepState.SUCCEEDED):
        return
    await life.hold_at_pause()
    now = life.now()
    if record is None:
        _check_max_sleep(life, name, target - now)
        record = StepRecord(name, count, StepKind.SLEEP, now, wake_at=target)
        _maybe_skip_sleep(life, record)
        life.lazily(life.store.start_step(life.pk, life.epoch, record))
    await _finish_sleep(life, record)


async def _wait_for_event(
    life: Life, name: str, event_type: str, timeout: Duration
) -> WorkflowStepEvent:
    limits = life.host.limits
    check_step_name(name, limits)
    check_identifier(event_type, "event type", limits.id_length)
    seconds = to_seconds(timeout, f'timeout of wait "{name}"')
    if not limits.event_timeout_min <= seconds <= limits.event_timeout_max:
        raise ValidationError(
            f'timeout of wait "{name}" must be from {exact_duration(limits.event_timeout_min)} '
            f"to {exact_duration(limits.event_timeout_max)}, got {exact_duration(seconds)}"
        )
    count, record = life.identify(name, StepKind.WAIT)
    if life.rollbacks.replaying:
        return rollback.replayed_wait(name, record)  # type: ignore[no-any-return]
    if record is None or record.state is StepState.RUNNING:
        await life.hold_at_pause()
    forced_timeout = False
    if record is None:
        now = life.now()
        record = StepRecord(name, count, StepKind.WAIT, now, wake_at=now + seconds)
        record.event_type, record.duration = event_type, seconds
        life.lazily(life.store.start_step(life.pk, life.epoch, record))
        life.emit("waiting_event", record.display_name, event_type=event_type, until=record.wake_at)
        if life.intercept is not None:
            begun = await life.intercept.wait_begins(_call(life, record), event_type)
            forced_timeout = begun == "timeout"
            life.check_alive()
    if forced_timeout:
        await _time_out_wait(life, record)
    if record.state is StepState.SUCCEEDED:
        return _received(record)
    if record.state is StepState.FAILED:
        error = record.error or _event_timeout(record)
        raise StepError(name, error["name"], error["message"], 1)
    deadline = record.wake_at if record.wake_at is not None else life.now()
    with life.waiter(deadline, event_type) as wait:
        while True:
            event = await _take_event(life, record)
            if event is not None:
                record.state, record.output = StepState.SUCCEEDED, event.payload
                record.event_time = event.received
                life.emit("event_received", record.display_name, event_type=event_type)
                _maybe_killed(life, record)
                return _received(record)
            woke = await wait.sleep()
            if woke == "timer" and life.now() >= deadline:
                break
    # One last look: an event may have come in just as the timer fired.
    event = await _take_event(life, record)
    if event is not None:
        record.state, record.output, record.event_time = (
            StepState.SUCCEEDED,
            event.payload,
            event.received,
        )
        life.emit("event_received", record.display_name, event_type=event_type)
        _maybe_killed(life, record)
        return _received(record)
    await _time_out_wait(life, record)


async def _time_out_wait(life: Life, record: StepRecord) -> NoReturn:
    """The wait's time is up: record its timeout error and raise it."""
    error = _event_timeout(record)
    record.state, record.error, record.ended = StepState.FAILED, error, life.now()
    await life.commit(life.store.end_step(life.pk, life.epoch, record, record.state))
    _maybe_killed(life, record)
    life.emit("step_failed", record.display_name, error=error)
    raise StepError(record.name, error["name"], error["message"], 1)


async def _take_event(life: Life, record: StepRecord) -> EventRecord | None:
    """The buffered event this wait now receives, if there is one. A pause the database has
    acknowledged holds it first, though word of the pause may not have reached this process
    yet (a wf serve worker hears through its server)."""
    while True:
        taken = await life.commit(life.store.consume_event(life.pk, life.epoch, record, life.now()))
        if taken != PAUSING:
            event: EventRecord | None = taken
            return event
        life.request_pause()
        await life.hold_at_pause()


def split_do_args(name: str, args: tuple[Any, ...]) -> tuple[Any, Callable[..., Any]]:
    if len(args) == 1:
        config_arg, callback = None, args[0]
    elif len(args) == 2:
        config_arg, callback = args
    else:
        raise ValidationError(
            f'step.do("{name}", ...) takes a callback, or a config and a callback; '
            f"got {len(args)} arguments after the name"
        )
    if not callable(callback):
        raise ValidationError(
            f'step.do("{name}", ...): the callback must be callable, got {type(callback).__name__}'
        )
    return config_arg, callback


def _close_interrupted(life: Life, record: StepRecord, resolved: ResolvedConfig) -> None:
    """The last attempt started and never ended: count it as failed, retry at once. One that a
    refused database write cut short (in this process) does not count. The last attempt the
    step had is not retried: the step fails next, and says so itself."""
    attempt = record.attempts[-1]
    now = life.now()
    attempt.ended, attempt.success, attempt.error = now, False, dict(INTERRUPTED)
    cut_short = life.host.scheduler.store_failures.get(life.pk, set())
    if record.key in cut_short:
        cut_short.discard(record.key)
        attempt.uncounted = True
        attempt.error = dict(STORE_REFUSED)
    record.wake_at = now  # the engine's crash says nothing about the dependency: no backoff
    life.lazily(life.store.end_attempt(life.pk, life.epoch, record, attempt))
    if retries_left(record, resolved):
        life.emit(
            "attempt_failed",
            record.display_name,
            attempt=attempt.number,
            error=attempt.error,
            delay=0.0,
        )


async def _attempt(
    life: Life,
    name: str,
    count: int,
    record: StepRecord | None,
    number: int,
    resolved: ResolvedConfig,
    callback: Callable[..., Any],
) -> StepRecord:
    """Run one attempt; its start is recorded before the body runs, its outcome durable before
    we return."""
    task = await life.begin_op()
    tracer = life.host.tracer
    traced: tuple[object, StepRecord, AttemptRecord] | None = None
    try:
        now = life.now()
        first = record is None or not record.attempts  # a rollback's record comes new
        if record is None:
            record = StepRecord(name, count, StepKind.DO, now, config=config.to_json(resolved))
        else:
            record.config = config.to_json(resolved)
        attempt = AttemptRecord(number, now)
        record.attempts.append(attempt)
        if tracer is not None:
            traced = (tracer.attempt_began(life.trace, name, count, number), record, attempt)
        await life.commit(
            life.store.start_attempt(life.pk, life.epoch, record, attempt, first=first)
        )
        error: ErrorInfo | None = None
        raised: BaseException | None = None  # what a delay function gets as the error
        non_retryable = False
        text: str | None = None
        life.attempts[record.key] = (record, attempt)  # a graceful stop records it cut short
        meter = CpuMeter()
        try:
            scheduler = life.host.scheduler
            while True:
                # Still ours? After a freeze past the lease, another process may have run it.
                if not scheduler.lease_sure():  # rare: no coroutine per step while it is fresh
                    await scheduler.confirm_lease(life)
                try:
                    if life.intercept is None:
                        value = await _run_callback(life, callback, record, number, resolved, meter)
                    else:
                        value = await _intercepted(life, callback, record, number, resolved, meter)
                    break
                except _LeaseLapsed:  # while it waited for a thread: renew, then begin
                    continue
            text = _encode_output(life, record, value)
        except NonRetryableError as exc:
            error, non_retryable = exception_info(exc), True
        except _StepOutputProblem as exc:
            error, non_retryable = error_info("StepOutputError", exc.message), not exc.retryable
        except _AttemptTimedOut:
            error = error_info(
                "WorkflowTimeoutError",
                f"attempt {number} timed out after {format_duration(resolved.timeout)}",
            )
        except Exception as exc:
            error, raised = exception_info(exc), exc
        finally:
            life.attempts.pop(record.key, None)
        now = life.now()
        attempt.ended, attempt.success, attempt.error = now, error is None, error
        attempt.cpu = meter.measured
        # The attempt's own wall time, and the CPU time its body used.
        took: dict[str, float] = {"ms": (now - attempt.started) * 1000}
        if attempt.cpu is not None:
            took["cpu_ms"] = attempt.cpu * 1000
        if error is None:
            record.state, record.output, record.ended = StepState.SUCCEEDED, text, now
            await life.commit(
                life.store.end_attempt(life.pk, life.epoch, record, attempt, record.state)
            )
            _maybe_killed(life, record)
            # Since the first attempt counts retry waits and downtime.
            if number > 1:
                took["total_ms"] = (now - record.started) * 1000
            life.emit("step_done", record.display_name, attempt=number, **took)
            return record
        counted = sum(1 for a in record.attempts if not a.uncounted)
        delay = 0.0
        if not non_retryable and counted <= resolved.limit:
            try:
                delay = await _next_delay(record, number, resolved, counted, error, raised)
            except retry_delays.DelayFunctionFailed as failed:  # the attempt keeps its own error
                error, non_retryable = failed.error, True
        record.non_retryable = non_retryable
        if non_retryable or counted > resolved.limit:
            record.state, record.error, record.ended = StepState.FAILED, error, now
            await life.commit(
                life.store.end_attempt(life.pk, life.epoch, record, attempt, record.state)
            )
            _maybe_killed(life, record)
            life.emit("step_failed", record.display_name, attempt=number, error=error, **took)
            raise StepError(name, error["name"], error["message"], len(record.attempts))
        if life.intercept is not None and life.intercept.skip_retry_delay(_call(life, record)):
            delay = 0.0
        record.wake_at = now + delay
        life.lazily(life.store.end_attempt(life.pk, life.epoch, record, attempt))
        life.emit(
            "attempt_failed", record.display_name, attempt=number, error=error, delay=delay, **took
        )
        return record
    finally:
        life.end_op(task)
        if traced is not None:
            assert tracer is not None
            span, traced_record, traced_attempt = traced
            outcome = attempt_outcome(traced_record, traced_attempt)
            tracer.attempt_ended(span, outcome, traced_attempt.error)


async def _next_delay(
    record: StepRecord,
    number: int,
    resolved: ResolvedConfig,
    counted: int,
    error: ErrorInfo,
    raised: BaseException | None,
) -> float:
    """The wait before the next attempt; a delay function, if the step has one, is asked."""
    if resolved.delay_function is None:
        return config.retry_delay(resolved, counted)
    context = StepContext(record.name, record.count, number, resolved.as_step_config())
    exc = raised if raised is not None else retry_delays.AttemptFailed(error)
    return await retry_delays.next_delay(resolved, counted, context, exc)


def _call(life: Life, record: StepRecord) -> StepCall:
    return life.call(record.kind, record.name, record.count)


def _maybe_killed(life: Life, record: StepRecord) -> None:
    """The step's outcome is durable: the test kit may kill the life right here."""
    if life.intercept is not None and life.intercept.kill_after(_call(life, record)):
        life.kill()


async def _intercepted(
    life: Life,
    callback: Callable[..., Any],
    record: StepRecord,
    number: int,
    resolved: ResolvedConfig,
    meter: CpuMeter,
) -> Any:
    """An attempt the test kit may answer instead of the body (a mocked result or error, a
    forced timeout)."""
    assert life.intercept is not None
    answer = life.intercept.attempt(_call(life, record), number)
    if answer is None:
        return await _run_callback(life, callback, record, number, resolved, meter)
    if isinstance(answer, MockedResult):
        return answer.value
    if isinstance(answer, MockedError):
        if isinstance(answer.error, Exception):
            raise answer.error
        raise EscapedBaseException(answer.error)
    raise _AttemptTimedOut()


class _LeaseLapsed(Exception):
    """A worker thread took a body when this process's claims were no longer sure (the body
    waited for a thread while the process was frozen): it did not begin it."""


def _unless_lapsed(life: Life, body: Callable[[], Any]) -> Callable[[], Any]:
    """``body``, begun in its worker thread only while the lease is sure (checked there: a body
    waiting for a free thread begins as soon as one is free, without the loop's say)."""
    scheduler = life.host.scheduler

    def guarded() -> Any:
        if not scheduler.lease_sure():
            raise _LeaseLapsed()
        return body()

    return guarded


class _StepOutputProblem(Exception):
    """The body's result cannot be stored. Too large is a failed attempt, retried as Cloudflare
    does (the next attempt may return less); not JSON at all, the same every time, is not."""

    def __init__(self, message: str, retryable: bool) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable


def _encode_output(life: Life, record: StepRecord, value: Any) -> str:
    try:
        text = codec.encode(value)
    except codec.NotSerialisable as exc:
        raise _StepOutputProblem(
            f'step "{record.display_name}" returned a value that cannot be stored as JSON: '
            f"{exc.at('result')}",
            retryable=False,
        ) from None
    size = codec.encoded_size(text)
    limit = life.host.limits.step_output_bytes
    if size > limit:
        raise _StepOutputProblem(
            f'step "{record.display_name}" returned {size:,} bytes of JSON; the limit is '
            f"{limit:,} bytes",
            retryable=True,
        )
    return text


async def _run_callback(
    life: Life,
    callback: Callable[..., Any],
    record: StepRecord,
    number: int,
    resolved: ResolvedConfig,
    meter: CpuMeter,
) -> Any:
    """Run the body with a per-attempt timeout, counting its CPU time in ``meter``. An async
    body is cancelled when it times out; a sync one runs in a worker thread (see
    ``_from_thread``) and is abandoned (a thread cannot be killed). Time spent waiting for a
    free worker thread does not count toward the timeout."""
    is_async, wants_context = _inspect_callback(callback)
    args: tuple[Any, ...] = ()
    if wants_context:
        args = (StepContext(record.name, record.count, number, resolved.as_step_config()),)
    timeout = resolved.timeout
    awaitable: Awaitable[Any]
    if is_async:
        awaitable = Metered(callback(*args), meter)
    else:
        sync_body = _unless_lapsed(life, functools.partial(callback, *args))
        job = None
        if not life.host.threads.free():  # wait for a thread outside the attempt's time
            job = life.host.threads.submit(sync_body)
            await _thread_started(life, job)
        awaitable = _from_thread(life, sync_body, _speed_key(callback), job, timeout, meter)
    if isinstance(life.clock, SystemClock):  # the common case: await it right here
        return await _run_here(life, awaitable, timeout)
    body = asyncio.ensure_future(contain(awaitable))  # a test's clock: race it against a timer
    timer = asyncio.ensure_future(life.clock.sleep_until(life.now() + timeout))
    try:
        done, _ = await asyncio.wait({body, timer}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        timer.cancel()
        if not body.done():
            body.cancel()
    if body not in done:
        raise _AttemptTimedOut()
    return body.result()


class _Deadline:
    """Cancels the task running an async body when its attempt's time is up."""

    __slots__ = ("expired", "task")

    def __init__(self, task: asyncio.Task[Any]) -> None:
        self.task = task
        self.expired = False

    def __call__(self) -> None:
        self.expired = True
        self.task.cancel()

    def absorb(self) -> None:
        """The cancellation was ours: take it back, so the task is not left marked cancelling
        (an enclosing ``asyncio.timeout`` of the user's would take it for its own)."""
        uncancel = getattr(self.task, "uncancel", None)  # Python 3.11+
        if uncancel is not None:
            uncancel()


async def _run_here(life: Life, body: Awaitable[Any], timeout: float) -> Any:
    """Await an async body in the calling task (no task of its own: one event-loop hop less per
    step), cancelling it when the attempt times out."""
    task = asyncio.current_task(life.loop)
    assert task is not None
    deadline = _Deadline(task)
    timer = life.loop.call_later(timeout, deadline)
    try:
        result = await body
    except asyncio.CancelledError:
        if deadline.expired and not life.has_ended:
            deadline.absorb()
            raise _AttemptTimedOut() from None
        raise
    except (EngineSignal, Exception):
        raise
    except BaseException as exc:  # SystemExit and the like must not stop the event loop
        raise EscapedBaseException(exc) from None
    finally:
        timer.cancel()
    if deadline.expired:  # the body swallowed the cancellation and returned
        deadline.absorb()
        raise _AttemptTimedOut()
    return result


async def _thread_started(life: Life, job: Job) -> None:
    """Wait (without a timeout) until a worker thread took the job."""
    loop = life.loop
    started: asyncio.Future[None] = loop.create_future()

    def signal() -> None:
        _call_on(loop, _set_done, started)

    life.host.threads.when_started(job, signal)
    try:
        await started
    except asyncio.CancelledError:
        life.host.threads.abandon(job)
        raise


def _set_done(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


# How long the loop's thread may wait in place for a ``def`` body that was quick last time,
# when the loop has nothing else ready to run: about what a step costs the loop anyway. The wait
# spares the thread's wake-up of the loop (a self-pipe write, an epoll return, two loop turns),
# most of what a thread hop costs beyond the two threads' own wake-ups. Longer, the loop goes
# back to its work and the thread hands it the outcome when it has it.
WAIT_IN_PLACE = 0.0005

_SLOW: set[object] = set()  # bodies (by code) not to wait for: the last one outlasted the wait


async def _from_thread(
    life: Life,
    body: Callable[[], Any],
    key: object,
    job: Job | None,
    timeout: float,
    meter: CpuMeter,
) -> Any:
    """Run a sync body in a worker thread (``job``: submitted already) in the step's own task,
    with no future chained to another: wait for it in place if it may be quick, else await the
    thread's word. Submitted here, just before the loop's thread waits: woken any earlier, the
    worker would only wait for it to let go of the GIL. Cancelled (timed out, or the life
    ended), the step abandons the thread."""
    threads = life.host.threads
    waited = False
    if job is None:
        job = threads.submit(body)
        if _may_wait(life, key):
            waited = job.wait(min(WAIT_IN_PLACE, timeout))  # not past the attempt's time
            if not waited:
                _remember(key, slow=True)
    if not waited:
        loop = life.loop
        finished: asyncio.Future[None] = loop.create_future()
        if threads.deliver_to(job, functools.partial(_call_on, loop, _set_done, finished)):
            try:
                await finished
            except asyncio.CancelledError:
                threads.abandon(job)  # it finishes alone
                raise
    _remember(key, slow=job.seconds > WAIT_IN_PLACE)
    meter.seconds += job.cpu
    meter.ended = True
    if job.error is not None:
        raise job.error
    result = job.result
    if inspect.isawaitable(result):  # e.g. lambda: fetch(url) with an async fetch
        meter.ended = False
        result = await Metered(result, meter)
    return result


def _remember(key: object, *, slow: bool) -> None:
    if not slow:
        _SLOW.discard(key)
        return
    if len(_SLOW) > 4096:
        _SLOW.clear()
    _SLOW.add(key)


def _may_wait(life: Life, key: object) -> bool:
    """Whether the loop's thread may wait in place for the body: it was quick last time, and
    the loop has nothing ready to run but (at most) the writer's flush."""
    if key in _SLOW:
        return False
    ready = getattr(life.loop, "_ready", None)  # asyncio's own loop; others never wait
    return ready is not None and len(ready) <= 1


def _speed_key(callback: Callable[..., Any]) -> object:
    """What a body's speed is remembered by: its code (a lambda's is the same on every call)."""
    code = getattr(callback, "__code__", None)
    return code if code is not None else type(callback)


def _call_on(loop: asyncio.AbstractEventLoop, fn: Callable[..., None], *args: Any) -> None:
    """Schedule ``fn`` on ``loop`` from another thread, unless the loop is gone."""
    if not loop.is_closed():
        with contextlib.suppress(RuntimeError):  # it closed just now
            loop.call_soon_threadsafe(fn, *args)


async def contain(awaitable: Awaitable[T]) -> T:
    """Await user code; a ``BaseException`` it raises (not a cancellation) becomes an ordinary
    error. Escaping a task, ``SystemExit`` would stop the event loop and every instance on it."""
    try:
        return await awaitable
    except (asyncio.CancelledError, EngineSignal):
        raise
    except Exception:
        raise
    except BaseException as exc:
        raise EscapedBaseException(exc) from None


_CALLBACK_CACHE: dict[tuple[object, int], tuple[bool, bool]] = {}


def _inspect_callback(callback: Callable[..., Any]) -> tuple[bool, bool]:
    """(is it async, does it take a ``StepContext``). Cached per code object for plain functions
    (lambdas are made afresh on every call; their code is not)."""
    code = getattr(callback, "__code__", None)
    if code is None or not inspect.isfunction(callback):
        return _is_async(callback), _takes_context(callback)
    key = (code, len(callback.__defaults__ or ()))
    found = _CALLBACK_CACHE.get(key)
    if found is None:
        if len(_CALLBACK_CACHE) > 4096:
            _CALLBACK_CACHE.clear()
        found = _CALLBACK_CACHE[key] = (_is_async(callback), _takes_context(callback))
    return found


def _is_async(callback: Callable[..., Any]) -> bool:
    return inspect.iscoroutinefunction(callback) or inspect.iscoroutinefunction(
        getattr(callback, "__call__", None)  # noqa: B004 - an async __call__ counts
    )


def _takes_context(callback: Callable[..., Any]) -> bool:
    """Whether the callback wants a ``StepContext``: it has a positional parameter without a
    default."""
    try:
        signature = inspect.signature(callback)
    except (TypeError, ValueError):
        return False
    for parameter in signature.parameters.values():
        if parameter.kind is inspect.Parameter.VAR_POSITIONAL:
            return True
        if (
            parameter.kind
            in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
            and parameter.default is inspect.Parameter.empty
        ):
            return True
    return False


def _maybe_skip_sleep(life: Life, record: StepRecord) -> None:
    """The test kit may end a new sleep at once (its asked-for duration stays recorded, so a
    replay finds the same sleep)."""
    if life.intercept is not None and life.intercept.skip_sleep(_call(life, record)):
        record.wake_at = record.started


async def _finish_sleep(life: Life, record: StepRecord) -> None:
    assert record.wake_at is not None
    if record.wake_at > life.now():
        life.emit("sleeping", record.display_name, until=record.wake_at)
        with life.waiter(record.wake_at) as wait:
            await wait.sleep()
    record.state, record.ended = StepState.SUCCEEDED, life.now()
    # Due then, ended now: in memory, or after a wake-up, claim and replay from hibernation.
    life.host.counters.timer_lateness.observe(max(0.0, record.ended - record.wake_at))
    ended = life.store.end_step(life.pk, life.epoch, record, record.state)
    life.lazily(ended)
    if life.intercept is not None and life.intercept.kill_after(_call(life, record)):
        await life.commit(ended)
        life.kill()


def _check_max_sleep(life: Life, name: str, seconds: float) -> None:
    limit = life.host.limits.sleep_seconds
    if seconds > limit:
        raise ValidationError(
            f'sleep "{name}" is {exact_duration(seconds)} long; the limit is '
            f"{exact_duration(limit)}"
        )


def to_epoch(when: object, name: str) -> float:
    if isinstance(when, datetime):
        if when.tzinfo is None or when.utcoffset() is None:
            raise ValidationError(
                f'sleep_until("{name}", ...) needs an aware datetime (with a timezone); '
                "use datetime.now(timezone.utc) rather than datetime.now()"
            )
        return when.timestamp()
    if isinstance(when, (int, float)) and not isinstance(when, bool) and math.isfinite(when):
        return float(when)
    raise ValidationError(
        f'sleep_until("{name}", ...) takes an aware datetime or epoch seconds, '
        f"got {type(when).__name__}"
    )


def _received(record: StepRecord) -> WorkflowStepEvent:
    assert record.event_type is not None
    received = record.event_time if record.event_time is not None else record.started
    return WorkflowStepEvent(record.event_type, codec.decode(record.output), to_datetime(received))


def _event_timeout(record: StepRecord) -> ErrorInfo:
    waited = format_duration(record.duration) if record.duration else "its timeout"
    return {
        "name": "WorkflowTimeoutError",
        "message": f'waited {waited} for an event of type "{record.event_type}"',
    }
