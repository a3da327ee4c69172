"""The engine: workflows, their instances, and the controls the API and bindings use."""

from __future__ import annotations

import inspect
import logging
import math
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from wf.durations import Duration, to_seconds
from wf.engine import codec, details
from wf.engine.bindings import Env, WorkflowBinding, WorkflowInstance
from wf.engine.clock import Clock, SystemClock
from wf.engine.entrypoint import WorkflowEntrypoint
from wf.engine.limits import DEFAULT_LIMITS, Limits, check_identifier
from wf.engine.model import InstanceRow, NewInstance, Status, Trigger
from wf.engine.runner import Notice
from wf.engine.scheduler import Scheduler, Slots
from wf.engine.store.base import Store
from wf.engine.threads import StepThreadPool
from wf.engine.version import version_of_classes
from wf.errors import InstanceNotFound, ValidationError, WorkflowNotFound

log = logging.getLogger("wf.engine")

MAX_STEP_LIMIT = 25_000


@dataclass(frozen=True)
class WorkflowSpec:
    """One configured workflow: its name, its class, and the binding name other code uses."""

    name: str
    cls: type[WorkflowEntrypoint]
    binding: str | None = None
    step_limit: int = DEFAULT_LIMITS.steps


@dataclass(frozen=True)
class EngineSettings:
    """Tunables; every one has Cloudflare's default (or DESIGN's) and is validated by the engine."""

    concurrency: int = 1000
    retention: Duration = "30 days"
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
    if not 1 <= spec.step_limit <= MAX_STEP_LIMIT:
        raise ValidationError(
            f'workflow "{spec.name}": limits.steps must be from 1 to {MAX_STEP_LIMIT}, '
            f"got {spec.step_limit}"
        )


class Engine:
    """Runs the instances of a set of workflows on a store.

    ``await engine.start()`` recovers whatever a previous process left unfinished and starts
    scheduling; ``await engine.stop()`` releases every instance this process holds (they continue
    in the next process). ``engine.env`` holds the bindings, usable from any code.
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
    ) -> None:
        self.settings = settings or EngineSettings()
        self.settings.check()
        self.limits = self.settings.limits
        self.hibernate_after = to_seconds(self.settings.hibernate_after, "hibernate_after")
        self.store = store
        self.clock: Clock = clock or SystemClock()
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
        self.threads = StepThreadPool()
        self.slots = Slots(self.settings.concurrency, self._slot_freed)
        self.scheduler = Scheduler(self, self.specs)
        self._on_notice = on_notice
        self.observed = on_notice is not None

    # ---- lifecycle ----------------------------------------------------------------------------
    async def start(self) -> None:
        await self.store.open()
        try:
            await self.scheduler.start()
        except BaseException:
            await self.store.close()
            raise

    async def stop(self, grace: float = 0.0) -> None:
        """Stop running instances and close the store. With ``grace``, step attempts already
        running get up to that many seconds to finish (no new one starts), so a reload does not
        cut them short; whatever is still running then is interrupted and retried next start."""
        await self.scheduler.stop(grace)
        await self.store.close()

    async def __aenter__(self) -> Engine:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ---- what a life needs (runner.Host) ------------------------------------------------------
    def emit(self, notice: Notice) -> None:
        if self._on_notice is not None:
            try:
                self._on_notice(notice)
            except Exception:  # a broken observer must not break an instance
                log.exception("notice observer failed")

    def _notice(self, kind: str, workflow: str, instance_id: str, **detail: Any) -> None:
        if self._on_notice is not None:
            self.emit(Notice(kind, workflow, instance_id, None, detail, self.clock.now()))

    def _slot_freed(self) -> None:
        self.scheduler.poke()

    # ---- instances ----------------------------------------------------------------------------
    def spec(self, workflow: str) -> WorkflowSpec:
        spec = self.specs.get(workflow)
        if spec is None:
            known = ", ".join(sorted(self.specs)) or "none"
            raise WorkflowNotFound(f'workflow "{workflow}" not found; known workflows: {known}')
        return spec

    def _new(
        self, workflow: str, instance_id: str | None, params: Any, trigger: str
    ) -> NewInstance:
        if instance_id is None:
            instance_id = str(uuid.uuid4())
        check_identifier(instance_id, "instance id", self.limits.id_length)
        text = codec.encode_payload(
            {} if params is None else params, "params", self.limits.payload_bytes
        )
        return NewInstance(workflow, instance_id, text, trigger, self.version_id, self.clock.now())

    async def create(
        self,
        workflow: str,
        id: str | None = None,
        params: Any = None,
        trigger: str = Trigger.API.value,
    ) -> WorkflowInstance:
        """Create an instance; it is on disk when this returns. A duplicate id is an error."""
        spec = self.spec(workflow)
        new = self._new(spec.name, id, params, trigger)
        await self.store.create_instances([new], skip_existing=False)
        self.scheduler.poke()
        self._notice("queued", spec.name, new.id, trigger=trigger)
        return WorkflowInstance(self, spec.name, new.id)

    async def create_batch(
        self,
        workflow: str,
        items: Sequence[Mapping[str, Any]],
        trigger: str = Trigger.API.value,
    ) -> list[WorkflowInstance]:
        """Create up to 100 instances in one commit. Ids that exist already are skipped and left
        out of the result, as Cloudflare does, so a batch can be retried safely."""
        spec = self.spec(workflow)
        given: object = items  # from JSON or user code: check what the types promise
        if not isinstance(given, (list, tuple)):
            raise ValidationError("a batch must be a list of {id, params} objects")
        if not items:
            raise ValidationError("a batch must hold at least one instance")
        if len(items) > self.limits.batch_size:
            raise ValidationError(
                f"a batch holds at most {self.limits.batch_size} instances, got {len(items)}"
            )
        new: list[NewInstance] = []
        seen: set[str] = set()
        for index, item in enumerate(items):
            if not isinstance(item, Mapping):
                raise ValidationError(f"batch[{index}] must be an object with id and params")
            unknown = set(item) - {"id", "params"}
            if unknown:
                raise ValidationError(f"batch[{index}] has unknown key {sorted(unknown)[0]!r}")
            try:
                one = self._new(spec.name, item.get("id"), item.get("params"), trigger)
            except ValidationError as exc:
                raise ValidationError(f"batch[{index}]: {exc}") from None
            if one.id not in seen:
                seen.add(one.id)
                new.append(one)
        rows = await self.store.create_instances(new, skip_existing=True)
        self.scheduler.poke()
        for row in rows:
            self._notice("queued", spec.name, row.id, trigger=trigger)
        return [WorkflowInstance(self, spec.name, row.id) for row in rows]

    async def row(self, workflow: str, instance_id: str) -> InstanceRow:
        spec = self.spec(workflow)
        if not isinstance(instance_id, str):
            raise ValidationError(f"instance id must be a string, got {type(instance_id).__name__}")
        found = await self.store.get_instance(spec.name, instance_id)
        if found is None:
            raise InstanceNotFound(f'instance "{instance_id}" not found in workflow "{spec.name}"')
        return found

    async def get(self, workflow: str, instance_id: str) -> WorkflowInstance:
        row = await self.row(workflow, instance_id)
        return WorkflowInstance(self, row.workflow, row.id)

    async def status(self, workflow: str, instance_id: str) -> dict[str, Any]:
        return details.status_of(await self.row(workflow, instance_id))

    async def details(self, workflow: str, instance_id: str) -> dict[str, Any]:
        row = await self.row(workflow, instance_id)
        history = await self.store.load_history(row.pk)
        return details.instance_details(row, history)

    async def list_instances(
        self,
        workflow: str,
        *,
        status: str | None = None,
        page: int = 1,
        per_page: int = 25,
        newest_first: bool = True,
    ) -> tuple[list[InstanceRow], int]:
        spec = self.spec(workflow)
        wanted = None
        if status is not None:
            try:
                wanted = Status(status)
            except ValueError:
                names = ", ".join(s.value for s in Status)
                raise ValidationError(f'unknown status "{status}"; use one of {names}') from None
        if not 1 <= page <= 1_000_000_000 or not 1 <= per_page <= 1000:
            raise ValidationError("page must be from 1 to 1000000000 and per_page from 1 to 1000")
        return await self.store.list_instances(
            spec.name,
            status=wanted,
            offset=(page - 1) * per_page,
            limit=per_page,
            newest_first=newest_first,
        )

    # ---- controls -----------------------------------------------------------------------------
    async def pause(self, workflow: str, instance_id: str) -> InstanceRow:
        row = await self.row(workflow, instance_id)
        row = await self.store.pause(row.pk, self.clock.now())
        if row.status is Status.WAITING_FOR_PAUSE:
            self._with_life(row.pk, lambda life: life.request_pause())
        else:
            self._notice("paused", row.workflow, row.id)
        return row

    async def resume(self, workflow: str, instance_id: str) -> InstanceRow:
        row = await self.row(workflow, instance_id)
        row = await self.store.resume(row.pk, self.clock.now())
        self._with_life(row.pk, lambda life: life.cancel_pause())
        self.scheduler.poke()
        self._notice("resumed", row.workflow, row.id)
        return row

    async def terminate(
        self, workflow: str, instance_id: str, source: str = Trigger.API.value
    ) -> InstanceRow:
        row = await self.row(workflow, instance_id)
        row = await self.store.terminate(row.pk, self.clock.now(), source)
        self._with_life(row.pk, lambda life: life.end("terminated"))
        self._notice("terminated", row.workflow, row.id, source=source)
        return row

    async def restart(self, workflow: str, instance_id: str) -> InstanceRow:
        row = await self.row(workflow, instance_id)
        row = await self.store.restart(row.pk, self.clock.now())
        self._with_life(row.pk, lambda life: life.end("restarted"))
        self.scheduler.poke()
        self._notice("restarted", row.workflow, row.id)
        return row

    async def send_event(
        self, workflow: str, instance_id: str, event_type: str, payload: Any = None
    ) -> InstanceRow:
        check_identifier(event_type, "event type", self.limits.id_length)
        text = codec.encode_payload(payload, "event payload", self.limits.payload_bytes)
        row = await self.row(workflow, instance_id)
        row, _ = await self.store.send_event(row.pk, event_type, text, self.clock.now())
        self._with_life(row.pk, lambda life: life.notify_event(event_type))
        self.scheduler.poke()
        self._notice("event_sent", row.workflow, row.id, event_type=event_type)
        return row

    def _with_life(self, pk: int, action: Callable[[Any], None]) -> None:
        def run() -> None:
            life = self.scheduler.lives.get(pk)
            if life is not None:
                action(life)

        self.scheduler.on_loop(run)

    async def delete_workflow_instances(self, workflow: str) -> int:
        spec = self.spec(workflow)
        for pk, life in list(self.scheduler.lives.items()):
            if life.row.workflow == spec.name:
                self._with_life(pk, lambda life: life.end("terminated"))
        return await self.store.delete_workflow(spec.name)
