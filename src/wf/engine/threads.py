"""Worker threads for synchronous step callbacks.

A callback that times out cannot be killed, only abandoned; a fixed-size pool would slowly fill with
abandoned callbacks and stall every later step. This pool starts a thread whenever none is idle and
lets idle ones exit after a while. Threads are daemons so an abandoned callback never holds up exit.
"""

from __future__ import annotations

import concurrent.futures
import contextvars
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

_IDLE_SECONDS = 30.0


class ElasticThreadPool:
    def __init__(self, name: str = "wf-step") -> None:
        self._name = name
        self._jobs: queue.SimpleQueue[tuple[Callable[[], Any], concurrent.futures.Future[Any]]] = (
            queue.SimpleQueue()
        )
        self._lock = threading.Lock()
        self._idle = 0
        self._started = 0

    def submit(self, fn: Callable[[], T]) -> concurrent.futures.Future[T]:
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        context = contextvars.copy_context()
        job = (lambda: context.run(fn), future)
        with self._lock:
            if self._idle > 0:
                self._idle -= 1
                self._jobs.put(job)
                return future
            self._started += 1
            number = self._started
        threading.Thread(
            target=self._work, args=(job,), name=f"{self._name}-{number}", daemon=True
        ).start()
        return future

    def _work(self, job: tuple[Callable[[], Any], concurrent.futures.Future[Any]]) -> None:
        while True:
            fn, future = job
            if future.set_running_or_notify_cancel():
                try:
                    result = fn()
                except BaseException as exc:
                    future.set_exception(exc)
                else:
                    future.set_result(result)
            del fn, future, job
            with self._lock:
                self._idle += 1
            try:
                job = self._jobs.get(timeout=_IDLE_SECONDS)
            except queue.Empty:
                with self._lock:
                    # A submitter may have counted on this thread just now; then a job is queued.
                    try:
                        job = self._jobs.get_nowait()
                    except queue.Empty:
                        self._idle -= 1
                        return
