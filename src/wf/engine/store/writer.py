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


class Pending(Generic[T]):
    """A submitted write. Awaiting it (on any event loop) waits for its commit.

    Cancelling the awaiting task does not cancel the write: once submitted, it is applied.
    """

    __slots__ = ("future",)

    def __init__(self, future: concurrent.futures.Future[T]) -> None:
        self.future = future

    def __await__(self) -> Generator[Any, None, T]:
        return self._wait().__await__()

    async def _wait(self) -> T:
        if self.future.done():
            return self.future.result()
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()

        def wake(_: concurrent.futures.Future[T]) -> None:
            if not loop.is_closed():
                loop.call_soon_threadsafe(_set_done, waiter)

        self.future.add_done_callback(wake)
        await waiter
        return self.future.result()

    def result(self, timeout: float | None = None) -> T:
        return self.future.result(timeout)


def _set_done(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class _Job:
    __slots__ = ("fn", "future")

    def __init__(self, fn: Callable[[sqlite3.Connection], Any]) -> None:
        self.fn = fn
        self.future: concurrent.futures.Future[Any] = concurrent.futures.Future()


class GroupCommitWriter:
    def __init__(self, connect: Callable[[], sqlite3.Connection], name: str) -> None:
        self._connect = connect
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=f"wf-writer {name}", daemon=True)
        self._ready = concurrent.futures.Future[None]()
        self._closed = False
        self.commits = 0
        self.jobs = 0

    @property
    def used(self) -> bool:
        return self._thread.ident is not None

    def start(self) -> None:
        self._thread.start()
        self._ready.result()

    def submit(self, fn: Callable[[sqlite3.Connection], T]) -> Pending[T]:
        job = _Job(fn)
        if self._closed:
            job.future.set_exception(StoreError("the store is closed"))
        else:
            self._queue.put(job)
        return Pending(job.future)

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
                self._commit(conn, batch)
        finally:
            conn.close()

    def _commit(self, conn: sqlite3.Connection, batch: list[_Job]) -> None:
        outcomes: list[tuple[_Job, Any, BaseException | None]] = []
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
                conn.execute("ROLLBACK TO job")
                conn.execute("RELEASE job")
                outcomes.append((job, None, exc))
            else:
                conn.execute("RELEASE job")
                outcomes.append((job, result, None))
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            self._fail(batch, StoreError(f"cannot commit to the database: {exc}"))
            return
        self.commits += 1
        self.jobs += len(batch)
        for job, result, error in outcomes:
            if error is None:
                job.future.set_result(result)
            else:
                if isinstance(error, sqlite3.Error):
                    log.error("write failed: %s", error)
                    error = StoreError(f"database write failed: {error}")
                job.future.set_exception(error)

    @staticmethod
    def _fail(batch: list[_Job], error: BaseException) -> None:
        log.error("%s", error)
        for job in batch:
            job.future.set_exception(error)
