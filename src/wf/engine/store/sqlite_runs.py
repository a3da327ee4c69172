"""A runner's writes, each fenced by (pk, epoch): a runner whose claim is gone writes nothing.

Each function runs inside the writer's transaction and returns ``False`` when fenced.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from typing import Any, Literal

from wf.engine.model import (
    PAUSING,
    AttemptRecord,
    EventRecord,
    Status,
    StepRecord,
    StepState,
)
from wf.engine.store.sqlite_rows import dump_error


def fenced(conn: sqlite3.Connection, pk: int, epoch: int) -> bool:
    """Whether ``epoch`` is the instance's (its writes may go on)."""
    row = conn.execute("SELECT epoch FROM instances WHERE pk = ?", (pk,)).fetchone()
    return row is not None and row[0] == epoch


# A step row is found by its identity: (kind, name, count) within its instance.
_STEP = "instance = ? AND kind = ? AND name = ? AND count = ?"

_END_STEP = (
    f"UPDATE steps SET state = ?, ended = ?, output = ?, error = ?, wake_at = NULL WHERE {_STEP}"
)


def _step(pk: int, step: StepRecord) -> tuple[int, str, str, int]:
    """The values of ``_STEP`` for this step."""
    return (pk, step.kind.value, step.name, step.count)


def _end_step(conn: sqlite3.Connection, pk: int, step: StepRecord, state: StepState) -> None:
    conn.execute(
        _END_STEP,
        (state.value, step.ended, step.output, dump_error(step.error), *_step(pk, step)),
    )


def set_status(
    conn: sqlite3.Connection,
    pk: int,
    epoch: int,
    status: Status,
    now: float,
    wake_at: float | None,
) -> bool:
    cursor = conn.execute(
        "UPDATE instances SET status = ?, wake_at = ?, modified = ? "
        "WHERE pk = ? AND epoch = ? AND status IN ('running', 'waiting')",
        (status.value, wake_at, now, pk, epoch),
    )
    return cursor.rowcount == 1


_FENCE = "EXISTS (SELECT 1 FROM instances WHERE pk = ? AND epoch = ?)"

_INSERT_STEP = (
    "INSERT INTO steps (instance, name, count, kind, state, started, ended, output, error, "
    "config, wake_at, duration, event_type) "
    f"SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ? WHERE {_FENCE}"
)

_CONFIG_TEXT: dict[int, tuple[dict[str, Any], str]] = {}


def config_text(config: dict[str, Any] | None) -> str | None:
    """A step config as JSON, encoded once per config object (``config.to_json`` hands out the
    same dict for the same config, so a loop of steps encodes it once)."""
    if config is None:
        return None
    known = _CONFIG_TEXT.get(id(config))
    if known is not None and known[0] is config:
        return known[1]
    if len(_CONFIG_TEXT) > 1024:
        _CONFIG_TEXT.clear()
    text = json.dumps(config)
    _CONFIG_TEXT[id(config)] = (config, text)  # holds the dict, so its id is not reused
    return text


def _insert_step(conn: sqlite3.Connection, pk: int, epoch: int, step: StepRecord) -> bool:
    cursor = conn.execute(
        _INSERT_STEP,
        (
            pk,
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
            pk,
            epoch,
        ),
    )
    return cursor.rowcount == 1


def start_step(conn: sqlite3.Connection, pk: int, epoch: int, step: StepRecord) -> bool:
    return _insert_step(conn, pk, epoch, step)


def update_step_timer(
    conn: sqlite3.Connection, pk: int, epoch: int, step: StepRecord, started: float | None
) -> bool:
    if not fenced(conn, pk, epoch):
        return False
    conn.execute(
        f"UPDATE steps SET wake_at = ?, duration = ?, started = coalesce(?, started) WHERE {_STEP}",
        (step.wake_at, step.duration, started, *_step(pk, step)),
    )
    return True


def start_attempt(
    conn: sqlite3.Connection,
    pk: int,
    epoch: int,
    step: StepRecord,
    attempt: AttemptRecord,
    first: bool = False,
) -> bool:
    """Record an attempt's start; ``first``: the step's row is new, insert it too."""
    if first:
        if not _insert_step(conn, pk, epoch, step):
            return False
    else:
        cursor = conn.execute(
            f"UPDATE steps SET wake_at = NULL, config = ? WHERE {_STEP} AND {_FENCE}",
            (config_text(step.config), *_step(pk, step), pk, epoch),
        )
        if cursor.rowcount != 1:
            return False
    # Only step.do and rollbacks have attempts.
    conn.execute(
        "INSERT INTO attempts (instance, kind, name, count, number, started) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        (pk, step.kind.value, step.name, step.count, attempt.number, attempt.started),
    )
    return True


def end_attempt(
    conn: sqlite3.Connection,
    pk: int,
    epoch: int,
    step: StepRecord,
    attempt: AttemptRecord,
    finish: StepState | None,
) -> bool:
    cursor = conn.execute(
        "UPDATE attempts SET ended = ?, success = ?, error = ?, uncounted = ?, cpu = ? "
        f"WHERE instance = ? AND kind = ? AND name = ? AND count = ? AND number = ? AND {_FENCE}",
        (
            attempt.ended,
            None if attempt.success is None else int(attempt.success),
            dump_error(attempt.error),
            int(attempt.uncounted),
            attempt.cpu,
            pk,
            step.kind.value,
            step.name,
            step.count,
            attempt.number,
            pk,
            epoch,
        ),
    )
    if cursor.rowcount != 1:
        return False
    if finish is None:
        conn.execute(
            f"UPDATE steps SET wake_at = ?, non_retryable = ? WHERE {_STEP}",
            (step.wake_at, int(step.non_retryable), *_step(pk, step)),
        )
    else:
        conn.execute(
            "UPDATE steps SET state = ?, ended = ?, output = ?, error = ?, wake_at = NULL, "
            f"non_retryable = ? WHERE {_STEP}",
            (
                finish.value,
                step.ended,
                step.output,
                dump_error(step.error),
                int(step.non_retryable),
                *_step(pk, step),
            ),
        )
    return True


def end_step(
    conn: sqlite3.Connection, pk: int, epoch: int, step: StepRecord, state: StepState
) -> bool:
    if not fenced(conn, pk, epoch):
        return False
    _end_step(conn, pk, step, state)
    return True


def consume_event(
    conn: sqlite3.Connection, pk: int, epoch: int, step: StepRecord, now: float
) -> EventRecord | Literal[False, "pausing"] | None:
    """The oldest buffered event of the wait's type, now consumed by it; ``None`` if there is
    none, ``False`` if fenced, ``PAUSING`` if a pause was acknowledged (none is consumed)."""
    row = conn.execute("SELECT epoch, status FROM instances WHERE pk = ?", (pk,)).fetchone()
    if row is None or row[0] != epoch:
        return False
    if row[1] == Status.WAITING_FOR_PAUSE.value:
        return PAUSING
    assert step.event_type is not None
    found = conn.execute(
        "SELECT seq, payload, received FROM events WHERE instance = ? AND type = ? "
        "AND consumed_name IS NULL ORDER BY seq LIMIT 1",
        (pk, step.event_type),
    ).fetchone()
    if found is None:
        return None
    seq, payload, received = found
    # Only waits consume events: (name, count) is the wait's identity among waits.
    conn.execute(
        "UPDATE events SET consumed_name = ?, consumed_count = ? WHERE seq = ?",
        (step.name, step.count, seq),
    )
    conn.execute(
        "UPDATE steps SET state = 'succeeded', ended = ?, output = ?, event_time = ?, "
        f"wake_at = NULL WHERE {_STEP}",
        (now, payload, received, *_step(pk, step)),
    )
    return EventRecord(seq, step.event_type, payload, received, (step.name, step.count))


def hibernate(
    conn: sqlite3.Connection,
    pk: int,
    epoch: int,
    wake_at: float | None,
    now: float,
    event_types: Sequence[str],
    children: Sequence[int] = (),
) -> bool:
    types = sorted(set(event_types))
    when = wake_at
    if children and _child_ended(conn, children):
        when = now  # an awaited child ended while this life was ending
    if types:
        marks = ",".join("?" * len(types))
        if conn.execute(
            f"SELECT 1 FROM events WHERE instance = ? AND consumed_name IS NULL "
            f"AND type IN ({marks}) LIMIT 1",
            (pk, *types),
        ).fetchone():
            when = now  # an awaited event arrived while this life was ending
    cursor = conn.execute(
        "UPDATE instances SET "
        "paused_at = CASE WHEN status = 'waitingForPause' THEN ? ELSE paused_at END, "
        "status = CASE status WHEN 'running' THEN 'waiting' "
        "WHEN 'waitingForPause' THEN 'paused' ELSE status END, "
        "wake_at = ?, waiting_for = ?, owner = NULL, lease_until = NULL, modified = ?, "
        "crashes = 0 WHERE pk = ? AND epoch = ?",
        (now, when, ",".join(types) or None, now, pk, epoch),
    )
    return cursor.rowcount == 1


def _child_ended(conn: sqlite3.Connection, children: Sequence[int]) -> bool:
    """Whether one of these instances finished or is gone."""
    wanted = sorted(set(children))
    marks = ",".join("?" * len(wanted))
    (unfinished,) = conn.execute(
        f"SELECT count(*) FROM instances WHERE pk IN ({marks}) "
        "AND status NOT IN ('complete', 'errored', 'terminated')",
        wanted,
    ).fetchone()
    return bool(unfinished < len(wanted))


def release(conn: sqlite3.Connection, pk: int, epoch: int) -> bool:
    cursor = conn.execute(
        "UPDATE instances SET owner = NULL, lease_until = NULL, crashes = 0 "
        "WHERE pk = ? AND epoch = ?",
        (pk, epoch),
    )
    return cursor.rowcount == 1


def set_rollback(conn: sqlite3.Connection, pk: int, epoch: int, state: str) -> bool:
    cursor = conn.execute(
        "UPDATE instances SET rollback = ? WHERE pk = ? AND epoch = ?", (state, pk, epoch)
    )
    return cursor.rowcount == 1


def reach_pause(conn: sqlite3.Connection, pk: int, epoch: int, now: float) -> bool:
    """``waitingForPause`` becomes ``paused``; if a resume came first, the instance stays
    ``running``, unclaimed, so it is claimed and replayed at once. The claim is given up."""
    cursor = conn.execute(
        "UPDATE instances SET "
        "paused_at = CASE WHEN status = 'waitingForPause' THEN ? ELSE paused_at END, "
        "status = CASE WHEN status = 'waitingForPause' THEN 'paused' ELSE status END, "
        "modified = ?, owner = NULL, lease_until = NULL, wake_at = NULL, crashes = 0 "
        "WHERE pk = ? AND epoch = ?",
        (now, now, pk, epoch),
    )
    return cursor.rowcount == 1


def finish(
    conn: sqlite3.Connection,
    pk: int,
    epoch: int,
    status: Status,
    now: float,
    output: str | None,
    error_text: str | None,
) -> bool:
    cursor = conn.execute(
        "UPDATE instances SET status = ?, ended = ?, modified = ?, output = ?, error = ?, "
        "owner = NULL, lease_until = NULL, wake_at = NULL, waiting_for = NULL, paused_at = NULL, "
        "crashes = 0 WHERE pk = ? AND epoch = ?",
        (status.value, now, now, output, error_text, pk, epoch),
    )
    return cursor.rowcount == 1
