"""Instances as JSON, in Cloudflare's shapes (``status()`` and the instance details)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from wf.durations import format_duration
from wf.engine import codec, rollback
from wf.engine.model import (
    REDACTED,
    History,
    InstanceRow,
    Status,
    StepKind,
    StepRecord,
    StepState,
    Trigger,
)
from wf.engine.restarts import read_record

# Cloudflare's trigger sources. wf records its own CLI as "cli" (the terminal says so); Cloudflare
# shows wrangler's triggers, which are API calls, as "api".
CLOUDFLARE_TRIGGERS = frozenset({"api", "binding", "event", "cron", "unknown"})


def iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    stamp = datetime.fromtimestamp(epoch, tz=timezone.utc).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


def trigger_source(recorded: str | None) -> str:
    """A recorded trigger source as Cloudflare's enum shows it (a parent workflow's step is
    code calling a binding, for Cloudflare)."""
    if recorded in CLOUDFLARE_TRIGGERS:
        return recorded
    if recorded == Trigger.PARENT.value:
        return "binding"
    return "api" if recorded == Trigger.CLI.value else "unknown"


def trigger_json(recorded: str | None) -> dict[str, str]:
    """Cloudflare's ``{"source"}``, plus ``"via": "cli"`` when wf's CLI asked, or ``"via":
    "parent"`` for a parent's ``run_workflow`` (or its termination) (describe says so)."""
    shown = {"source": trigger_source(recorded)}
    if recorded in (Trigger.CLI.value, Trigger.PARENT.value):
        shown["via"] = recorded
    return shown


def status_of(row: InstanceRow) -> dict[str, Any]:
    return {
        "status": row.status.value,
        "error": row.error,
        "output": codec.decode(row.output),
        "rollback": rollback.view(row),
    }


def is_sensitive(record: StepRecord) -> bool:
    """A ``sensitive="output"`` step: its stored config says so."""
    return record.config is not None and record.config.get("sensitive") == "output"


def shown_output(record: StepRecord) -> Any:
    """A step's output as people and logs see it: ``"[REDACTED]"`` for a sensitive step that
    has one (``run()`` still gets the real value, and the store keeps it); errors are shown."""
    if record.output is not None and is_sensitive(record):
        return REDACTED
    return codec.decode(record.output)


def _success(state: StepState) -> bool | None:
    return None if state is StepState.RUNNING else state is StepState.SUCCEEDED


def _step(record: StepRecord) -> dict[str, Any]:
    base: dict[str, Any] = {
        "type": record.kind.cloudflare_type,
        "name": f"{record.name}-{record.count}",  # a rollback's: its step's (type says it)
        "start": iso(record.started),
        "end": iso(record.ended),
    }
    if record.kind in (StepKind.DO, StepKind.ROLLBACK):
        base.update(
            success=_success(record.state),
            output=shown_output(record),
            error=record.error,
            config=record.config,
            attempts=[
                {
                    "start": iso(a.started),
                    "end": iso(a.ended),
                    "success": a.success,
                    "error": a.error,
                    "cpu": a.cpu,
                }
                for a in record.attempts
            ],
        )
        if record.state is StepState.RUNNING and record.wake_at is not None:
            base["retries_at"] = iso(record.wake_at)
    elif record.kind is StepKind.CHILD:
        config = record.config or {}
        base.update(
            finished=record.state is not StepState.RUNNING,
            success=_success(record.state),
            output=codec.decode(record.output),
            error=record.error,
            child={"workflow": config.get("workflow"), "id": config.get("id")},
        )
    elif record.kind is StepKind.SLEEP:
        base["finished"] = record.state is StepState.SUCCEEDED
        if record.state is StepState.RUNNING:
            base["wake_at"] = iso(record.wake_at)
    else:
        base.update(
            finished=record.state is not StepState.RUNNING,
            error=record.error,
            output=codec.decode(record.output),
            event_type=record.event_type,
        )
        if record.state is StepState.RUNNING:
            base["timeout_at"] = iso(record.wake_at)
    return base


def instance_details(row: InstanceRow, history: History) -> dict[str, Any]:
    steps = [_step(s) for s in history.steps]
    step_count = len(steps)
    if row.status is Status.TERMINATED:
        trigger = trigger_json(row.termination or Trigger.API.value)
        steps.append({"type": "termination", "trigger": trigger})
    shown = {
        "id": row.id,
        "workflow": row.workflow,
        "status": row.status.value,
        "params": codec.decode(row.params),
        "trigger": trigger_json(row.trigger),
        "versionId": row.version_id,
        "created": iso(row.created),
        "queued": iso(row.queued),
        "start": iso(row.started),
        "end": iso(row.ended),
        "success": (None if not row.status.finished else row.status is Status.COMPLETE),
        "error": row.error,
        "output": codec.decode(row.output),
        "rollback": rollback.view(row),
        "step_count": step_count,
        "steps": steps,
    }
    shown.update(extras(row))
    return shown


def extras(row: InstanceRow) -> dict[str, Any]:
    """What wf keeps beyond Cloudflare's shape, present only when there is something to say:
    the instance's latest restart, the retention it set, the parent that created it."""
    found: dict[str, Any] = {}
    if row.parent is not None:
        found["parent"] = {
            "workflow": row.parent.workflow,
            "id": row.parent.id,
            "step": row.parent.step,
        }
    record = read_record(row.restarted)
    if record is not None:
        at = record.get("at")
        found["restarted"] = {
            "at": iso(at) if isinstance(at, (int, float)) else None,
            "from": record.get("from"),
            "new_params": bool(record.get("new_params")),
        }
    if row.success_retention is not None or row.error_retention is not None:
        found["retention"] = {
            "success_retention": _seconds(row.success_retention),
            "error_retention": _seconds(row.error_retention),
        }
    return found


def _seconds(value: float | None) -> str | None:
    return None if value is None else format_duration(value)
