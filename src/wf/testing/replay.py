"""Replay a recorded history against a workflow's code: does the code still make the calls the
history recorded?

``await replay(Checkout, History.load("cart-1.json"))`` runs ``Checkout.run()`` with a step object
that supplies every recorded outcome and never runs a step body. It raises
``wf.NonDeterminismError`` at the first call that differs from the history (another kind, name,
count, or event type) or when a recorded step is never reached, and passes when the code only
adds steps after the recorded ones. The rules are in testing-design.md, "Replay rules".
"""

from __future__ import annotations

import asyncio
import copy
import inspect
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from wf.durations import Duration, exact_duration, format_duration, to_seconds
from wf.engine import config
from wf.engine.bindings import Env
from wf.engine.cron import schedule_of
from wf.engine.decorated import accepts_decorator_form, accepts_positional_event_type
from wf.engine.entrypoint import ExecutionContext, WorkflowEntrypoint
from wf.engine.limits import DEFAULT_LIMITS, check_identifier, check_step_name
from wf.engine.model import (
    REDACTED,
    StepKey,
    StepKind,
    StepRecord,
    StepState,
    WorkflowEvent,
    WorkflowStepEvent,
)
from wf.engine.replay import INTERRUPTED, Identities
from wf.engine.rollback import options as rollback_options

# The engine's own argument checks, shared so that replay refuses exactly what a real run refuses.
from wf.engine.step import contain, split_do_args, to_epoch
from wf.errors import (
    EngineSignal,
    NonDeterminismError,
    StepError,
    ValidationError,
    exception_info,
    quote,
)
from wf.testing.history import History, HistoryStep, describe_step

__all__ = ["ReplayResult", "ReplayStep", "replay"]


class _ReplayStopped(EngineSignal):
    """Replay reached the end of what the history can tell (a step still running there, or a
    call beyond it). A BaseException, so user code's ``except Exception`` cannot swallow it."""


@dataclass(frozen=True)
class ReplayResult:
    """How a replay that matched the history ended.

    ``replayed``: step calls that got a recorded outcome. ``new_steps``: calls beyond the
    history (0, or 1 as replay stops at the first). ``complete``: ``run()`` returned or raised
    (False when replay stopped early, at a new step or one still running in the history).
    ``output``: what ``run()`` returned; ``error``: what it raised (a recorded ``StepError`` it
    did not catch, say). ``stopped``: why replay stopped early, in words, or None.
    """

    replayed: int
    new_steps: int
    complete: bool
    output: Any = None
    error: BaseException | None = None
    stopped: str | None = None


async def replay(
    workflow_class: type[WorkflowEntrypoint],
    history: History | str | os.PathLike[str] | Mapping[str, Any],
    *,
    env: Env | Mapping[str, Any] | None = None,
) -> ReplayResult:
    """Run ``workflow_class.run()`` against a recorded ``history`` (a ``History``, a path to a
    history file, or the decoded document), supplying every recorded outcome and running no
    step body.

    ``env`` becomes the workflow's ``self.env`` (a ``wf.Env`` or a dict; empty by default). The
    ``event`` is rebuilt from the history: params, created time, instance id, workflow name.

    Raises ``wf.NonDeterminismError`` naming the first call that differs from the history, or
    the first recorded step no call reached; returns a ``ReplayResult`` otherwise.
    """
    cls = _check_class(workflow_class)
    recorded = _as_history(history)
    bindings = _as_env(env)
    replayer = _Replayer(recorded)
    event = WorkflowEvent(
        payload=copy.deepcopy(recorded.params),
        timestamp=recorded.created,
        instance_id=recorded.id,
        workflow_name=recorded.workflow,
        schedule=schedule_of(str(recorded.raw.get("trigger", "")), recorded.id),
    )
    output: Any = None
    error: BaseException | None = None
    tasks_before = asyncio.all_tasks()
    try:
        entry = cls(ExecutionContext(), bindings)
        step: Any = ReplayStep(replayer)  # duck-typed: the same methods as WorkflowStep
        output = await contain(entry.run(event, step))
    except EngineSignal as signal:
        if replayer.poison is None:  # not ours: the code raised it, as run() raising anything
            error = signal
    except Exception as exc:  # run() raised: the instance would have errored
        error = exc
    if replayer.poison is not None:
        await _let_branches_end(tasks_before)
    return replayer.finish(output, error)


async def _let_branches_end(tasks_before: set[asyncio.Task[Any]], rounds: int = 50) -> None:
    """Replay stopped inside an ``asyncio.gather``: run() is over, but its other branches are
    tasks that have yet to reach their next step call (which raises the stop again). Give them
    a few turns of the loop to end, so none outlives the replay. Tasks cannot be told apart by
    who made them, so none is cancelled: one awaiting something else is left to its owner."""
    current = asyncio.current_task()
    for _ in range(rounds):
        if all(t.done() for t in asyncio.all_tasks() - tasks_before if t is not current):
            return
        await asyncio.sleep(0)


class ReplayStep:
    """The ``step`` that ``run()`` gets on replay: ``WorkflowStep``'s methods and argument
    checks, answered from the history. No step body is ever called."""

    __slots__ = ("_decorated", "_replayer")

    def __init__(self, replayer: _Replayer) -> None:
        self._replayer = replayer
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
        """The recorded output of this step, or its recorded ``StepError`` raised again. A
        rollback handler is checked as the engine checks it, and never called."""
        check_step_name(name)
        config_arg, _body = split_do_args(name, args)
        config.resolve(name, config_arg, retries=retries, timeout=timeout)
        rollback_options(name, rollback, rollback_config)
        recorded = self._replayer.identify(StepKind.DO, name)
        if recorded.state is StepState.SUCCEEDED:
            if _redacted(recorded):
                raise self._replayer.cannot_supply(recorded)
            return copy.deepcopy(recorded.output)
        last = recorded.attempts[-1].error if recorded.attempts else None
        error = recorded.error or last or INTERRUPTED
        raise StepError(name, error["name"], error["message"], len(recorded.attempts) or 1)

    async def sleep(self, name: str, duration: Duration) -> None:
        """Returns at once if the history has this sleep finished."""
        check_step_name(name)
        seconds = to_seconds(duration, f'duration of sleep "{name}"')
        if seconds > DEFAULT_LIMITS.sleep_seconds:
            raise ValidationError(
                f'sleep "{name}" is {exact_duration(seconds)} long; the limit is '
                f"{exact_duration(DEFAULT_LIMITS.sleep_seconds)}"
            )
        self._replayer.identify(StepKind.SLEEP, name)

    async def sleep_until(self, name: str, when: datetime | float) -> None:
        """Returns at once if the history has this sleep finished."""
        check_step_name(name)
        to_epoch(when, name)
        self._replayer.identify(StepKind.SLEEP, name)

    async def run_workflow(
        self, workflow: str, params: Any = None, *, id: str | None = None, name: str | None = None
    ) -> Any:
        """The recorded output of the child this step waited for, or its recorded
        ``StepError`` raised again; no child runs."""
        step_name = name or workflow
        check_step_name(step_name)
        recorded = self._replayer.identify(StepKind.CHILD, step_name)
        if recorded.state is StepState.SUCCEEDED:
            return copy.deepcopy(recorded.output)
        error = recorded.error or INTERRUPTED
        raise StepError(step_name, error["name"], error["message"], 1)

    @accepts_positional_event_type
    async def wait_for_event(
        self, name: str, *, type: str, timeout: Duration = "24 hours"
    ) -> WorkflowStepEvent:
        """The event the history has this wait receive, or its recorded timeout (a
        ``StepError``) raised again. A wait recorded for another event type does not match."""
        limits = DEFAULT_LIMITS
        check_step_name(name)
        check_identifier(type, "event type", limits.id_length)
        seconds = to_seconds(timeout, f'timeout of wait "{name}"')
        if not limits.event_timeout_min <= seconds <= limits.event_timeout_max:
            raise ValidationError(
                f'timeout of wait "{name}" must be from '
                f"{exact_duration(limits.event_timeout_min)} to "
                f"{exact_duration(limits.event_timeout_max)}, got {exact_duration(seconds)}"
            )
        recorded = self._replayer.identify(StepKind.WAIT, name, type)
        if recorded.state is StepState.SUCCEEDED:
            when = recorded.event_time or recorded.start or self._replayer.history.created
            return WorkflowStepEvent(type, copy.deepcopy(recorded.output), when)
        waited = format_duration(recorded.duration) if recorded.duration else "its timeout"
        error = recorded.error or {  # as the engine words a timeout
            "name": "WorkflowTimeoutError",
            "message": f'waited {waited} for an event of type "{type}"',
        }
        raise StepError(name, error["name"], error["message"], 1)


def _redacted(recorded: HistoryStep) -> bool:
    """A ``sensitive="output"`` step exported with ``"[REDACTED]"`` in place of its output."""
    config = recorded.config or {}
    return config.get("sensitive") == "output" and recorded.output == REDACTED


class _Replayer:
    """Matches step calls against the history, in call order, and remembers how replay ends."""

    def __init__(self, history: History) -> None:
        self.history = history
        self.by_key: dict[StepKey, HistoryStep] = {s.identity: s for s in history.steps}
        stand_ins = {
            key: StepRecord(s.name, s.count, s.kind, 0.0, state=s.state)
            for key, s in self.by_key.items()
        }
        # Counts exactly as the engine counts; the step limit is not replay's business.
        self.identities = Identities(stand_ins, sys.maxsize)
        self.reached: set[StepKey] = set()
        self.calls = 0
        self.replayed = 0
        self.new_steps = 0
        self.stopped: str | None = None
        # Once set, every later call raises it again, and it decides how replay ends whatever
        # run() does with it (a bare ``except:`` that swallows it changes nothing).
        self.poison: EngineSignal | None = None

    def identify(self, kind: StepKind, name: str, event_type: str | None = None) -> HistoryStep:
        """The finished recorded step this call matches; raises otherwise."""
        if self.poison is not None:
            raise self.poison
        index = self.calls
        self.calls += 1
        count, stand_in = self.identities.next(name, kind)
        got = describe_step(kind, name, count)
        if stand_in is None:
            missing = self.first_unreached()
            if missing is None:
                self.new_steps = 1
                raise self.halt(f"call {index + 1}, {got}, is a step after the recorded ones")
            raise self.mismatch(
                f"call {index + 1} is {got} but the history has {missing.label} there",
                index,
                missing.label,
                got,
            )
        recorded = self.by_key[stand_in.key]
        self.reached.add(recorded.identity)
        if kind is StepKind.WAIT and recorded.event_type != event_type:
            expected = f"{recorded.label} for an event of type {quote(recorded.event_type)}"
            got = f"{got} for an event of type {quote(event_type)}"
            raise self.mismatch(
                f"call {index + 1} is {got} but the history has {expected} there",
                index,
                expected,
                got,
            )
        if recorded.state is StepState.RUNNING:
            raise self.halt(f"call {index + 1}, {got}, is still running in the history")
        self.replayed += 1
        return recorded

    def cannot_supply(self, recorded: HistoryStep) -> _ReplayStopped:
        """A step the history has without its output (redacted): replay stops there, and
        passes, as at a step still running (the code matched the history so far)."""
        self.replayed -= 1
        return self.halt(
            f'{recorded.label} has its output redacted in the history (sensitive="output"): '
            "replay cannot supply it"
        )

    def first_unreached(self) -> HistoryStep | None:
        """The first recorded step no call reached; rollbacks are no calls of ``run()``."""
        return next(
            (
                s
                for s in self.history.steps
                if s.identity not in self.reached and s.kind is not StepKind.ROLLBACK
            ),
            None,
        )

    def halt(self, why: str) -> _ReplayStopped:
        """Replay ends here and passes: the signal to raise."""
        self.stopped = why
        self.poison = _ReplayStopped(why)
        return self.poison

    def mismatch(
        self, what: str, index: int | None, expected: str | None, got: str | None
    ) -> NonDeterminismError:
        """The code does not match the history: the error to raise."""
        self.poison = signal = NonDeterminismError(
            f"history of {self.history.workflow}/{self.history.id} does not match the code: {what}",
            index=index,
            expected=expected,
            got=got,
        )
        return signal

    def finish(self, output: Any, error: BaseException | None) -> ReplayResult:
        """The result, once ``run()`` is over (or stopped)."""
        if isinstance(self.poison, NonDeterminismError):
            raise self.poison
        if self.poison is not None:
            return ReplayResult(self.replayed, self.new_steps, False, stopped=self.stopped)
        missing = self.first_unreached()
        if missing is not None:
            if error is None:
                ended = "run() returned"
            else:
                info = exception_info(error)
                ended = f"run() raised {info['name']} ({quote(info['message'])})"
            position = self.history.steps.index(missing) + 1
            raise self.mismatch(
                f"{ended} after {self.calls} step calls, but the history has "
                f"{missing.label} (step {position} of {len(self.history.steps)}), which no "
                "call reached",
                None,
                missing.label,
                None,
            ) from error
        return ReplayResult(self.replayed, 0, True, output=output, error=error)


def _check_class(value: object) -> type[WorkflowEntrypoint]:
    if not isinstance(value, type):
        hint = (
            "; pass the class itself, not an instance of it"
            if isinstance(value, WorkflowEntrypoint)
            else ""
        )
        raise TypeError(
            f"replay() takes a WorkflowEntrypoint subclass, got {type(value).__name__}{hint}"
        )
    if not issubclass(value, WorkflowEntrypoint) or value is WorkflowEntrypoint:
        raise TypeError(
            f"replay() takes a subclass of wf.WorkflowEntrypoint; {value.__name__} is not one"
        )
    if not inspect.iscoroutinefunction(value.run):
        raise TypeError(f'{value.__name__}.run must be "async def run(self, event, step)"')
    return value


def _as_history(value: object) -> History:
    if isinstance(value, History):
        return value
    if isinstance(value, (str, os.PathLike)):
        return History.load(value)
    if isinstance(value, Mapping):
        return History.from_json(value)
    raise TypeError(
        f"replay() takes a History (or a history file's path), got {type(value).__name__}"
    )


def _as_env(value: object) -> Env:
    if value is None:
        return Env({})
    if isinstance(value, Env):
        return value
    if isinstance(value, Mapping):
        return Env(value)
    raise TypeError(f"env= takes a wf.Env or a dict, got {type(value).__name__}")
