"""The engine: workflows, their instances, and the controls the API and bindings use."""

from __future__ import annotations

import inspect
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from wf.durations import Duration, to_seconds
from wf.engine.bindings import Env, WorkflowBinding
from wf.engine.clock import Clock, SystemClock
from wf.engine.controller import Controller
from wf.engine.counters import EngineStats, WriteStats, snapshot
from wf.engine.cron import BadSchedule, check_schedules
from wf.engine.entrypoint import WorkflowEntrypoint
from wf.engine.firing import Firings, schedules_of
from wf.engine.flow import NO_FLOW, FlowControl
from wf.engine.intercept import Interceptor
from wf.engine.limits import DEFAULT_LIMITS, Limits, check_identifier
from wf.engine.model import InstanceRow
from wf.engine.retention import NO_RETENTION, Retention
from wf.engine.runner import Notice, StopCause
from wf.engine.scheduler import Scheduler, Slots
from wf.engine.store.base import Store
from wf.engine.threads import StepThreadPool
from wf.engine.tracing import Tracer
from wf.engine.version import version_of_classes
from wf.errors import ValidationError

log = logging.getLogger("wf.engine")

MAX_STEP_LIMIT = 25_000


@dataclass(frozen=True)
class WorkflowSpec:
    """One configured workflow: its name, its class, and the binding name other code uses."""

    name: str
    cls: type[WorkflowEntrypoint]
    binding: str | None = None
    step_limit: int = DEFAULT_LIMITS.steps
    default_retention: Retention = NO_RETENTION  # wf.toml's default_retention
    schedules: tuple[str, ...] = ()  # cron expressions (UTC): each firing creates an instance
    flow: FlowControl = NO_FLOW  # concurrency and rate limits (wf.engine.flow)


@dataclass(frozen=True)
class EngineSettings:
    """Tunables; every one has Cloudflare's default (or DESIGN's) and is validated by the engine."""

    concurrency: int = 1000
    retention: Duration = "7 days"  # Cloudflare's for workflows made since 2026-09-10
    hibernate_after: Duration = 1.0
    lease: float = 30.0
    poll_interval: float = 2.0
    limits: Limits = field(default_factory=Limits)

    @property
    def retention_seconds(self) -> float:
        return to_seconds(self.retention, "retention")

    def check(self) -> None:
        if isinstance(self.concurrency, bool) or not isinstance(self.concurrency, int):
            raise ValidationError(f"concurrency must be an integer, got {self.concurrency!r}")
        if self.concurrency < 1:
            raise ValidationError(f"concurrency must be at least 1, got {self.concurrency}")
        if self.retention_seconds <= 0:
            raise ValidationError("retention must be longer than zero")
        to_seconds(self.hibernate_after, "hibernate_after")
        for name in ("lease", "poll_interval"):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not math.isfinite(value)
                or value <= 0
            ):
                raise ValidationError(f"{name} must be a positive number of seconds, got {value!r}")


def check_spec(spec: WorkflowSpec, limits: Limits) -> None:
    check_identifier(spec.name, "workflow name", limits.workflow_name_length)
    cls: object = spec.cls  # configs come from user files: check what the types promise
    if not (isinstance(cls, type) and issubclass(cls, WorkflowEntrypoint)):
        raise ValidationError(f'workflow "{spec.name}": {spec.cls!r} is not a WorkflowEntrypoint')
    if not inspect.iscoroutinefunction(spec.cls.run):
        raise ValidationError(
            f'workflow "{spec.name}": {spec.cls.__name__}.run must be "async def run(self, '
            'event, step)"'
        )
    if spec.binding is not None and not spec.binding.isidentifier():
        raise ValidationError(
            f'workflow "{spec.name}": binding "{spec.binding}" is not a valid Python identifier'
        )
    if isinstance(spec.step_limit, bool) or not isinstance(spec.step_limit, int):
        raise ValidationError(f'workflow "{spec.name}": limits.steps must be an integer')
    if spec.schedules:
        try:
            check_schedules(spec.schedules)
        except BadSchedule as exc:
            where = "schedules" if exc.index is None else f"schedules[{exc.index}]"
            raise ValidationError(f'workflow "{spec.name}": {where} {exc.problem}') from None
    if not 1 <= spec.step_limit <= MAX_STEP_LIMIT:
        raise ValidationError(
            f'workflow "{spec.name}": limits.steps must be from 1 to {MAX_STEP_LIMIT}, '
            f"got {spec.step_limit}"
        )


class Engine(Controller):
    """Runs the instances of a set of workflows on a store.

    ``await engine.start()`` recovers whatever a previous process left unfinished and starts
    scheduling; ``await engine.stop()`` releases every instance this process holds (they continue
    in the next process). ``engine.env`` holds the bindings, usable from any code.

    ``pinned``: run only instances created under this engine's ``version_id`` (a ``wf serve``
    worker runs one version; ``wf dev`` runs every instance on the current code). ``owns_store``:
    this process owns the database, so it frees every claim on start and purges instances past
    retention (workers sharing a database leave both to their server). ``owner``: this process's
    claim owner id. ``interceptor``: a test kit's hooks (``wf.testing``). ``tracer``: told of
    every life and step attempt (``wf.server.tracing``); None, the default, traces nothing.
    """

    def __init__(
        self,
        store: Store,
        workflows: Sequence[WorkflowSpec],
        *,
        vars: Mapping[str, Any] | None = None,
        clock: Clock | None = None,
        settings: EngineSettings | None = None,
        version_id: str | None = None,
        on_notice: Callable[[Notice], None] | None = None,
        pinned: bool = False,
        owns_store: bool = True,
        owner: str | None = None,
        interceptor: Interceptor | None = None,
        tracer: Tracer | None = None,
    ) -> None:
        self.settings = settings or EngineSettings()
        self.settings.check()
        super().__init__(store, clock or SystemClock(), self.settings.limits, on_notice)
        self.hibernate_after = to_seconds(self.settings.hibernate_after, "hibernate_after")
        self.specs: dict[str, WorkflowSpec] = {}
        bindings: dict[str, Any] = {}
        for spec in workflows:
            check_spec(spec, self.limits)
            if spec.name in self.specs:
                raise ValidationError(f'workflow "{spec.name}" is configured twice')
            self.specs[spec.name] = spec
            if spec.binding is not None:
                if spec.binding in bindings:
                    raise ValidationError(f'binding "{spec.binding}" is used by two workflows')
                bindings[spec.binding] = WorkflowBinding(self, spec.name)
        for key in vars or {}:
            if key in bindings:
                raise ValidationError(f'var "{key}" has the same name as a workflow binding')
        self.env = Env({**dict(vars or {}), **bindings})
        self.version_id = version_id or version_of_classes([s.cls for s in workflows])
        self.pinned = pinned
        self.interceptor = interceptor
        self.tracer = tracer
        self.owns_store = owns_store
        self.threads = StepThreadPool()
        self.counters = EngineStats()
        self._write_stats: WriteStats | None = None  # kept past the store's close
        self.slots = Slots(self.settings.concurrency, self._slot_freed)
        self.scheduler = Scheduler(self, self.specs, owner)
        self.notifier: LocalNotifier = LocalNotifier(self)
        # A pinned engine is a wf serve worker: its server fires the schedules.
        planned = schedules_of([(s.name, s.schedules) for s in self.specs.values()])
        self.firings = None if pinned or not planned else Firings(self, lambda: planned)

    # ---- lifecycle ----------------------------------------------------------------------------
    async def start(self, after_crash: bool = False) -> None:
        """Open the store, recover, run. ``after_crash``: the previous process died on its own
        (the dev server's child, say), so what it was running is suspected of killing it."""
        await self.store.open()
        self._write_stats = self.store.write_stats
        try:
            await self.scheduler.start(after_crash)
        except BaseException:
            await self.store.close()
            raise
        if self.firings is not None:
            self.firings.start()

    async def stop(self, grace: float = 0.0, cause: StopCause | None = None) -> None:
        """Stop running instances and close the store. With ``grace``, step attempts already
        running get up to that many seconds to finish (no new one starts), so a reload does not
        cut them short; whatever is still running then is interrupted and retried next start,
        its error saying the ``cause`` (a reload, a shutdown, a restart) when it is given."""
        if self.firings is not None:
            await self.firings.stop()
        await self.scheduler.stop(grace, cause)
        await self.store.close()

    async def __aenter__(self) -> Engine:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def stats_snapshot(self) -> dict[str, Any]:
        """This engine's figures and its writer's, as JSON (``wf.engine.counters.snapshot``)."""
        lives = self.scheduler.lives.values()
        return snapshot(
            self.counters,
            self.store.write_stats or self._write_stats,
            lives=len(lives),
            waiting_lives=sum(1 for life in lives if not life.holds_slot),
            slots_used=self.slots.used,
        )

    def _slot_freed(self) -> None:
        self.scheduler.poke()

    # ---- the controller's questions -----------------------------------------------------------
    def workflow_names(self) -> list[str]:
        return list(self.specs)

    def new_instance_version(self, workflow: str) -> str:
        return self.version_id

    def current_version(self) -> str | None:
        return self.version_id

    def describe_workflow(self, name: str) -> tuple[str | None, str]:
        spec = self.specs[name]
        return spec.binding, spec.cls.__name__

    def default_retention(self, workflow: str) -> Retention:
        spec = self.specs.get(workflow)
        return spec.default_retention if spec is not None else NO_RETENTION

    def flow_control(self, workflow: str) -> FlowControl:
        spec = self.specs.get(workflow)
        return spec.flow if spec is not None else NO_FLOW

    def workflow_schedules(self, name: str) -> tuple[str, ...]:
        return self.specs[name].schedules

    def spec(self, workflow: str) -> WorkflowSpec:
        return self.specs[self.workflow(workflow)]

    # ---- child workflows ------------------------------------------------------------------------
    def child_ended(self, child: InstanceRow) -> None:
        """A child ended in this process: the commit that ended it woke its parent if it was
        hibernating (a database trigger). A parent in memory here looks at its child again;
        this process's runner looks for the woken parent; on PostgreSQL, so does every
        process running the version (the parent may be held on another node)."""
        parent = child.parent
        if parent is None:
            return
        self.notifier.changed_parent(parent.pk)
        publish = getattr(self.store, "publish", None)
        if publish is not None:
            publish("created", {"version": child.version_id})


class LocalNotifier:
    """Changes reach the lives of this process (from any thread: they run on the engine's loop)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def created(self, workflow: str, version_id: str) -> None:
        self.engine.scheduler.poke()

    def changed(self, row: InstanceRow, change: str, event_type: str | None = None) -> None:
        self.engine.scheduler.on_loop(lambda: self.apply(row.pk, change, event_type))

    def workflow_deleted(self, workflow: str) -> None:
        def end_all() -> None:
            for life in list(self.engine.scheduler.lives.values()):
                if life.row.workflow == workflow:
                    life.end("terminated")

        self.engine.scheduler.on_loop(end_all)

    def changed_parent(self, pk: int) -> None:
        """A child of instance ``pk`` ended (on the engine's loop)."""
        self.apply(pk, "child")

    def apply(self, pk: int, change: str, event_type: str | None = None) -> None:
        """Act on a change to instance ``pk`` (on the engine's loop)."""
        life = self.engine.scheduler.lives.get(pk)
        if life is not None:
            if change == "child":
                life.notify_child()
            elif change == "pause":
                life.request_pause()
            elif change == "resume":
                life.cancel_pause()
            elif change in ("terminate", "restart", "upgrade", "delete"):
                life.end("fenced")
            elif change == "event" and event_type is not None:
                life.notify_event(event_type)
        self.engine.scheduler.poke()
