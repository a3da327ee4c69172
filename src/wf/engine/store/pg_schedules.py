"""When each cron schedule last fired (PostgreSQL): what a restart makes up from, shared by
every node of a cluster."""

from __future__ import annotations

from wf.engine.store.pg_connect import Conn
from wf.engine.store.pg_writer import Apply, Finish


async def last_firing(conn: Conn, workflow: str, cron: str) -> float | None:
    cur = await conn.execute(
        "SELECT fired FROM wf.schedule_firings WHERE workflow = %s AND cron = %s",
        (workflow, cron),
    )
    row = await cur.fetchone()
    return None if row is None else float(row[0])


def record_firing(workflow: str, cron: str, fired: float) -> Apply[None]:
    async def apply(conn: Conn) -> Finish[None]:
        # Never backwards: a node that lags behind another must not undo its record.
        await conn.execute(
            "INSERT INTO wf.schedule_firings (workflow, cron, fired) VALUES (%s, %s, %s) "
            "ON CONFLICT (workflow, cron) DO UPDATE "
            "SET fired = greatest(wf.schedule_firings.fired, excluded.fired)",
            (workflow, cron, fired),
        )

        async def finish() -> None:
            return None

        return finish

    return apply
