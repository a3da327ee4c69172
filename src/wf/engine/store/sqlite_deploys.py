"""What ``wf serve`` keeps beside the instances: deployed versions, their bundles, secrets and
settings."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from wf.engine.model import VersionRow
from wf.engine.store.sqlite_rows import FINISHED_SQL, OWN_RETENTION_SQL, delete_instances


def _version(row: tuple[Any, ...]) -> VersionRow:
    return VersionRow(
        row[0], row[1], bool(row[2]), json.loads(row[3]), row[4], row[5], row[6], row[7]
    )


_COLUMNS = "id, created, active, workflows, files, size, unloaded, retention"


def list_versions(conn: sqlite3.Connection) -> list[VersionRow]:
    rows = conn.execute(f"SELECT {_COLUMNS} FROM versions ORDER BY created DESC, rowid DESC")
    return [_version(row) for row in rows]


def activate_version(
    conn: sqlite3.Connection,
    version_id: str,
    created: float,
    workflows: list[dict[str, Any]],
    files: int,
    size: int,
    retention: float | None = None,
) -> VersionRow:
    """Insert (or reload) a version and make it the only active one."""
    conn.execute("UPDATE versions SET active = 0 WHERE active = 1")
    exists = conn.execute("SELECT 1 FROM versions WHERE id = ?", (version_id,)).fetchone()
    if exists:
        conn.execute(
            # Its workflows again: the same bundle, but what wf keeps of them may have grown.
            "UPDATE versions SET active = 1, unloaded = NULL, created = ?, retention = ?, "
            "workflows = ? WHERE id = ?",
            (created, retention, json.dumps(workflows), version_id),
        )
    else:
        conn.execute(
            "INSERT INTO versions (id, created, active, workflows, files, size, retention) "
            "VALUES (?, ?, 1, ?, ?, ?, ?)",
            (version_id, created, json.dumps(workflows), files, size, retention),
        )
    row = conn.execute(f"SELECT {_COLUMNS} FROM versions WHERE id = ?", (version_id,)).fetchone()
    return _version(row)


def try_unload(conn: sqlite3.Connection, version_id: str, now: float) -> bool:
    """Mark an inactive version unloaded if, in this same transaction, none of its instances is
    unfinished; so a concurrent restart either keeps it loaded or finds it gone, never both."""
    cursor = conn.execute(
        "UPDATE versions SET unloaded = ? WHERE id = ? AND active = 0 AND unloaded IS NULL "
        "AND NOT EXISTS (SELECT 1 FROM instances WHERE version_id = ? "
        "AND status NOT IN ('complete', 'errored', 'terminated'))",
        (now, version_id, version_id),
    )
    if cursor.rowcount != 1:
        return False
    conn.execute("DELETE FROM bundles WHERE version_id = ?", (version_id,))
    return True


def purge_by_version_retention(conn: sqlite3.Connection, now: float, default: float) -> int:
    """Purge the instances each version finished longer ago than its retention (``default``
    seconds for a version that set none), one version at a time on its own index range."""
    pks: list[int] = []
    for version_id, retention in conn.execute("SELECT id, retention FROM versions").fetchall():
        before = now - (retention if retention is not None else default)
        pks.extend(
            row[0]
            for row in conn.execute(
                "SELECT pk FROM instances INDEXED BY instances_version_ended "
                f"WHERE version_id = ? AND ended < ? AND status IN {FINISHED_SQL} "
                f"AND {OWN_RETENTION_SQL} IS NULL",
                (version_id, before),
            )
        )
    delete_instances(conn, pks)
    return len(pks)


def put_secret(conn: sqlite3.Connection, name: str, value: str, now: float) -> None:
    conn.execute(
        "INSERT INTO secrets (name, value, updated) VALUES (?, ?, ?) "
        "ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated = excluded.updated",
        (name, value, now),
    )


def delete_secret(conn: sqlite3.Connection, name: str) -> bool:
    return conn.execute("DELETE FROM secrets WHERE name = ?", (name,)).rowcount == 1


def list_secrets(conn: sqlite3.Connection) -> list[tuple[str, float]]:
    return [tuple(row) for row in conn.execute("SELECT name, updated FROM secrets ORDER BY name")]


def secret_values(conn: sqlite3.Connection) -> dict[str, str]:
    return dict(conn.execute("SELECT name, value FROM secrets").fetchall())


def put_bundle(conn: sqlite3.Connection, version_id: str, data: bytes) -> None:
    conn.execute(
        "INSERT INTO bundles (version_id, data) VALUES (?, ?) "
        "ON CONFLICT (version_id) DO UPDATE SET data = excluded.data",
        (version_id, data),
    )


def get_bundle(conn: sqlite3.Connection, version_id: str) -> bytes | None:
    row = conn.execute("SELECT data FROM bundles WHERE version_id = ?", (version_id,)).fetchone()
    return None if row is None else bytes(row[0])


def get_setting(conn: sqlite3.Connection, name: str) -> str | None:
    row = conn.execute("SELECT value FROM settings WHERE name = ?", (name,)).fetchone()
    return None if row is None else str(row[0])


def put_setting(conn: sqlite3.Connection, name: str, value: str, only_if_missing: bool) -> bool:
    conflict = "DO NOTHING" if only_if_missing else "DO UPDATE SET value = excluded.value"
    cursor = conn.execute(
        f"INSERT INTO settings (name, value) VALUES (?, ?) ON CONFLICT (name) {conflict}",
        (name, value),
    )
    return cursor.rowcount == 1
