"""The benchmark's PostgreSQL server: one throwaway cluster per ``python -m bench`` run, started
with tests/postgres.py's ``Cluster`` (initdb + pg_ctl, 127.0.0.1 on a free port, as ``nobody``
when run as root), its data folder on the same disk as the other engines' temporary folders.

Unlike the tests' server it is durable, as a production one is: ``fsync``, ``synchronous_commit``
and ``full_page_writes`` on. Everything else is PostgreSQL's default but for what a careful user
sets on a dedicated machine: ``shared_buffers`` (the default 128 MB is meant for a shared laptop).
Every measurement gets a fresh database (``new_database``), dropped after it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
import uuid
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from tests.postgres import Cluster, find_binaries

SETTINGS = {
    "fsync": "on",
    "synchronous_commit": "on",
    "full_page_writes": "on",
    "shared_buffers": "512MB",
    # tests.postgres raises it for its many test databases; the bench needs PostgreSQL's default.
    "max_connections": "100",
}
# What the JSON records of the server as it really ran (read back from it).
REPORTED = (
    "fsync",
    "synchronous_commit",
    "full_page_writes",
    "wal_sync_method",
    "wal_level",
    "shared_buffers",
    "max_connections",
    "max_wal_size",
    "checkpoint_timeout",
    "commit_delay",
)


class Unavailable(RuntimeError):
    """No server can be started here: no PostgreSQL binaries, or no folder its user may use."""


class BenchServer:
    """A durable throwaway PostgreSQL cluster; ``close`` (or the ``with`` block's end) stops it
    and removes its folder."""

    def __init__(self, parent: Path | None = None) -> None:
        bin_dir = find_binaries()
        if bin_dir is None:
            raise Unavailable("PostgreSQL is not installed (no initdb or pg_ctl found)")
        if os.geteuid() == 0:  # the server runs as nobody: it must be able to reach its folder
            folder = (parent or Path(tempfile.gettempdir())).resolve()
            path = (folder, *folder.parents)
            shut = next((p for p in path if not p.stat().st_mode & stat.S_IXOTH), None)
            if shut is not None:
                raise Unavailable(
                    f"PostgreSQL runs as nobody, who may not enter {shut}: "
                    "give --tmp a folder every user may enter"
                )
        # Its own folder beside the runs' (mkdtemp's 0700 folders are closed to the server's user).
        self.root = Path(tempfile.mkdtemp(prefix="wf-bench-pg-", dir=parent))
        self.root.chmod(0o755)
        self.cluster = Cluster(self.root / "cluster", bin_dir, settings=SETTINGS)
        try:
            self.cluster.init().start()
        except BaseException:
            self.close()
            raise

    def _admin(self) -> psycopg.Connection[tuple[Any, ...]]:
        return psycopg.connect(self.cluster.admin_url, autocommit=True, connect_timeout=10)

    def new_database(self) -> str:
        """A fresh, empty database; its URL."""
        name = f"bench_{uuid.uuid4().hex[:12]}"
        with self._admin() as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.cluster.url(name)

    def drop_database(self, url: str) -> None:
        name = url.rsplit("/", 1)[1]
        with contextlib.suppress(psycopg.Error), self._admin() as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )

    def describe(self) -> dict[str, Any]:
        """The server's version and the settings it runs with, for the JSON."""
        with self._admin() as conn:
            version = conn.execute("SHOW server_version").fetchone()
            rows = conn.execute(
                "SELECT name, current_setting(name) FROM unnest(%s::text[]) AS name",
                [list(REPORTED)],
            ).fetchall()
        return {
            "version": str(version[0]) if version else "?",
            "settings": {str(name): str(value) for name, value in rows},
            "data_dir": str(self.cluster.data),
        }

    def close(self) -> None:
        """Stop the server (immediately: nothing in it is kept) and remove its folder."""
        self.cluster.destroy()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> BenchServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def database_mib(url: str) -> float:
    """The size of a database on disk, in MiB."""
    with psycopg.connect(url, connect_timeout=10) as conn:
        row = conn.execute("SELECT pg_database_size(current_database())").fetchone()
    return float(row[0]) / (1024 * 1024) if row else 0.0
