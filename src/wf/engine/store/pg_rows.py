"""Reading rows from PostgreSQL: instances and histories, as SqliteStore returns them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from wf.engine.model import EventRecord, History, InstanceRow
from wf.engine.store.pg_connect import Conn
from wf.engine.store.sqlite_rows import (
    ATTEMPT_COLUMNS,
    EVENT_COLUMNS,
    INSTANCE_COLUMNS,
    STEP_COLUMNS,
    events_from_rows,
    history_from_rows,
    row_to_instance,
)
from wf.errors import InstanceNotFound

__all__ = [
    "INSTANCE_COLUMNS",
    "find_instance",
    "find_instances",
    "read_events",
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


async def find_instances(conn: Conn, where: str, args: Sequence[Any]) -> list[InstanceRow]:
    cur = await conn.execute(f"SELECT {INSTANCE_COLUMNS} FROM wf.instances WHERE {where}", args)
    return [row_to_instance(r) for r in await cur.fetchall()]


async def select_instance(conn: Conn, pk: int, lock: bool = True) -> InstanceRow:
    """An instance by pk (locked for the rest of the transaction), or ``InstanceNotFound``."""
    row = await find_instance(conn, "pk = %s" + (" FOR NO KEY UPDATE" if lock else ""), (pk,))
    if row is None:
        raise InstanceNotFound(f"instance {pk} does not exist")
    return row


async def read_history(conn: Conn, pk: int) -> History:
    async with conn.pipeline():
        steps_cur = await conn.execute(
            f"SELECT {STEP_COLUMNS} FROM wf.steps WHERE instance = %s ORDER BY seq", (pk,)
        )
        attempts_cur = await conn.execute(
            f"SELECT {ATTEMPT_COLUMNS} FROM wf.attempts WHERE instance = %s "
            "ORDER BY name, count, number",
            (pk,),
        )
        step_rows = await steps_cur.fetchall()
        attempt_rows = await attempts_cur.fetchall()
    return history_from_rows(step_rows, attempt_rows)


async def read_events(conn: Conn, pk: int) -> list[EventRecord]:
    cur = await conn.execute(
        f"SELECT {EVENT_COLUMNS} FROM wf.events WHERE instance = %s ORDER BY seq", (pk,)
    )
    return events_from_rows(await cur.fetchall())
