"""The embedded default store: one SQLite file in WAL mode.

Writes go through one group-commit writer thread; reads run on a small pool of reader threads with
their own connections, so the event loop never blocks on the database.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from wf.engine.model import (
    FINISHED,
    AttemptRecord,
    Claim,
    ErrorInfo,
    EventRecord,
    History,
    InstanceRow,
    NewInstance,
    Status,
    StepKind,
    StepRecord,
    StepState,
)
from wf.engine.store import sqlite_file
from wf.engine.store.migrations import migrate
from wf.engine.store.writer import GroupCommitWriter, Pending
from wf.errors import InstanceAlreadyExists, InstanceNotFound, InvalidTransition, StoreError

T = TypeVar("T")

_INSTANCE_COLUMNS = (
    "pk, workflow, id, status, params, trigger, version_id, created, modified, started, ended, "
    "output, error, wake_at, paused_at, owner, lease_until, epoch, queued, termination"
)
_FINISHED_SQL = "('complete', 'errored', 'terminated')"


def _dump_error(error: ErrorInfo | None) -> str | None:
    return None if error is None else json.dumps(error, ensure_ascii=False)


def _load_error(text: str | None) -> ErrorInfo | None:
    return None if text is None else dict(json.loads(text))


def row_to_instance(row: Sequence[Any]) -> InstanceRow:
    return InstanceRow(
        pk=row[0],
        workflow=row[1],
        id=row[2],
        status=Status(row[3]),
        params=row[4],
        trigger=row[5],
        version_id=row[6],
        created=row[7],
        modified=row[8],
        started=row[9],
        ended=row[10],
        output=row[11],
        error=_load_error(row[12]),
        wake_at=row[13],
        paused_at=row[14],
        owner=row[15],
        lease_until=row[16],
        epoch=row[17],
        queued=row[18],
        termination=row[19],
    )


def _select_instance(conn: sqlite3.Connection, pk: int) -> InstanceRow:
    row = conn.execute(f"SELECT {_INSTANCE_COLUMNS} FROM instances WHERE pk = ?", (pk,)).fetchone()
    if row is None:
        raise InstanceNotFound(f"instance {pk} does not exist")
    return row_to_instance(row)


_END_STEP_SQL = (
    "UPDATE steps SET state = ?, ended = ?, output = ?, error = ?, wake_at = NULL "
    "WHERE instance = ? AND name = ? AND count = ?"
)


def _end_step_args(pk: int, step: StepRecord, state: StepState) -> tuple[Any, ...]:
    return (
        state.value,
        step.ended,
        step.output,
        _dump_error(step.error),
        pk,
        step.name,
        step.count,
    )


def _fenced(conn: sqlite3.Connection, pk: int, epoch: int) -> bool:
    row = conn.execute("SELECT epoch FROM instances WHERE pk = ?", (pk,)).fetchone()
    return row is not None and row[0] == epoch


class SqliteStore:
    """See :class:`wf.engine.store.base.Store` for the contract of every method."""

    def __init__(self, path: str | Path, *, durability: str = "fsync", readers: int = 4) -> None:
        self.path = Path(path)
        self.durable_path = str(self.path)
        self.durability = durability
        self._lock = sqlite_file.FileLock(self.path)
        self._reader_count = readers
        self._writer = GroupCommitWriter(self._connect, self.path.name)
        self._readers = ThreadPoolExecutor(max_workers=readers, thread_name_prefix="wf-reader")
        self._local = threading.local()
        self._reader_conns: list[sqlite3.Connection] = []
        self._conns_lock = threading.Lock()
        self._open = False

    # ---- lifecycle ----------------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        return sqlite_file.connect(self.path, self.durability)

    async def open(self) -> None:
        await asyncio.to_thread(self.open_sync)

    def open_sync(self) -> None:
        if self._open:
            raise StoreError(f"{self.path} is already open")
        if self._writer.used:  # opened and closed before: start afresh
            self._writer = GroupCommitWriter(self._connect, self.path.name)
            self._readers = ThreadPoolExecutor(
                max_workers=self._reader_count, thread_name_prefix="wf-reader"
            )
            self._local = threading.local()
        if self.durability not in sqlite_file.DURABILITY_MODES:
            raise StoreError(f'durability must be "fsync" or "os", got {self.durability!r}')
        self.path.parent.mkdir(parents=True, exist_ok=True)
        sqlite_file.verify(self.path)  # before the lock file: a refused file gets no sibling
        self._lock.acquire()
        try:
            conn = self._connect()
            try:
                migrate(conn)
            finally:
                conn.close()
            self._writer.start()
        except BaseException:
            self._lock.release()
            raise
        self._open = True

    async def close(self) -> None:
        await asyncio.to_thread(self.close_sync)

    def close_sync(self) -> None:
        if not self._open:
            return
        self._open = False
        self._writer.close()
        self._readers.shutdown(wait=True)
        with self._conns_lock:
            for conn in self._reader_conns:
                conn.close()
            self._reader_conns.clear()
        self._lock.release()

    # ---- plumbing -----------------------------------------------------------------------------
    def _reader(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            self._local.conn = conn
            with self._conns_lock:
                self._reader_conns.append(conn)
        return conn

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if not self._open:
            raise StoreError("the store is closed")

        def run() -> T:
            conn = self._reader()
            conn.execute("BEGIN")
            try:
                return fn(conn)
            finally:
                conn.execute("COMMIT")

        return await asyncio.get_running_loop().run_in_executor(self._readers, run)

    def _write(self, fn: Callable[[sqlite3.Connection], T]) -> Pending[T]:
        return self._writer.submit(fn)

    @property
    def commits(self) -> int:
        return self._writer.commits

    # ---- instances ----------------------------------------------------------------------------
    async def create_instances(
        self, new: Sequence[NewInstance], *, skip_existing: bool
    ) -> list[InstanceRow]:
        def write(conn: sqlite3.Connection) -> list[InstanceRow]:
            created: list[InstanceRow] = []
            for item in new:
                exists = conn.execute(
                    "SELECT 1 FROM instances WHERE workflow = ? AND id = ?",
                    (item.workflow, item.id),
                ).fetchone()
                if exists:
                    if skip_existing:
                        continue
                    raise InstanceAlreadyExists(
                        f'an instance with id "{item.id}" already exists in workflow '
                        f'"{item.workflow}"'
                    )
                cur = conn.execute(
                    "INSERT INTO instances (workflow, id, status, params, trigger, version_id, "
                    "created, queued, modified) VALUES (?, ?, 'queued', ?, ?, ?, ?, ?, ?)",
                    (
                        item.workflow,
                        item.id,
                        item.params,
                        item.trigger,
                        item.version_id,
                        item.created,
                        item.created,
                        item.created,
                    ),
                )
                assert cur.lastrowid is not None
                created.append(
                    InstanceRow(
                        pk=cur.lastrowid,
                        workflow=item.workflow,
                        id=item.id,
                        status=Status.QUEUED,
                        params=item.params,
                        trigger=item.trigger,
                        version_id=item.version_id,
                        created=item.created,
                        modified=item.created,
                        queued=item.created,
                    )
                )
            return created

        return await self._write(write)

    async def get_instance(self, workflow: str, instance_id: str) -> InstanceRow | None:
        def read(conn: sqlite3.Connection) -> InstanceRow | None:
            row = conn.execute(
                f"SELECT {_INSTANCE_COLUMNS} FROM instances WHERE workflow = ? AND id = ?",
                (workflow, instance_id),
            ).fetchone()
            return None if row is None else row_to_instance(row)

        return await self._read(read)

    async def latest_instance(self, workflow: str) -> InstanceRow | None:
        def read(conn: sqlite3.Connection) -> InstanceRow | None:
            row = conn.execute(
                f"SELECT {_INSTANCE_COLUMNS} FROM instances WHERE workflow = ? "
                "ORDER BY created DESC, pk DESC LIMIT 1",
                (workflow,),
            ).fetchone()
            return None if row is None else row_to_instance(row)

        return await self._read(read)

    async def list_instances(
        self,
        workflow: str,
        *,
        status: Status | None,
        offset: int,
        limit: int,
        newest_first: bool,
    ) -> tuple[list[InstanceRow], int]:
        where = "workflow = ?" + (" AND status = ?" if status else "")
        args: tuple[Any, ...] = (workflow, status.value) if status else (workflow,)
        order = "DESC" if newest_first else "ASC"

        def read(conn: sqlite3.Connection) -> tuple[list[InstanceRow], int]:
            total = conn.execute(f"SELECT count(*) FROM instances WHERE {where}", args).fetchone()[
                0
            ]
            rows = conn.execute(
                f"SELECT {_INSTANCE_COLUMNS} FROM instances WHERE {where} "
                f"ORDER BY created {order}, pk {order} LIMIT ? OFFSET ?",
                (*args, limit, offset),
            ).fetchall()
            return [row_to_instance(r) for r in rows], total

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

    async def workflow_times(self, workflow: str) -> tuple[float | None, float | None]:
        def read(conn: sqlite3.Connection) -> tuple[float | None, float | None]:
            row = conn.execute(
                "SELECT min(created), max(modified) FROM instances WHERE workflow = ?", (workflow,)
            ).fetchone()
            return (row[0], row[1]) if row else (None, None)

        return await self._read(read)

    async def load_history(self, pk: int) -> History:
        return await self._read(lambda conn: read_history(conn, pk))

    async def delete_workflow(self, workflow: str, now: float) -> int:
        def write(conn: sqlite3.Connection) -> int:
            pks = [
                r[0]
                for r in conn.execute("SELECT pk FROM instances WHERE workflow = ?", (workflow,))
            ]
            _delete_instances(conn, pks)
            return len(pks)

        return await self._write(write)

    # ---- claims and timers --------------------------------------------------------------------
    async def claim_ready(
        self, owner: str, now: float, limit: int, workflows: Sequence[str], lease: float
    ) -> list[Claim]:
        names = list(workflows)
        in_names = ",".join("?" * len(names))

        def write(conn: sqlite3.Connection) -> list[Claim]:
            real_now = time.time()  # leases are about live processes: always wall-clock time
            free = "(owner IS NULL OR lease_until < ?)"
            # "+workflow": keep the planner on the status/wake_at indexes; the listing index would
            # read every instance of the workflow, finished ones included, on every claim.
            mine = f"+workflow IN ({in_names})"
            # An instance that was pausing when its process died has reached its boundary.
            conn.execute(
                "UPDATE instances SET status = 'paused', paused_at = ?, modified = ?, "
                f"owner = NULL WHERE status = 'waitingForPause' AND {free}",
                (now, now, real_now),
            )
            woken = conn.execute(
                f"SELECT pk FROM instances WHERE {free} AND {mine} AND (status = 'running' OR "
                "(status = 'waiting' AND wake_at <= ?)) ORDER BY wake_at LIMIT ?",
                (real_now, *names, now, limit),
            ).fetchall()
            pks = [r[0] for r in woken]
            if len(pks) < limit:
                queued = conn.execute(
                    f"SELECT pk FROM instances WHERE status = 'queued' AND {free} AND {mine} "
                    "ORDER BY queued, pk LIMIT ?",
                    (real_now, *names, limit - len(pks)),
                ).fetchall()
                pks.extend(r[0] for r in queued)
            claims = []
            for pk in pks:
                fresh = conn.execute(
                    "SELECT started IS NULL FROM instances WHERE pk = ?", (pk,)
                ).fetchone()[0]
                conn.execute(
                    "UPDATE instances SET owner = ?, lease_until = ?, epoch = epoch + 1, "
                    "status = 'running', started = coalesce(started, ?), wake_at = NULL, "
                    "modified = ? WHERE pk = ?",
                    (owner, real_now + lease, now, now, pk),
                )
                row = _select_instance(conn, pk)
                claims.append(Claim(row, row.epoch, bool(fresh)))
            return claims

        return await self._write(write)

    async def next_wake_at(self, workflows: Sequence[str]) -> float | None:
        names = list(workflows)
        in_names = ",".join("?" * len(names))

        def read(conn: sqlite3.Connection) -> float | None:
            row = conn.execute(
                "SELECT min(wake_at) FROM instances WHERE status = 'waiting' AND owner IS NULL "
                f"AND +workflow IN ({in_names})",
                names,
            ).fetchone()
            return None if row is None else row[0]

        return await self._read(read)

    async def renew_leases(self, owner: str, lease: float) -> dict[int, tuple[Status, int]]:
        def write(conn: sqlite3.Connection) -> dict[int, tuple[Status, int]]:
            conn.execute(
                "UPDATE instances SET lease_until = ? WHERE owner = ?", (time.time() + lease, owner)
            )
            return {
                pk: (Status(status), epoch)
                for pk, status, epoch in conn.execute(
                    "SELECT pk, status, epoch FROM instances WHERE owner = ?", (owner,)
                )
            }

        return await self._write(write)

    async def release_dead_claims(self, now: float) -> int:
        # This process holds the file lock, so whoever else held a claim is dead.
        def write(conn: sqlite3.Connection) -> int:
            return conn.execute(
                "UPDATE instances SET owner = NULL, lease_until = NULL WHERE owner IS NOT NULL"
            ).rowcount

        return await self._write(write)

    async def purge_finished(self, before: float) -> int:
        def write(conn: sqlite3.Connection) -> int:
            pks = [
                r[0]
                for r in conn.execute(
                    f"SELECT pk FROM instances WHERE status IN {_FINISHED_SQL} AND ended < ?",
                    (before,),
                )
            ]
            _delete_instances(conn, pks)
            return len(pks)

        return await self._write(write)

    # ---- controls -----------------------------------------------------------------------------
    async def pause(self, pk: int, now: float) -> InstanceRow:
        def write(conn: sqlite3.Connection) -> InstanceRow:
            row = _select_instance(conn, pk)
            if row.status in FINISHED:
                raise InvalidTransition(
                    f'cannot pause instance "{row.id}": it is already {row.status.value}'
                )
            if row.status in (Status.PAUSED, Status.WAITING_FOR_PAUSE):
                return row
            if row.owner is None:
                conn.execute(
                    "UPDATE instances SET status = 'paused', paused_at = ?, modified = ? "
                    "WHERE pk = ?",
                    (now, now, pk),
                )
            else:
                conn.execute(
                    "UPDATE instances SET status = 'waitingForPause', modified = ? WHERE pk = ?",
                    (now, pk),
                )
            return _select_instance(conn, pk)

        return await self._write(write)

    async def resume(self, pk: int, now: float) -> InstanceRow:
        def write(conn: sqlite3.Connection) -> InstanceRow:
            row = _select_instance(conn, pk)
            if row.status in FINISHED:
                raise InvalidTransition(
                    f'cannot resume instance "{row.id}": it is already {row.status.value}'
                )
            if row.status == Status.WAITING_FOR_PAUSE:
                conn.execute(
                    "UPDATE instances SET status = 'running', modified = ? WHERE pk = ?", (now, pk)
                )
            elif row.status == Status.PAUSED:
                # Timers keep the time they had left when the pause began.
                shift = now - (row.paused_at if row.paused_at is not None else now)
                conn.execute(
                    "UPDATE steps SET wake_at = wake_at + ? "
                    "WHERE instance = ? AND state = 'running' AND wake_at IS NOT NULL",
                    (shift, pk),
                )
                conn.execute(
                    "UPDATE instances SET status = 'queued', paused_at = NULL, queued = ?, "
                    "modified = ? WHERE pk = ?",
                    (now, now, pk),
                )
            return _select_instance(conn, pk)

        return await self._write(write)

    async def terminate(self, pk: int, now: float, source: str) -> InstanceRow:
        def write(conn: sqlite3.Connection) -> InstanceRow:
            row = _select_instance(conn, pk)
            if row.status in FINISHED:
                raise InvalidTransition(
                    f'cannot terminate instance "{row.id}": it is already {row.status.value}'
                )
            conn.execute(
                "UPDATE instances SET status = 'terminated', ended = ?, modified = ?, "
                "termination = ?, owner = NULL, lease_until = NULL, wake_at = NULL, "
                "epoch = epoch + 1 WHERE pk = ?",
                (now, now, source, pk),
            )
            return _select_instance(conn, pk)

        return await self._write(write)

    async def restart(self, pk: int, now: float) -> InstanceRow:
        def write(conn: sqlite3.Connection) -> InstanceRow:
            _select_instance(conn, pk)
            conn.execute("DELETE FROM steps WHERE instance = ?", (pk,))
            conn.execute("DELETE FROM attempts WHERE instance = ?", (pk,))
            conn.execute(
                "DELETE FROM events WHERE instance = ? AND consumed_name IS NOT NULL", (pk,)
            )
            conn.execute(
                "UPDATE instances SET status = 'queued', queued = ?, modified = ?, started = NULL, "
                "ended = NULL, output = NULL, error = NULL, termination = NULL, wake_at = NULL, "
                "paused_at = NULL, owner = NULL, lease_until = NULL, epoch = epoch + 1 "
                "WHERE pk = ?",
                (now, now, pk),
            )
            return _select_instance(conn, pk)

        return await self._write(write)

    async def send_event(
        self, pk: int, event_type: str, payload: str, now: float
    ) -> tuple[InstanceRow, EventRecord]:
        def write(conn: sqlite3.Connection) -> tuple[InstanceRow, EventRecord]:
            row = _select_instance(conn, pk)
            if row.status in FINISHED:
                raise InvalidTransition(
                    f'cannot send an event to instance "{row.id}": it is already {row.status.value}'
                )
            cur = conn.execute(
                "INSERT INTO events (instance, type, payload, received) VALUES (?, ?, ?, ?)",
                (pk, event_type, payload, now),
            )
            assert cur.lastrowid is not None
            if row.status == Status.WAITING and row.owner is None:
                # Wake it: its replay will find the event.
                conn.execute(
                    "UPDATE instances SET wake_at = ?, modified = ? WHERE pk = ?", (now, now, pk)
                )
            return _select_instance(conn, pk), EventRecord(cur.lastrowid, event_type, payload, now)

        return await self._write(write)

    # ---- a runner's writes, fenced by epoch ---------------------------------------------------
    def set_status(
        self, pk: int, epoch: int, status: Status, now: float, wake_at: float | None = None
    ) -> Pending[bool]:
        def write(conn: sqlite3.Connection) -> bool:
            return (
                conn.execute(
                    "UPDATE instances SET status = ?, wake_at = ?, modified = ? "
                    "WHERE pk = ? AND epoch = ? AND status IN ('running', 'waiting')",
                    (status.value, wake_at, now, pk, epoch),
                ).rowcount
                == 1
            )

        return self._write(write)

    def start_step(self, pk: int, epoch: int, step: StepRecord) -> Pending[bool]:
        values = (
            pk,
            step.name,
            step.count,
            step.kind.value,
            step.state.value,
            step.started,
            step.ended,
            step.output,
            _dump_error(step.error),
            None if step.config is None else json.dumps(step.config),
            step.wake_at,
            step.duration,
            step.event_type,
        )

        def write(conn: sqlite3.Connection) -> bool:
            if not _fenced(conn, pk, epoch):
                return False
            conn.execute(
                "INSERT INTO steps (instance, name, count, kind, state, started, ended, output, "
                "error, config, wake_at, duration, event_type) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                values,
            )
            return True

        return self._write(write)

    def update_step_timer(
        self, pk: int, epoch: int, step: StepRecord, *, started: float | None = None
    ) -> Pending[bool]:
        args = (step.wake_at, step.duration, started, started, pk, step.name, step.count)

        def write(conn: sqlite3.Connection) -> bool:
            if not _fenced(conn, pk, epoch):
                return False
            conn.execute(
                "UPDATE steps SET wake_at = ?, duration = ?, "
                "started = CASE WHEN ? IS NULL THEN started ELSE ? END "
                "WHERE instance = ? AND name = ? AND count = ?",
                args,
            )
            return True

        return self._write(write)

    def start_attempt(
        self, pk: int, epoch: int, step: StepRecord, attempt: AttemptRecord
    ) -> Pending[bool]:
        args = (pk, step.name, step.count, attempt.number, attempt.started)
        config = None if step.config is None else json.dumps(step.config)

        def write(conn: sqlite3.Connection) -> bool:
            if not _fenced(conn, pk, epoch):
                return False
            conn.execute(
                "INSERT INTO attempts (instance, name, count, number, started) "
                "VALUES (?, ?, ?, ?, ?)",
                args,
            )
            conn.execute(
                "UPDATE steps SET wake_at = NULL, config = ? "
                "WHERE instance = ? AND name = ? AND count = ?",
                (config, pk, step.name, step.count),
            )
            return True

        return self._write(write)

    def end_attempt(
        self,
        pk: int,
        epoch: int,
        step: StepRecord,
        attempt: AttemptRecord,
        finish: StepState | None = None,
    ) -> Pending[bool]:
        args = (
            attempt.ended,
            None if attempt.success is None else int(attempt.success),
            _dump_error(attempt.error),
            pk,
            step.name,
            step.count,
            attempt.number,
        )
        step_args = (step.wake_at, int(step.non_retryable), pk, step.name, step.count)
        end_args = _end_step_args(pk, step, finish) if finish is not None else None

        def write(conn: sqlite3.Connection) -> bool:
            if not _fenced(conn, pk, epoch):
                return False
            conn.execute(
                "UPDATE attempts SET ended = ?, success = ?, error = ? "
                "WHERE instance = ? AND name = ? AND count = ? AND number = ?",
                args,
            )
            conn.execute(
                "UPDATE steps SET wake_at = ?, non_retryable = ? "
                "WHERE instance = ? AND name = ? AND count = ?",
                step_args,
            )
            if end_args is not None:
                conn.execute(_END_STEP_SQL, end_args)
            return True

        return self._write(write)

    def end_step(self, pk: int, epoch: int, step: StepRecord, state: StepState) -> Pending[bool]:
        args = _end_step_args(pk, step, state)

        def write(conn: sqlite3.Connection) -> bool:
            if not _fenced(conn, pk, epoch):
                return False
            conn.execute(_END_STEP_SQL, args)
            return True

        return self._write(write)

    def consume_event(
        self, pk: int, epoch: int, step: StepRecord, now: float
    ) -> Pending[EventRecord | None]:
        def write(conn: sqlite3.Connection) -> EventRecord | None:
            if not _fenced(conn, pk, epoch):
                return None
            row = conn.execute(
                "SELECT seq, payload, received FROM events WHERE instance = ? AND type = ? "
                "AND consumed_name IS NULL ORDER BY seq LIMIT 1",
                (pk, step.event_type),
            ).fetchone()
            if row is None:
                return None
            seq, payload, received = row
            conn.execute(
                "UPDATE events SET consumed_name = ?, consumed_count = ? WHERE seq = ?",
                (step.name, step.count, seq),
            )
            conn.execute(
                "UPDATE steps SET state = 'succeeded', ended = ?, output = ?, event_time = ?, "
                "wake_at = NULL WHERE instance = ? AND name = ? AND count = ?",
                (now, payload, received, pk, step.name, step.count),
            )
            assert step.event_type is not None
            return EventRecord(seq, step.event_type, payload, received, (step.name, step.count))

        return self._write(write)

    def hibernate(
        self,
        pk: int,
        epoch: int,
        wake_at: float | None,
        now: float,
        event_types: Sequence[str] = (),
    ) -> Pending[bool]:
        types = sorted(set(event_types))
        marks = ",".join("?" * len(types))

        def write(conn: sqlite3.Connection) -> bool:
            when = wake_at
            if (
                types
                and conn.execute(
                    f"SELECT 1 FROM events WHERE instance = ? AND consumed_name IS NULL "
                    f"AND type IN ({marks}) LIMIT 1",
                    (pk, *types),
                ).fetchone()
            ):
                when = now  # an awaited event arrived while this life was ending
            return (
                conn.execute(
                    "UPDATE instances SET "
                    "paused_at = CASE WHEN status = 'waitingForPause' THEN ? ELSE paused_at END, "
                    "status = CASE status WHEN 'running' THEN 'waiting' "
                    "WHEN 'waitingForPause' THEN 'paused' ELSE status END, "
                    "wake_at = ?, owner = NULL, lease_until = NULL, modified = ? "
                    "WHERE pk = ? AND epoch = ?",
                    (now, when, now, pk, epoch),
                ).rowcount
                == 1
            )

        return self._write(write)

    def release(self, pk: int, epoch: int, now: float) -> Pending[bool]:
        def write(conn: sqlite3.Connection) -> bool:
            return (
                conn.execute(
                    "UPDATE instances SET owner = NULL, lease_until = NULL "
                    "WHERE pk = ? AND epoch = ?",
                    (pk, epoch),
                ).rowcount
                == 1
            )

        return self._write(write)

    def reach_pause(self, pk: int, epoch: int, now: float) -> Pending[bool]:
        def write(conn: sqlite3.Connection) -> bool:
            return (
                conn.execute(
                    "UPDATE instances SET status = 'paused', paused_at = ?, modified = ?, "
                    "owner = NULL, lease_until = NULL, wake_at = NULL "
                    "WHERE pk = ? AND epoch = ? AND status = 'waitingForPause'",
                    (now, now, pk, epoch),
                ).rowcount
                == 1
            )

        return self._write(write)

    def finish(
        self,
        pk: int,
        epoch: int,
        status: Status,
        now: float,
        output: str | None,
        error: ErrorInfo | None,
    ) -> Pending[bool]:
        args = (status.value, now, now, output, _dump_error(error), pk, epoch)

        def write(conn: sqlite3.Connection) -> bool:
            return (
                conn.execute(
                    "UPDATE instances SET status = ?, ended = ?, modified = ?, output = ?, "
                    "error = ?, owner = NULL, lease_until = NULL, wake_at = NULL, "
                    "paused_at = NULL WHERE pk = ? AND epoch = ?",
                    args,
                ).rowcount
                == 1
            )

        return self._write(write)


def read_history(conn: sqlite3.Connection, pk: int) -> History:
    steps: dict[tuple[str, int], StepRecord] = {}
    for row in conn.execute(
        "SELECT name, count, kind, state, started, ended, output, error, config, wake_at, "
        "duration, event_type, event_time, non_retryable FROM steps WHERE instance = ? "
        "ORDER BY rowid",
        (pk,),
    ):
        record = StepRecord(
            name=row[0],
            count=row[1],
            kind=StepKind(row[2]),
            state=StepState(row[3]),
            started=row[4],
            ended=row[5],
            output=row[6],
            error=_load_error(row[7]),
            config=None if row[8] is None else json.loads(row[8]),
            wake_at=row[9],
            duration=row[10],
            event_type=row[11],
            event_time=row[12],
            non_retryable=bool(row[13]),
        )
        steps[record.key] = record
    for name, count, number, started, ended, success, error in conn.execute(
        "SELECT name, count, number, started, ended, success, error FROM attempts "
        "WHERE instance = ? ORDER BY name, count, number",
        (pk,),
    ):
        step = steps.get((name, count))
        if step is not None:
            step.attempts.append(
                AttemptRecord(
                    number,
                    started,
                    ended,
                    None if success is None else bool(success),
                    _load_error(error),
                )
            )
    return History(list(steps.values()))


def _delete_instances(conn: sqlite3.Connection, pks: list[int]) -> None:
    for start in range(0, len(pks), 500):
        chunk = pks[start : start + 500]
        marks = ",".join("?" * len(chunk))
        for table, column in (
            ("steps", "instance"),
            ("attempts", "instance"),
            ("events", "instance"),
            ("instances", "pk"),
        ):
            conn.execute(f"DELETE FROM {table} WHERE {column} IN ({marks})", chunk)
