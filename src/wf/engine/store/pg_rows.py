"""Reading rows from PostgreSQL: instances and histories, as SqliteStore returns them."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from wf.engine.model import (
    AttemptRecord,
    History,
    InstanceRow,
    StepKey,
    StepKind,
    StepRecord,
    StepState,
)
from wf.engine.store.pg_connect import Conn
from wf.engine.store.sqlite_rows import INSTANCE_COLUMNS, load_error, row_to_instance
from wf.errors import InstanceNotFound

__all__ = [
    "INSTANCE_COLUMNS",
    "find_instance",
    "read_history",
    "row_to_instance",
    "select_instance",
]

FINISHED_SQL = "('complete', 'errored', 'terminated')"


async def find_instance(conn: Conn, where: str, args: Sequence[Any]) -> InstanceRow | None:
    cur = await conn.execute(
        f"SELECT {INSTANCE_COLUMNS} FROM wf.instances WHERE {where}",
        args,
    )
    row = await cur.fetchone()
    return None if row is None else row_to_instance(row)


async def select_instance(conn: Conn, pk: int, lock: bool = True) -> InstanceRow:
    """An instance by pk (locked for the rest of the transaction), or ``InstanceNotFound``."""
    row = await find_instance(conn, "pk = %s" + (" FOR NO KEY UPDATE" if lock else ""), (pk,))
    if row is None:
        raise InstanceNotFound(f"instance {pk} does not exist")
    return row


async def read_history(conn: Conn, pk: int) -> History:
    async with conn.pipeline():
        steps_cur = await conn.execute(
            "SELECT name, count, kind, state, started, ended, output, error, config, wake_at, "
            "duration, event_type, event_time, non_retryable FROM wf.steps WHERE instance = %s "
            "ORDER BY seq",
            (pk,),
        )
        attempts_cur = await conn.execute(
            "SELECT name, count, number, started, ended, success, error, uncounted "
            "FROM wf.attempts WHERE instance = %s ORDER BY name, count, number",
            (pk,),
        )
        step_rows = await steps_cur.fetchall()
        attempt_rows = await attempts_cur.fetchall()
    steps: dict[StepKey, StepRecord] = {}
    for row in step_rows:
        r: Any = row
        record = StepRecord(
            name=r[0],
            count=r[1],
            kind=StepKind(r[2]),
            state=StepState(r[3]),
            started=r[4],
            ended=r[5],
            output=r[6],
            error=load_error(r[7]),
            config=None if r[8] is None else json.loads(r[8]),
            wake_at=r[9],
            duration=r[10],
            event_type=r[11],
            event_time=r[12],
            non_retryable=bool(r[13]),
        )
        steps[record.key] = record
    for row in attempt_rows:
        name, count, number, started, ended, success, error, uncounted = row
        step = steps.get((StepKind.DO, name, count))
        if step is not None:
            step.attempts.append(
                AttemptRecord(
                    number,
                    started,
                    ended,
                    success,
                    load_error(error),
                    bool(uncounted),
                )
            )
    return History(list(steps.values()))
