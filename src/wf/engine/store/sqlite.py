"""The embedded default store: one SQLite file in WAL mode.

Writes go through one group-commit writer (``writer.py``): on the event loop's thread when this
process owns the file, on a thread of its own when it shares it with other processes (a ``wf serve``
worker). Reads run on a small pool of reader threads with their own connections; a store opened
``read_only`` has only those, and no lock (it reads beside whoever owns the file). The SQL lives in
``sqlite_rows`` (reading), ``sqlite_controls`` (whole instances) and ``sqlite_runs`` (a runner's
fenced writes); this class wires them to the threads.
"""

from __future__ import annotations

import asyncio
import functools
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal, TypeVar

from wf.engine.counters import WriteStats
from wf.engine.flow import FlowControl
from wf.engine.model import (
    AttemptRecord,
    ClaimRound,
    ErrorInfo,
    EventRecord,
    History,
    InstanceRow,
    NewInstance,
    RestartFrom,
    Status,
    StepRecord,
    StepState,
    VersionRow,
)
from wf.engine.store import sqlite_controls as controls
from wf.engine.store import sqlite_deploys as deploys
from wf.engine.store import sqlite_file, stats_sql
from wf.engine.store import sqlite_runs as runs
from wf.engine.store import sqlite_schedules as schedules
from wf.engine.store.base import Listener
from wf.engine.store.flow_sql import next_start_sql
from wf.engine.store.listing import InstanceFilter, order_clause, where_clause
from wf.engine.store.migrations import LATEST, migrate
from wf.engine.store.sqlite_rows import (
    FINISHED_SQL,
    INSTANCE_COLUMNS,
    dump_error,
    find_instance,
    read_events,
    read_history,
    row_to_instance,
)
from wf.engine.store.stats_sql import StatsRows
from wf.engine.store.writer import GroupCommitWriter, InlineWriter, Pending
from wf.errors import StoreError

T = TypeVar("T")


class SqliteStore:
    """See :class:`wf.engine.store.base.Store` for the contract of every method."""

    def __init__(
        self,
        path: str | Path,
        *,
        durability: str = "fsync",
        readers: int = 4,
        shared: bool = False,
        read_only: bool = False,
    ) -> None:
        """``shared``: another process (a ``wf serve`` server) owns the database and holds its
        lock; this one (its worker) only joins it: no lock, no migrations. ``read_only``: only
        read (no lock, no migrations, no writer), beside whoever owns the file or nobody; a
        database not created yet reads as an empty one."""
        if shared and read_only:
            raise ValueError("a store is shared or read-only, not both")
        self.path = Path(path)
        self.durability = durability
        self.shared = shared
        self.read_only = read_only
        self._nothing_yet = False  # read-only, and there is no database yet
        self._lock = sqlite_file.FileLock(self.path)
        self._reader_count = readers
        self._writer: InlineWriter | GroupCommitWriter | None = None
        self._readers: ThreadPoolExecutor | None = None
        self._local = threading.local()
        self._reader_conns: list[sqlite3.Connection] = []
        self._conns_lock = threading.Lock()
        self._open = False
        self._identity: tuple[int, int] | None = None

    # ---- lifecycle ----------------------------------------------------------------------------
    @property
    def _wal(self) -> Path:
        return self.path.with_name(self.path.name + "-wal")

    def _connect(self) -> sqlite3.Connection:
        return sqlite_file.connect(self.path, self.durability)

    async def open(self) -> None:
        await asyncio.to_thread(self.open_sync)

    def open_sync(self) -> None:
        if self._open:
            raise StoreError(f"{self.path} is already open")
        if self.durability not in sqlite_file.DURABILITY_MODES:
            raise StoreError(f'durability must be "fsync" or "os", got {self.durability!r}')
        if self.read_only:
            self._open_read_only()
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create {self.path.parent}: {exc.strerror}") from None
        sqlite_file.check_writable(self.path)
        if self.shared:
            self._open_shared()
            return
        try:
            sqlite_file.verify(self.path)  # before the lock file: a refused file gets no sibling
            refused = None
        except StoreError as exc:
            refused = exc
        self._lock.acquire()
        try:
            if refused is not None:
                # Perhaps read while another process was writing it, or left half checkpointed
                # by a killed one: look again, through the log, now that nobody else can write.
                sqlite_file.verify(self.path, through_log=True)
            conn = self._connect()
            try:
                migrate(conn)
            finally:
                conn.close()
            self._identity = _identity(self.path)
            self._writer = InlineWriter(
                self._connect, self._wal, self.durability == "fsync", self._same_file
            )
            self._writer.start()
            self._readers = ThreadPoolExecutor(
                max_workers=self._reader_count, thread_name_prefix="wf-reader"
            )
        except sqlite3.Error as exc:
            self._lock.release()
            raise StoreError(f"{self.path}: {exc}") from None
        except BaseException:
            self._lock.release()
            raise
        self._open = True

    def held_elsewhere(self) -> bool:
        """Whether another wf process has the database open (holds its lock) now."""
        return self._lock.held_elsewhere()

    def _open_shared(self) -> None:
        if not self.path.is_file():
            raise StoreError(f"{self.path} does not exist; the server creates it")
        conn = self._connect()
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
        finally:
            conn.close()
        if version != LATEST:
            raise StoreError(f"{self.path} has schema {version}; this wf expects {LATEST}")
        self._identity = _identity(self.path)
        self._writer = GroupCommitWriter(
            self._connect, self._wal, self.durability == "fsync", self.path.name, self._same_file
        )
        self._writer.start()
        self._readers = ThreadPoolExecutor(
            max_workers=self._reader_count, thread_name_prefix="wf-reader"
        )
        self._open = True

    def _open_read_only(self) -> None:
        version = 0
        if self.path.is_file():
            conn = sqlite_file.connect_read_only(self.path)
            try:
                version = sqlite_file.schema_version(conn, self.path)
            finally:
                conn.close()
        if version not in (0, LATEST):
            raise StoreError(
                f"{self.path} has schema {version}; this wf reads {LATEST} (a wf that runs the "
                "project upgrades it)"
            )
        self._nothing_yet = version == 0
        self._readers = ThreadPoolExecutor(
            max_workers=self._reader_count, thread_name_prefix="wf-reader"
        )
        self._open = True

    def _same_file(self) -> None:
        """Before each commit: the file this store opened is still the one at its path.
        Writing on to a deleted (or replaced) database would lose every write silently."""
        if _identity(self.path) != self._identity:
            raise StoreError(
                f"{self.path} was deleted or replaced while this server ran; nothing more is "
                "written to the old file: restart the server"
            )

    async def close(self) -> None:
        await asyncio.to_thread(self.close_sync)

    def close_sync(self) -> None:
        if not self._open:
            return
        self._open = False
        assert self._readers is not None
        if self._writer is not None:
            self._writer.close()
        self._readers.shutdown(wait=True)
        with self._conns_lock:
            for conn in self._reader_conns:
                conn.close()
            self._reader_conns.clear()
        self._local = threading.local()
        if not self.shared and not self.read_only:
            self._lock.release()

    # ---- plumbing -----------------------------------------------------------------------------
    def _reader(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect_reader()
            self._local.conn = conn
            with self._conns_lock:
                self._reader_conns.append(conn)
        return conn

    def _connect_reader(self) -> sqlite3.Connection:
        if not self.read_only:
            return self._connect()
        if self._nothing_yet:
            return sqlite_file.connect_empty()
        return sqlite_file.connect_read_only(self.path)

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if not self._open or self._readers is None:
            raise StoreError("the store is closed")

        def run() -> T:
            conn = self._reader()
            try:
                conn.execute("BEGIN")
                try:
                    return fn(conn)
                finally:
                    conn.execute("COMMIT")
            except sqlite3.Error as exc:
                raise StoreError(f"database read failed: {exc}") from None

        return await asyncio.get_running_loop().run_in_executor(self._readers, run)

    def _write(self, fn: Callable[[sqlite3.Connection], T], durable: bool = True) -> Pending[T]:
        """Submit a write. ``durable=False``: a lazy write (see ``writer.py``), fsynced with the
        next durable one; for what a crash of the machine (not of the process) may lose."""
        if self.read_only:
            return Pending.failed(StoreError(f"{self.path} is open read-only here"))
        if self._writer is None:
            return Pending.failed(StoreError("the store is closed"))
        return self._writer.submit(fn, durable)

    @property
    def commits(self) -> int:
        """Transactions committed (each serving every write pending at the time)."""
        return 0 if self._writer is None else self._writer.commits

    @property
    def jobs(self) -> int:
        """Writes applied."""
        return 0 if self._writer is None else self._writer.jobs

    @property
    def write_stats(self) -> WriteStats | None:
        """Commits, the writes each served and how long each took (for metrics)."""
        return None if self._writer is None else self._writer.stats

    # ---- instances ----------------------------------------------------------------------------
    async def create_instances(
        self, new: Sequence[NewInstance], *, skip_existing: bool
    ) -> list[InstanceRow]:
        return await self._write(
            functools.partial(controls.create_instances, new=new, skip_existing=skip_existing)
        )

    async def get_instance(self, workflow: str, instance_id: str) -> InstanceRow | None:
        return await self._read(
            lambda conn: find_instance(conn, "workflow = ? AND id = ?", (workflow, instance_id))
        )

    async def latest_instance(self, workflow: str) -> InstanceRow | None:
        return await self._read(
            lambda conn: find_instance(
                conn, "workflow = ? ORDER BY created DESC, pk DESC LIMIT 1", (workflow,)
            )
        )

    async def list_instances(
        self,
        workflow: str,
        *,
        status: Status | None,
        offset: int,
        limit: int,
        newest_first: bool,
        id_prefix: str | None = None,
        since: float | None = None,
        until: float | None = None,
    ) -> tuple[list[InstanceRow], int]:
        chosen = InstanceFilter(status, id_prefix, since, until)
        where, args = where_clause(workflow, chosen, "?")
        order = order_clause(chosen, newest_first)

        def read(conn: sqlite3.Connection) -> tuple[list[InstanceRow], int]:
            total = conn.execute(f"SELECT count(*) FROM instances WHERE {where}", args).fetchone()
            rows = conn.execute(
                f"SELECT {INSTANCE_COLUMNS} FROM instances WHERE {where} "
                f"ORDER BY {order} LIMIT ? OFFSET ?",
                (*args, limit, offset),
            ).fetchall()
            return [row_to_instance(r) for r in rows], total[0]

        return await self._read(read)

    async def newest_pk(self, workflow: str) -> int:
        def read(conn: sqlite3.Connection) -> int:
            row = conn.execute(
                "SELECT max(pk) FROM instances WHERE workflow = ?", (workflow,)
            ).fetchone()
            return int(row[0] or 0)

        return await self._read(read)

    async def list_after(
        self, workflow: str, statuses: Sequence[Status], after_pk: int, upto_pk: int, limit: int
    ) -> list[InstanceRow]:
        marks = ", ".join("?" * len(statuses))
        sql = (
            f"SELECT {INSTANCE_COLUMNS} FROM instances WHERE workflow = ? AND status IN ({marks}) "
            "AND pk > ? AND pk <= ? ORDER BY pk LIMIT ?"
        )
        args = (workflow, *(s.value for s in statuses), after_pk, upto_pk, limit)
        return await self._read(
            lambda conn: [row_to_instance(r) for r in conn.execute(sql, args).fetchall()]
        )

    async def read_stats(self, workflows: Sequence[str], since: float) -> StatsRows:
        def read(conn: sqlite3.Connection) -> StatsRows:
            found = [
                conn.execute(sql, args).fetchall()
                for sql, args in stats_sql.queries("sqlite", workflows, since)
            ]
            return stats_sql.rows_of(found)

        return await self._read(read)

    async def count_statuses(self, workflow: str) -> dict[str, int]:
        def read(conn: sqlite3.Connection) -> dict[str, int]:
            counts = {s.value: 0 for s in Status}
            for status, n in conn.execute(
                "SELECT status, count(*) FROM instances WHERE workflow = ? GROUP BY status",
                (workflow,),
            ):
                counts[status] = n
            return counts

        return await self._read(read)

    async def workflow_times(
        self, workflow: str
    ) -> tuple[float | None, float | None, float | None]:
        def read(conn: sqlite3.Connection) -> tuple[float | None, float | None, float | None]:
            row = conn.execute(
                "SELECT min(created), max(created), max(modified) FROM instances "
                "WHERE workflow = ?",
                (workflow,),
            ).fetchone()
            return (row[0], row[1], row[2]) if row else (None, None, None)

        return await self._read(read)

    async def workflows_with_instances(self) -> list[str]:
        """The names of the workflows that have instances, sorted."""
        return await self._read(
            lambda conn: [
                name
                for (name,) in conn.execute("SELECT DISTINCT workflow FROM instances ORDER BY 1")
            ]
        )

    async def load_history(self, pk: int) -> History:
        return await self._read(lambda conn: read_history(conn, pk))

    async def load_events(self, pk: int) -> list[EventRecord]:
        return await self._read(lambda conn: read_events(conn, pk))

    async def delete_workflow(self, workflow: str) -> int:
        return await self._write(functools.partial(controls.delete_workflow, workflow=workflow))

    # ---- claims and timers --------------------------------------------------------------------
    async def claim_ready(
        self,
        owner: str,
        now: float,
        limit: int,
        workflows: Sequence[str],
        lease: float,
        version: str | None = None,
        suspects: int = 0,
        flows: Mapping[str, FlowControl] | None = None,
    ) -> ClaimRound:
        return await self._write(
            functools.partial(
                controls.claim_ready,
                flows=flows,
                owner=owner,
                now=now,
                limit=limit,
                workflows=workflows,
                lease=lease,
                version=version,
                suspects=suspects,
            )
        )

    async def next_wake_at(
        self,
        workflows: Sequence[str],
        version: str | None = None,
        flows: Mapping[str, FlowControl] | None = None,
        now: float = 0.0,
    ) -> float | None:
        names = list(workflows)
        rated = [(n, f) for n, f in (flows or {}).items() if f.rate_limit and n in names]
        marks = ",".join("?" * len(names))
        pin = " AND +version_id = ?" if version is not None else ""
        args = [*names, *([version] if version is not None else [])]

        def read(conn: sqlite3.Connection) -> float | None:
            row = conn.execute(
                "SELECT wake_at FROM instances WHERE status = 'waiting' AND owner IS NULL "
                f"AND wake_at IS NOT NULL AND +workflow IN ({marks}){pin} "
                "ORDER BY wake_at LIMIT 1",
                args,
            ).fetchone()
            times = [] if row is None else [float(row[0])]
            for name, flow in rated:
                period = flow.rate_period or 0.0
                allowed = conn.execute(
                    next_start_sql(flow, postgres=False),
                    {"w": name, "since": now - period, "period": period},
                ).fetchone()
                if allowed is not None and allowed[0] is not None:
                    times.append(float(allowed[0]))
            return min(times, default=None)

        return await self._read(read)

    async def release_claims(self, owner: str, crashed: bool = False, now: float = 0.0) -> int:
        return await self._write(
            functools.partial(controls.release_claims, owner=owner, crashed=crashed, now=now)
        )

    async def upgrade(self, pk: int, version: str, now: float) -> InstanceRow:
        return await self._write(
            functools.partial(controls.upgrade, pk=pk, version=version, now=now)
        )

    async def count_unfinished_by_version(self, workflow: str | None = None) -> dict[str, int]:
        where = "workflow = ? AND " if workflow is not None else ""
        args = (workflow,) if workflow is not None else ()

        def read(conn: sqlite3.Connection) -> dict[str, int]:
            return dict(
                conn.execute(
                    f"SELECT version_id, count(*) FROM instances WHERE {where}"
                    f"status NOT IN {FINISHED_SQL} GROUP BY version_id",
                    args,
                ).fetchall()
            )

        return await self._read(read)

    async def renew_leases(self, owner: str, lease: float) -> dict[int, tuple[Status, int]]:
        return await self._write(functools.partial(controls.renew_leases, owner=owner, lease=lease))

    async def release_dead_claims(self, crashed: bool = False, now: float = 0.0) -> int:
        # This process holds the file lock, so whoever else held a claim is dead.
        return await self._write(
            functools.partial(controls.release_all_claims, crashed=crashed, now=now)
        )

    async def purge_finished(self, before: float) -> int:
        return await self._write(functools.partial(controls.purge_finished, before=before))

    async def purge_by_own_retention(self, now: float) -> int:
        return await self._write(functools.partial(controls.purge_by_own_retention, now=now))

    async def delete_instances(self, pks: Sequence[int]) -> list[int]:
        return await self._write(functools.partial(controls.delete_by_pk, pks=list(pks)))

    # ---- controls -----------------------------------------------------------------------------
    async def pause(self, pk: int, now: float) -> InstanceRow:
        return await self._write(functools.partial(controls.pause, pk=pk, now=now))

    async def resume(self, pk: int, now: float) -> InstanceRow:
        return await self._write(functools.partial(controls.resume, pk=pk, now=now))

    async def terminate(
        self, pk: int, now: float, source: str, rollback: str | None = None
    ) -> InstanceRow:
        return await self._write(
            functools.partial(controls.terminate, pk=pk, now=now, source=source, rollback=rollback)
        )

    async def restart(
        self,
        pk: int,
        now: float,
        rehome: str | None = None,
        *,
        from_step: RestartFrom | None = None,
        params: str | None = None,
        record: str | None = None,
    ) -> InstanceRow:
        return await self._write(
            functools.partial(
                controls.restart,
                pk=pk,
                now=now,
                rehome=rehome,
                from_step=from_step,
                params=params,
                record=record,
            )
        )

    async def send_event(
        self, pk: int, event_type: str, payload: str, now: float
    ) -> tuple[InstanceRow, EventRecord]:
        return await self._write(
            functools.partial(
                controls.send_event, pk=pk, event_type=event_type, payload=payload, now=now
            )
        )

    # ---- a runner's writes, fenced by epoch ---------------------------------------------------
    def set_status(
        self, pk: int, epoch: int, status: Status, now: float, wake_at: float | None = None
    ) -> Pending[bool]:
        return self._write(
            functools.partial(
                runs.set_status, pk=pk, epoch=epoch, status=status, now=now, wake_at=wake_at
            ),
            durable=False,  # what the instance shows; recovery does not depend on it
        )

    def start_step(self, pk: int, epoch: int, step: StepRecord) -> Pending[bool]:
        return self._write(functools.partial(runs.start_step, pk=pk, epoch=epoch, step=step))

    def update_step_timer(
        self, pk: int, epoch: int, step: StepRecord, *, started: float | None = None
    ) -> Pending[bool]:
        return self._write(
            functools.partial(
                runs.update_step_timer, pk=pk, epoch=epoch, step=step, started=started
            )
        )

    def start_attempt(
        self, pk: int, epoch: int, step: StepRecord, attempt: AttemptRecord, *, first: bool = False
    ) -> Pending[bool]:
        # Lazy: on disk before the body runs as far as a crash of the process goes; a crash of
        # the machine before the next fsync (the attempt's outcome, or a second) may lose it.
        return self._write(
            functools.partial(
                runs.start_attempt, pk=pk, epoch=epoch, step=step, attempt=attempt, first=first
            ),
            durable=False,
        )

    def end_attempt(
        self,
        pk: int,
        epoch: int,
        step: StepRecord,
        attempt: AttemptRecord,
        finish: StepState | None = None,
    ) -> Pending[bool]:
        return self._write(
            functools.partial(
                runs.end_attempt, pk=pk, epoch=epoch, step=step, attempt=attempt, finish=finish
            )
        )

    def end_step(self, pk: int, epoch: int, step: StepRecord, state: StepState) -> Pending[bool]:
        return self._write(
            functools.partial(runs.end_step, pk=pk, epoch=epoch, step=step, state=state)
        )

    def consume_event(
        self, pk: int, epoch: int, step: StepRecord, now: float
    ) -> Pending[EventRecord | Literal[False, "pausing"] | None]:
        return self._write(
            functools.partial(runs.consume_event, pk=pk, epoch=epoch, step=step, now=now)
        )

    def hibernate(
        self,
        pk: int,
        epoch: int,
        wake_at: float | None,
        now: float,
        event_types: Sequence[str] = (),
        children: Sequence[int] = (),
    ) -> Pending[bool]:
        return self._write(
            functools.partial(
                runs.hibernate,
                pk=pk,
                epoch=epoch,
                wake_at=wake_at,
                now=now,
                event_types=tuple(event_types),
                children=tuple(children),
            )
        )

    def start_child(
        self, pk: int, epoch: int, step: StepRecord, child: NewInstance
    ) -> Pending[InstanceRow | Literal[False] | None]:
        return self._write(
            functools.partial(controls.start_child, pk=pk, epoch=epoch, step=step, child=child)
        )

    async def children(self, pk: int) -> list[InstanceRow]:
        return await self._read(functools.partial(controls.children, pk=pk))

    def release(self, pk: int, epoch: int) -> Pending[bool]:
        return self._write(functools.partial(runs.release, pk=pk, epoch=epoch))

    def set_rollback(self, pk: int, epoch: int, state: str) -> Pending[bool]:
        return self._write(functools.partial(runs.set_rollback, pk=pk, epoch=epoch, state=state))

    def reach_pause(self, pk: int, epoch: int, now: float) -> Pending[bool]:
        return self._write(functools.partial(runs.reach_pause, pk=pk, epoch=epoch, now=now))

    def finish(
        self,
        pk: int,
        epoch: int,
        status: Status,
        now: float,
        output: str | None,
        error: ErrorInfo | None,
    ) -> Pending[bool]:
        return self._write(
            functools.partial(
                runs.finish,
                pk=pk,
                epoch=epoch,
                status=status,
                now=now,
                output=output,
                error_text=dump_error(error),
            )
        )

    # ---- cron schedules --------------------------------------------------------------------------
    async def last_firing(self, workflow: str, cron: str) -> float | None:
        return await self._read(lambda conn: schedules.last_firing(conn, workflow, cron))

    async def record_firing(self, workflow: str, cron: str, fired: float) -> None:
        await self._write(
            functools.partial(schedules.record_firing, workflow=workflow, cron=cron, fired=fired)
        )

    # ---- what wf serve keeps: versions, bundles, secrets, settings ------------------------------
    async def list_versions(self) -> list[VersionRow]:
        return await self._read(deploys.list_versions)

    async def activate_version(
        self,
        version_id: str,
        created: float,
        workflows: list[dict[str, Any]],
        files: int,
        size: int,
        retention: float | None = None,
    ) -> VersionRow:
        return await self._write(
            functools.partial(
                deploys.activate_version,
                version_id=version_id,
                created=created,
                workflows=workflows,
                files=files,
                size=size,
                retention=retention,
            )
        )

    async def purge_by_version_retention(self, now: float, default: float) -> int:
        return await self._write(
            functools.partial(deploys.purge_by_version_retention, now=now, default=default)
        )

    async def try_unload(self, version_id: str, now: float) -> bool:
        return await self._write(
            functools.partial(deploys.try_unload, version_id=version_id, now=now)
        )

    async def put_bundle(self, version_id: str, data: bytes) -> None:
        await self._write(functools.partial(deploys.put_bundle, version_id=version_id, data=data))

    async def get_bundle(self, version_id: str) -> bytes | None:
        return await self._read(lambda conn: deploys.get_bundle(conn, version_id))

    async def get_setting(self, name: str) -> str | None:
        return await self._read(lambda conn: deploys.get_setting(conn, name))

    async def put_setting(self, name: str, value: str, *, only_if_missing: bool = False) -> bool:
        return await self._write(
            functools.partial(
                deploys.put_setting, name=name, value=value, only_if_missing=only_if_missing
            )
        )

    async def put_secret(self, name: str, value: str, now: float) -> None:
        await self._write(functools.partial(deploys.put_secret, name=name, value=value, now=now))

    async def delete_secret(self, name: str) -> bool:
        return await self._write(functools.partial(deploys.delete_secret, name=name))

    async def list_secrets(self) -> list[tuple[str, float]]:
        return await self._read(deploys.list_secrets)

    async def secret_values(self) -> dict[str, str]:
        return await self._read(deploys.secret_values)

    async def live_owners(self) -> list[str]:
        """Owners holding a claim with a live lease (an idle one holds none: one process tree
        owns a SQLite file, so nobody asks who else is there)."""
        return await self._read(
            lambda conn: [
                owner
                for (owner,) in conn.execute(
                    "SELECT DISTINCT owner FROM instances WHERE owner IS NOT NULL "
                    "AND lease_until > ? ORDER BY 1",
                    (time.time(),),
                )
            ]
        )

    # ---- messages between processes: one process tree owns a SQLite file, so none -----------
    def publish(self, topic: str, payload: dict[str, Any]) -> None:
        pass

    def listen(self, callback: Listener) -> None:
        pass


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        info = path.stat()
    except OSError:
        return None
    return info.st_dev, info.st_ino
