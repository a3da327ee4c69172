"""Instances and their controls over a store: create, find, pause, resume, terminate, restart,
send events, upgrade. Who *runs* instances is someone else's business: after each change the
controller tells its ``Notifier``, which reaches the lives in this process (``Engine``) or in
worker processes (``wf serve``)."""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from wf.engine import codec, details
from wf.engine import rollback as rollbacks
from wf.engine.bindings import WorkflowInstance
from wf.engine.clock import Clock
from wf.engine.cron import Cron, is_firing_id
from wf.engine.flow import NO_FLOW, FlowControl, check_priority
from wf.engine.history_json import history_json
from wf.engine.limits import Limits, check_identifier, whole_number
from wf.engine.model import InstanceRow, NewInstance, Status, Trigger
from wf.engine.restarts import parse_from_step, restart_record
from wf.engine.retention import NO_RETENTION, Retention, parse_retention
from wf.engine.runner import Notice
from wf.engine.stats import summarize
from wf.engine.store.base import Store
from wf.errors import InstanceNotFound, InvalidTransition, ValidationError, WorkflowNotFound

# Cloudflare's numeric codes in the results of create_batch's object form and delete_batch (the
# REST API answers with the same ones).
ALREADY_EXISTS_CODE = 10405
NOT_FOUND_CODE = 10400
TERMINATE_ALL_PAGE = 500  # instances terminate_all reads at once

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

    def script_name(self, workflow: str) -> str | None:
        """The name of the project that deployed the workflow (None: the server's own)."""
        return None

    def default_retention(self, workflow: str) -> Retention:
        """The ``default_retention`` of a workflow's wf.toml entry (for new instances)."""
        return NO_RETENTION

    def flow_control(self, workflow: str) -> FlowControl:
        """The flow control of a workflow's wf.toml entry (new instances' keys come from it)."""
        return NO_FLOW

    def restart_home(self, row: InstanceRow) -> str | None:
        """The version a restarted instance moves to should its own be unloaded (None: refuse)."""
        return None

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
        self,
        workflow: str,
        instance_id: str | None,
        params: Any,
        trigger: str,
        version: str,
        retention: Any = None,
        priority: Any = None,
        traceparent: str | None = None,
    ) -> NewInstance:
        if instance_id is None:
            instance_id = str(uuid.uuid4())
        check_identifier(instance_id, "instance id", self.limits.id_length)
        kept = parse_retention(retention).over(self.default_retention(workflow))
        if isinstance(params, EncodedParams):
            text = params.text
        else:
            text = codec.encode_payload(
                {} if params is None else params, "params", self.limits.payload_bytes
            )
        concurrency_key, rate_key = self.flow_control(workflow).keys_of(text)
        return NewInstance(
            workflow,
            instance_id,
            text,
            trigger,
            version,
            self.clock.now(),
            kept.success,
            kept.error,
            check_priority(priority),
            concurrency_key,
            rate_key,
            traceparent,
        )

    async def create(
        self,
        workflow: str,
        id: str | None = None,
        params: Any = None,
        trigger: str = Trigger.API.value,
        retention: Any = None,
        priority: Any = None,
        traceparent: str | None = None,
    ) -> WorkflowInstance:
        """Create an instance; it is on disk when this returns. A duplicate id is an error (an
        id is taken until its instance is purged or deleted). ``retention``:
        ``{"success_retention", "error_retention"}`` durations, over the workflow's default.
        ``priority``: a whole number, higher claimed first among ready instances (default 0).
        ``traceparent``: the W3C trace context of the request creating it (for tracing)."""
        name = self.workflow(workflow)
        version = self.new_instance_version(name)
        new = self._new(name, id, params, trigger, version, retention, priority, traceparent)
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
        kept = self.default_retention(name)  # as for any other new instance
        new = NewInstance(
            name,
            cron.instance_id(scheduled),  # not a user's id: its cron's characters are allowed
            codec.encode_payload({}, "params", self.limits.payload_bytes),
            Trigger.CRON.value,
            version,
            self.clock.now(),
            kept.success,
            kept.error,
            0,
            *self.flow_control(name).keys_of("{}"),
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
        traceparent: str | None = None,
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
            unknown = set(item) - {"id", "params", "retention", "priority"}
            if unknown:
                raise ValidationError(f"batch[{index}] has unknown key {sorted(unknown)[0]!r}")
            one = self._new_item(name, item, trigger, version, f"batch[{index}]", traceparent)
            if one.id not in seen:
                seen.add(one.id)
                new.append(one)
        rows = await self.store.create_instances(new, skip_existing=True)
        self.notifier.created(name, version)
        for row in rows:
            self._notice("queued", name, row.id, trigger=trigger)
        return [WorkflowInstance(self, name, row.id) for row in rows]

    def _new_item(
        self,
        name: str,
        item: Mapping[str, Any],
        trigger: str,
        version: str,
        where: str,
        traceparent: str | None = None,
    ) -> NewInstance:
        """One ``{"id", "params", "retention"}`` of a batch; its errors say where it is."""
        try:
            return self._new(
                name,
                item.get("id"),
                item.get("params"),
                trigger,
                version,
                item.get("retention"),
                item.get("priority"),
                traceparent,
            )
        except ValidationError as exc:
            raise ValidationError(f"{where}: {exc}") from None

    async def create_many(
        self,
        workflow: str,
        request: Mapping[str, Any],
        trigger: str = Trigger.API.value,
        traceparent: str | None = None,
    ) -> tuple[list[WorkflowInstance], list[dict[str, Any]]]:
        """``create_batch``'s object form: ``{"count": N, "params": ...}`` (N instances with new
        ids) or ``{"instances": [{"id", "params", "retention"}, ...]}``; up to 100 in one
        commit. Returns (created, errors): an id that exists already, or comes twice, is an
        error ``{"index", "id", "code", "message"}``, not skipped. A malformed request or
        instance refuses the whole call, before anything is created."""
        name = self.workflow(workflow)
        version = self.new_instance_version(name)
        items = self._many_items(request)
        new: list[NewInstance] = []
        errors: list[dict[str, Any]] = []
        at: dict[str, int] = {}  # id → index of the instance that creates it
        for index, item in enumerate(items):
            one = self._new_item(name, item, trigger, version, f"instances[{index}]", traceparent)
            if one.id in at:
                errors.append(_batch_error(index, one.id, "appears twice in the batch"))
                continue
            at[one.id] = index
            new.append(one)
        rows = await self.store.create_instances(new, skip_existing=True)
        created_ids = {row.id for row in rows}
        for one in new:
            if one.id not in created_ids:
                errors.append(_batch_error(at[one.id], one.id, f'already exists in "{name}"'))
        errors.sort(key=lambda e: int(e["index"]))
        if rows:
            self.notifier.created(name, version)
        for row in rows:
            self._notice("queued", name, row.id, trigger=trigger)
        return [WorkflowInstance(self, name, row.id) for row in rows], errors

    def _many_items(self, request: Mapping[str, Any]) -> list[Mapping[str, Any]]:
        given: object = request
        usage = (
            'a batch must be a JSON array of {"id", "params"} objects, or {"count": N, '
            '"params": ...}, or {"instances": [...]}'
        )
        if not isinstance(given, Mapping):
            raise ValidationError(f"{usage}, got {type(given).__name__}")
        keys = set(request)
        limit = self.limits.batch_size
        if "instances" in keys:
            if keys - {"instances"}:
                raise ValidationError(f"{usage}; instances goes alone")
            items = request["instances"]
            if not isinstance(items, (list, tuple)):
                raise ValidationError("instances must be a list of {id, params} objects")
            for index, item in enumerate(items):
                if not isinstance(item, Mapping):
                    raise ValidationError(
                        f"instances[{index}] must be an object with id and params"
                    )
                unknown = set(item) - {"id", "params", "retention", "priority"}
                if unknown:
                    raise ValidationError(
                        f"instances[{index}] has unknown key {sorted(unknown)[0]!r}"
                    )
            count = len(items)
        elif "count" in keys:
            unknown = keys - {"count", "params", "retention"}
            if unknown:
                raise ValidationError(f"{usage}; unknown key {sorted(unknown)[0]!r}")
            asked = whole_number(request["count"])
            if asked is None:
                raise ValidationError(f"count must be a whole number from 1 to {limit}")
            count = asked
            shared = {k: request[k] for k in ("params", "retention") if k in request}
            items = [shared] * max(count, 0)
        else:
            raise ValidationError(usage)
        if not 1 <= count <= limit:
            raise ValidationError(f"a batch holds from 1 to {limit} instances, got {count}")
        return list(items)

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

    async def history(
        self, workflow: str, instance_id: str, *, redact: bool = True
    ) -> dict[str, Any]:
        """The instance's full history as JSON (format "wf-history"), to export and replay;
        ``redact=False`` keeps the outputs of sensitive steps (for the test kit only)."""
        row = await self.row(workflow, instance_id)
        history = await self.store.load_history(row.pk)
        events = await self.store.load_events(row.pk)
        return history_json(row, history, events, redact=redact)

    async def list_instances(
        self,
        workflow: str,
        *,
        status: str | None = None,
        page: int = 1,
        per_page: int = 25,
        newest_first: bool = True,
        id_prefix: str | None = None,
        since: float | None = None,
        until: float | None = None,
    ) -> tuple[list[InstanceRow], int]:
        """A page of instances and how many match: of one ``status``, with ids starting with
        ``id_prefix`` (then ordered by id: an exact id comes first), created from ``since``
        (inclusive) until ``until`` (exclusive, epoch seconds)."""
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
        if since is not None and until is not None and since > until:
            # Nothing is created in a range that ends before it starts (a client's date_end
            # before its date_start is no malformed request).
            return [], 0
        return await self.store.list_instances(
            name,
            status=wanted,
            offset=(page - 1) * per_page,
            limit=per_page,
            newest_first=newest_first,
            id_prefix=id_prefix or None,
            since=since,
            until=until,
        )

    async def stats(self, workflow: str | None, window: float) -> dict[str, Any]:
        """``wf stats``: a summary of one workflow (or each) over the last ``window`` seconds
        (see ``wf.engine.stats``)."""
        names = [self.workflow(workflow)] if workflow is not None else self.workflow_names()
        if not window > 0:
            raise ValidationError(f"the window must be longer than zero, got {window!r} seconds")
        now = self.clock.now()
        since = max(0.0, now - window)  # "100 years" means since the epoch
        rows = await self.store.read_stats(names, since)
        return summarize(rows, names, since, now)

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
        self,
        workflow: str,
        instance_id: str,
        source: str = Trigger.API.value,
        *,
        rollback: bool = False,
    ) -> InstanceRow:
        """Stop an instance for good. With ``rollback``, one that ran a step is handed to a
        runner to run its rollback handlers first, then it ends ``terminated``.

        Its unfinished children (``step.run_workflow``) are terminated too, the same way, and
        theirs in turn, with the source ``parent``. A terminated child's parent wakes: its step
        raises ``StepError``."""
        before = await self.row(workflow, instance_id)
        return await self._terminate(before, source, rollback)

    async def terminate_all(
        self, workflow: str, status: str | None = None, source: str = Trigger.API.value
    ) -> int:
        """Terminate every unfinished instance of ``workflow`` (those of one unfinished
        ``status`` if given) created before the call, as Cloudflare's "terminate all" does; how
        many it terminated. One walk in pk order over the statuses wanted, a page at a time:
        an instance moving from one unfinished status to another is still found, one that
        ended meanwhile is left alone."""
        name = self.workflow(workflow)
        unfinished = [s for s in Status if not s.finished]
        if status is not None and status not in {s.value for s in unfinished}:
            names = ", ".join(s.value for s in unfinished)
            raise ValidationError(f'cannot terminate by status "{status}"; use one of {names}')
        wanted = [Status(status)] if status is not None else unfinished
        # Up to the newest instance when the call began (a new one gets a higher pk; the clocks
        # of a cluster's nodes may differ): those created while it runs were not asked for.
        upto = await self.store.newest_pk(name)
        terminated, after = 0, 0
        while page := await self.store.list_after(name, wanted, after, upto, TERMINATE_ALL_PAGE):
            after = page[-1].pk
            for listed in page:
                row = await self.store.get_instance(name, listed.id)
                # Gone, ended meanwhile, or deleted and its id taken again by a newer one.
                if row is None or row.pk != listed.pk or row.status.finished:
                    continue
                with contextlib.suppress(InvalidTransition, InstanceNotFound):  # ended meanwhile
                    await self._terminate(row, source, False)
                    terminated += 1
        return terminated

    async def _terminate(self, before: InstanceRow, source: str, rollback: bool) -> InstanceRow:
        phase = rollbacks.begin(rollbacks.TERMINATED) if rollback else None
        row = await self.store.terminate(before.pk, self.clock.now(), source, phase)
        if row.epoch == before.epoch:  # rolling back already: left as it was
            return row
        self.notifier.changed(before, "terminate")
        if row.status is Status.TERMINATED:
            seconds = max(0.0, self.clock.now() - row.created)
            self._notice("terminated", row.workflow, row.id, source=source, seconds=seconds)
        else:  # rolling back first: whoever runs instances claims it again
            self.notifier.created(row.workflow, row.version_id)
            self._notice("rolling_back", row.workflow, row.id, source=source)
        for child in await self.store.children(row.pk):
            if not child.status.finished:
                with contextlib.suppress(InvalidTransition, InstanceNotFound):  # ended meanwhile
                    await self._terminate(child, Trigger.PARENT.value, rollback)
        await self._tell_parent(row)
        return row

    async def _tell_parent(self, child: InstanceRow) -> None:
        """``child`` ended (or went) by a control: its commit woke its parent if it was
        hibernating; whoever holds or runs the parent hears of it."""
        link = child.parent
        if link is None:
            return
        parent = await self.store.get_instance(link.workflow, link.id)
        if parent is not None and parent.pk == link.pk and not parent.status.finished:
            self.notifier.changed(parent, "child")

    async def restart(
        self,
        workflow: str,
        instance_id: str,
        from_step: Any = None,
        params: Any = None,
    ) -> InstanceRow:
        """Start over, or from ``from_step`` (``{"name", "count"?, "type"?}``: it and every step
        that started after it run again, earlier ones stay cached, buffered events are dropped;
        an unknown step is refused before anything changes). ``params``: new params for the
        restarted run (None keeps the old ones); recorded, and shown by describe."""
        target = parse_from_step(from_step)
        text = None
        if params is not None:
            text = codec.encode_payload(params, "params", self.limits.payload_bytes)
        before = await self.row(workflow, instance_id)
        now = self.clock.now()
        row = await self.store.restart(
            before.pk,
            now,
            self.restart_home(before),
            from_step=target,
            params=text,
            record=restart_record(now, target, text is not None),
        )
        self.notifier.changed(before, "restart")
        self.notifier.created(row.workflow, row.version_id)
        self._notice("restarted", row.workflow, row.id)
        return row

    async def delete(self, workflow: str, instance_id: str) -> None:
        """Delete an instance and everything stored about it; a running one stops at once,
        without rollbacks. Its id can be used again."""
        before = await self.row(workflow, instance_id)
        if not await self.store.delete_instances([before.pk]):
            raise InstanceNotFound(
                f'instance "{instance_id}" not found in workflow "{before.workflow}"'
            )
        self.notifier.changed(before, "delete")
        self._notice("deleted", before.workflow, before.id)
        if not before.status.finished:
            await self._tell_parent(before)

    async def delete_batch(self, workflow: str, ids: Sequence[str]) -> dict[str, Any]:
        """Delete up to 100 instances in one commit: ``{"deleted": [{"id"}], "errors": [{"id",
        "code", "message"}]}``, one entry per id given, in order (an id given twice is deleted
        once and reported twice). Any invalid id refuses the whole call first."""
        name = self.workflow(workflow)
        given: object = ids
        if isinstance(given, str) or not isinstance(given, (list, tuple)):
            raise ValidationError("ids must be a list of instance ids")
        if not 1 <= len(ids) <= self.limits.batch_size:
            raise ValidationError(
                f"a delete batch holds from 1 to {self.limits.batch_size} ids, got {len(ids)}"
            )
        for index, instance_id in enumerate(ids):
            if is_firing_id(instance_id):  # a cron firing's instance: deleted like any other
                continue
            try:
                check_identifier(instance_id, "instance id", self.limits.id_length)
            except ValidationError as exc:
                raise ValidationError(f"ids[{index}]: {exc}") from None
        rows: dict[str, InstanceRow] = {}
        for instance_id in dict.fromkeys(ids):
            found = await self.store.get_instance(name, instance_id)
            if found is not None:
                rows[instance_id] = found
        gone = set(await self.store.delete_instances([r.pk for r in rows.values()]))
        deleted: list[dict[str, Any]] = []
        errors: list[dict[str, Any]] = []
        for instance_id in ids:
            row = rows.get(instance_id)
            if row is not None and row.pk in gone:
                deleted.append({"id": instance_id})
            else:
                errors.append(
                    {
                        "id": instance_id,
                        "code": NOT_FOUND_CODE,
                        "message": f'instance "{instance_id}" not found in workflow "{name}"',
                    }
                )
        for row in rows.values():
            if row.pk in gone:
                self.notifier.changed(row, "delete")
                self._notice("deleted", row.workflow, row.id)
                if not row.status.finished:
                    await self._tell_parent(row)
        return {"deleted": deleted, "errors": errors}

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


def _batch_error(index: int, instance_id: str, why: str) -> dict[str, Any]:
    return {
        "index": index,
        "id": instance_id,
        "code": ALREADY_EXISTS_CODE,
        "message": f'an instance with id "{instance_id}" {why}',
    }
