"""Writers: everything a process writes goes through one, which commits whatever is pending in
one transaction (group commit), so one fsync serves every instance that wrote in the meantime.

``InlineWriter`` commits on the event loop's own thread, once per loop iteration: no thread hop
per write, for a store this process owns alone. ``GroupCommitWriter`` commits on a thread of its
own, for a store shared with other processes (whose locks may make a commit wait).

Writes are *durable* (acknowledged creations, step outcomes, timers, controls: with
``durability="fsync"`` their commit is fsynced) or *lazy* (an attempt's start, a status flip: the
commit reaches the OS before the write's waiter goes on, which survives the process dying, and is
fsynced by the next durable commit or within ``LAZY_SYNC_SECONDS``). A batch holding a durable
write is committed durably, lazy writes included.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any, Generic, TypeVar

from wf.engine.counters import WriteStats
from wf.errors import StoreError

T = TypeVar("T")
log = logging.getLogger("wf.store")

MAX_BATCH = 1024
LAZY_SYNC_SECONDS = 1.0  # a lazy commit is fsynced at the latest this long after it
# How often the database file is checked to be the one opened (not deleted or replaced): a stat
# per commit would cost more than the commit's own writes, and a check this often still stops
# the writes within a moment of a deletion.
CHECK_EVERY = 0.1
# A checkpoint (copying the log into the database file) runs in the committing thread once the
# log holds this many pages, as SQLite's own autocheckpoint: run between commits, it completes,
# so the next commit starts the log afresh from its beginning, overwriting blocks the file
# already has. An fdatasync that does not grow the file costs about a third less (no file-system
# journal commit for the new size). In fsync mode a smaller log keeps most commits in place; in os
# mode the checkpoint's own two fsyncs are most of its cost, so it runs less often.
CHECKPOINT_PAGES = {True: 256, False: 1000}  # by "is the durability fsync"


_STATE = threading.Lock()  # guards every Pending's fields; held only for a few instructions


class Pending(Generic[T]):
    """A submitted write. Awaiting it (on any event loop, in any thread) waits for its commit.

    Cancelling the awaiting task does not cancel the write: once submitted, it is applied. Lighter
    than a ``concurrent.futures.Future``: a writer wakes each event loop once per commit, not
    once per write.
    """

    __slots__ = ("_done", "_error", "_event", "_result", "_waiters", "_writer")

    def __init__(self, writer: InlineWriter | None = None) -> None:
        self._writer = writer  # asked to commit at once when awaited (see InlineWriter.hurry)
        self._done = False
        self._result: Any = None
        self._error: BaseException | None = None
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] | None = None
        self._event: threading.Event | None = None

    @classmethod
    def failed(cls, error: BaseException) -> Pending[Any]:
        pending: Pending[Any] = cls()
        _settle([(pending, None, error)])
        return pending

    def __await__(self) -> Generator[Any, None, T]:
        if not self._done:
            writer = self._writer
            loop = writer.loop_here() if writer is not None else asyncio._get_running_loop()
            if writer is not None and loop is not None and writer.hurry(loop):
                return self._outcome()  # committed just now
            if loop is None:
                raise RuntimeError("a write can only be awaited in a running event loop")
            waiter: asyncio.Future[None] = loop.create_future()
            if self._register(loop, waiter):
                yield from waiter
        return self._outcome()

    def _register(self, loop: asyncio.AbstractEventLoop, waiter: asyncio.Future[None]) -> bool:
        """Add a waiter unless the write is done already (a writer may have just settled it)."""
        with _STATE:
            if self._done:
                return False
            if self._waiters is None:
                self._waiters = []
            self._waiters.append((loop, waiter))
            return True

    def result(self, timeout: float | None = None) -> T:
        """Block the calling thread until the write is committed."""
        with _STATE:
            if not self._done and self._event is None:
                self._event = threading.Event()
            event = self._event
        if event is not None and not event.wait(timeout):
            raise TimeoutError("the write was not committed in time")
        return self._outcome()

    def _outcome(self) -> T:
        if self._error is not None:
            raise self._error
        return self._result  # type: ignore[no-any-return]


def _settle(
    outcomes: list[tuple[Pending[Any], Any, BaseException | None]],
    here: asyncio.AbstractEventLoop | None = None,
) -> None:
    """Record the outcomes, then wake each waiting event loop once for all of them (``here``,
    the loop running in this thread if any, directly)."""
    by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] = {}
    events: list[threading.Event] = []
    with _STATE:
        for pending, result, error in outcomes:
            pending._result, pending._error, pending._done = result, error, True
            if pending._waiters:
                for loop, waiter in pending._waiters:
                    by_loop.setdefault(loop, []).append(waiter)
                pending._waiters = None
            if pending._event is not None:
                events.append(pending._event)
    if by_loop and here is None:
        here = asyncio._get_running_loop()
    for loop, waiters in by_loop.items():
        if loop is here:
            _wake(waiters)
        elif not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed just now
                loop.call_soon_threadsafe(_wake, waiters)
    for event in events:
        event.set()


settle = _settle  # for the PostgreSQL store's writer, which settles its own jobs


def _wake(waiters: list[asyncio.Future[None]]) -> None:
    for waiter in waiters:
        if not waiter.done():
            waiter.set_result(None)


class _Job:
    __slots__ = ("durable", "fn", "pending")

    def __init__(
        self,
        fn: Callable[[sqlite3.Connection], Any],
        durable: bool,
        writer: InlineWriter | None = None,
    ) -> None:
        self.fn = fn
        self.durable = durable
        self.pending: Pending[Any] = Pending(writer)


class _Committer:
    """Applies batches of jobs to one connection, one transaction per batch; each job in a
    savepoint of its own, so one failing write does not take the others with it."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        wal: Path,
        fsync: bool,
        check: Callable[[], None] | None,
    ) -> None:
        self.conn = conn
        self.wal = wal
        self.fsync = fsync
        self.check = check  # raises StoreError when the database can no longer be trusted
        self.checked = -CHECK_EVERY
        # SQLite never syncs a commit itself (synchronous=NORMAL, which still syncs the log's
        # header when it restarts and before each checkpoint): a durable batch is followed by
        # one fdatasync of the log, which is all synchronous=FULL would do, and a lazy batch
        # costs no PRAGMA switch.
        conn.execute("PRAGMA synchronous = NORMAL")
        self.wal_fd: int | None = None  # the log, opened at the first sync
        self.unsynced = False  # lazy commits not yet fsynced
        self.broken: StoreError | None = None
        self.commits = 0
        self.jobs = 0
        self.stats = WriteStats()

    def commit(self, batch: list[_Job], here: asyncio.AbstractEventLoop | None = None) -> None:
        try:
            self._commit(batch, here)
        except BaseException as exc:  # never leave a write unanswered
            self.fail(batch, StoreError(f"database write failed: {exc}"))
            if not isinstance(exc, Exception):
                raise

    def _commit(self, batch: list[_Job], here: asyncio.AbstractEventLoop | None) -> None:
        conn = self.conn
        if self.check is not None and time.monotonic() - self.checked > CHECK_EVERY:
            self.checked = time.monotonic()
            try:
                self.check()
            except StoreError as exc:
                self.broken = exc  # every later write fails the same way, at once
                self.fail(batch, exc)
                return
        durable = self.fsync and any(job.durable for job in batch)
        began = time.perf_counter()
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            self.fail(batch, StoreError(f"cannot write to the database: {exc}"))
            return
        outcomes: list[tuple[Pending[Any], Any, BaseException | None]] = []
        alone = len(batch) == 1  # no savepoint needed: a failure rolls back only this job
        for job in batch:
            if not alone:
                conn.execute("SAVEPOINT job")
            try:
                result = job.fn(conn)
            except Exception as exc:
                if alone or not conn.in_transaction:
                    # Alone, or SQLite rolled back the whole transaction (disk full, I/O
                    # error): every write of this batch is lost.
                    with contextlib.suppress(sqlite3.Error):
                        if conn.in_transaction:
                            conn.execute("ROLLBACK")
                    if alone and not isinstance(exc, sqlite3.Error):
                        _settle([(job.pending, None, exc)])
                    else:
                        self.fail(batch, StoreError(f"database write failed: {exc}"))
                    return
                conn.execute("ROLLBACK TO job")
                conn.execute("RELEASE job")
                if isinstance(exc, sqlite3.Error):
                    log.error("write failed: %s", exc)
                    exc = StoreError(f"database write failed: {exc}")
                outcomes.append((job.pending, None, exc))
            else:
                if not alone:
                    conn.execute("RELEASE job")
                outcomes.append((job.pending, result, None))
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            self.fail(batch, StoreError(f"cannot commit to the database: {exc}"))
            return
        self.commits += 1
        self.jobs += len(batch)
        if durable:
            try:
                self.sync_log()
            except OSError as exc:
                # What reached the disk is unknown now, and a later sync may not say so
                # again: no write of this store is trusted from here on.
                self.broken = StoreError(f"cannot sync {self.wal.name}: {exc.strerror}")
                self.fail(batch, self.broken)
                return
            self.unsynced = False  # the sync covers every commit before it too
        elif self.fsync:
            self.unsynced = True
        self.stats.committed(len(batch), time.perf_counter() - began)
        _settle(outcomes, here)

    def sync_log(self) -> None:
        """fdatasync the log, kept open: the writer's connection keeps it from being removed."""
        if self.wal_fd is None:
            self.wal_fd = os.open(self.wal, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        os.fdatasync(self.wal_fd)

    def sync(self) -> None:
        """fsync the write-ahead log: every lazy commit so far reaches the disk. Called on
        another thread than commits (and the close), so it opens the log for itself."""
        self.unsynced = False
        try:
            fd = os.open(self.wal, os.O_RDONLY)
        except FileNotFoundError:
            return  # checkpointed and removed: already in the database file
        except OSError as exc:
            log.error("cannot open %s to sync it: %s", self.wal, exc.strerror)
            return
        try:
            os.fsync(fd)
        except OSError as exc:
            log.error("cannot sync %s: %s", self.wal, exc.strerror)
        finally:
            os.close(fd)

    def close(self) -> None:
        """Sync what is lazy, close the connection (the last one out checkpoints and removes
        the log), then the log's descriptor."""
        if self.unsynced:
            self.sync()
        try:
            self.conn.close()
        finally:
            if self.wal_fd is not None:
                os.close(self.wal_fd)
                self.wal_fd = None

    @staticmethod
    def fail(batch: list[_Job], error: BaseException) -> None:
        if batch:
            log.error("%s", error)
            _settle([(job.pending, None, error) for job in batch if not job.pending._done])


class _Counted:
    """What both writers tell about their work: commits made, and writes they held."""

    _committer: _Committer | None

    @property
    def commits(self) -> int:
        return 0 if self._committer is None else self._committer.commits

    @property
    def jobs(self) -> int:
        return 0 if self._committer is None else self._committer.jobs

    @property
    def stats(self) -> WriteStats | None:
        return None if self._committer is None else self._committer.stats


class InlineWriter(_Counted):
    """Commits on the thread of the event loop that submitted: a submit schedules one flush on
    its loop (``call_soon``), which commits every write submitted until then. A submit from a
    thread without an event loop commits at once. Commits from several threads take turns.

    Awaiting a write when nothing else on the loop is ready to run commits it at once, in the
    awaiting task (``hurry``): waiting for the loop's next turn would batch it with nobody's.
    One instance running steps alone then needs no event-loop turn per write, but the loop still
    gets its turn every ``HURRY_BUDGET`` seconds.
    """

    HURRY_BUDGET = 0.002

    def __init__(
        self,
        connect: Callable[[], sqlite3.Connection],
        wal: Path,
        fsync: bool,
        check: Callable[[], None] | None = None,
    ) -> None:
        self._connect = connect
        self._wal = wal
        self._fsync = fsync
        self._check = check
        self._committer: _Committer | None = None
        self._lock = threading.Lock()  # one commit at a time; guards the queue
        self._queue: list[_Job] = []
        self._scheduled: set[asyncio.AbstractEventLoop] = set()  # loops with a flush to come
        self._sync_timer: asyncio.TimerHandle | None = None
        self._closed = False
        self._turned = 0.0  # when a flush last ran from the loop (the loop had its turn)
        # The loop that submits most, and its thread: asking asyncio for the running loop
        # costs a system call (getpid) each time.
        self._home: asyncio.AbstractEventLoop | None = None
        self._home_thread = 0

    def start(self) -> None:
        conn = self._connect()
        conn.execute(f"PRAGMA wal_autocheckpoint = {CHECKPOINT_PAGES[self._fsync]}")
        self._committer = _Committer(conn, self._wal, self._fsync, self._check)

    def loop_here(self) -> asyncio.AbstractEventLoop | None:
        """The event loop running in this thread, if any."""
        home = self._home
        if home is not None and self._home_thread == threading.get_ident() and home.is_running():
            return home  # one thread runs one loop at a time: if home runs here, we are in it
        loop = asyncio._get_running_loop()
        if loop is not None:
            self._home, self._home_thread = loop, threading.get_ident()
        return loop

    def hurry(self, loop: asyncio.AbstractEventLoop) -> bool:
        """Commit now (and say so) if the loop has nothing else ready to run but the flush to
        come (so no other write could join the batch), and it had a turn lately."""
        if loop not in self._scheduled:
            return False
        ready = getattr(loop, "_ready", None)  # asyncio's own loop; others never hurry
        if ready is None or len(ready) > 1:
            return False
        if time.monotonic() - self._turned > self.HURRY_BUDGET:
            return False
        self.flush(loop)
        return True

    def submit(self, fn: Callable[[sqlite3.Connection], T], durable: bool = True) -> Pending[T]:
        job = _Job(fn, durable, self)
        committer = self._committer
        if self._closed or committer is None or committer.broken is not None:
            error = (committer and committer.broken) or StoreError("the store is closed")
            _settle([(job.pending, None, error)])
            return job.pending
        loop = self.loop_here()
        with self._lock:
            self._queue.append(job)
            if loop is not None:
                if loop in self._scheduled:
                    return job.pending
                self._scheduled.add(loop)
        if loop is None:
            self.flush()
        else:
            loop.call_soon(self._flush_on, loop)
        return job.pending

    def _flush_on(self, loop: asyncio.AbstractEventLoop) -> None:
        with self._lock:
            self._scheduled.discard(loop)
        self._turned = time.monotonic()
        self.flush(loop)
        committer = self._committer
        if committer is not None and committer.unsynced and self._sync_timer is None:
            self._sync_timer = loop.call_later(LAZY_SYNC_SECONDS, self._sync_due, loop)

    def _sync_due(self, loop: asyncio.AbstractEventLoop) -> None:
        self._sync_timer = None
        committer = self._committer
        if committer is not None and committer.unsynced and not self._closed:
            committer.unsynced = False  # commits from now on are not covered by this sync
            loop.run_in_executor(None, committer.sync)

    def flush(self, here: asyncio.AbstractEventLoop | None = None) -> None:
        """Commit every write submitted so far (``here``: the loop of this thread, if known)."""
        with self._lock:
            batch, self._queue = self._queue, []
            committer = self._committer
            if not batch or committer is None:
                return
            for start in range(0, len(batch), MAX_BATCH):
                committer.commit(batch[start : start + MAX_BATCH], here)

    def close(self) -> None:
        if self._closed:
            return
        self.flush()
        with self._lock:
            self._closed = True
            if self._sync_timer is not None:
                self._sync_timer.cancel()
                self._sync_timer = None
            committer, self._committer = self._committer, None
        if committer is not None:
            committer.close()


class GroupCommitWriter(_Counted):
    """Commits on a thread of its own whatever was submitted while the last commit ran."""

    def __init__(
        self,
        connect: Callable[[], sqlite3.Connection],
        wal: Path,
        fsync: bool,
        name: str,
        check: Callable[[], None] | None = None,
    ) -> None:
        self._connect = connect
        self._wal = wal
        self._fsync = fsync
        self._check = check
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=f"wf-writer {name}", daemon=True)
        self._ready = concurrent.futures.Future[None]()
        self._closed = False
        self._committer: _Committer | None = None

    def start(self) -> None:
        self._thread.start()
        self._ready.result()

    def submit(self, fn: Callable[[sqlite3.Connection], T], durable: bool = True) -> Pending[T]:
        job = _Job(fn, durable)
        broken = self._committer.broken if self._committer is not None else None
        if self._closed or broken is not None:
            _settle([(job.pending, None, broken or StoreError("the store is closed"))])
        else:
            self._queue.put(job)
        return job.pending

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._queue.put(None)
        self._thread.join()

    def _run(self) -> None:
        try:
            committer = self._committer = _Committer(
                self._connect(), self._wal, self._fsync, self._check
            )
        except BaseException as exc:
            self._ready.set_exception(exc)
            return
        self._ready.set_result(None)
        try:
            stopping = False
            while not stopping:
                try:
                    first = self._queue.get(
                        timeout=LAZY_SYNC_SECONDS if committer.unsynced else None
                    )
                except queue.Empty:
                    committer.sync()
                    continue
                if first is None:
                    break
                batch = [first]
                while len(batch) < MAX_BATCH:
                    try:
                        job = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if job is None:
                        stopping = True
                        break
                    batch.append(job)
                committer.commit(batch)
        finally:
            # Whatever is still queued now will never be written: say so instead of hanging.
            committer.broken = committer.broken or StoreError("the store is closed")
            leftovers = []
            while True:
                try:
                    job = self._queue.get_nowait()
                except queue.Empty:
                    break
                if job is not None:
                    leftovers.append(job)
            committer.fail(leftovers, committer.broken)
            committer.close()
