"""Instances and their controls over a store: create, find, pause, resume, terminate, restart,
send events, upgrade. Who *runs* instances is someone else's business: after each change the
controller tells its ``Notifier``, which reaches the lives in this process (``Engine``) or in
worker processes (``wf serve``)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from wf.engine import codec, details
from wf.engine.bindings import WorkflowInstance
from wf.engine.clock import Clock
from wf.engine.cron import Cron
from wf.engine.history_json import history_json
from wf.engine.limits import Limits, check_identifier
from wf.engine.model import InstanceRow, NewInstance, Status, Trigger
from wf.engine.runner import Notice
from wf.engine.store.base import Store
from wf.errors import InstanceNotFound, InvalidTransition, ValidationError, WorkflowNotFound

log = logging.getLogger("wf.engine")


@dataclass(frozen=True)
class EncodedParams:
    """Params already encoded and size-checked by ``codec.encode_payload``: the REST API
    encodes each instance of a batch as it reads it, so a large batch is never held as objects."""

    text: str


class Notifier(Protocol):
    """**Protocol:** whoever runs instances hears of changes made through a controller."""

    def created(self, workflow: str, version_id: str) -> None: ...

    def changed(self, row: InstanceRow, change: str, event_type: str | None = None) -> None:
        """``change`` is pause, resume, terminate, restart, event or upgrade. ``row`` carries
        the owner and version from before a terminate, restart or upgrade (whoever held it then
        must let go), else the instance as the change left it."""
        ...

    def workflow_deleted(self, workflow: str) -> None: ...


class NobodyToTell:
    """A notifier for a controller with no lives to reach: a read-only view, or the API a
    reloaded ``wf dev`` serves before its engine starts (which then reads every change)."""

    def created(self, workflow: str, version_id: str) -> None:
        pass

    def changed(self, row: InstanceRow, change: str, event_type: str | None = None) -> None:
        pass

    def workflow_deleted(self, workflow: str) -> None:
        pass


class Controller:
    """The operations on instances, shared by the engine and the ``wf serve`` front end."""

    store: Store
    clock: Clock
    limits: Limits
    notifier: Notifier

    def __init__(
        self,
        store: Store,
        clock: Clock,
        limits: Limits,
        on_notice: Callable[[Notice], None] | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.limits = limits
        self._on_notice = on_notice
        self.observed = on_notice is not None

    # ---- what subclasses say --------------------------------------------------------------------
    def workflow_names(self) -> list[str]:
        raise NotImplementedError

    def new_instance_version(self, workflow: str) -> str:
        """The version new instances of ``workflow`` are created under."""
        raise NotImplementedError

    def current_version(self) -> str | None:
        """The version new instances get (None when nothing is deployed yet)."""
        return None

    def describe_workflow(self, name: str) -> tuple[str | None, str]:
        """(binding, class name) of a workflow, for listings."""
        return None, ""

    def workflow_schedules(self, name: str) -> tuple[str, ...]:
        """The cron schedules of a workflow (those new firings use), for listings."""
        return ()

    def workflow(self, name: str) -> str:
        """``name`` if such a workflow exists, else ``WorkflowNotFound`` listing the known ones."""
        names = self.workflow_names()
        if name not in names:
            known = ", ".join(sorted(names)) or "none"
            raise WorkflowNotFound(f'workflow "{name}" not found; known workflows: {known}')
        return name

    # ---- notices ---------------------------------------------------------------------------------
    def emit(self, notice: Notice) -> None:
        if self._on_notice is not None:
            try:
                self._on_notice(notice)
            except Exception:  # a broken observer must not break an instance
                log.exception("notice observer failed")

    def _notice(self, kind: str, workflow: str, instance_id: str, **detail: Any) -> None:
        if self._on_notice is not None:
            self.emit(Notice(kind, workflow, instance_id, None, detail, self.clock.now()))

    # ---- instances ------------------------------------------------------------------------------
    def _new(
        self, workflow: str, instance_id: str | None, params: Any, trigger: str, version: str
    ) -> NewInstance:
        if instance_id is None:
            instance_id = str(uuid.uuid4())
        check_identifier(instance_id, "instance id", self.limits.id_length)
        if isinstance(params, EncodedParams):
            text = params.text
        else:
            text = codec.encode_payload(
                {} if params is None else params, "params", self.limits.payload_bytes
            )
        return NewInstance(workflow, instance_id, text, trigger, version, self.clock.now())

    async def create(
        self,
        workflow: str,
        id: str | None = None,
        params: Any = None,
        trigger: str = Trigger.API.value,
    ) -> WorkflowInstance:
        """Create an instance; it is on disk when this returns. A duplicate id is an error."""
        name = self.workflow(workflow)
        version = self.new_instance_version(name)
        new = self._new(name, id, params, trigger, version)
        await self.store.create_instances([new], skip_existing=False)
        self.notifier.created(name, version)
        self._notice("queued", name, new.id, trigger=trigger)
        return WorkflowInstance(self, name, new.id)

    async def create_scheduled(
        self, workflow: str, cron: Cron, scheduled: float, next_at: float | None = None
    ) -> bool:
        """Create the instance a firing of ``cron`` at ``scheduled`` makes, unless it exists
        already (another node or an earlier process fired it): True if this call created it.
        Its id is made from the cron and the time (``Cron.instance_id``), its params are ``{}``
        and its trigger ``cron``. ``next_at``: the next firing, for the terminal."""
        name = self.workflow(workflow)
        version = self.new_instance_version(name)
        new = NewInstance(
            name,
            cron.instance_id(scheduled),
            codec.encode_payload({}, "params", self.limits.payload_bytes),
            Trigger.CRON.value,
            version,
            self.clock.now(),
        )
        rows = await self.store.create_instances([new], skip_existing=True)
        if not rows:
            return False
        self.notifier.created(name, version)
        self._notice(
            "queued", name, new.id, trigger=Trigger.CRON.value, cron=cron.expression, next=next_at
        )
        return True

    async def create_batch(
        self,
        workflow: str,
        items: Sequence[Mapping[str, Any]],
        trigger: str = Trigger.API.value,
    ) -> list[WorkflowInstance]:
        """Create up to 100 instances in one commit. Ids that exist already are skipped and left
        out of the result, as Cloudflare does, so a batch can be retried safely."""
        name = self.workflow(workflow)
        version = self.new_instance_version(name)
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
                one = self._new(name, item.get("id"), item.get("params"), trigger, version)
            except ValidationError as exc:
                raise ValidationError(f"batch[{index}]: {exc}") from None
            if one.id not in seen:
                seen.add(one.id)
                new.append(one)
        rows = await self.store.create_instances(new, skip_existing=True)
        self.notifier.created(name, version)
        for row in rows:
            self._notice("queued", name, row.id, trigger=trigger)
        return [WorkflowInstance(self, name, row.id) for row in rows]

    async def row(self, workflow: str, instance_id: str) -> InstanceRow:
        name = self.workflow(workflow)
        if not isinstance(instance_id, str):
            raise ValidationError(f"instance id must be a string, got {type(instance_id).__name__}")
        found = await self.store.get_instance(name, instance_id)
        if found is None:
            raise InstanceNotFound(f'instance "{instance_id}" not found in workflow "{name}"')
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

    async def history(self, workflow: str, instance_id: str) -> dict[str, Any]:
        """The instance's full history as JSON (format "wf-history"), to export and replay."""
        row = await self.row(workflow, instance_id)
        history = await self.store.load_history(row.pk)
        events = await self.store.load_events(row.pk)
        return history_json(row, history, events)

    async def list_instances(
        self,
        workflow: str,
        *,
        status: str | None = None,
        page: int = 1,
        per_page: int = 25,
        newest_first: bool = True,
    ) -> tuple[list[InstanceRow], int]:
        name = self.workflow(workflow)
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
            name,
            status=wanted,
            offset=(page - 1) * per_page,
            limit=per_page,
            newest_first=newest_first,
        )

    # ---- controls -------------------------------------------------------------------------------
    async def pause(self, workflow: str, instance_id: str) -> InstanceRow:
        row = await self.row(workflow, instance_id)
        row = await self.store.pause(row.pk, self.clock.now())
        self.notifier.changed(row, "pause")
        if row.status is Status.PAUSED:
            self._notice("paused", row.workflow, row.id)
        return row

    async def resume(self, workflow: str, instance_id: str) -> InstanceRow:
        row = await self.row(workflow, instance_id)
        row = await self.store.resume(row.pk, self.clock.now())
        self.notifier.changed(row, "resume")
        self._notice("resumed", row.workflow, row.id)
        return row

    async def terminate(
        self, workflow: str, instance_id: str, source: str = Trigger.API.value
    ) -> InstanceRow:
        before = await self.row(workflow, instance_id)
        row = await self.store.terminate(before.pk, self.clock.now(), source)
        self.notifier.changed(before, "terminate")
        self._notice("terminated", row.workflow, row.id, source=source)
        return row

    async def restart(self, workflow: str, instance_id: str) -> InstanceRow:
        before = await self.row(workflow, instance_id)
        row = await self.store.restart(before.pk, self.clock.now())
        self.notifier.changed(before, "restart")
        self.notifier.created(row.workflow, row.version_id)
        self._notice("restarted", row.workflow, row.id)
        return row

    async def send_event(
        self, workflow: str, instance_id: str, event_type: str, payload: Any = None
    ) -> InstanceRow:
        self.workflow(workflow)  # an unknown workflow is named first
        check_identifier(event_type, "event type", self.limits.id_length)
        text = codec.encode_payload(payload, "event payload", self.limits.payload_bytes)
        row = await self.row(workflow, instance_id)
        row, _ = await self.store.send_event(row.pk, event_type, text, self.clock.now())
        self.notifier.changed(row, "event", event_type)
        self._notice("event_sent", row.workflow, row.id, event_type=event_type)
        return row

    async def upgrade(self, workflow: str, instance_id: str) -> tuple[InstanceRow, InstanceRow]:
        """Move an instance to the version new instances get; its next life replays against that
        code. Returns the instance before and after."""
        before = await self.row(workflow, instance_id)
        target = self.new_instance_version(before.workflow)
        if before.status.finished:
            raise InvalidTransition(
                f'cannot upgrade instance "{before.id}": it is already {before.status.value}'
            )
        if before.version_id == target:
            raise InvalidTransition(
                f'instance "{before.id}" already runs on the newest version ({target})'
            )
        row = await self.store.upgrade(before.pk, target, self.clock.now())
        self.notifier.changed(before, "upgrade")
        self.notifier.created(row.workflow, target)
        return before, row

    async def delete_workflow_instances(self, workflow: str) -> int:
        name = self.workflow(workflow)
        deleted = await self.store.delete_workflow(name)
        self.notifier.workflow_deleted(name)
        return deleted
