"""What ``wf serve`` keeps in PostgreSQL beside the instances: deployed versions and their
bundles, secrets and settings. Writes are writer jobs; reads take a reader connection."""

from __future__ import annotations

import json
from typing import Any

from wf.engine.model import VersionRow
from wf.engine.store.pg_connect import Conn
from wf.engine.store.pg_rows import FINISHED_SQL
from wf.engine.store.pg_writer import DBNOW, Apply, Finish

# Deploys on several nodes at once take turns: "the only active version" stays one.
DEPLOY_LOCK = 0x7766_0002
_COLUMNS = "id, created, active, workflows, files, size, unloaded, retention"


def _version(row: Any) -> VersionRow:
    return VersionRow(
        row[0], row[1], bool(row[2]), json.loads(row[3]), row[4], row[5], row[6], row[7]
    )


async def list_versions(conn: Conn) -> list[VersionRow]:
    cur = await conn.execute(
        f"SELECT {_COLUMNS} FROM wf.versions ORDER BY created DESC, added DESC"
    )
    return [_version(row) for row in await cur.fetchall()]


def activate_version(
    version_id: str,
    created: float,
    workflows: list[dict[str, Any]],
    files: int,
    size: int,
    retention: float | None,
) -> Apply[VersionRow]:
    async def apply(conn: Conn) -> Finish[VersionRow]:
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (DEPLOY_LOCK,))
        await conn.execute(
            "UPDATE wf.versions SET active = false WHERE active AND id <> %s", (version_id,)
        )
        cur = await conn.execute(
            "INSERT INTO wf.versions (id, created, active, workflows, files, size, retention) "
            "VALUES (%s, %s, true, %s, %s, %s, %s) ON CONFLICT (id) DO UPDATE SET active = true, "
            "unloaded = NULL, created = excluded.created, retention = excluded.retention, "
            "workflows = excluded.workflows "  # what wf keeps of the same bundle may have grown
            f"RETURNING {_COLUMNS}",
            (version_id, created, json.dumps(workflows), files, size, retention),
        )

        async def finish() -> VersionRow:
            return _version(await cur.fetchone())

        return finish

    return apply


def try_unload(version_id: str, now: float) -> Apply[bool]:
    """Unload an inactive version (and forget its bundle) if none of its instances is
    unfinished. The version row is locked first, so the count (a later statement, a fresh
    snapshot) sees any restart that locked it before."""

    async def apply(conn: Conn) -> Finish[bool]:
        await conn.execute("SELECT 1 FROM wf.versions WHERE id = %s FOR UPDATE", (version_id,))
        cur = await conn.execute(
            "WITH u AS (UPDATE wf.versions SET unloaded = %(now)s WHERE id = %(id)s "
            "AND NOT active AND unloaded IS NULL AND NOT EXISTS (SELECT 1 FROM wf.instances "
            f"WHERE version_id = %(id)s AND status NOT IN {FINISHED_SQL}) RETURNING id), "
            "d AS (DELETE FROM wf.bundles b USING u WHERE b.version_id = u.id) "
            "SELECT count(*) FROM u",
            {"now": now, "id": version_id},
        )

        async def finish() -> bool:
            row = await cur.fetchone()
            return row is not None and row[0] == 1

        return finish

    return apply


def put_bundle(version_id: str, data: bytes) -> Apply[None]:
    async def apply(conn: Conn) -> Finish[None]:
        await conn.execute(
            "INSERT INTO wf.bundles (version_id, data) VALUES (%s, %s) "
            "ON CONFLICT (version_id) DO UPDATE SET data = excluded.data",
            (version_id, data),
        )
        return _nothing

    return apply


async def _nothing() -> None:
    return None


async def get_bundle(conn: Conn, version_id: str) -> bytes | None:
    cur = await conn.execute("SELECT data FROM wf.bundles WHERE version_id = %s", (version_id,))
    row = await cur.fetchone()
    return None if row is None else bytes(row[0])


def put_secret(name: str, value: str, now: float) -> Apply[None]:
    async def apply(conn: Conn) -> Finish[None]:
        await conn.execute(
            "INSERT INTO wf.secrets (name, value, updated) VALUES (%s, %s, %s) "
            "ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated = excluded.updated",
            (name, value, now),
        )
        return _nothing

    return apply


def delete_secret(name: str) -> Apply[bool]:
    async def apply(conn: Conn) -> Finish[bool]:
        cur = await conn.execute("DELETE FROM wf.secrets WHERE name = %s", (name,))

        async def finish() -> bool:
            return cur.rowcount == 1

        return finish

    return apply


async def list_secrets(conn: Conn) -> list[tuple[str, float]]:
    cur = await conn.execute("SELECT name, updated FROM wf.secrets ORDER BY name")
    return [(name, updated) for name, updated in await cur.fetchall()]


async def secret_values(conn: Conn) -> dict[str, str]:
    cur = await conn.execute("SELECT name, value FROM wf.secrets")
    return dict(await cur.fetchall())


async def live_owners(conn: Conn) -> list[str]:
    """Owners whose lease is live by the database's clock (idle ones included: a node's
    workers renew their lease whether or not they hold anything)."""
    cur = await conn.execute(
        f"SELECT owner FROM wf.owners WHERE lease_until > {DBNOW} ORDER BY owner"
    )
    return [owner for (owner,) in await cur.fetchall()]


async def get_setting(conn: Conn, name: str) -> str | None:
    cur = await conn.execute("SELECT value FROM wf.settings WHERE name = %s", (name,))
    row = await cur.fetchone()
    return None if row is None else str(row[0])


def put_setting(name: str, value: str, only_if_missing: bool) -> Apply[bool]:
    conflict = "DO NOTHING" if only_if_missing else "DO UPDATE SET value = excluded.value"

    async def apply(conn: Conn) -> Finish[bool]:
        cur = await conn.execute(
            f"INSERT INTO wf.settings (name, value) VALUES (%s, %s) ON CONFLICT (name) {conflict}",
            (name, value),
        )

        async def finish() -> bool:
            return cur.rowcount == 1

        return finish

    return apply
