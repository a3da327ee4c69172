"""One writer thread per store: it commits everything pending in one transaction (group commit),
so one fsync serves every instance that wrote in the meantime."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable, Generator
from typing import Any, Generic, TypeVar

from wf.errors import StoreError

T = TypeVar("T")
log = logging.getLogger("wf.store")

MAX_BATCH = 1024


_STATE = threading.Lock()  # guards every Pending's fields; held only for a few instructions


class Pending(Generic[T]):
    """A submitted write. Awaiting it (on any event loop, in any thread) waits for its commit.

    Cancelling the awaiting task does not cancel the write: once submitted, it is applied. Lighter
    than a ``concurrent.futures.Future``: the writer wakes each event loop once per commit, not
    once per write.
    """

    __slots__ = ("_done", "_error", "_event", "_result", "_waiters")

    def __init__(self) -> None:
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
        return self._wait().__await__()

    async def _wait(self) -> T:
        if not self._done:
            loop = asyncio.get_running_loop()
            waiter: asyncio.Future[None] = loop.create_future()
            if self._register(loop, waiter):
                await waiter
        return self._outcome()

    def _register(self, loop: asyncio.AbstractEventLoop, waiter: asyncio.Future[None]) -> bool:
        """Add a waiter unless the write is done already (the writer may have just settled it)."""
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
) -> None:
    """Record the outcomes, then wake each waiting event loop once for all of them."""
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
    for loop, waiters in by_loop.items():
        if not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed just now
                loop.call_soon_threadsafe(_wake, waiters)
    for event in events:
        event.set()


def _wake(waiters: list[asyncio.Future[None]]) -> None:
    for waiter in waiters:
        if not waiter.done():
            waiter.set_result(None)


class _Job:
    __slots__ = ("fn", "pending")

    def __init__(self, fn: Callable[[sqlite3.Connection], Any]) -> None:
        self.fn = fn
        self.pending: Pending[Any] = Pending()


class GroupCommitWriter:
    def __init__(
        self,
        connect: Callable[[], sqlite3.Connection],
        name: str,
        check: Callable[[], None] | None = None,
    ) -> None:
        self._connect = connect
        self._check = check  # raises StoreError when the database can no longer be trusted
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=f"wf-writer {name}", daemon=True)
        self._ready = concurrent.futures.Future[None]()
        self._closed = False
        self._broken: StoreError | None = None
        self.commits = 0
        self.jobs = 0

    def start(self) -> None:
        self._thread.start()
        self._ready.result()

    def submit(self, fn: Callable[[sqlite3.Connection], T]) -> Pending[T]:
        job = _Job(fn)
        if self._closed or self._broken is not None:
            _settle([(job.pending, None, self._broken or StoreError("the store is closed"))])
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
            conn = self._connect()
        except BaseException as exc:
            self._ready.set_exception(exc)
            return
        self._ready.set_result(None)
        try:
            stopping = False
            while not stopping:
                first = self._queue.get()
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
                try:
                    self._commit(conn, batch)
                except BaseException as exc:  # never leave a write unanswered
                    self._fail(batch, StoreError(f"database write failed: {exc}"))
                    if not isinstance(exc, Exception):
                        raise
        finally:
            # Whatever is still queued now will never be written: say so instead of hanging.
            self._broken = self._broken or StoreError("the store is closed")
            leftovers = []
            while True:
                try:
                    job = self._queue.get_nowait()
                except queue.Empty:
                    break
                if job is not None:
                    leftovers.append(job)
            self._fail(leftovers, self._broken)
            conn.close()

    def _commit(self, conn: sqlite3.Connection, batch: list[_Job]) -> None:
        outcomes: list[tuple[Pending[Any], Any, BaseException | None]] = []
        if self._check is not None:
            try:
                self._check()
            except StoreError as exc:
                self._broken = exc  # every later write fails the same way, at once
                self._fail(batch, exc)
                return
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            self._fail(batch, StoreError(f"cannot write to the database: {exc}"))
            return
        for job in batch:
            conn.execute("SAVEPOINT job")
            try:
                result = job.fn(conn)
            except Exception as exc:
                if not conn.in_transaction:
                    # SQLite rolled back the whole transaction (disk full, I/O error): every
                    # write of this batch is lost, the ones before this job included.
                    self._fail(batch, StoreError(f"database write failed: {exc}"))
                    return
                conn.execute("ROLLBACK TO job")
                conn.execute("RELEASE job")
                if isinstance(exc, sqlite3.Error):
                    log.error("write failed: %s", exc)
                    exc = StoreError(f"database write failed: {exc}")
                outcomes.append((job.pending, None, exc))
            else:
                conn.execute("RELEASE job")
                outcomes.append((job.pending, result, None))
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            self._fail(batch, StoreError(f"cannot commit to the database: {exc}"))
            return
        self.commits += 1
        self.jobs += len(batch)
        _settle(outcomes)

    @staticmethod
    def _fail(batch: list[_Job], error: BaseException) -> None:
        if batch:
            log.error("%s", error)
            _settle([(job.pending, None, error) for job in batch if not job.pending._done])
