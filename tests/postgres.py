"""Throwaway PostgreSQL servers for the tests: a cluster of our own (initdb + pg_ctl in a temporary
folder, on a free port of 127.0.0.1), or the server ``WF_TEST_DATABASE_URL`` names.

Tests get a fresh, empty database each (``TestServer.new_database``). When neither is available the
tests that need PostgreSQL are skipped, unless ``WF_REQUIRE_POSTGRES=1`` (CI), where they fail.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path

import psycopg
from psycopg import sql

SKIP_REASON = "PostgreSQL is not available"
HOW_TO = (
    "install PostgreSQL (apt-get install postgresql) or set WF_TEST_DATABASE_URL=postgresql://... "
    "to a server the tests may create databases on"
)
# The tests' server favours speed over surviving a power cut: a crash of PostgreSQL itself (what
# the chaos tests do) keeps everything, since the OS still holds what it wrote.
PASSWORD_ROLE, PASSWORD = "secret", "hunter2"  # a role of our clusters that logs in with a password
FAST_SETTINGS = {
    "fsync": "off",
    "synchronous_commit": "on",
    "full_page_writes": "off",
    "max_connections": "300",
    "shared_buffers": "128MB",
}


def required() -> bool:
    return os.environ.get("WF_REQUIRE_POSTGRES", "") not in ("", "0")


def find_binaries() -> Path | None:
    """The folder holding initdb and pg_ctl, on PATH or where Debian puts them."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(found).resolve().parent
    for folder in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (folder / "initdb").exists() and (folder / "pg_ctl").exists():
            return folder
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Cluster:
    """A PostgreSQL cluster of our own in ``root``, run by an unprivileged user when we are root
    (initdb refuses root)."""

    def __init__(
        self, root: Path, bin_dir: Path, *, settings: dict[str, str] | None = None
    ) -> None:
        self.root = root
        self.data = root / "data"
        self.log = root / "server.log"
        self.bin = bin_dir
        self.port = free_port()
        self.settings = {**FAST_SETTINGS, **(settings or {})}
        self._as_user: list[str] = []
        if os.geteuid() == 0:
            self._as_user = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"]

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def url(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, *args: str) -> None:
        done = subprocess.run(
            [*self._as_user, *args], capture_output=True, text=True, timeout=120, check=False
        )
        if done.returncode != 0:
            tail = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise RuntimeError(
                f"{Path(args[0]).name} failed ({done.returncode}): {done.stderr.strip()}\n{tail}"
            )

    def init(self) -> Cluster:
        self.root.mkdir(parents=True, exist_ok=True)
        if self._as_user:
            shutil.chown(self.root, "nobody", "nogroup")
        self._run(
            str(self.bin / "initdb"),
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--no-sync",
            "--no-instructions",
        )
        # The role "secret" must give its password (the tests of a wrong password need a server
        # that asks); everyone else is trusted on loopback.
        (self.data / "pg_hba.conf").write_text(
            "local all all trust\n"
            f"host all {PASSWORD_ROLE} 127.0.0.1/32 scram-sha-256\n"
            "host all all 127.0.0.1/32 trust\n"
        )
        return self

    def start(self) -> None:
        options = " ".join(
            [
                f"-p {self.port}",
                f"-k {self.root}",
                "-c listen_addresses=127.0.0.1",
                *(f"-c {name}={value}" for name, value in self.settings.items()),
            ]
        )
        self._run(
            str(self.bin / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.log),
            "-o",
            options,
            "-w",
            "-t",
            "60",
            "start",
        )

    def stop(self, mode: str = "fast") -> None:
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def restart(self, mode: str = "fast") -> None:
        """``pg_ctl restart -m fast|immediate``: every connection is cut."""
        self.stop(mode)
        self.start()

    def is_running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def destroy(self) -> None:
        with contextlib.suppress(RuntimeError):
            if self.is_running():
                self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


class TestServer:
    """Where the tests' databases come from: a cluster of ours or a server given by URL."""

    __test__ = False  # not a test class, whatever its name

    def __init__(self, admin_url: str, cluster: Cluster | None = None) -> None:
        self.admin_url = admin_url
        self.cluster = cluster
        self._databases: list[str] = []

    def _admin(self) -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(self.admin_url, autocommit=True, connect_timeout=10)

    @property
    def external(self) -> bool:
        """The server is WF_TEST_DATABASE_URL's: it is not ours to restart."""
        return self.cluster is None

    def url(self, database: str, user: str | None = None, password: str | None = None) -> str:
        info = psycopg.conninfo.conninfo_to_dict(self.admin_url)
        info["dbname"] = database
        if user is not None:
            info["user"] = user
            info.pop("password", None)
        if password is not None:
            info["password"] = password
        return _to_url(info)

    def restart(self, mode: str = "fast") -> None:
        """``pg_ctl restart -m fast|immediate`` of our own cluster: every connection is cut."""
        if self.cluster is None:
            raise RuntimeError("a server given by WF_TEST_DATABASE_URL is not restarted")
        self.cluster.restart(mode)

    def new_database(self) -> str:
        """A fresh, empty database; its URL."""
        name = f"wf_test_{uuid.uuid4().hex[:12]}"
        with self._admin() as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        self._databases.append(name)
        return self.url(name)

    def drop_database(self, url: str) -> None:
        name = str(psycopg.conninfo.conninfo_to_dict(url)["dbname"])
        with contextlib.suppress(psycopg.Error), self._admin() as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )

    def close(self) -> None:
        if self.cluster is not None:
            self.cluster.destroy()
            shutil.rmtree(self.cluster.root.parent, ignore_errors=True)
        else:
            for name in self._databases:
                self.drop_database(self.url(name))


def _to_url(info: Mapping[str, object]) -> str:
    user = info.get("user", "")
    password = info.get("password")
    auth = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    host = info.get("host", "127.0.0.1")
    port = info.get("port", 5432)
    named = ("user", "password", "host", "port", "dbname")
    extra = {k: v for k, v in info.items() if k not in named}
    query = "&".join(f"{k}={v}" for k, v in extra.items())
    return f"postgresql://{auth}{host}:{port}/{info['dbname']}" + (f"?{query}" if query else "")


def start_test_server() -> TestServer | None:
    """The tests' server, or None when there is none to be had."""
    given = os.environ.get("WF_TEST_DATABASE_URL")
    if given:
        return TestServer(given)
    bin_dir = find_binaries()
    if bin_dir is None:
        return None
    root = _new_root()
    cluster = Cluster(root / "cluster", bin_dir)
    try:
        cluster.init().start()
        with psycopg.connect(cluster.admin_url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                    sql.Identifier(PASSWORD_ROLE), sql.Literal(PASSWORD)
                )
            )
    except BaseException:
        cluster.destroy()
        shutil.rmtree(root, ignore_errors=True)
        raise
    return TestServer(cluster.admin_url, cluster)


def _new_root() -> Path:
    # Not under pytest's tmp_path: its folders are 0700, which the server's user cannot enter.
    root = Path(tempfile.mkdtemp(prefix="wf-pg-"))
    root.chmod(0o755)
    return root


@contextlib.contextmanager
def own_cluster(settings: dict[str, str] | None = None) -> Iterator[Cluster]:
    """A cluster of one's own (for tests that restart PostgreSQL, and for the benchmarks)."""
    bin_dir = find_binaries()
    if bin_dir is None:
        raise RuntimeError(f"{SKIP_REASON}: {HOW_TO}")
    root = _new_root()
    cluster = Cluster(root / "cluster", bin_dir, settings=settings)
    try:
        cluster.init().start()
        yield cluster
    finally:
        cluster.destroy()
        shutil.rmtree(root, ignore_errors=True)
