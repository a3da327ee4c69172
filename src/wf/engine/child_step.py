"""``step.run_workflow``: a child instance, created exactly once and waited for without memory.

The step's row and the child's row are written in one commit (``Store.start_child``): a replay
after a crash finds the step, and with it the child's id, so it never creates a second child.
The parent then waits with no timer: the life hibernates at once (unless other branches of
``run()`` are busy), and the commit that ends the child wakes it (a trigger in the database,
whichever write ends the child: its finish, a terminate, a delete, its crashes). The next life
reads the child's row and ends the step with the child's output or error.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import uuid
from typing import TYPE_CHECKING, Any, NoReturn

from wf.engine import codec
from wf.engine.limits import check_identifier, check_step_name
from wf.engine.model import (
    ErrorInfo,
    InstanceRow,
    NewInstance,
    ParentLink,
    Status,
    StepKind,
    StepRecord,
    StepState,
    Trigger,
)
from wf.engine.rollback import replayed_do
from wf.engine.runner import Notice
from wf.errors import StepError, StoreError, ValidationError

if TYPE_CHECKING:
    from wf.engine.runner import Life

log = logging.getLogger("wf.engine")

_NOT_ID = re.compile(r"[^a-zA-Z0-9_-]+")


async def run_workflow(
    life: Life, name: str, workflow: str, params: Any, child_id: str | None
) -> Any:
    check_step_name(name, life.host.limits)
    count, record = life.identify(name, StepKind.CHILD)
    if life.rollbacks.replaying:
        return replayed_do(name, record)
    if record is None:
        await life.hold_at_pause()
        record = await _create(life, name, count, workflow, params, child_id)
    if record.state is StepState.RUNNING:
        await _wait(life, record)
    if record.state is StepState.SUCCEEDED:
        return codec.decode(record.output)
    error = record.error or {"name": "Error", "message": "the child workflow failed"}
    raise StepError(name, error["name"], error["message"], 1)


def default_child_id(parent_id: str, name: str, count: int, max_length: int) -> str:
    """``<parent id>-<step name>-<count>-<8 random hex>``, cut to fit the id limit: readable in
    lists, and new for every run of the parent (a restarted parent creates new children)."""
    suffix = f"-{count}-{uuid.uuid4().hex[:8]}"
    stem = _NOT_ID.sub("-", f"{parent_id}-{name}").strip("-") or "child"
    return stem[: max(1, max_length - len(suffix))] + suffix


async def _create(
    life: Life, name: str, count: int, workflow: str, params: Any, child_id: str | None
) -> StepRecord:
    """Create the child and the step's row in one commit; a child that cannot be created
    fails the step for good (recorded, so every replay raises the same error)."""
    limits = life.host.limits
    now = life.now()
    record = StepRecord(name, count, StepKind.CHILD, now, config={"workflow": workflow})
    given: object = workflow  # from user code: check what the types promise
    spec = life.host.scheduler.specs.get(given) if isinstance(given, str) else None
    if spec is None:
        known = ", ".join(sorted(life.host.scheduler.specs))
        await _refuse(
            life,
            record,
            "WorkflowNotFound",
            f'step "{record.display_name}": workflow {workflow!r} is not in this project '
            f"(known workflows: {known})",
        )
    try:
        text = codec.encode_payload(
            {} if params is None else params, "params", limits.payload_bytes
        )
        if child_id is None:
            child_id = default_child_id(life.row.id, name, count, limits.id_length)
        check_identifier(child_id, "child instance id", limits.id_length)
    except ValidationError as exc:
        await _refuse(life, record, "ValidationError", f'step "{record.display_name}": {exc}')
    record.config = {"workflow": workflow, "id": child_id}
    kept = spec.default_retention
    concurrency_key, rate_key = spec.flow.keys_of(text)
    new = NewInstance(
        workflow,
        child_id,
        text,
        Trigger.PARENT.value,
        life.host.version_id,
        now,
        kept.success,
        kept.error,
        concurrency_key=concurrency_key,
        rate_key=rate_key,
        traceparent=life.row.traceparent,  # the child's lives join its parent's trace
        parent=ParentLink(life.pk, life.row.workflow, life.row.id, record.display_name),
    )
    created = await life.commit(life.store.start_child(life.pk, life.epoch, record, new))
    if created is None:
        await _refuse(
            life,
            record,
            "InstanceAlreadyExists",
            f'step "{record.display_name}": an instance with id "{child_id}" already exists in '
            f'workflow "{workflow}"',
        )
    life.emit("child_started", record.display_name, workflow=workflow, id=child_id)
    if life.host.observed:  # as a create announces its instance (metrics count it as created)
        life.host.emit(Notice("queued", workflow, child_id, None, {"trigger": new.trigger}, now))
    life.host.scheduler.poke()  # the child is ready: this process may run it at once
    return record


async def _refuse(life: Life, record: StepRecord, error_name: str, message: str) -> NoReturn:
    record.state, record.ended = StepState.FAILED, life.now()
    record.error = {"name": error_name, "message": message}
    await life.commit(life.store.start_step(life.pk, life.epoch, record))
    life.emit("step_failed", record.display_name, error=record.error)
    raise StepError(record.name, error_name, message, 1)


async def _wait(life: Life, record: StepRecord) -> None:
    """Wait until the child ends, then end the step with its outcome (durably)."""
    assert record.config is not None
    workflow, child_id = str(record.config["workflow"]), str(record.config["id"])
    child = await _read(life, workflow, child_id)
    with life.waiter(math.inf, child=None if child is None else child.pk) as wait:
        while child is not None and not child.status.finished:
            await wait.sleep()
            child = await _read(life, workflow, child_id)
    await life.hold_at_pause()
    record.ended = life.now()
    if child is not None and child.status is Status.COMPLETE:
        record.state, record.output = StepState.SUCCEEDED, child.output
    else:
        record.state, record.error = StepState.FAILED, _child_error(workflow, child_id, child)
    await life.commit(life.store.end_step(life.pk, life.epoch, record, record.state))
    if record.state is StepState.SUCCEEDED:
        life.emit("step_done", record.display_name, attempt=1)
    else:
        life.emit("step_failed", record.display_name, error=record.error)


async def _read(life: Life, workflow: str, child_id: str) -> InstanceRow | None:
    """The child's row; a store failure ends the life as a refused write does (the next life
    reads again)."""
    try:
        row = await life.store.get_instance(workflow, child_id)
    except StoreError as exc:
        log.error("instance %s/%s: %s", life.row.workflow, life.row.id, exc)
        life.end("store-failure")
        raise asyncio.CancelledError() from None
    life.check_alive()
    return row


def _child_error(workflow: str, child_id: str, child: InstanceRow | None) -> ErrorInfo:
    where = f'child instance "{child_id}" of workflow "{workflow}"'
    if child is None:
        return {"name": "InstanceNotFound", "message": f"{where} was deleted before it ended"}
    if child.status is Status.TERMINATED:
        return {"name": "WorkflowTerminated", "message": f"{where} was terminated"}
    if child.error is not None:
        return {"name": child.error["name"], "message": child.error["message"]}
    return {"name": "Error", "message": f"{where} ended {child.status.value}"}
