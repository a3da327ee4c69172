"""Plain data the engine and its stores share. No I/O here."""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal

from wf.durations import Duration, format_duration
from wf.engine.dictview import ReadsAsDict


class Status(str, enum.Enum):
    QUEUED = "queued"
    RUNNING = "running"
    PAUSED = "paused"
    WAITING = "waiting"
    WAITING_FOR_PAUSE = "waitingForPause"
    ERRORED = "errored"
    TERMINATED = "terminated"
    COMPLETE = "complete"

    @property
    def finished(self) -> bool:
        return self in FINISHED


FINISHED = frozenset({Status.ERRORED, Status.TERMINATED, Status.COMPLETE})


class StepKind(str, enum.Enum):
    DO = "do"
    SLEEP = "sleep"
    WAIT = "wait"
    ROLLBACK = "rollback"  # a do step's rollback handler, run as a durable step of its own
    CHILD = "child"  # step.run_workflow: a child instance, created and waited for

    @property
    def cloudflare_type(self) -> str:
        return _CLOUDFLARE_TYPES[self.value]

    @property
    def restart_type(self) -> str:
        """The name ``restart({from: {type}})`` gives this kind."""
        return {"do": "do", "sleep": "sleep", "wait": "waitForEvent", "child": "runWorkflow"}[
            self.value
        ]


_CLOUDFLARE_TYPES = {
    "do": "step",
    "sleep": "sleep",
    "wait": "waitForEvent",
    "rollback": "rollback",
    "child": "runWorkflow",
}

RESTART_TYPES = {
    "do": StepKind.DO,
    "sleep": StepKind.SLEEP,
    "waitForEvent": StepKind.WAIT,
    "runWorkflow": StepKind.CHILD,
}


class StepState(str, enum.Enum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class Trigger(str, enum.Enum):
    API = "api"
    BINDING = "binding"
    CLI = "cli"
    EVENT = "event"
    CRON = "cron"
    PARENT = "parent"  # a parent's step.run_workflow created it, or its termination ended it
    UNKNOWN = "unknown"


Backoff = str  # "constant" | "linear" | "exponential"

# ``retries.delay`` given as a function: ``(ctx, error)`` (or Cloudflare's one argument with
# ``.ctx`` and ``.error``) → seconds, a duration string or a timedelta; sync or async.
DelayFunction = Callable[..., Any]

# What a stored config shows for a delay function, as Cloudflare stores it: the function itself
# is read again from the code on every replay.
DYNAMIC_DELAY = "[dynamic]"

# What an API, describe, an export or a log shows for the output of a ``sensitive="output"`` step.
REDACTED = "[REDACTED]"


@dataclass(frozen=True)
class RetryConfig:
    """How a step retries: ``limit`` retries after the first attempt, ``delay`` before each."""

    limit: int = 5
    delay: Duration | DelayFunction = "10 seconds"
    backoff: Backoff = "exponential"


@dataclass(frozen=True)
class StepConfig:
    """Configuration of one ``step.do``; ``timeout`` applies to each attempt."""

    retries: RetryConfig | dict[str, Any] | None = None
    timeout: Duration = "10 minutes"
    sensitive: str | None = None  # "output": the output is "[REDACTED]" wherever it is shown


@dataclass(frozen=True)
class ResolvedConfig:
    """A step config with every default filled in and every duration in seconds."""

    limit: int
    delay: float  # the base delay; with a delay function, what it returned is the base instead
    backoff: Backoff
    timeout: float
    delay_function: DelayFunction | None = None
    sensitive: bool = False  # sensitive="output"

    def as_step_config(self) -> StepConfig:
        delay: Duration | DelayFunction = self.delay_function or self.delay
        retries = RetryConfig(self.limit, delay, self.backoff)
        return StepConfig(retries, self.timeout, "output" if self.sensitive else None)


@dataclass(frozen=True)
class StepContext(ReadsAsDict):
    """What a step callback may take as its one argument. It also reads as the dict Cloudflare's
    Python SDK passes: ``ctx["attempt"]``, ``ctx["step"]["name"]``, ``ctx["config"]``."""

    step_name: str
    count: int
    attempt: int
    config: StepConfig

    def as_dict(self) -> dict[str, Any]:
        return {
            "step": {"name": self.step_name, "count": self.count},
            "attempt": self.attempt,
            "config": _config_dict(self.config),
        }


def _config_dict(config: StepConfig) -> dict[str, Any]:
    """A step's config as Cloudflare's ``ctx.config`` shows it: durations in words, and no
    ``delay`` when it is a function (Cloudflare leaves it out too)."""
    retries = config.retries
    shown: dict[str, Any] = {}
    if isinstance(retries, RetryConfig):
        shown = {"limit": retries.limit, "backoff": retries.backoff}
        if not callable(retries.delay):
            shown["delay"] = _words(retries.delay)
    elif isinstance(retries, dict):
        shown = {k: v for k, v in retries.items() if not (k == "delay" and callable(v))}
    result: dict[str, Any] = {"retries": shown, "timeout": _words(config.timeout)}
    if config.sensitive is not None:
        result["sensitive"] = config.sensitive
    return result


def _words(duration: Duration) -> Any:
    return format_duration(duration) if isinstance(duration, (int, float)) else duration


@dataclass(frozen=True)
class WorkflowSchedule:
    """``event.schedule`` of an instance a cron schedule created: which cron, and the firing
    time it was created for (an aware UTC datetime; Cloudflare's ``scheduledTime`` is the same
    moment in epoch milliseconds, and ``schedule["scheduledTime"]`` reads it so)."""

    cron: str
    scheduled_time: datetime

    def __getitem__(self, key: str) -> Any:
        if key == "cron":
            return self.cron
        if key == "scheduled_time":
            return self.scheduled_time
        if key == "scheduledTime":
            return round(self.scheduled_time.timestamp() * 1000)
        raise KeyError(key)


@dataclass(frozen=True)
class WorkflowEvent(ReadsAsDict):
    """The first argument of ``run()``: the params the instance was created with, and who it is.
    It also reads as Cloudflare's dict: ``event["payload"]``, ``event["instanceId"]``,
    ``event["timestamp"]``, ``event["workflowName"]``, ``event["schedule"]``. ``schedule``: the
    cron and firing time, for an instance a schedule created (else None)."""

    payload: Any
    timestamp: datetime
    instance_id: str
    workflow_name: str
    schedule: WorkflowSchedule | None = None


@dataclass(frozen=True)
class WorkflowStepEvent(ReadsAsDict):
    """What ``step.wait_for_event`` returns; also read as a dict (``received["payload"]``)."""

    type: str
    payload: Any
    timestamp: datetime


ErrorInfo = dict[str, str]  # {"name": ..., "message": ...}

# A step's identity in its instance: (kind, name, count), the count per kind and name, as
# Cloudflare counts (a sleep named like a step does not shift the step's count).
StepKey = tuple[StepKind, str, int]


@dataclass
class AttemptRecord:
    number: int
    started: float
    ended: float | None = None
    success: bool | None = None
    error: ErrorInfo | None = None
    uncounted: bool = False  # cut short by a graceful stop: does not use up a retry
    cpu: float | None = None  # CPU seconds the body used (None: not measured, e.g. cut short)


@dataclass
class StepRecord:
    """One recorded step of an instance's history."""

    name: str
    count: int
    kind: StepKind
    started: float
    state: StepState = StepState.RUNNING
    ended: float | None = None
    output: str | None = None  # JSON text
    error: ErrorInfo | None = None
    config: dict[str, Any] | None = None
    wake_at: float | None = None  # end of a sleep, time of the next attempt, or an event deadline
    duration: float | None = None  # what a sleep asked for, to notice an edited duration
    event_type: str | None = None
    event_time: float | None = None  # when the event a wait received was sent
    non_retryable: bool = False
    attempts: list[AttemptRecord] = field(default_factory=list)

    @property
    def key(self) -> StepKey:
        return (self.kind, self.name, self.count)

    @property
    def display_name(self) -> str:
        if self.kind is StepKind.ROLLBACK:
            return f"{self.name}-{self.count} (rollback)"
        return f"{self.name}-{self.count}"


@dataclass(frozen=True)
class InstanceRow:
    """An instance as the store holds it. JSON columns stay text until someone needs them."""

    pk: int
    workflow: str
    id: str
    status: Status
    params: str
    trigger: str
    version_id: str
    created: float
    modified: float
    started: float | None = None
    ended: float | None = None
    output: str | None = None
    error: ErrorInfo | None = None
    wake_at: float | None = None
    paused_at: float | None = None
    owner: str | None = None
    lease_until: float | None = None
    epoch: int = 0
    queued: float = 0.0
    termination: str | None = None  # who terminated it: a trigger source
    crashes: int = 0  # lives in a row that ended with their process dying
    success_retention: float | None = None  # seconds kept once complete (None: the default)
    error_retention: float | None = None  # seconds kept once errored or terminated
    restarted: str | None = None  # JSON of its latest restart (``RestartRecord``)
    rollback: str | None = None  # JSON: the rollback phase, once one began (see engine.rollback)
    traceparent: str | None = None  # W3C trace context of the request that created it
    parent: ParentLink | None = None  # the instance whose step.run_workflow created it


# What a wait's attempt to take a buffered event gets while a pause is acknowledged: nothing
# completes until resume, even before word of the pause reaches the process running it.
PAUSING: Literal["pausing"] = "pausing"


@dataclass(frozen=True)
class EventRecord:
    seq: int
    type: str
    payload: str  # JSON text
    received: float
    consumed_by: tuple[str, int] | None = None


@dataclass
class History:
    """Everything recorded about one instance's current run."""

    steps: list[StepRecord] = field(default_factory=list)

    def by_key(self) -> dict[StepKey, StepRecord]:
        return {s.key: s for s in self.steps}


@dataclass(frozen=True)
class ParentLink:
    """Who created a child instance: its parent (by pk, workflow and id) and the parent's step
    (``"<name>-<count>"``) that waits for it."""

    pk: int
    workflow: str
    id: str
    step: str


@dataclass(frozen=True)
class NewInstance:
    workflow: str
    id: str
    params: str  # JSON text
    trigger: str
    version_id: str
    created: float
    success_retention: float | None = None
    error_retention: float | None = None
    priority: int = 0  # higher is claimed first
    concurrency_key: str | None = None  # read from the params (wf.engine.flow)
    rate_key: str | None = None
    traceparent: str | None = None  # W3C trace context of the request that creates it
    parent: ParentLink | None = None


@dataclass(frozen=True)
class RestartFrom:
    """Where a restart starts again: the ``count``-th step of ``kind`` named ``name``, in the
    order steps started. It and every step that started after it run again."""

    name: str
    count: int = 1
    kind: StepKind = StepKind.DO

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "count": self.count, "type": self.kind.restart_type}


@dataclass(frozen=True)
class Claim:
    """An instance this process now owns, with the fencing epoch its writes must carry."""

    row: InstanceRow
    epoch: int
    fresh: bool = False  # it never ran before: there is no history to load


@dataclass(frozen=True)
class ClaimRound:
    """What one claim round did: the instances it claimed, and those it errored instead for
    killing their process too many times in a row (the terminal says so)."""

    claims: list[Claim]
    crashed: list[InstanceRow] = field(default_factory=list)
    # Another process was claiming a flow-controlled workflow meanwhile: try again shortly.
    contended: bool = False


def to_datetime(epoch: float) -> datetime:
    """Stored times are epoch seconds; users see aware UTC datetimes."""
    return datetime.fromtimestamp(epoch, tz=timezone.utc)


@dataclass(frozen=True)
class VersionRow:
    id: str
    created: float
    active: bool
    workflows: list[dict[str, Any]]  # [{"name", "binding", "class_name"}] from its wf.toml
    files: int
    size: int
    unloaded: float | None
    retention: float | None = None  # seconds its finished instances are kept (None: the default)
