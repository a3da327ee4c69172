"""Opening an SQLite file safely: one live wf process at a time, never touching a foreign file."""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import urllib.parse
from pathlib import Path

from wf.engine.store.migrations import APPLICATION_ID, LATEST, migrate
from wf.errors import StoreCorrupt, StoreError, StoreLocked, StoreTooNew

DURABILITY_MODES = ("fsync", "os")


class FileLock:
    """An exclusive ``flock`` on ``<db>.lock``, held for the store's life; the kernel frees it when
    the process dies, so a lock left by a killed process never blocks a restart."""

    def __init__(self, db_path: Path) -> None:
        self.path = db_path.with_name(db_path.name + ".lock")
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            who = f" (pid {holder})" if holder else ""
            raise StoreLocked(
                f"{self.path.with_suffix('')} is in use by another wf process{who}; stop it first"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def held_elsewhere(self) -> bool:
        """Whether another process holds the lock now (this one does not ask to keep it)."""
        if self._fd is not None:
            return False
        try:
            fd = os.open(self.path, os.O_RDWR)
        except OSError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)  # closing drops a lock it may have taken
        return False

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def _read_pid(fd: int) -> str:
    try:
        return os.pread(fd, 32, 0).decode().strip()
    except OSError:
        return ""


def check_writable(path: Path) -> None:
    """Refuse, naming the file, a database (or its -wal/-shm, or its folder) this process may
    not write: SQLite would otherwise fail later with a message naming none of them, and create
    side files copying the database's read-only mode."""
    for candidate in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        if candidate.exists() and not os.access(candidate, os.W_OK):
            raise StoreError(f"{candidate} is read-only; make it writable (chmod u+w) first")
    if not os.access(path.parent, os.W_OK | os.X_OK):
        raise StoreError(f"{path.parent} is not writable; wf keeps its database there")


def verify(path: Path, *, through_log: bool = False) -> None:
    """Refuse a file that is not a wf database, is damaged, or was written by a newer wf.

    Reads only: a refused file is left exactly as it was. By default it reads the file alone
    (immutable: no locks, no -wal/-shm files created), which is exact for a file closed cleanly.
    But a process killed during a checkpoint leaves the file half updated (page 1, say, already
    counting pages only the log holds) and its write-ahead log holding the rest: SQLite reads the
    two together and loses nothing. ``through_log`` reads it that way, when it has a log; only the
    holder of the lock may, as nobody else is writing then.
    """
    if not path.exists() or path.stat().st_size == 0:
        return
    log = path.with_name(path.name + "-wal")
    whole = through_log and log.exists() and log.stat().st_size > 0
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro{'' if whole else '&immutable=1'}", uri=True)
    except sqlite3.Error as exc:
        raise StoreCorrupt(f"{path} cannot be opened as a database: {exc}") from None
    try:
        schema_version(conn, path)
    finally:
        conn.close()


def schema_version(conn: sqlite3.Connection, path: Path) -> int:
    """The schema version of a wf database (0: nothing in it yet); refuses a foreign, damaged or
    newer one."""
    try:
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        version: int = conn.execute("PRAGMA user_version").fetchone()[0]
        tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
    except sqlite3.DatabaseError as exc:
        raise StoreCorrupt(f"{path} is not a wf database or is damaged ({exc})") from None
    if app_id != APPLICATION_ID and (tables or version):
        raise StoreCorrupt(
            f"{path} is an SQLite database, but not one of wf's; refusing to touch it"
        )
    if version > LATEST:
        raise StoreTooNew(
            f"{path} has schema version {version}, newer than this wf understands ({LATEST}); "
            "upgrade wf"
        )
    return version


def connect(path: Path, durability: str) -> sqlite3.Connection:
    """A connection in WAL mode, autocommit (transactions are explicit), with the given durability.

    ``fsync``: every commit is on disk before it returns. ``os``: a commit is handed to the OS,
    which survives the process dying but not the machine losing power.
    """
    if durability not in DURABILITY_MODES:
        raise StoreError(f'durability must be "fsync" or "os", got {durability!r}')
    try:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30.0)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"PRAGMA synchronous = {'FULL' if durability == 'fsync' else 'NORMAL'}")
        conn.execute("PRAGMA busy_timeout = 30000")
        conn.execute("PRAGMA temp_store = MEMORY")
    except sqlite3.OperationalError as exc:
        if "locked" in str(exc) or "busy" in str(exc):
            raise StoreError(f"{path} is busy: another process holds it ({exc})") from None
        raise StoreError(f"{path} cannot be opened: {exc}") from None
    except sqlite3.DatabaseError as exc:
        raise StoreCorrupt(f"{path} is not a wf database or is damaged ({exc})") from None
    return conn


def connect_read_only(path: Path) -> sqlite3.Connection:
    """A connection that can only read (``mode=ro``): it sees what the database's owner has
    committed, beside it (WAL), and takes no lock that could hold the owner up."""
    uri = f"file:{urllib.parse.quote(str(path))}?mode=ro"
    try:
        conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA busy_timeout = 30000")
        conn.execute("PRAGMA temp_store = MEMORY")
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{path} cannot be opened for reading: {exc}") from None
    return conn


def connect_empty() -> sqlite3.Connection:
    """An empty wf database in memory: what a database not created yet reads as."""
    conn = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
    migrate(conn)
    return conn
