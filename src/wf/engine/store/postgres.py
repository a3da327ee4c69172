"""The PostgreSQL store: many processes on many hosts sharing one database (``wf serve`` nodes).

Per process: one writer (``pg_writer``: group commit, one pipeline and one commit per batch),
up to two reader connections, and one listener connection once someone listens. Everything
lives in the schema ``wf`` (``pg_schema``). The SQL is in ``pg_runs`` (a runner's fenced writes),
``pg_controls`` (whole instances, claims and leases), ``pg_deploys`` (what ``wf serve`` keeps)
and ``pg_rows`` (reading); this class wires them to the connections.

Leases are per owner (a scheduler's id), renewed by its claims and renewals, judged by the
database's clock. When PostgreSQL goes away, writes wait for it and reads fail at once with
``StoreUnavailable``; all connections come back by themselves.
"""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Literal, TypeVar

import psycopg

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
from wf.engine.store import pg_controls as controls
from wf.engine.store import pg_deploys as deploys
from wf.engine.store import pg_runs as runs
from wf.engine.store import pg_schedules as schedules
from wf.engine.store import stats_sql
from wf.engine.store.base import Listener
from wf.engine.store.flow_sql import next_start_sql
from wf.engine.store.listing import InstanceFilter, order_clause, where_clause
from wf.engine.store.pg_connect import Conn, Health, Link, cause, connect, is_disconnect
from wf.engine.store.pg_messages import Inbox, Outbox
from wf.engine.store.pg_rows import (
    FINISHED_SQL,
    INSTANCE_COLUMNS,
    find_instance,
    find_instances,
    read_events,
    read_history,
    row_to_instance,
)
from wf.engine.store.pg_schema import migrate
from wf.engine.store.pg_writer import Apply, Group, PgWriter
from wf.engine.store.sqlite_rows import OWN_RETENTION_SQL, dump_error
from wf.engine.store.stats_sql import StatsRows
from wf.engine.store.urls import redact
from wf.engine.store.writer import Pending
from wf.errors import StoreError, StoreUnavailable

T = TypeVar("T")

DURABILITY_MODES = ("fsync", "os")
TAKEOVER_EVERY = 1.0  # seconds between looks for dead owners' instances, per process


def node_id() -> str:
    return f"node-{socket.gethostname()}-{uuid.uuid4().hex[:8]}"


# Ids compared in byte order, as SQLite does and the index ``instances_id_prefix`` holds them,
# so an id prefix is one index range under any database collation.
ID_IN_BYTE_ORDER = 'id COLLATE "C"'


class PostgresStore:
    """See :class:`wf.engine.store.base.ServerStore` for the contract of every method."""

    def __init__(
        self,
        url: str,
        *,
        durability: str = "fsync",
        readers: int = 2,
        node: str | None = None,
    ) -> None:
        self.url = url
        self.where = redact(url)
        self.durability = durability
        self.node = node or node_id()
        self._reader_count = max(1, readers)
        self._health = Health(url)
        self._writer: PgWriter | None = None
        self._readers: asyncio.Queue[Link] | None = None
        self._reader_links: list[Link] = []
        self._outbox = Outbox()
        self._inbox: Inbox | None = None
        self._open = False
        self._next_takeover = 0.0
        self.takeover_every = TAKEOVER_EVERY

    def __repr__(self) -> str:
        return f"PostgresStore({self.where!r})"

    # ---- lifecycle ----------------------------------------------------------------------------
    async def open(self) -> None:
        if self._open:
            raise StoreError(f"{self.where} is already open")
        if self.durability not in DURABILITY_MODES:
            raise StoreError(f'durability must be "fsync" or "os", got {self.durability!r}')
        conn = await connect(self.url)
        try:
            await migrate(conn, f"the database at {self.where}")
        except psycopg.Error as exc:
            raise StoreError(f"cannot prepare the database at {self.where}: {cause(exc)}") from None
        finally:
            await conn.close()
        fsync = self.durability == "fsync"
        writer_link = Link(self.url, self._health, self._setup_writer)
        self._writer = PgWriter(writer_link, fsync, self._outbox)
        try:
            await writer_link.get()
        except StoreUnavailable as exc:
            raise StoreError(f"{exc}") from None
        self._writer.start()
        self._reader_links = [Link(self.url, self._health) for _ in range(self._reader_count)]
        self._readers = asyncio.Queue()
        for link in self._reader_links:
            self._readers.put_nowait(link)
        self._inbox = Inbox(Link(self.url, self._health))
        self._open = True

    async def _setup_writer(self, conn: Conn) -> None:
        # Every write finds its rows by key, a few at a time. A plan made while the tables were
        # nearly empty (a fresh database, statistics not gathered yet) would scan and hash them
        # whole, and psycopg keeps that plan with the prepared statement: index lookups only,
        # planned once (a statement over arrays would otherwise be planned at every execution,
        # which costs more than running it).
        await conn.execute("SET plan_cache_mode = force_generic_plan")
        await conn.execute("SET enable_seqscan = off")
        await conn.execute("SET enable_hashjoin = off")
        await conn.execute("SET enable_mergejoin = off")
        if self.durability == "os":
            await conn.execute("SET synchronous_commit = off")

    async def close(self) -> None:
        if not self._open:
            return
        self._open = False
        if self._inbox is not None:
            await self._inbox.close()
        if self._writer is not None:
            await self._writer.close()
        for link in self._reader_links:
            await link.close()

    @property
    def commits(self) -> int:
        """Transactions committed by this process's writer."""
        return 0 if self._writer is None else self._writer.commits

    @property
    def jobs(self) -> int:
        """Writes applied."""
        return 0 if self._writer is None else self._writer.jobs

    @property
    def write_stats(self) -> WriteStats | None:
        """Commits, the writes each served and how long each took (for metrics)."""
        return None if self._writer is None else self._writer.stats

    # ---- plumbing -----------------------------------------------------------------------------
    async def _read(self, fn: Callable[[Conn], Awaitable[T]]) -> T:
        if not self._open or self._readers is None:
            raise StoreError("the store is closed")
        link = await self._readers.get()
        try:
            for retry in (True, False):
                conn = await link.get()
                try:
                    return await fn(conn)
                except psycopg.Error as exc:
                    if not is_disconnect(exc, conn):
                        raise StoreError(f"database read failed: {cause(exc)}") from None
                    await link.lost(exc)
                    if not retry:  # a connection the server dropped earlier: try a new one
                        raise self._health.unavailable(exc) from None
            raise AssertionError("unreachable")
        finally:
            self._readers.put_nowait(link)

    def _write(self, apply: Apply[T], pks: Sequence[int] = (), durable: bool = True) -> Pending[T]:
        if self._writer is None or not self._open:
            return Pending.failed(StoreError("the store is closed"))
        return self._writer.submit(apply, pks, durable)

    def _row(
        self, group: Group, pk: int, row: tuple[Any, ...], durable: bool = True
    ) -> Pending[bool]:
        if self._writer is None or not self._open:
            return Pending.failed(StoreError("the store is closed"))
        return self._writer.submit_row(group, pk, row, durable)

    async def _purge(self, where: str, args: dict[str, Any]) -> int:
        """Delete matching instances in transactions of ``PURGE_BATCH`` at most."""
        total = 0
        while True:
            done = await self._write(controls.purge(where, args))
            total += done
            if done < controls.PURGE_BATCH:
                return total

    # ---- instances ----------------------------------------------------------------------------
    async def create_instances(
        self, new: Sequence[NewInstance], *, skip_existing: bool
    ) -> list[InstanceRow]:
        if not new:
            return []
        return await self._write(controls.create_instances(new, skip_existing))

    async def get_instance(self, workflow: str, instance_id: str) -> InstanceRow | None:
        return await self._read(
            lambda conn: find_instance(conn, "workflow = %s AND id = %s", (workflow, instance_id))
        )

    async def latest_instance(self, workflow: str) -> InstanceRow | None:
        return await self._read(
            lambda conn: find_instance(
                conn, "workflow = %s ORDER BY created DESC, pk DESC LIMIT 1", (workflow,)
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
        where, args = where_clause(workflow, chosen, "%s", ID_IN_BYTE_ORDER)
        order = order_clause(chosen, newest_first, ID_IN_BYTE_ORDER)

        async def read(conn: Conn) -> tuple[list[InstanceRow], int]:
            async with conn.pipeline():
                total = await conn.execute(
                    f"SELECT count(*) FROM wf.instances WHERE {where}",
                    args,
                )
                rows = await conn.execute(
                    f"SELECT {INSTANCE_COLUMNS} FROM wf.instances WHERE {where} "
                    f"ORDER BY {order} LIMIT %s OFFSET %s",
                    (*args, limit, offset),
                )
                counted = await total.fetchone()
                found = await rows.fetchall()
            return [row_to_instance(r) for r in found], int(counted[0]) if counted else 0

        return await self._read(read)

    async def read_stats(self, workflows: Sequence[str], since: float) -> StatsRows:
        async def read(conn: Conn) -> StatsRows:
            found = []
            for sql, args in stats_sql.queries("postgres", workflows, since):
                cur = await conn.execute(sql, args)
                found.append(await cur.fetchall())
            return stats_sql.rows_of(found)

        return await self._read(read)

    async def newest_pk(self, workflow: str) -> int:
        async def read(conn: Conn) -> int:
            cur = await conn.execute(
                "SELECT max(pk) FROM wf.instances WHERE workflow = %s", (workflow,)
            )
            row = await cur.fetchone()
            return int(row[0] or 0) if row else 0

        return await self._read(read)

    async def list_after(
        self, workflow: str, statuses: Sequence[Status], after_pk: int, upto_pk: int, limit: int
    ) -> list[InstanceRow]:
        async def read(conn: Conn) -> list[InstanceRow]:
            cur = await conn.execute(
                f"SELECT {INSTANCE_COLUMNS} FROM wf.instances WHERE workflow = %s "
                "AND status = ANY(%s) AND pk > %s AND pk <= %s ORDER BY pk LIMIT %s",
                (workflow, [s.value for s in statuses], after_pk, upto_pk, limit),
            )
            return [row_to_instance(r) for r in await cur.fetchall()]

        return await self._read(read)

    async def count_statuses(self, workflow: str) -> dict[str, int]:
        async def read(conn: Conn) -> dict[str, int]:
            counts = {s.value: 0 for s in Status}
            cur = await conn.execute(
                "SELECT status, count(*) FROM wf.instances WHERE workflow = %s GROUP BY status",
                (workflow,),
            )
            for status, n in await cur.fetchall():
                counts[status] = n
            return counts

        return await self._read(read)

    async def workflow_times(
        self, workflow: str
    ) -> tuple[float | None, float | None, float | None]:
        async def read(conn: Conn) -> tuple[float | None, float | None, float | None]:
            cur = await conn.execute(
                "SELECT min(created), max(created), max(modified) FROM wf.instances "
                "WHERE workflow = %s",
                (workflow,),
            )
            row = await cur.fetchone()
            return (row[0], row[1], row[2]) if row else (None, None, None)

        return await self._read(read)

    async def workflows_with_instances(self) -> list[str]:
        """The names of the workflows that have instances, sorted."""

        async def read(conn: Conn) -> list[str]:
            cur = await conn.execute("SELECT DISTINCT workflow FROM wf.instances ORDER BY 1")
            return [name for (name,) in await cur.fetchall()]

        return await self._read(read)

    async def load_history(self, pk: int) -> History:
        return await self._read(lambda conn: read_history(conn, pk))

    async def load_events(self, pk: int) -> list[EventRecord]:
        return await self._read(lambda conn: read_events(conn, pk))

    async def delete_workflow(self, workflow: str) -> int:
        return await self._purge("workflow = %(workflow)s", {"workflow": workflow})

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
        takeover = time.monotonic() >= self._next_takeover
        if takeover:
            self._next_takeover = time.monotonic() + self.takeover_every
        return await self._write(
            controls.claim_ready(
                owner, self.node, now, limit, workflows, lease, version, suspects, takeover, flows
            )
        )

    async def next_wake_at(
        self,
        workflows: Sequence[str],
        version: str | None = None,
        flows: Mapping[str, FlowControl] | None = None,
        now: float = 0.0,
    ) -> float | None:
        rated = [(n, f) for n, f in (flows or {}).items() if f.rate_limit and n in workflows]

        async def read(conn: Conn) -> float | None:
            cur = await conn.execute(
                "SELECT wake_at FROM wf.instances WHERE status = 'waiting' AND owner IS NULL "
                "AND wake_at IS NOT NULL AND workflow = ANY(%s) "
                "AND (%s::text IS NULL OR version_id = %s) ORDER BY wake_at LIMIT 1",
                (list(workflows), version, version),
            )
            row = await cur.fetchone()
            times = [] if row is None else [float(row[0])]
            for name, flow in rated:
                period = flow.rate_period or 0.0
                cur = await conn.execute(
                    next_start_sql(flow, postgres=True),
                    {"w": name, "since": now - period, "period": period},
                )
                allowed = await cur.fetchone()
                if allowed is not None and allowed[0] is not None:
                    times.append(float(allowed[0]))
            return min(times, default=None)

        return await self._read(read)

    async def renew_leases(self, owner: str, lease: float) -> dict[int, tuple[Status, int]]:
        return await self._write(controls.renew_leases(owner, self.node, lease))

    async def release_claims(self, owner: str, crashed: bool = False, now: float = 0.0) -> int:
        return await self._write(controls.release_claims(owner, crashed, now))

    async def upgrade(self, pk: int, version: str, now: float) -> InstanceRow:
        return await self._write(controls.upgrade(pk, version, now), (pk,))

    async def count_unfinished_by_version(self, workflow: str | None = None) -> dict[str, int]:
        where = "workflow = %s AND " if workflow is not None else ""
        args = (workflow,) if workflow is not None else ()

        async def read(conn: Conn) -> dict[str, int]:
            cur = await conn.execute(
                f"SELECT version_id, count(*) FROM wf.instances WHERE {where}"
                f"status NOT IN {FINISHED_SQL} GROUP BY version_id",
                args,
            )
            return dict(await cur.fetchall())

        return await self._read(read)

    async def release_dead_claims(self, crashed: bool = False, now: float = 0.0) -> int:
        return await self._write(controls.release_dead_claims(crashed, now))

    async def purge_finished(self, before: float) -> int:
        return await self._purge(controls.FINISHED_BEFORE, {"before": before})

    async def purge_by_own_retention(self, now: float) -> int:
        return await self._purge(controls.OWN_RETENTION_PASSED, {"now": now})

    async def delete_instances(self, pks: Sequence[int]) -> list[int]:
        wanted = list(dict.fromkeys(pks))
        return await self._write(controls.delete_instances(wanted), wanted)

    # ---- controls -----------------------------------------------------------------------------
    async def pause(self, pk: int, now: float) -> InstanceRow:
        return await self._write(controls.pause(pk, now), (pk,))

    async def resume(self, pk: int, now: float) -> InstanceRow:
        return await self._write(controls.resume(pk, now), (pk,))

    async def terminate(
        self, pk: int, now: float, source: str, rollback: str | None = None
    ) -> InstanceRow:
        return await self._write(controls.terminate(pk, now, source, rollback), (pk,))

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
            controls.restart(pk, now, rehome, from_step, params, record), (pk,)
        )

    async def send_event(
        self, pk: int, event_type: str, payload: str, now: float
    ) -> tuple[InstanceRow, EventRecord]:
        return await self._write(controls.send_event(pk, event_type, payload, now), (pk,))

    # ---- a runner's writes, fenced by epoch ---------------------------------------------------
    def set_status(
        self, pk: int, epoch: int, status: Status, now: float, wake_at: float | None = None
    ) -> Pending[bool]:
        # Lazy: what the instance shows; recovery does not depend on it.
        return self._row(runs.SET_STATUS, pk, (pk, epoch, status.value, now, wake_at), False)

    def start_step(self, pk: int, epoch: int, step: StepRecord) -> Pending[bool]:
        return self._row(runs.START_STEP, pk, runs.step_row(pk, epoch, step))

    def update_step_timer(
        self, pk: int, epoch: int, step: StepRecord, *, started: float | None = None
    ) -> Pending[bool]:
        return self._write(runs.update_step_timer(pk, epoch, step, started), (pk,))

    def start_attempt(
        self, pk: int, epoch: int, step: StepRecord, attempt: AttemptRecord, *, first: bool = False
    ) -> Pending[bool]:
        # Lazy: committed before the body runs (it survives this process dying), flushed to
        # disk with the next durable commit.
        group = runs.START_FIRST_ATTEMPT if first else runs.START_NEXT_ATTEMPT
        row = (*runs.step_row(pk, epoch, step), attempt.number, attempt.started)
        return self._row(group, pk, row, False)

    def end_attempt(
        self,
        pk: int,
        epoch: int,
        step: StepRecord,
        attempt: AttemptRecord,
        finish: StepState | None = None,
    ) -> Pending[bool]:
        row = runs.end_attempt_row(pk, epoch, step, attempt, finish)
        return self._row(runs.END_ATTEMPT, pk, row)

    def end_step(self, pk: int, epoch: int, step: StepRecord, state: StepState) -> Pending[bool]:
        return self._write(runs.end_step(pk, epoch, step, state), (pk,))

    def consume_event(
        self, pk: int, epoch: int, step: StepRecord, now: float
    ) -> Pending[EventRecord | Literal[False, "pausing"] | None]:
        return self._write(runs.consume_event(pk, epoch, step, now), (pk,))

    def hibernate(
        self,
        pk: int,
        epoch: int,
        wake_at: float | None,
        now: float,
        event_types: Sequence[str] = (),
        children: Sequence[int] = (),
    ) -> Pending[bool]:
        types = ",".join(sorted(set(event_types))) or None
        awaited = ",".join(str(c) for c in sorted(set(children))) or None
        return self._row(runs.HIBERNATE, pk, (pk, epoch, now, wake_at, types, awaited))

    def start_child(
        self, pk: int, epoch: int, step: StepRecord, child: NewInstance
    ) -> Pending[InstanceRow | Literal[False] | None]:
        return self._write(controls.start_child(pk, epoch, step, child), (pk,))

    async def children(self, pk: int) -> list[InstanceRow]:
        return await self._read(
            lambda conn: find_instances(conn, "parent_pk = %s ORDER BY pk", (pk,))
        )

    def release(self, pk: int, epoch: int) -> Pending[bool]:
        return self._row(runs.RELEASE, pk, (pk, epoch))

    def set_rollback(self, pk: int, epoch: int, state: str) -> Pending[bool]:
        return self._write(runs.set_rollback(pk, epoch, state), (pk,))

    def reach_pause(self, pk: int, epoch: int, now: float) -> Pending[bool]:
        return self._write(runs.reach_pause(pk, epoch, now), (pk,))

    def finish(
        self,
        pk: int,
        epoch: int,
        status: Status,
        now: float,
        output: str | None,
        error: ErrorInfo | None,
    ) -> Pending[bool]:
        row = (pk, epoch, status.value, now, output, dump_error(error))
        return self._row(runs.FINISH, pk, row)

    # ---- cron schedules --------------------------------------------------------------------------
    async def last_firing(self, workflow: str, cron: str) -> float | None:
        return await self._read(lambda conn: schedules.last_firing(conn, workflow, cron))

    async def record_firing(self, workflow: str, cron: str, fired: float) -> None:
        await self._write(schedules.record_firing(workflow, cron, fired))

    # ---- what wf serve keeps ------------------------------------------------------------------
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
            deploys.activate_version(version_id, created, workflows, files, size, retention)
        )

    async def purge_by_version_retention(self, now: float, default: float) -> int:
        total = 0
        for version in await self.list_versions():
            before = now - (version.retention if version.retention is not None else default)
            total += await self._purge(
                f"version_id = %(version)s AND ended < %(before)s AND status IN {FINISHED_SQL} "
                f"AND {OWN_RETENTION_SQL} IS NULL",
                {"version": version.id, "before": before},
            )
        return total

    async def try_unload(self, version_id: str, now: float) -> bool:
        return await self._write(deploys.try_unload(version_id, now))

    async def put_bundle(self, version_id: str, data: bytes) -> None:
        await self._write(deploys.put_bundle(version_id, data))

    async def get_bundle(self, version_id: str) -> bytes | None:
        return await self._read(lambda conn: deploys.get_bundle(conn, version_id))

    async def put_secret(self, name: str, value: str, now: float) -> None:
        await self._write(deploys.put_secret(name, value, now))

    async def delete_secret(self, name: str) -> bool:
        return await self._write(deploys.delete_secret(name))

    async def list_secrets(self) -> list[tuple[str, float]]:
        return await self._read(deploys.list_secrets)

    async def secret_values(self) -> dict[str, str]:
        return await self._read(deploys.secret_values)

    async def live_owners(self) -> list[str]:
        return await self._read(deploys.live_owners)

    async def get_setting(self, name: str) -> str | None:
        return await self._read(lambda conn: deploys.get_setting(conn, name))

    async def put_setting(self, name: str, value: str, *, only_if_missing: bool = False) -> bool:
        return await self._write(deploys.put_setting(name, value, only_if_missing))

    # ---- messages between processes -----------------------------------------------------------
    def publish(self, topic: str, payload: dict[str, Any]) -> None:
        if self._writer is not None and self._open and self._outbox.add(topic, payload):
            self._writer.poke()

    def listen(self, callback: Listener) -> None:
        if self._inbox is None:
            raise StoreError("the store is not open")
        self._inbox.add(callback)

    async def listening(self) -> None:
        """Wait until the listener's ``LISTEN`` is in effect (for tests and start-up)."""
        if self._inbox is not None:
            await self._inbox.listening.wait()
