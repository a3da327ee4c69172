"""The group-commit writer of the PostgreSQL store: one asyncio task and one connection per
process, committing everything submitted meanwhile in one transaction.

A batch is one pipeline: every job queues its statements (``apply``), one ``Sync`` commits them
all (statements up to a Sync are one implicit transaction), then each job reads its results
(``finish``). So a step costs no round trip of its own beyond the batch's commit. Before the
jobs, one statement locks the instance rows the batch writes, in pk order (two writers never
deadlock on them), and every fenced statement checks its (pk, epoch) against the locked row.

The connection stays in pipeline mode for good (entering and leaving it per batch would cost
more than the statements). A batch with only lazy writes (an attempt's start, a status flip)
commits with ``synchronous_commit = off``: it survives this process dying (the server has it),
and the next durable commit flushes it to disk with its own. In ``durability="os"`` every
commit is so.

The connection can go away (PostgreSQL restarted): the batch waits for it to come back and runs
again; a write is acknowledged only after its commit returned. Each batch first asks for its
transaction id, with a flush request so that the answer comes back at once, while the rest is
still being sent: when the connection dies *during* a commit, the writer asks the server after
reconnecting whether that transaction committed. If not, the batch runs again. If it did, or
its id never arrived, the jobs' results are unknown: they fail with ``StoreUnavailable``, which
a runner treats like any refused write (it is taken over and replays what was written).

A statement failing (a constraint, a deadlock) rolls back the whole batch: its jobs then run
one transaction each, so one bad write does not take the others with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar

import psycopg
from psycopg import AsyncPipeline
from psycopg.pq import PipelineStatus, TransactionStatus

from wf.engine.counters import WriteStats
from wf.engine.store.pg_connect import Conn, Link, cause, is_disconnect
from wf.engine.store.pg_messages import Outbox
from wf.engine.store.writer import Pending, settle
from wf.errors import StoreError, StoreUnavailable, WfError

T = TypeVar("T")
log = logging.getLogger("wf.store")

MAX_BATCH = 1024
RETRIES = 5  # a deadlock or serialization failure is retried this many times

# What a job does: queue its statements on the connection (in pipeline mode) and return how to
# read its result once the batch is committed. It may raise a WfError (refusing the write)
# only before it queued any write.
Finish = Callable[[], Awaitable[T]]
Apply = Callable[[Conn], Awaitable[Finish[T]]]

DBNOW = "extract(epoch from clock_timestamp())::double precision"
_XID = "SELECT pg_current_xact_id()::text"
# The same, for a batch of lazy writes only: its commit does not wait for the disk.
_XID_LAZY = _XID + ", set_config('synchronous_commit', 'off', true)"
_LOCK = "SELECT pk FROM wf.instances WHERE pk = ANY(%s) ORDER BY pk FOR NO KEY UPDATE"


class Group:
    """A kind of fenced write that many instances' jobs in a batch share one statement for:
    ``sql`` takes one array per column (``%(column)s``) and returns the pks it wrote; ``one``
    does the same for a single row, with one value per column (cheaper for the server than
    arrays of one)."""

    def __init__(
        self, sql: str, columns: Sequence[str], one: str, *, lock_first: bool = False
    ) -> None:
        self.sql = sql
        self.columns = tuple(columns)
        self.one = one
        # Whether its rows must be locked by a statement of their own before it runs: a
        # statement that waits for a row lock still reads other tables as they were before it
        # waited (READ COMMITTED takes the snapshot when the statement begins).
        self.lock_first = lock_first

    async def apply(self, conn: Conn, rows: list[tuple[Any, ...]]) -> Finish[set[int]]:
        if len(rows) == 1:
            cur = await conn.execute(self.one, dict(zip(self.columns, rows[0], strict=True)))
        else:
            columns = (list(c) for c in zip(*rows, strict=True))
            cur = await conn.execute(self.sql, dict(zip(self.columns, columns, strict=True)))
        written: set[int] | None = None

        async def finish() -> set[int]:
            nonlocal written
            if written is None:
                written = {row[0] for row in await cur.fetchall()}
            return written

        return finish


class Job(Generic[T]):
    """A write: ``apply`` queues its own statements, or it is a ``row`` of a ``group``
    (its result: whether the group's statement wrote its pk)."""

    __slots__ = ("apply", "durable", "group", "pending", "pks", "row")

    def __init__(
        self,
        apply: Apply[T] | None,
        pks: Sequence[int],
        durable: bool,
        group: Group | None = None,
        row: tuple[Any, ...] = (),
    ) -> None:
        self.apply = apply
        self.pks = pks
        self.durable = durable
        self.group = group
        self.row = row
        self.pending: Pending[T] = Pending()


class _Failed(Exception):
    """A batch failed. ``sent``: its Sync had gone out (the commit may have landed);
    ``healthy``: the connection is fine (a statement failed: nothing was committed), else it
    must be replaced; ``xid``: the batch's transaction id, if it came back."""

    def __init__(self, exc: BaseException, sent: bool, healthy: bool, xid: str | None) -> None:
        super().__init__(str(exc))
        self.exc = exc
        self.sent = sent
        self.healthy = healthy
        self.xid = xid


def _xid(cur: psycopg.AsyncCursor[Any] | None) -> str | None:
    """The transaction id a batch's first statement returned, if it came back."""
    result = None if cur is None else cur.pgresult
    if result is None or result.ntuples != 1:
        return None
    value = result.get_value(0, 0)
    return None if value is None else value.decode()


def _member(written: Finish[set[int]], pk: int) -> Finish[bool]:
    async def finish() -> bool:
        return pk in await written()

    return finish


def _refused(exc: BaseException) -> Finish[Any]:
    async def finish() -> Any:
        raise exc

    return finish


class PgWriter:
    """See the module docstring. Messages in ``outbox`` are sent after each batch, in a
    transaction of their own."""

    def __init__(self, link: Link, fsync: bool, outbox: Outbox | None = None) -> None:
        self.link = link
        self.fsync = fsync
        self.outbox = outbox
        self.commits = 0
        self.jobs = 0
        self.stats = WriteStats()
        self._queue: list[Job[Any]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        # The writer's connection stays in pipeline mode: entering and leaving it costs more
        # than a batch's statements.
        self._stack: contextlib.AsyncExitStack | None = None
        self._pipe: AsyncPipeline | None = None
        self._pipe_conn: Conn | None = None

    async def _pipeline(self, conn: Conn) -> AsyncPipeline:
        if self._pipe is None or self._pipe_conn is not conn:
            await self._leave_pipeline()
            self._stack = contextlib.AsyncExitStack()
            self._pipe = await self._stack.enter_async_context(conn.pipeline())
            self._pipe_conn = conn
        return self._pipe

    async def _leave_pipeline(self) -> None:
        stack, self._stack, self._pipe, self._pipe_conn = self._stack, None, None, None
        if stack is not None:
            with contextlib.suppress(psycopg.Error, OSError):
                await stack.aclose()

    async def _lost(self, exc: BaseException) -> None:
        await self._leave_pipeline()
        await self.link.lost(exc)

    # ---- lifecycle ----------------------------------------------------------------------------
    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="wf postgres writer")

    async def close(self) -> None:
        """Commit what is pending (if the database answers), then stop."""
        if self._closing:
            return
        self._closing = True
        if self.link.health.down_since is not None:
            self.link.closed = True  # nothing will be written: fail the waiting writes now
        self._wake.set()
        if self._task is not None:
            await self._task
        await self._leave_pipeline()
        await self.link.close()

    def submit(self, apply: Apply[T], pks: Sequence[int] = (), durable: bool = True) -> Pending[T]:
        return self._enqueue(Job(apply, pks, durable))

    def submit_row(
        self, group: Group, pk: int, row: tuple[Any, ...], durable: bool = True
    ) -> Pending[bool]:
        """A fenced write on instance ``pk`` that shares its batch's statement of ``group``."""
        return self._enqueue(Job(None, (pk,), durable, group, row))

    def _enqueue(self, job: Job[T]) -> Pending[T]:
        if self._closing:
            settle([(job.pending, None, StoreError("the store is closed"))])
        else:
            self._queue.append(job)
            self._wake.set()
        return job.pending

    def poke(self) -> None:
        """Send the outbox's messages soon, even if nothing is written."""
        self._wake.set()

    # ---- the loop -----------------------------------------------------------------------------
    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                batch = self._queue[:MAX_BATCH]
                del self._queue[:MAX_BATCH]
                try:
                    outcomes = await self._commit(batch)
                except BaseException as exc:  # never leave a write unanswered
                    error = exc if isinstance(exc, StoreError) else StoreError(f"{exc}")
                    outcomes = [(job.pending, None, error) for job in batch]
                    if not isinstance(exc, Exception):
                        settle(outcomes)
                        raise
                settle(outcomes)
            if self.outbox is not None and self.outbox.messages:
                await self._send_messages(self.outbox)
            if self._closing and not self._queue:
                return

    async def _send_messages(self, outbox: Outbox) -> None:
        """Send the waiting messages (reconnecting if need be); lost if the connection dies
        meanwhile: polling is the fallback."""
        try:
            conn = await self.link.wait()
        except StoreError:  # the store closed while the database was away
            return
        try:
            pipe = await self._pipeline(conn)
            await outbox.send(conn)
            await pipe.sync()
        except (psycopg.Error, OSError) as exc:
            log.debug("cannot send messages: %s", exc)
            await self._lost(exc)

    async def _commit(self, batch: list[Job[Any]]) -> list[tuple[Pending[Any], Any, Any]]:
        tries = 0
        while True:
            try:
                conn = await self.link.wait()
            except StoreError as exc:  # the store closed while the database was away
                return [(job.pending, None, exc) for job in batch]
            try:
                return await self._apply(conn, batch)
            except _Failed as failed:
                problem = failed.exc
                if not failed.healthy:
                    await self._lost(problem)
                    if failed.sent and (failed.xid is None or await self._landed(failed.xid)):
                        unknown = StoreUnavailable(
                            f"PostgreSQL at {self.link.health.where} went away as this write "
                            "was committed: it may have been written, its result is unknown"
                        )
                        return [(job.pending, None, unknown) for job in batch]
                    continue  # not committed: once the database is back, run it again
                if not isinstance(problem, psycopg.Error):
                    continue
                sqlstate = problem.sqlstate or ""
                if sqlstate in ("40001", "40P01") and tries < RETRIES:
                    tries += 1  # a deadlock or a serialization failure: the batch was rolled back
                    continue
                if len(batch) > 1:  # one of them failed: each alone, so the others commit
                    outcomes: list[tuple[Pending[Any], Any, Any]] = []
                    for job in batch:
                        outcomes.extend(await self._commit([job]))
                    return outcomes
                log.error("write failed: %s", cause(problem))
                refused = StoreError(f"database write failed: {cause(problem)}")
                return [(batch[0].pending, None, refused)]

    async def _queue_statements(self, conn: Conn, batch: list[Job[Any]]) -> list[Finish[Any]]:
        """Queue every job's statements; the rows of a group share one statement, as long as
        each pk appears once in it (a job on a pk already pending runs after it: the writes on
        one instance keep their order)."""
        finishes: list[Finish[Any] | None] = [None] * len(batch)
        pending: dict[Group, list[int]] = {}  # group -> indexes of its jobs in the batch
        pending_pks: set[int] = set()

        async def flush() -> None:
            for group, indexes in pending.items():
                written = await group.apply(conn, [batch[i].row for i in indexes])
                for i in indexes:
                    finishes[i] = _member(written, batch[i].pks[0])
            pending.clear()
            pending_pks.clear()

        for index, job in enumerate(batch):
            if job.group is not None:
                pk = job.pks[0]
                if pk in pending_pks:
                    await flush()
                pending.setdefault(job.group, []).append(index)
                pending_pks.add(pk)
                continue
            if not job.pks or not pending_pks.isdisjoint(job.pks):
                await flush()  # a job on many instances, or on one with a write pending
            assert job.apply is not None
            try:
                finishes[index] = await job.apply(conn)
            except psycopg.Error:
                raise
            except Exception as exc:  # refused before it wrote anything
                finishes[index] = _refused(exc)
        await flush()
        return [f for f in finishes if f is not None]

    async def _landed(self, xid: str) -> bool:
        """After a connection died during a commit: whether that transaction committed."""
        while True:
            try:
                conn = await self.link.wait()
            except StoreError:
                return True  # closing: say unknown rather than run it again
            try:
                pipe = await self._pipeline(conn)
                cur = await conn.execute("SELECT pg_xact_status(%s::xid8)", (xid,))
                await pipe.sync()
                row = await cur.fetchone()
            except psycopg.errors.InvalidParameterValue:
                # "transaction ID ... is in the future": the server came back from a crash
                # without it (its commit never reached the log), so it did not commit.
                await self._leave_pipeline()
                return False
            except (psycopg.Error, OSError) as exc:
                await self._lost(exc)
                continue
            status = None if row is None else row[0]
            if status == "in progress":  # its old session is still ending
                await asyncio.sleep(0.05)
                continue
            return status != "aborted"

    async def _apply(
        self, conn: Conn, batch: list[Job[Any]]
    ) -> list[tuple[Pending[Any], Any, Any]]:
        finishes: list[Finish[Any]] = []
        sent = False
        xid_cur = None
        began = time.perf_counter()
        try:
            pipeline = await self._pipeline(conn)
            lazy = self.fsync and not any(job.durable for job in batch)
            xid_cur = await conn.execute(_XID_LAZY if lazy else _XID)
            conn.pgconn.send_flush_request()  # its answer comes back while the rest is sent
            pks = sorted({pk for job in batch for pk in job.pks})
            if len(pks) > 1 or any(job.group is not None and job.group.lock_first for job in batch):
                await conn.execute(_LOCK, (pks,))
            finishes = await self._queue_statements(conn, batch)
            sent = True
            await pipeline.sync()
        except (psycopg.Error, OSError) as exc:
            healthy = (
                isinstance(exc, psycopg.Error)
                and not is_disconnect(exc, conn)
                and conn.info.transaction_status == TransactionStatus.IDLE
                and conn.pgconn.pipeline_status == PipelineStatus.ON
            )
            raise _Failed(exc, sent, healthy, _xid(xid_cur)) from None
        self.commits += 1
        self.jobs += len(batch)
        self.stats.committed(len(batch), time.perf_counter() - began)
        outcomes: list[tuple[Pending[Any], Any, Any]] = []
        for job, finish in zip(batch, finishes, strict=False):
            try:
                outcomes.append((job.pending, await finish(), None))
            except (WfError, Exception) as exc:
                outcomes.append((job.pending, None, exc))
        return outcomes
