"""A runner's writes on PostgreSQL, each fenced by (pk, epoch): one statement per write, queued
in the writer's pipeline, whose result is read once the batch is committed.

A fenced statement locks its instance row (``FOR NO KEY UPDATE``) where it checks the epoch: a
claim or a control that bumps the epoch elsewhere waits for this commit, or this write sees the
new epoch and does nothing. Each returns ``False`` when fenced, as SqliteStore's do.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from wf.engine.model import PAUSING, AttemptRecord, EventRecord, Status, StepRecord, StepState
from wf.engine.store.pg_connect import Conn
from wf.engine.store.pg_writer import Apply, Finish
from wf.engine.store.sqlite_rows import dump_error
from wf.engine.store.sqlite_runs import config_text

_FENCE = (
    "f AS (SELECT pk, status FROM wf.instances WHERE pk = %(pk)s AND epoch = %(epoch)s "
    "FOR NO KEY UPDATE)"
)
_STEP = "s.instance = f.pk AND s.kind = %(kind)s AND s.name = %(name)s AND s.count = %(count)s"


def _step(pk: int, epoch: int, step: StepRecord) -> dict[str, Any]:
    return {
        "pk": pk,
        "epoch": epoch,
        "kind": step.kind.value,
        "name": step.name,
        "count": step.count,
    }


async def _rowcount(conn: Conn, sql: str, args: dict[str, Any] | Sequence[Any]) -> Finish[bool]:
    cur = await conn.execute(sql, args)

    async def finish() -> bool:
        return cur.rowcount == 1

    return finish


async def _fenced_count(conn: Conn, sql: str, args: dict[str, Any]) -> Finish[bool]:
    """For a statement ending ``SELECT count(*) FROM f``: True when the fence let it write."""
    cur = await conn.execute(sql, args)

    async def finish() -> bool:
        row = await cur.fetchone()
        return row is not None and row[0] == 1

    return finish


def set_status(
    pk: int, epoch: int, status: Status, now: float, wake_at: float | None
) -> Apply[bool]:
    async def apply(conn: Conn) -> Finish[bool]:
        return await _rowcount(
            conn,
            "UPDATE wf.instances SET status = %s, wake_at = %s, modified = %s "
            "WHERE pk = %s AND epoch = %s AND status IN ('running', 'waiting')",
            (status.value, wake_at, now, pk, epoch),
        )

    return apply


_INSERT_STEP = (
    "INSERT INTO wf.steps (instance, name, count, kind, state, started, ended, output, error, "
    "config, wake_at, duration, event_type) SELECT f.pk, %(name)s, %(count)s, %(kind)s, "
    "%(state)s, %(started)s, %(ended)s, %(output)s, %(error)s, %(config)s, %(wake_at)s, "
    "%(duration)s, %(event_type)s FROM f"
)


def _step_row(pk: int, epoch: int, step: StepRecord) -> dict[str, Any]:
    return {
        **_step(pk, epoch, step),
        "state": step.state.value,
        "started": step.started,
        "ended": step.ended,
        "output": step.output,
        "error": dump_error(step.error),
        "config": config_text(step.config),
        "wake_at": step.wake_at,
        "duration": step.duration,
        "event_type": step.event_type,
    }


def start_step(pk: int, epoch: int, step: StepRecord) -> Apply[bool]:
    args = _step_row(pk, epoch, step)

    async def apply(conn: Conn) -> Finish[bool]:
        return await _rowcount(conn, f"WITH {_FENCE} {_INSERT_STEP}", args)

    return apply


def update_step_timer(pk: int, epoch: int, step: StepRecord, started: float | None) -> Apply[bool]:
    args = {**_step(pk, epoch, step), "wake_at": step.wake_at, "duration": step.duration}
    args["started"] = started

    async def apply(conn: Conn) -> Finish[bool]:
        return await _fenced_count(
            conn,
            f"WITH {_FENCE}, u AS (UPDATE wf.steps s SET wake_at = %(wake_at)s, "
            "duration = %(duration)s, started = coalesce(%(started)s, s.started) "
            f"FROM f WHERE {_STEP} RETURNING 1) SELECT count(*) FROM f",
            args,
        )

    return apply


_ADD_ATTEMPT = (
    "INSERT INTO wf.attempts (instance, name, count, number, started) "
    "SELECT instance, %(name)s, %(count)s, %(number)s, %(attempt_started)s FROM s"
)


def start_attempt(
    pk: int, epoch: int, step: StepRecord, attempt: AttemptRecord, first: bool
) -> Apply[bool]:
    """An attempt's start; ``first``: the step's row is new, insert it too. One statement."""
    args = _step_row(pk, epoch, step)
    args["number"], args["attempt_started"] = attempt.number, attempt.started
    if first:
        sql = f"WITH {_FENCE}, s AS ({_INSERT_STEP} RETURNING instance) {_ADD_ATTEMPT}"
    else:
        sql = (
            f"WITH {_FENCE}, s AS (UPDATE wf.steps s SET wake_at = NULL, config = %(config)s "
            f"FROM f WHERE {_STEP} RETURNING s.instance) {_ADD_ATTEMPT}"
        )

    async def apply(conn: Conn) -> Finish[bool]:
        return await _rowcount(conn, sql, args)

    return apply


def end_attempt(
    pk: int,
    epoch: int,
    step: StepRecord,
    attempt: AttemptRecord,
    finish: StepState | None,
) -> Apply[bool]:
    args = {
        **_step(pk, epoch, step),
        "ended": attempt.ended,
        "success": attempt.success,
        "error": dump_error(attempt.error),
        "uncounted": attempt.uncounted,
        "number": attempt.number,
        "wake_at": step.wake_at,
        "non_retryable": step.non_retryable,
    }
    if finish is None:
        then = "wake_at = %(wake_at)s, non_retryable = %(non_retryable)s"
    else:
        args.update(
            state=finish.value,
            step_ended=step.ended,
            output=step.output,
            step_error=dump_error(step.error),
        )
        then = (
            "state = %(state)s, ended = %(step_ended)s, output = %(output)s, "
            "error = %(step_error)s, wake_at = NULL, non_retryable = %(non_retryable)s"
        )
    sql = (
        f"WITH {_FENCE}, a AS (UPDATE wf.attempts a SET ended = %(ended)s, success = %(success)s, "
        "error = %(error)s, uncounted = %(uncounted)s FROM f WHERE a.instance = f.pk "
        "AND a.name = %(name)s AND a.count = %(count)s AND a.number = %(number)s "
        "RETURNING a.instance), "
        f"u AS (UPDATE wf.steps s SET {then} FROM f WHERE {_STEP} AND EXISTS (SELECT 1 FROM a) "
        "RETURNING 1) SELECT count(*) FROM a"
    )

    async def apply(conn: Conn) -> Finish[bool]:
        return await _fenced_count(conn, sql, args)

    return apply


def end_step(pk: int, epoch: int, step: StepRecord, state: StepState) -> Apply[bool]:
    args = {
        **_step(pk, epoch, step),
        "state": state.value,
        "ended": step.ended,
        "output": step.output,
        "error": dump_error(step.error),
    }

    async def apply(conn: Conn) -> Finish[bool]:
        return await _fenced_count(
            conn,
            f"WITH {_FENCE}, u AS (UPDATE wf.steps s SET state = %(state)s, ended = %(ended)s, "
            "output = %(output)s, error = %(error)s, wake_at = NULL "
            f"FROM f WHERE {_STEP} RETURNING 1) SELECT count(*) FROM f",
            args,
        )

    return apply


def consume_event(
    pk: int, epoch: int, step: StepRecord, now: float
) -> Apply[EventRecord | Literal[False, "pausing"] | None]:
    """The oldest buffered event of the wait's type, consumed by it, in one statement."""
    assert step.event_type is not None
    event_type = step.event_type
    args = {**_step(pk, epoch, step), "type": event_type, "now": now}
    sql = (
        f"WITH {_FENCE}, "
        "e AS (SELECT seq, payload, received FROM wf.events WHERE instance = %(pk)s "
        "AND type = %(type)s AND consumed_name IS NULL "
        "AND EXISTS (SELECT 1 FROM f WHERE status <> 'waitingForPause') "
        "ORDER BY seq LIMIT 1 FOR UPDATE), "
        "c AS (UPDATE wf.events v SET consumed_name = %(name)s, consumed_count = %(count)s "
        "FROM e WHERE v.seq = e.seq RETURNING e.seq, e.payload, e.received), "
        "u AS (UPDATE wf.steps s SET state = 'succeeded', ended = %(now)s, output = c.payload, "
        f"event_time = c.received, wake_at = NULL FROM f, c WHERE {_STEP} RETURNING 1) "
        "SELECT (SELECT status FROM f), c.seq, c.payload, c.received "
        "FROM (SELECT 1) one LEFT JOIN c ON true"
    )

    async def apply(conn: Conn) -> Finish[EventRecord | Literal[False, "pausing"] | None]:
        cur = await conn.execute(sql, args)

        async def finish() -> EventRecord | Literal[False, "pausing"] | None:
            row = await cur.fetchone()
            if row is None or row[0] is None:
                return False
            if row[0] == Status.WAITING_FOR_PAUSE.value:
                return PAUSING
            if row[1] is None:
                return None
            seq, payload, received = row[1], row[2], row[3]
            return EventRecord(
                int(seq),
                event_type,
                str(payload),
                float(received),
                (step.name, step.count),
            )

        return finish

    return apply


def hibernate(
    pk: int, epoch: int, wake_at: float | None, now: float, event_types: Sequence[str]
) -> Apply[bool]:
    types = sorted(set(event_types))
    args = {
        "pk": pk,
        "epoch": epoch,
        "now": now,
        "wake_at": wake_at,
        "types": types,
        "waiting_for": ",".join(types) or None,
    }
    # An awaited event that arrived while this life was ending wakes it at once.
    woken = (
        "CASE WHEN EXISTS (SELECT 1 FROM wf.events WHERE instance = %(pk)s "
        "AND consumed_name IS NULL AND type = ANY(%(types)s::text[])) THEN %(now)s "
        "ELSE %(wake_at)s::double precision END"
        if types
        else "%(wake_at)s::double precision"
    )
    sql = (
        "UPDATE wf.instances SET "
        "paused_at = CASE WHEN status = 'waitingForPause' THEN %(now)s ELSE paused_at END, "
        "status = CASE status WHEN 'running' THEN 'waiting' "
        "WHEN 'waitingForPause' THEN 'paused' ELSE status END, "
        f"wake_at = {woken}, waiting_for = %(waiting_for)s, owner = NULL, lease_until = NULL, "
        "modified = %(now)s, crashes = 0 WHERE pk = %(pk)s AND epoch = %(epoch)s"
    )

    async def apply(conn: Conn) -> Finish[bool]:
        if types:
            # Lock the row first, in a statement of its own: an event being sent (its
            # transaction holds the row) is committed when the UPDATE begins, so the UPDATE's
            # look at wf.events sees it. Waiting for the lock within the UPDATE, it would read
            # wf.events as they were before it waited, and sleep through the event.
            await conn.execute("SELECT 1 FROM wf.instances WHERE pk = %s FOR NO KEY UPDATE", (pk,))
        return await _rowcount(conn, sql, args)

    return apply


def release(pk: int, epoch: int) -> Apply[bool]:
    async def apply(conn: Conn) -> Finish[bool]:
        return await _rowcount(
            conn,
            "UPDATE wf.instances SET owner = NULL, lease_until = NULL, crashes = 0 "
            "WHERE pk = %s AND epoch = %s",
            (pk, epoch),
        )

    return apply


def reach_pause(pk: int, epoch: int, now: float) -> Apply[bool]:
    async def apply(conn: Conn) -> Finish[bool]:
        return await _rowcount(
            conn,
            "UPDATE wf.instances SET "
            "paused_at = CASE WHEN status = 'waitingForPause' THEN %s ELSE paused_at END, "
            "status = CASE WHEN status = 'waitingForPause' THEN 'paused' ELSE status END, "
            "modified = %s, owner = NULL, lease_until = NULL, wake_at = NULL, crashes = 0 "
            "WHERE pk = %s AND epoch = %s",
            (now, now, pk, epoch),
        )

    return apply


def finish(
    pk: int,
    epoch: int,
    status: Status,
    now: float,
    output: str | None,
    error_text: str | None,
) -> Apply[bool]:
    async def apply(conn: Conn) -> Finish[bool]:
        return await _rowcount(
            conn,
            "UPDATE wf.instances SET status = %s, ended = %s, modified = %s, output = %s, "
            "error = %s, owner = NULL, lease_until = NULL, wake_at = NULL, waiting_for = NULL, "
            "paused_at = NULL, crashes = 0 WHERE pk = %s AND epoch = %s",
            (status.value, now, now, output, error_text, pk, epoch),
        )

    return apply
