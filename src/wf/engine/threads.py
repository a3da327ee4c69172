"""Worker threads for synchronous step callbacks.

A callback that times out cannot be killed, only abandoned. A fixed pool would slowly fill with
abandoned callbacks and stall every later step, so an abandoned thread stops counting toward the
limit: a new thread takes its place. Threads are daemons so an abandoned callback never holds up
the process's exit, and idle ones go away after a while.
"""

from __future__ import annotations

import concurrent.futures
import contextvars
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from wf.errors import EscapedBaseException

T = TypeVar("T")

_IDLE_SECONDS = 30.0


class _Job:
    __slots__ = ("abandoned", "backlogged", "finished", "fn", "future", "on_start", "started")

    def __init__(self, fn: Callable[[], Any]) -> None:
        self.fn = fn
        self.future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self.abandoned = False
        self.finished = False
        self.started = False
        self.backlogged = False
        self.on_start: Callable[[], None] | None = None


class StepThreadPool:
    def __init__(self, max_workers: int = 128, name: str = "wf-step") -> None:
        self.max_workers = max_workers
        self._name = name
        self._backlog: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._handoff: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._workers = 0  # threads counted toward max_workers (abandoned ones are not)
        self._idle = 0
        self._started = 0
        self._jobs: dict[concurrent.futures.Future[Any], _Job] = {}

    @property
    def workers(self) -> int:
        return self._workers

    def submit(self, fn: Callable[[], T]) -> concurrent.futures.Future[T]:
        """Run ``fn`` in a worker thread. While every worker is busy it waits in a backlog."""
        context = contextvars.copy_context()
        job = _Job(lambda: context.run(fn))
        with self._lock:
            self._jobs[job.future] = job
            if self._idle > 0:
                self._idle -= 1
                self._handoff.put(job)
            elif self._workers < self.max_workers:
                self._workers += 1
                self._start(job)
            else:
                job.backlogged = True
                self._backlog.put(job)
        return job.future

    def queued(self, future: concurrent.futures.Future[Any]) -> bool:
        """Whether the job is still waiting in the backlog for a thread to become free."""
        with self._lock:
            job = self._jobs.get(future)
            return job is not None and job.backlogged and not job.started and not job.finished

    def when_started(
        self, future: concurrent.futures.Future[Any], callback: Callable[[], None]
    ) -> None:
        """Call ``callback`` (in the worker thread, or now) once the job has a thread."""
        with self._lock:
            job = self._jobs.get(future)
            if job is not None and not job.started and not job.finished:
                job.on_start = callback
                return
        callback()

    def abandon(self, future: concurrent.futures.Future[Any]) -> None:
        """The callback behind ``future`` timed out: its thread no longer counts."""
        with self._lock:
            job = self._jobs.get(future)
            if job is None or job.finished or job.abandoned:
                return
            if future.cancel():  # still queued: it will simply never run
                return
            job.abandoned = True
            self._workers -= 1
            if not self._backlog.empty() and self._workers < self.max_workers:
                self._workers += 1
                self._start(None)

    def _start(self, job: _Job | None) -> None:
        self._started += 1
        threading.Thread(
            target=self._work, args=(job,), name=f"{self._name}-{self._started}", daemon=True
        ).start()

    def _next(self) -> _Job | None:
        """Called with the lock held: a backlog job, or None after marking this thread idle."""
        try:
            return self._backlog.get_nowait()
        except queue.Empty:
            self._idle += 1
            return None

    def _work(self, job: _Job | None) -> None:
        while True:
            if job is None:
                with self._lock:
                    job = self._next()
                if job is None:
                    try:
                        job = self._handoff.get(timeout=_IDLE_SECONDS)
                    except queue.Empty:
                        with self._lock:
                            try:  # a submitter counted on this thread just now
                                job = self._handoff.get_nowait()
                            except queue.Empty:
                                self._idle -= 1
                                self._workers -= 1
                                return
            with self._lock:
                job.started = True
                on_start = job.on_start
            if on_start is not None:
                on_start()
            if job.future.set_running_or_notify_cancel():
                try:
                    result = job.fn()
                except Exception as exc:
                    job.future.set_exception(exc)
                except BaseException as exc:  # sys.exit() in a step must not end the process
                    job.future.set_exception(EscapedBaseException(exc))
                else:
                    job.future.set_result(result)
            with self._lock:
                job.finished = True
                self._jobs.pop(job.future, None)
                abandoned = job.abandoned
            if abandoned:
                return  # a replacement was started when this one was given up on
            job = None
