"""A throwaway PostgreSQL cluster for the tests (a minimal one, until the shared fixture lands).

``PgCluster`` runs initdb and pg_ctl in a temporary folder, on a free port on 127.0.0.1 with its
unix socket in that folder, as ``nobody`` when the tests run as root (initdb refuses root).
``WF_TEST_DATABASE_URL`` names a server to use instead (then restarts are not possible).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

BIN_DIRS = ("/usr/lib/postgresql/15/bin", "/usr/lib/postgresql/16/bin", "/usr/local/bin")


def find_binary(name: str) -> str | None:
    for folder in BIN_DIRS:
        candidate = Path(folder) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return shutil.which(name)


def available() -> bool:
    return bool(os.environ.get("WF_TEST_DATABASE_URL")) or all(
        find_binary(n) for n in ("initdb", "pg_ctl")
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class PgCluster:
    """One PostgreSQL server; ``url(db)`` names a database on it, ``create_database`` makes one."""

    def __init__(self) -> None:
        self.external = os.environ.get("WF_TEST_DATABASE_URL")
        self.folder: Path | None = None
        self.port = 0
        self._as_nobody = os.geteuid() == 0

    # ---- lifecycle ----------------------------------------------------------------------------
    def start(self) -> None:
        if self.external:
            return
        self.folder = Path(tempfile.mkdtemp(prefix="wf-pg-"))
        data = self.folder / "data"
        data.mkdir()
        if self._as_nobody:
            os.chmod(self.folder, 0o755)
            shutil.chown(data, "nobody", "nogroup")
        self._run(
            find_binary("initdb") or "initdb",
            "-D",
            str(data),
            "-U",
            "postgres",
            "--auth=trust",
            "--no-sync",
            "-E",
            "UTF8",
        )
        # A password for the "secret" role: the tests of a wrong password need one to refuse.
        with open(data / "pg_hba.conf", "w") as hba:
            hba.write(
                "local all all trust\n"
                "host all secret 127.0.0.1/32 scram-sha-256\n"
                "host all all 127.0.0.1/32 trust\n"
            )
        self.port = free_port()
        with open(data / "postgresql.conf", "a") as conf:
            conf.write(
                f"port = {self.port}\nlisten_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{data}'\nmax_connections = 200\n"
                "shared_buffers = 64MB\nfsync = on\nlog_min_messages = warning\n"
            )
        self.pg_ctl("start", "-w", "-t", "60", "-l", str(self.folder / "data" / "log"))
        self.sql("postgres", "CREATE ROLE secret LOGIN PASSWORD 'hunter2'")

    def stop(self) -> None:
        if self.external or self.folder is None:
            return
        with contextlib.suppress(subprocess.CalledProcessError):
            self.pg_ctl("stop", "-m", "immediate", "-w")
        shutil.rmtree(self.folder, ignore_errors=True)
        self.folder = None

    def restart(self, mode: str = "fast") -> None:
        """``pg_ctl restart -m mode``: every connection is cut; the server is back after it."""
        assert self.folder is not None, "a server given by WF_TEST_DATABASE_URL cannot restart"
        self.pg_ctl(
            "restart", "-m", mode, "-w", "-t", "60", "-l", str(self.folder / "data" / "log")
        )

    def pg_ctl(self, *args: str) -> None:
        assert self.folder is not None
        self._run(find_binary("pg_ctl") or "pg_ctl", "-D", str(self.folder / "data"), *args)

    def _run(self, *cmd: str) -> None:
        prefix = (
            ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"]
            if self._as_nobody
            else []
        )
        subprocess.run(
            [*prefix, *cmd], check=True, capture_output=True, timeout=120, stdin=subprocess.DEVNULL
        )

    # ---- databases ----------------------------------------------------------------------------
    def url(self, database: str = "postgres", user: str = "postgres", password: str = "") -> str:
        if self.external:
            base = self.external.rsplit("/", 1)[0]
            return f"{base}/{database}"
        auth = f"{user}:{password}" if password else user
        return f"postgresql://{auth}@127.0.0.1:{self.port}/{database}"

    def sql(self, database: str, statement: str) -> None:
        import psycopg

        with psycopg.connect(self.url(database), autocommit=True) as conn:
            conn.execute(statement)

    def create_database(self) -> str:
        name = f"wf_{uuid.uuid4().hex[:12]}"
        self.sql("postgres", f'CREATE DATABASE "{name}"')
        return self.url(name)

    def drop_database(self, url: str) -> None:
        name = url.rsplit("/", 1)[1]
        self.sql("postgres", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
