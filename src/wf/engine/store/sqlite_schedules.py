"""When each cron schedule last fired (SQLite): what a restart makes up from."""

from __future__ import annotations

import sqlite3


def last_firing(conn: sqlite3.Connection, workflow: str, cron: str) -> float | None:
    row = conn.execute(
        "SELECT fired FROM schedule_firings WHERE workflow = ? AND cron = ?", (workflow, cron)
    ).fetchone()
    return None if row is None else float(row[0])


def record_firing(conn: sqlite3.Connection, workflow: str, cron: str, fired: float) -> None:
    # Never backwards: a node that lags behind another must not undo its record.
    conn.execute(
        "INSERT INTO schedule_firings (workflow, cron, fired) VALUES (?, ?, ?) "
        "ON CONFLICT (workflow, cron) DO UPDATE SET fired = max(fired, excluded.fired)",
        (workflow, cron, fired),
    )
