"""A runner's writes on PostgreSQL, each fenced by (pk, epoch): statements queued in the
writer's pipeline, whose results are read once the batch is committed. The hot ones are groups
(one statement for every instance's write of that kind in a batch); the rarer ones below are a
statement per write.

A fenced statement locks its instance row (``FOR NO KEY UPDATE``) where it checks the epoch: a
claim or a control that bumps the epoch elsewhere waits for this commit, or this write sees the
new epoch and does nothing. Each returns ``False`` when fenced, as SqliteStore's do.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from wf.engine.model import PAUSING, AttemptRecord, EventRecord, Status, StepRecord, StepState
from wf.engine.store.pg_connect import Conn
from wf.engine.store.pg_rows import FINISHED_SQL
from wf.engine.store.pg_writer import Apply, Finish, Group
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


def set_rollback(pk: int, epoch: int, state: str) -> Apply[bool]:
    async def apply(conn: Conn) -> Finish[bool]:
        return await _rowcount(
            conn,
            "UPDATE wf.instances SET rollback = %s WHERE pk = %s AND epoch = %s",
            (state, pk, epoch),
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


# ---- the same writes, for many instances in one statement --------------------------------------
# The hot writes of a batch are grouped by kind (see ``pg_writer.Group``): one statement takes
# an array per column, so a batch of N instances' steps costs a few statements, not N. Each
# returns the pks it wrote; a fenced one is missing.


def _unnest(columns: dict[str, str]) -> str:
    arrays = ", ".join(f"%({name})s::{kind}[]" for name, kind in columns.items())
    return f"u AS (SELECT * FROM unnest({arrays}) AS u({', '.join(columns)}))"


# The batch locked every instance row it writes (in pk order) before its first statement, so a
# group statement only checks the epochs, joining the instances by pk.
_EPOCH_OK = "JOIN wf.instances i ON i.pk = u.pk AND i.epoch = u.epoch"
_U_STEP = "s.instance = u.pk AND s.kind = u.kind AND s.name = u.name AND s.count = u.count"

_KEY = {"pk": "bigint", "epoch": "bigint"}
_STEP_COLUMNS = {
    **_KEY,
    "name": "text",
    "count": "integer",
    "kind": "text",
    "state": "text",
    "started": "float8",
    "ended": "float8",
    "output": "text",
    "error": "text",
    "config": "text",
    "wake_at": "float8",
    "duration": "float8",
    "event_type": "text",
}
_INSERT_STEPS = (
    "INSERT INTO wf.steps (instance, name, count, kind, state, started, ended, output, error, "
    "config, wake_at, duration, event_type) SELECT u.pk, u.name, u.count, u.kind, u.state, "
    "u.started, u.ended, u.output, u.error, u.config, u.wake_at, u.duration, u.event_type "
    f"FROM u {_EPOCH_OK} RETURNING instance"
)
_ADD_ATTEMPTS = (
    "INSERT INTO wf.attempts (instance, kind, name, count, number, started) "
    f"SELECT u.pk, u.kind, u.name, u.count, u.number, u.attempt_started FROM u {_EPOCH_OK} "
    "RETURNING instance"
)


_ONE_STEP = (
    "INSERT INTO wf.steps (instance, name, count, kind, state, started, ended, output, error, "
    "config, wake_at, duration, event_type) SELECT f.pk, %(name)s, %(count)s, %(kind)s, "
    "%(state)s, %(started)s, %(ended)s, %(output)s, %(error)s, %(config)s, %(wake_at)s, "
    "%(duration)s, %(event_type)s FROM f RETURNING instance"
)
_ONE_ATTEMPT = (
    "INSERT INTO wf.attempts (instance, kind, name, count, number, started) "
    "SELECT instance, %(kind)s, %(name)s, %(count)s, %(number)s, %(attempt_started)s FROM s "
    "RETURNING instance"
)


def step_row(pk: int, epoch: int, step: StepRecord) -> tuple[Any, ...]:
    return (
        pk,
        epoch,
        step.name,
        step.count,
        step.kind.value,
        step.state.value,
        step.started,
        step.ended,
        step.output,
        dump_error(step.error),
        config_text(step.config),
        step.wake_at,
        step.duration,
        step.event_type,
    )


SET_STATUS = Group(
    f"WITH {_unnest({**_KEY, 'status': 'text', 'now': 'float8', 'wake_at': 'float8'})} "
    "UPDATE wf.instances i SET status = u.status, wake_at = u.wake_at, modified = u.now FROM u "
    "WHERE i.pk = u.pk AND i.epoch = u.epoch AND i.status IN ('running', 'waiting') "
    "RETURNING i.pk",
    ("pk", "epoch", "status", "now", "wake_at"),
    "UPDATE wf.instances SET status = %(status)s, wake_at = %(wake_at)s, modified = %(now)s "
    "WHERE pk = %(pk)s AND epoch = %(epoch)s AND status IN ('running', 'waiting') RETURNING pk",
)

START_STEP = Group(
    f"WITH {_unnest(_STEP_COLUMNS)} {_INSERT_STEPS}",
    tuple(_STEP_COLUMNS),
    f"WITH {_FENCE} {_ONE_STEP}",
)

_ATTEMPT_COLUMNS = {**_STEP_COLUMNS, "number": "integer", "attempt_started": "float8"}
START_FIRST_ATTEMPT = Group(
    f"WITH {_unnest(_ATTEMPT_COLUMNS)}, s AS ({_INSERT_STEPS}) {_ADD_ATTEMPTS}",
    tuple(_ATTEMPT_COLUMNS),
    f"WITH {_FENCE}, s AS ({_ONE_STEP}) {_ONE_ATTEMPT}",
)
START_NEXT_ATTEMPT = Group(
    f"WITH {_unnest(_ATTEMPT_COLUMNS)}, "
    f"s AS (UPDATE wf.steps s SET wake_at = NULL, config = u.config FROM u {_EPOCH_OK} "
    f"WHERE {_U_STEP}) {_ADD_ATTEMPTS}",
    tuple(_ATTEMPT_COLUMNS),
    f"WITH {_FENCE}, s AS (UPDATE wf.steps s SET wake_at = NULL, config = %(config)s "
    f"FROM f WHERE {_STEP} RETURNING s.instance) {_ONE_ATTEMPT}",
)

# An attempt's end, and its step's next retry time; with ``state`` (not NULL), the step's end.
_END_COLUMNS = {
    **_KEY,
    "kind": "text",
    "name": "text",
    "count": "integer",
    "number": "integer",
    "ended": "float8",
    "success": "boolean",
    "error": "text",
    "uncounted": "boolean",
    "cpu": "float8",
    "wake_at": "float8",
    "non_retryable": "boolean",
    "state": "text",
    "step_ended": "float8",
    "output": "text",
    "step_error": "text",
}
END_ATTEMPT = Group(
    f"WITH {_unnest(_END_COLUMNS)}, "
    "a AS (UPDATE wf.attempts a SET ended = u.ended, success = u.success, error = u.error, "
    "uncounted = u.uncounted, cpu = u.cpu "
    f"FROM u {_EPOCH_OK} WHERE a.instance = u.pk AND a.kind = u.kind AND a.name = u.name "
    "AND a.count = u.count AND a.number = u.number "
    "RETURNING a.instance, a.kind, a.name, a.count, u.state, u.step_ended, u.output, u.step_error, "
    "u.wake_at, u.non_retryable), "
    "st AS (UPDATE wf.steps s SET "
    "state = coalesce(a.state, s.state), "
    "ended = CASE WHEN a.state IS NULL THEN s.ended ELSE a.step_ended END, "
    "output = CASE WHEN a.state IS NULL THEN s.output ELSE a.output END, "
    "error = CASE WHEN a.state IS NULL THEN s.error ELSE a.step_error END, "
    "wake_at = CASE WHEN a.state IS NULL THEN a.wake_at END, "
    "non_retryable = a.non_retryable FROM a "
    "WHERE s.instance = a.instance AND s.kind = a.kind AND s.name = a.name AND s.count = a.count) "
    "SELECT instance FROM a",
    tuple(_END_COLUMNS),
    f"WITH {_FENCE}, a AS (UPDATE wf.attempts a SET ended = %(ended)s, success = %(success)s, "
    "error = %(error)s, uncounted = %(uncounted)s, cpu = %(cpu)s FROM f WHERE a.instance = f.pk "
    "AND a.kind = %(kind)s AND a.name = %(name)s AND a.count = %(count)s AND a.number = %(number)s "
    "RETURNING a.instance), "
    "st AS (UPDATE wf.steps s SET state = coalesce(%(state)s, s.state), "
    "ended = CASE WHEN %(state)s::text IS NULL THEN s.ended ELSE %(step_ended)s::float8 END, "
    "output = CASE WHEN %(state)s::text IS NULL THEN s.output ELSE %(output)s::text END, "
    "error = CASE WHEN %(state)s::text IS NULL THEN s.error ELSE %(step_error)s::text END, "
    "wake_at = CASE WHEN %(state)s::text IS NULL THEN %(wake_at)s::float8 END, "
    "non_retryable = %(non_retryable)s FROM a WHERE s.instance = a.instance AND s.kind = %(kind)s "
    "AND s.name = %(name)s AND s.count = %(count)s) SELECT instance FROM a",
)


def end_attempt_row(
    pk: int, epoch: int, step: StepRecord, attempt: AttemptRecord, finish: StepState | None
) -> tuple[Any, ...]:
    finished = finish is not None
    return (
        pk,
        epoch,
        step.kind.value,
        step.name,
        step.count,
        attempt.number,
        attempt.ended,
        attempt.success,
        dump_error(attempt.error),
        attempt.uncounted,
        attempt.cpu,
        step.wake_at,
        step.non_retryable,
        finish.value if finish is not None else None,
        step.ended if finished else None,
        step.output if finished else None,
        dump_error(step.error) if finished else None,
    )


# An awaited child (pks, comma-separated) that finished or is gone: it wakes the parent at once.
_CHILD_ENDED = (
    "({children} IS NOT NULL AND (SELECT count(*) FROM wf.instances c "
    "WHERE c.pk = ANY(string_to_array({children}, ',')::bigint[]) "
    f"AND c.status NOT IN {FINISHED_SQL}) < cardinality(string_to_array({{children}}, ',')))"
)

_HIBERNATE_COLUMNS = {**_KEY, "now": "float8", "wake_at": "float8", "types": "text"}
HIBERNATE = Group(
    f"WITH {_unnest({**_HIBERNATE_COLUMNS, 'children': 'text'})} "
    "UPDATE wf.instances i SET "
    "paused_at = CASE WHEN i.status = 'waitingForPause' THEN u.now ELSE i.paused_at END, "
    "status = CASE i.status WHEN 'running' THEN 'waiting' "
    "WHEN 'waitingForPause' THEN 'paused' ELSE i.status END, "
    # An awaited event that arrived while the life was ending wakes it at once.
    "wake_at = CASE WHEN u.types IS NOT NULL AND EXISTS (SELECT 1 FROM wf.events e "
    "WHERE e.instance = u.pk AND e.consumed_name IS NULL "
    "AND e.type = ANY(string_to_array(u.types, ','))) THEN u.now "
    f"WHEN {_CHILD_ENDED.format(children='u.children')} THEN u.now ELSE u.wake_at END, "
    "waiting_for = u.types, owner = NULL, lease_until = NULL, modified = u.now, crashes = 0 "
    "FROM u WHERE i.pk = u.pk AND i.epoch = u.epoch RETURNING i.pk",
    ("pk", "epoch", "now", "wake_at", "types", "children"),
    "UPDATE wf.instances SET "
    "paused_at = CASE WHEN status = 'waitingForPause' THEN %(now)s ELSE paused_at END, "
    "status = CASE status WHEN 'running' THEN 'waiting' "
    "WHEN 'waitingForPause' THEN 'paused' ELSE status END, "
    "wake_at = CASE WHEN %(types)s::text IS NOT NULL AND EXISTS (SELECT 1 FROM wf.events e "
    "WHERE e.instance = %(pk)s AND e.consumed_name IS NULL "
    "AND e.type = ANY(string_to_array(%(types)s, ','))) THEN %(now)s "
    f"WHEN {_CHILD_ENDED.format(children='%(children)s::text')} THEN %(now)s "
    "ELSE %(wake_at)s::float8 END, waiting_for = %(types)s, owner = NULL, lease_until = NULL, "
    "modified = %(now)s, crashes = 0 WHERE pk = %(pk)s AND epoch = %(epoch)s RETURNING pk",
    # Its look for an awaited event must see one whose sender held the row as it arrived.
    lock_first=True,
)

RELEASE = Group(
    f"WITH {_unnest(_KEY)} UPDATE wf.instances i SET owner = NULL, lease_until = NULL, "
    "crashes = 0 FROM u WHERE i.pk = u.pk AND i.epoch = u.epoch RETURNING i.pk",
    ("pk", "epoch"),
    "UPDATE wf.instances SET owner = NULL, lease_until = NULL, crashes = 0 "
    "WHERE pk = %(pk)s AND epoch = %(epoch)s RETURNING pk",
)

_FINISH_COLUMNS = {**_KEY, "status": "text", "now": "float8", "output": "text", "error": "text"}
FINISH = Group(
    f"WITH {_unnest(_FINISH_COLUMNS)} "
    "UPDATE wf.instances i SET status = u.status, ended = u.now, modified = u.now, "
    "output = u.output, error = u.error, owner = NULL, lease_until = NULL, wake_at = NULL, "
    "waiting_for = NULL, paused_at = NULL, crashes = 0 FROM u "
    "WHERE i.pk = u.pk AND i.epoch = u.epoch RETURNING i.pk",
    ("pk", "epoch", "status", "now", "output", "error"),
    "UPDATE wf.instances SET status = %(status)s, ended = %(now)s, modified = %(now)s, "
    "output = %(output)s, error = %(error)s, owner = NULL, lease_until = NULL, wake_at = NULL, "
    "waiting_for = NULL, paused_at = NULL, crashes = 0 WHERE pk = %(pk)s AND epoch = %(epoch)s "
    "RETURNING pk",
)
