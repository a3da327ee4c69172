"""Rows in and out of SQLite: instances, histories, errors as JSON. Plain functions on a
connection; the caller owns the transaction."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any

from wf.engine.model import (
    AttemptRecord,
    ErrorInfo,
    EventRecord,
    History,
    InstanceRow,
    ParentLink,
    Status,
    StepKey,
    StepKind,
    StepRecord,
    StepState,
)
from wf.errors import InstanceNotFound, error_info

INSTANCE_COLUMNS = (
    "pk, workflow, id, status, params, trigger, version_id, created, modified, started, ended, "
    "output, error, wake_at, paused_at, owner, lease_until, epoch, queued, termination, crashes, "
    "success_retention, error_retention, restarted, rollback, traceparent, parent_pk, "
    "parent_workflow, parent_id, parent_step"
)
FINISHED_SQL = "('complete', 'errored', 'terminated')"
# The retention a finished instance set for the way it ended (NULL: the default applies).
OWN_RETENTION_SQL = (
    "(CASE WHEN status = 'complete' THEN success_retention ELSE error_retention END)"
)
# The instances that set a retention of their own (the purge reads them on their own index).
HAS_OWN_RETENTION_SQL = (
    "ended IS NOT NULL AND (success_retention IS NOT NULL OR error_retention IS NOT NULL)"
)


def dump_error(error: ErrorInfo | None) -> str | None:
    return None if error is None else json.dumps(error, ensure_ascii=False)


def load_error(text: str | None) -> ErrorInfo | None:
    """A stored error; one recorded by an older wf (a message of any size, or not text) comes
    back as one recorded today would."""
    if text is None:
        return None
    stored = json.loads(text)
    return error_info(stored.get("name"), stored.get("message"))


def row_to_instance(row: Sequence[Any]) -> InstanceRow:
    return InstanceRow(
        pk=row[0],
        workflow=row[1],
        id=row[2],
        status=Status(row[3]),
        params=row[4],
        trigger=row[5],
        version_id=row[6],
        created=row[7],
        modified=row[8],
        started=row[9],
        ended=row[10],
        output=row[11],
        error=load_error(row[12]),
        wake_at=row[13],
        paused_at=row[14],
        owner=row[15],
        lease_until=row[16],
        epoch=row[17],
        queued=row[18],
        termination=row[19],
        crashes=row[20],
        success_retention=row[21],
        error_retention=row[22],
        restarted=row[23],
        rollback=row[24],
        traceparent=row[25],
        parent=None if row[26] is None else ParentLink(row[26], row[27], row[28], row[29]),
    )


def select_instance(conn: sqlite3.Connection, pk: int) -> InstanceRow:
    row = conn.execute(f"SELECT {INSTANCE_COLUMNS} FROM instances WHERE pk = ?", (pk,)).fetchone()
    if row is None:
        raise InstanceNotFound(f"instance {pk} does not exist")
    return row_to_instance(row)


def find_instance(conn: sqlite3.Connection, where: str, args: Sequence[Any]) -> InstanceRow | None:
    row = conn.execute(f"SELECT {INSTANCE_COLUMNS} FROM instances WHERE {where}", args).fetchone()
    return None if row is None else row_to_instance(row)


STEP_COLUMNS = (
    "name, count, kind, state, started, ended, output, error, config, wake_at, duration, "
    "event_type, event_time, non_retryable"
)
ATTEMPT_COLUMNS = "name, count, number, started, ended, success, error, uncounted, kind, cpu"


def history_from_rows(
    step_rows: Iterable[Sequence[Any]], attempt_rows: Iterable[Sequence[Any]]
) -> History:
    """A history from its steps' rows (``STEP_COLUMNS``, in order) and attempts' rows
    (``ATTEMPT_COLUMNS``), as either database returns them."""
    steps: dict[StepKey, StepRecord] = {}
    for row in step_rows:
        record = StepRecord(
            name=row[0],
            count=row[1],
            kind=StepKind(row[2]),
            state=StepState(row[3]),
            started=row[4],
            ended=row[5],
            output=row[6],
            error=load_error(row[7]),
            config=None if row[8] is None else json.loads(row[8]),
            wake_at=row[9],
            duration=row[10],
            event_type=row[11],
            event_time=row[12],
            non_retryable=bool(row[13]),
        )
        steps[record.key] = record
    for name, count, number, started, ended, success, error, uncounted, kind, cpu in attempt_rows:
        step = steps.get((StepKind(kind), name, count))  # do steps and their rollbacks
        if step is not None:
            step.attempts.append(
                AttemptRecord(
                    number,
                    started,
                    ended,
                    None if success is None else bool(success),
                    load_error(error),
                    bool(uncounted),
                    cpu,
                )
            )
    return History(list(steps.values()))


def read_history(conn: sqlite3.Connection, pk: int) -> History:
    steps = conn.execute(
        f"SELECT {STEP_COLUMNS} FROM steps WHERE instance = ? ORDER BY rowid", (pk,)
    )
    attempts = conn.execute(
        f"SELECT {ATTEMPT_COLUMNS} FROM attempts WHERE instance = ? ORDER BY name, count, number",
        (pk,),
    )
    return history_from_rows(steps.fetchall(), attempts)


EVENT_COLUMNS = "seq, type, payload, received, consumed_name, consumed_count"


def events_from_rows(rows: Iterable[Sequence[Any]]) -> list[EventRecord]:
    """Events from their rows (``EVENT_COLUMNS``, in order), as either database returns them."""
    return [
        EventRecord(seq, type_, payload, received, None if name is None else (name, count))
        for seq, type_, payload, received, name, count in rows
    ]


def read_events(conn: sqlite3.Connection, pk: int) -> list[EventRecord]:
    rows = conn.execute(
        f"SELECT {EVENT_COLUMNS} FROM events WHERE instance = ? ORDER BY seq", (pk,)
    )
    return events_from_rows(rows)


def delete_instances(conn: sqlite3.Connection, pks: list[int]) -> None:
    for start in range(0, len(pks), 500):
        chunk = pks[start : start + 500]
        marks = ",".join("?" * len(chunk))
        for table, column in (
            ("steps", "instance"),
            ("attempts", "instance"),
            ("events", "instance"),
            ("instances", "pk"),
        ):
            conn.execute(f"DELETE FROM {table} WHERE {column} IN ({marks})", chunk)
