"""Writes on whole instances: creating them, claiming them, and the controls (pause, resume,
terminate, restart, events). Plain functions run inside the writer's transaction."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Literal

from wf.engine.flow import FlowControl
from wf.engine.model import (
    FINISHED,
    Claim,
    ClaimRound,
    EventRecord,
    InstanceRow,
    NewInstance,
    RestartFrom,
    Status,
    StepRecord,
)
from wf.engine.store import sqlite_runs as runs
from wf.engine.store.flow_sql import choose_sql
from wf.engine.store.sqlite_rows import (
    FINISHED_SQL,
    HAS_OWN_RETENTION_SQL,
    INSTANCE_COLUMNS,
    OWN_RETENTION_SQL,
    delete_instances,
    row_to_instance,
    select_instance,
)
from wf.errors import CannotRestart, InstanceAlreadyExists, InvalidTransition

MAX_CRASHES = 5
CRASHED_ERROR = json.dumps(
    {
        "name": "WorkflowInternalError",
        "message": f"the process running this instance died {MAX_CRASHES} times in a row while "
        "it ran (does a step or run() crash or hang the process?); it was stopped so the other "
        "instances can run: restart it once the code is fixed",
    }
)


RESTARTED_ATTEMPT = json.dumps(
    {
        "name": "WorkflowInternalError",
        "message": "the attempt was cut short because the instance was restarted from a later "
        "step; it does not count toward the retry limit",
    }
)


def step_not_found(name: str) -> CannotRestart:
    """Cloudflare's words when ``restart({from})`` names no recorded step."""
    return CannotRestart(f'(instance.cannot_restart) Step "{name}" not found in execution history')


UPGRADED_ATTEMPT = json.dumps(
    {
        "name": "WorkflowInternalError",
        "message": "the attempt was cut short because the instance was upgraded to another "
        "version; it does not count toward the retry limit",
    }
)


def create_instances(
    conn: sqlite3.Connection, new: Sequence[NewInstance], skip_existing: bool
) -> list[InstanceRow]:
    created: list[InstanceRow] = []
    for item in new:
        exists = conn.execute(
            "SELECT 1 FROM instances WHERE workflow = ? AND id = ?", (item.workflow, item.id)
        ).fetchone()
        if exists:
            if skip_existing:
                continue
            raise InstanceAlreadyExists(
                f'an instance with id "{item.id}" already exists in workflow "{item.workflow}"'
            )
        parent = item.parent
        cursor = conn.execute(
            "INSERT INTO instances (workflow, id, status, params, trigger, version_id, created, "
            "queued, modified, success_retention, error_retention, priority, concurrency_key, "
            "rate_key, traceparent, parent_pk, parent_workflow, parent_id, parent_step) "
            "VALUES (?, ?, 'queued', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                item.workflow,
                item.id,
                item.params,
                item.trigger,
                item.version_id,
                item.created,
                item.created,
                item.created,
                item.success_retention,
                item.error_retention,
                item.priority,
                item.concurrency_key,
                item.rate_key,
                item.traceparent,
                parent and parent.pk,
                parent and parent.workflow,
                parent and parent.id,
                parent and parent.step,
            ),
        )
        assert cursor.lastrowid is not None
        created.append(
            InstanceRow(
                pk=cursor.lastrowid,
                workflow=item.workflow,
                id=item.id,
                status=Status.QUEUED,
                params=item.params,
                trigger=item.trigger,
                version_id=item.version_id,
                created=item.created,
                modified=item.created,
                queued=item.created,
                success_retention=item.success_retention,
                error_retention=item.error_retention,
                traceparent=item.traceparent,
                parent=item.parent,
            )
        )
    return created


def start_child(
    conn: sqlite3.Connection, pk: int, epoch: int, step: StepRecord, child: NewInstance
) -> InstanceRow | Literal[False] | None:
    """A parent's ``run_workflow`` step and its child instance, written together: the child
    row; ``False`` when the parent is fenced; ``None`` (nothing written) when the child's id
    is taken. The child takes its parent's priority (waiting on it, the parent has the same
    claim to go first: Temporal's children inherit theirs too)."""
    if not runs.fenced(conn, pk, epoch):
        return False
    (priority,) = conn.execute("SELECT priority FROM instances WHERE pk = ?", (pk,)).fetchone()
    created = create_instances(conn, [replace(child, priority=priority)], skip_existing=True)
    if not created:
        return None
    runs.start_step(conn, pk, epoch, step)
    return created[0]


def children(conn: sqlite3.Connection, pk: int) -> list[InstanceRow]:
    """The instances whose parent is ``pk``, oldest first."""
    return [
        row_to_instance(r)
        for r in conn.execute(
            f"SELECT {INSTANCE_COLUMNS} FROM instances WHERE parent_pk = ? ORDER BY pk", (pk,)
        )
    ]


def claim_ready(
    conn: sqlite3.Connection,
    owner: str,
    now: float,
    limit: int,
    workflows: Sequence[str],
    lease: float,
    version: str | None = None,
    suspects: int = 0,
    flows: Mapping[str, FlowControl] | None = None,
) -> ClaimRound:
    """Woken or recovered instances first, then queued ones, higher priority first, then
    oldest first. Workflows with flow control (``flows``) are claimed within their limits.

    Leases are wall-clock time (they are about live processes, not the engine's clock), and a
    process never takes over its own claims: a lapsed lease of ours after a clock jump means we
    were asleep, not dead.

    A *suspect* was running when its process died. At most ``suspects`` of them are claimed
    (the caller runs one at a time), so a suspect that kills its process again is the only one
    blamed; one that did so ``MAX_CRASHES`` times in a row is errored instead of claimed (and
    returned as such, for the terminal to say).
    """
    real_now = time.time()
    names = list(workflows)
    limited = {n: f for n, f in (flows or {}).items() if f.active and n in names}
    # "+workflow": keep the planner on the status indexes; the listing index would read every
    # instance of the workflow, finished ones included, on every claim.
    mine = f"+workflow IN ({','.join('?' * len(names))})"
    pinned: tuple[str, ...] = ()
    if version is not None:  # a worker of one version runs only that version's instances
        mine += " AND +version_id = ?"
        pinned = (version,)
    free = "(owner IS NULL OR (owner != ? AND lease_until < ?))"
    free_named = "(owner IS NULL OR (owner != :owner AND lease_until < :real_now))"
    pin_named = "+version_id = :version" if version is not None else "1"
    # An instance that was pausing when its process died has reached its boundary.
    conn.execute(
        "UPDATE instances SET status = 'paused', paused_at = ?, modified = ?, owner = NULL "
        f"WHERE status = 'waitingForPause' AND {free}",
        (now, now, owner, real_now),
    )
    crashed = [
        _crash_errored(conn, row[0], now)
        for row in conn.execute(
            "SELECT pk FROM instances INDEXED BY instances_crashed "
            f"WHERE crashes > 0 AND crashes >= ? AND {free} "
            f"AND {mine} AND status IN ('running', 'waiting', 'queued')",
            (MAX_CRASHES, owner, real_now, *names, *pinned),
        ).fetchall()
    ]
    pks: list[int] = []
    for name, flow in limited.items():
        chosen = conn.execute(
            choose_sql(flow, postgres=False, pin=pin_named, free=free_named),
            {
                "w": name,
                "now": now,
                "since": now - (flow.rate_period or 0.0),
                "n": limit - len(pks),
                "suspects": suspects,
                "max": MAX_CRASHES,
                "owner": owner,
                "real_now": real_now,
                "version": version,
            },
        ).fetchall()
        pks.extend(pk for pk, _ in chosen)
        suspects = max(0, suspects - len(chosen))  # (counts them all: fewer, never more)
    names = [n for n in names if n not in limited]
    if not names:
        return ClaimRound(_claim(conn, pks, owner, now, real_now, lease), crashed)
    mine = f"+workflow IN ({','.join('?' * len(names))})"
    if version is not None:
        mine += " AND +version_id = ?"
    ready = "(status = 'running' OR (status = 'waiting' AND wake_at <= ?))"
    pks.extend(
        row[0]
        for row in conn.execute(
            f"SELECT pk FROM instances WHERE {free} AND {mine} AND {ready} AND crashes = 0 "
            "ORDER BY wake_at LIMIT ?",
            (owner, real_now, *names, *pinned, now, limit - len(pks)),
        )
    )
    if suspects > 0 and len(pks) < limit:
        # A running one without wake_at (let go by anything but a crash) is due now.
        pks.extend(
            row[0]
            for row in conn.execute(
                f"SELECT pk FROM instances WHERE {free} AND {mine} AND crashes > 0 "
                "AND status IN ('running', 'waiting') "
                "AND (wake_at <= ? OR (status = 'running' AND wake_at IS NULL)) "
                "ORDER BY crashes, wake_at LIMIT ?",
                (owner, real_now, *names, *pinned, now, min(suspects, limit - len(pks))),
            )
        )
    if len(pks) < limit:
        pks.extend(
            row[0]
            for row in conn.execute(
                f"SELECT pk FROM instances WHERE status = 'queued' AND {free} AND {mine} "
                "ORDER BY priority DESC, queued, pk LIMIT ?",
                (owner, real_now, *names, *pinned, limit - len(pks)),
            )
        )
    return ClaimRound(_claim(conn, pks, owner, now, real_now, lease), crashed)


def _claim(
    conn: sqlite3.Connection, pks: list[int], owner: str, now: float, real_now: float, lease: float
) -> list[Claim]:
    claims = []
    for pk in pks:
        fresh = conn.execute("SELECT started IS NULL FROM instances WHERE pk = ?", (pk,)).fetchone()
        conn.execute(
            "UPDATE instances SET owner = ?, lease_until = ?, epoch = epoch + 1, "
            "status = 'running', started = coalesce(started, ?), wake_at = NULL, "
            "waiting_for = NULL, modified = ? WHERE pk = ?",
            (owner, real_now + lease, now, now, pk),
        )
        row = select_instance(conn, pk)
        claims.append(Claim(row, row.epoch, bool(fresh[0])))
    return claims


def _crash_errored(conn: sqlite3.Connection, pk: int, now: float) -> InstanceRow:
    conn.execute(
        "UPDATE instances SET status = 'errored', error = ?, ended = ?, modified = ?, "
        "owner = NULL, lease_until = NULL, wake_at = NULL WHERE pk = ?",
        (CRASHED_ERROR, now, now, pk),
    )
    return select_instance(conn, pk)


def renew_leases(
    conn: sqlite3.Connection, owner: str, lease: float
) -> dict[int, tuple[Status, int]]:
    conn.execute(
        "UPDATE instances SET lease_until = ? WHERE owner = ?", (time.time() + lease, owner)
    )
    return {
        pk: (Status(status), epoch)
        for pk, status, epoch in conn.execute(
            "SELECT pk, status, epoch FROM instances WHERE owner = ?", (owner,)
        )
    }


# A suspect waits before its next life, longer after each crash, so the API has breathing room
# between the lives of an instance that keeps killing (or hanging) its process.
_SUSPECT_PAUSE = "CASE crashes WHEN 0 THEN 2 WHEN 1 THEN 4 WHEN 2 THEN 8 ELSE 16 END"


def release_claims(conn: sqlite3.Connection, owner: str, crashed: bool, now: float) -> int:
    """Free one dead owner's claims; ``crashed``: it died on its own, so what it was running
    becomes a suspect (see ``claim_ready``)."""
    return _release(conn, "owner = ?", (owner,), crashed, now)


def _release(
    conn: sqlite3.Connection, where: str, args: tuple[object, ...], crashed: bool, now: float
) -> int:
    if not crashed:
        return conn.execute(
            f"UPDATE instances SET owner = NULL, lease_until = NULL WHERE {where}", args
        ).rowcount
    return conn.execute(
        f"UPDATE instances SET owner = NULL, lease_until = NULL, wake_at = ? + {_SUSPECT_PAUSE}, "
        f"crashes = crashes + 1 WHERE {where}",
        (now, *args),
    ).rowcount


def upgrade(conn: sqlite3.Connection, pk: int, version: str, now: float) -> InstanceRow:
    """Move an instance to ``version``; whoever ran it lets go, and it is ready at once.

    An operator's move is like a reload: the attempts a live process was running are recorded
    as cut short, uncounted, and retried at once. (Without an owner, an unfinished attempt was
    cut short by a crash: it counts, as any crash's does.)"""
    row = select_instance(conn, pk)
    _unfinished(row, "upgrade")
    if row.owner is not None:
        _cut_short_attempts(conn, pk, now, UPGRADED_ATTEMPT)
    # A running instance that was claimed has no wake_at: give it one, or a suspect (one with
    # crashes) would wait for a time that never comes.
    conn.execute(
        "UPDATE instances SET version_id = ?, owner = NULL, lease_until = NULL, "
        "wake_at = CASE WHEN status = 'running' THEN coalesce(wake_at, ?) ELSE wake_at END, "
        "epoch = epoch + 1, modified = ? WHERE pk = ?",
        (version, now, now, pk),
    )
    return select_instance(conn, pk)


def _cut_short_attempts(conn: sqlite3.Connection, pk: int, now: float, error: str) -> None:
    running = conn.execute(
        "SELECT kind, name, count FROM attempts WHERE instance = ? AND ended IS NULL", (pk,)
    ).fetchall()
    for kind, name, count in running:
        conn.execute(
            "UPDATE attempts SET ended = ?, success = 0, error = ?, uncounted = 1 "
            "WHERE instance = ? AND kind = ? AND name = ? AND count = ? AND ended IS NULL",
            (now, error, pk, kind, name, count),
        )
        conn.execute(  # retried at once: the dependency did nothing wrong
            "UPDATE steps SET wake_at = ? "
            "WHERE instance = ? AND kind = ? AND name = ? AND count = ?",
            (now, pk, kind, name, count),
        )


def release_all_claims(conn: sqlite3.Connection, crashed: bool, now: float) -> int:
    return _release(conn, "owner IS NOT NULL", (), crashed, now)


def purge_finished(conn: sqlite3.Connection, before: float) -> int:
    """Purge what ended before ``before``, but for instances that set their own retention."""
    pks = [
        row[0]
        for row in conn.execute(
            # By when they ended: the status index would read every finished instance.
            "SELECT pk FROM instances INDEXED BY instances_ended "
            f"WHERE status IN {FINISHED_SQL} AND ended < ? AND {OWN_RETENTION_SQL} IS NULL",
            (before,),
        )
    ]
    delete_instances(conn, pks)
    return len(pks)


def purge_by_own_retention(conn: sqlite3.Connection, now: float) -> int:
    """Purge the instances that set a retention of their own once it has passed."""
    pks = [
        row[0]
        for row in conn.execute(
            "SELECT pk FROM instances INDEXED BY instances_own_retention "
            f"WHERE {HAS_OWN_RETENTION_SQL} AND status IN {FINISHED_SQL} "
            f"AND ended < ? - {OWN_RETENTION_SQL}",
            (now,),
        )
    ]
    delete_instances(conn, pks)
    return len(pks)


def delete_by_pk(conn: sqlite3.Connection, pks: Sequence[int]) -> list[int]:
    """Delete instances with everything they own, in one transaction; the pks that existed."""
    found = [
        pk
        for pk in dict.fromkeys(pks)
        if conn.execute("SELECT 1 FROM instances WHERE pk = ?", (pk,)).fetchone()
    ]
    delete_instances(conn, found)
    return found


def delete_workflow(conn: sqlite3.Connection, workflow: str) -> int:
    pks = [r[0] for r in conn.execute("SELECT pk FROM instances WHERE workflow = ?", (workflow,))]
    delete_instances(conn, pks)
    return len(pks)


def _unfinished(row: InstanceRow, action: str) -> None:
    if row.status in FINISHED:
        raise InvalidTransition(
            f'cannot {action} instance "{row.id}": it is already {row.status.value}'
        )


def pause(conn: sqlite3.Connection, pk: int, now: float) -> InstanceRow:
    row = select_instance(conn, pk)
    _unfinished(row, "pause")
    if row.status in (Status.PAUSED, Status.WAITING_FOR_PAUSE):
        return row
    if row.owner is None:  # nothing runs it: paused at once
        conn.execute(
            "UPDATE instances SET status = 'paused', paused_at = ?, modified = ? WHERE pk = ?",
            (now, now, pk),
        )
    else:  # its runner pauses it at the next step boundary
        conn.execute(
            "UPDATE instances SET status = 'waitingForPause', modified = ? WHERE pk = ?", (now, pk)
        )
    return select_instance(conn, pk)


def resume(conn: sqlite3.Connection, pk: int, now: float) -> InstanceRow:
    row = select_instance(conn, pk)
    _unfinished(row, "resume")
    if row.status == Status.WAITING_FOR_PAUSE:
        conn.execute(
            "UPDATE instances SET status = 'running', modified = ? WHERE pk = ?", (now, pk)
        )
    elif row.status == Status.PAUSED:
        # Timers keep the time they had left when the pause began.
        shift = now - (row.paused_at if row.paused_at is not None else now)
        conn.execute(
            "UPDATE steps SET wake_at = wake_at + ? "
            "WHERE instance = ? AND state = 'running' AND wake_at IS NOT NULL",
            (shift, pk),
        )
        conn.execute(
            "UPDATE instances SET status = 'queued', paused_at = NULL, queued = ?, modified = ? "
            "WHERE pk = ?",
            (now, now, pk),
        )
    return select_instance(conn, pk)


def terminate(
    conn: sqlite3.Connection, pk: int, now: float, source: str, rollback: str | None = None
) -> InstanceRow:
    """Terminate now; with ``rollback`` (the rollback phase to begin, as JSON), an instance that
    ran a do step is handed back to a runner instead, to run its rollback handlers and then end
    terminated. One already rolling back is left as it is (same epoch: nobody is told), so a
    second ask does not cut its running handler short."""
    row = select_instance(conn, pk)
    _unfinished(row, "terminate")
    if rollback is not None and row.rollback is not None:
        return row  # rolling back already: its running handler goes on undisturbed
    if (
        rollback is not None
        and conn.execute(
            "SELECT 1 FROM steps WHERE instance = ? AND kind = 'do' LIMIT 1", (pk,)
        ).fetchone()
    ):
        conn.execute(
            "UPDATE instances SET status = 'running', modified = ?, termination = ?, "
            "rollback = ?, owner = NULL, lease_until = NULL, wake_at = ?, "
            "waiting_for = NULL, paused_at = NULL, epoch = epoch + 1 WHERE pk = ?",
            (now, source, rollback, now, pk),
        )
        return select_instance(conn, pk)
    conn.execute(
        "UPDATE instances SET status = 'terminated', ended = ?, modified = ?, termination = ?, "
        "owner = NULL, lease_until = NULL, wake_at = NULL, waiting_for = NULL, "
        "epoch = epoch + 1 WHERE pk = ?",
        (now, now, source, pk),
    )
    return select_instance(conn, pk)


def restart(
    conn: sqlite3.Connection,
    pk: int,
    now: float,
    rehome: str | None = None,
    from_step: RestartFrom | None = None,
    params: str | None = None,
    record: str | None = None,
) -> InstanceRow:
    """Start over (or from ``from_step``), with the same params or ``params``, in one
    transaction: a crash leaves the history as it was or wiped as asked, never half-wiped. An
    instance whose version was unloaded moves to ``rehome`` (the active version), or the restart
    is refused. ``record`` (JSON) is kept as the instance's latest restart."""
    row = select_instance(conn, pk)
    target: int | None = None
    if from_step is not None:  # refused before anything changes
        found = conn.execute(
            "SELECT rowid FROM steps WHERE instance = ? AND kind = ? AND name = ? AND count = ?",
            (pk, from_step.kind.value, from_step.name, from_step.count),
        ).fetchone()
        if found is None:
            raise step_not_found(from_step.name)
        target = found[0]
    unloaded = conn.execute(
        "SELECT 1 FROM versions WHERE id = ? AND unloaded IS NOT NULL", (row.version_id,)
    ).fetchone()
    if unloaded:
        if rehome is None:
            raise InvalidTransition(
                f'cannot restart instance "{row.id}": the code of its version {row.version_id} '
                f'is no longer deployed, and the active version has no workflow "{row.workflow}"'
            )
        conn.execute("UPDATE instances SET version_id = ? WHERE pk = ?", (rehome, pk))
    if target is None:
        conn.execute("DELETE FROM steps WHERE instance = ?", (pk,))
        conn.execute("DELETE FROM attempts WHERE instance = ?", (pk,))
        conn.execute("DELETE FROM events WHERE instance = ? AND consumed_name IS NOT NULL", (pk,))
        started = "NULL"
    else:
        _wipe_from(conn, pk, target, now, row.owner is not None)
        started = "started"  # the kept steps are its history: not a fresh instance
    conn.execute(
        "UPDATE instances SET status = 'queued', queued = ?, modified = ?, "
        f"started = {started}, params = coalesce(?, params), restarted = coalesce(?, restarted), "
        "ended = NULL, output = NULL, error = NULL, termination = NULL, wake_at = NULL, "
        "waiting_for = NULL, paused_at = NULL, owner = NULL, lease_until = NULL, crashes = 0, "
        "rollback = NULL, epoch = epoch + 1 WHERE pk = ?",
        (now, now, params, record, pk),
    )
    return select_instance(conn, pk)


def _wipe_from(
    conn: sqlite3.Connection, pk: int, target: int, now: float, was_running: bool
) -> None:
    """Forget the step at rowid ``target`` and every step that started after it (rows are read
    in rowid order: start order), with their attempts and the events their waits consumed;
    events still buffered are dropped too, so a wait after the restart point waits again."""
    later = "SELECT name, count FROM steps WHERE instance = ? AND kind = ? AND rowid >= ?"
    conn.execute(  # of every kind: a rollback step's attempts go with it
        "DELETE FROM attempts WHERE instance = ? AND (kind, name, count) IN "
        "(SELECT kind, name, count FROM steps WHERE instance = ? AND rowid >= ?)",
        (pk, pk, target),
    )
    conn.execute(
        "DELETE FROM events WHERE instance = ? AND (consumed_name IS NULL "
        f"OR (consumed_name, consumed_count) IN ({later}))",
        (pk, pk, "wait", target),
    )
    conn.execute("DELETE FROM steps WHERE instance = ? AND rowid >= ?", (pk, target))
    if was_running:  # attempts of kept steps a live process was running: retried, uncounted
        _cut_short_attempts(conn, pk, now, RESTARTED_ATTEMPT)


def send_event(
    conn: sqlite3.Connection, pk: int, event_type: str, payload: str, now: float
) -> tuple[InstanceRow, EventRecord]:
    row = select_instance(conn, pk)
    if row.status in FINISHED:
        raise InvalidTransition(
            f'cannot send an event to instance "{row.id}": it is already {row.status.value}'
        )
    cursor = conn.execute(
        "INSERT INTO events (instance, type, payload, received) VALUES (?, ?, ?, ?)",
        (pk, event_type, payload, now),
    )
    assert cursor.lastrowid is not None
    # A hibernating instance waiting for this type wakes now; its replay finds the event.
    conn.execute(
        "UPDATE instances SET wake_at = ?, modified = ? WHERE pk = ? AND status = 'waiting' "
        "AND owner IS NULL AND instr(',' || waiting_for || ',', ',' || ? || ',') > 0",
        (now, now, pk, event_type),
    )
    return select_instance(conn, pk), EventRecord(cursor.lastrowid, event_type, payload, now)
