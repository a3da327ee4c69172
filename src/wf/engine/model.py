"""Plain data the engine and its stores share. No I/O here."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal

from wf.durations import Duration


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

    @property
    def cloudflare_type(self) -> str:
        return {"do": "step", "sleep": "sleep", "wait": "waitForEvent"}[self.value]


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
    UNKNOWN = "unknown"


Backoff = str  # "constant" | "linear" | "exponential"


@dataclass(frozen=True)
class RetryConfig:
    """How a step retries: ``limit`` retries after the first attempt, ``delay`` before each."""

    limit: int = 5
    delay: Duration = "10 seconds"
    backoff: Backoff = "exponential"


@dataclass(frozen=True)
class StepConfig:
    """Configuration of one ``step.do``; ``timeout`` applies to each attempt."""

    retries: RetryConfig | dict[str, Any] | None = None
    timeout: Duration = "10 minutes"


@dataclass(frozen=True)
class ResolvedConfig:
    """A step config with every default filled in and every duration in seconds."""

    limit: int
    delay: float
    backoff: Backoff
    timeout: float

    def as_step_config(self) -> StepConfig:
        return StepConfig(RetryConfig(self.limit, self.delay, self.backoff), self.timeout)


@dataclass(frozen=True)
class StepContext:
    """What a step callback may take as its one argument."""

    step_name: str
    count: int
    attempt: int
    config: StepConfig


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
class WorkflowEvent:
    """The first argument of ``run()``: the params the instance was created with, and who it is.
    ``schedule``: the cron and firing time, for an instance a schedule created (else None)."""

    payload: Any
    timestamp: datetime
    instance_id: str
    workflow_name: str
    schedule: WorkflowSchedule | None = None


@dataclass(frozen=True)
class WorkflowStepEvent:
    """What ``step.wait_for_event`` returns."""

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
class NewInstance:
    workflow: str
    id: str
    params: str  # JSON text
    trigger: str
    version_id: str
    created: float


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
