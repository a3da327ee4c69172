"""Worker threads for synchronous step callbacks.

A callback that times out cannot be killed, only abandoned. A fixed pool would slowly fill with
abandoned callbacks and stall every later step, so an abandoned thread stops counting toward the
limit: a new thread takes its place. Threads are daemons so an abandoned callback never holds up
the process's exit, and idle ones go away after a while.

A job's outcome is kept on the job. Its submitter either blocks a moment for it (``Job.wait``)
or asks for a callback (``deliver_to``), called in the worker thread: a step hands it to its
event loop with one ``call_soon_threadsafe``, the only wake-up on the way back. The worker finds
its next job (or marks itself idle) before it wakes anyone, so whoever it wakes does not then
wait for it to let go of the GIL.
"""

from __future__ import annotations

import contextvars
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from wf.errors import EscapedBaseException

_IDLE_SECONDS = 30.0

# Called in the worker thread once the callable returned (its outcome is on the job); it must
# not raise.
Done = Callable[[], None]


class Job:
    """One callable submitted to the pool: the handle to wait for its outcome, abandon it or
    learn when it starts."""

    __slots__ = (
        "_signal",
        "abandoned",
        "cancelled",
        "context",
        "cpu",
        "done",
        "error",
        "finished",
        "fn",
        "on_start",
        "result",
        "seconds",
        "started",
    )

    def __init__(self, fn: Callable[[], Any]) -> None:
        self.fn = fn
        self.context = contextvars.copy_context()  # the submitter's, as run_in_executor does
        self.done: Done | None = None
        self.result: Any = None
        self.error: BaseException | None = None
        self.seconds = 0.0  # how long the callable ran
        self.cpu = 0.0  # the CPU time its thread used meanwhile
        self.abandoned = False  # given up on while running: its thread no longer counts
        self.cancelled = False  # given up on before it started: it never runs
        self.started = False
        self.finished = False
        self.on_start: Callable[[], None] | None = None
        self._signal = threading.Lock()  # released when it finished, unless ``done`` is set
        self._signal.acquire()

    def wait(self, timeout: float) -> bool:
        """Block the calling thread until the job finished (then ``result`` / ``error`` hold
        its outcome), for at most ``timeout`` seconds; whether it did."""
        return self._signal.acquire(timeout=timeout)


class StepThreadPool:
    def __init__(self, max_workers: int = 128, name: str = "wf-step") -> None:
        self.max_workers = max_workers
        self._name = name
        self._backlog: queue.SimpleQueue[Job] = queue.SimpleQueue()
        self._handoff: queue.SimpleQueue[Job] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._workers = 0  # threads counted toward max_workers (abandoned ones are not)
        self._idle = 0
        self._started = 0

    @property
    def workers(self) -> int:
        return self._workers

    def submit(self, fn: Callable[[], Any], done: Done | None = None) -> Job:
        """Run ``fn`` in a worker thread (in the caller's context); ``done`` is called there once
        it finished (see ``deliver_to``). While every worker is busy the job waits in a
        backlog."""
        job = Job(fn)
        job.done = done
        with self._lock:
            if self._idle > 0:
                self._idle -= 1
                self._handoff.put(job)
            elif self._workers < self.max_workers:
                self._workers += 1
                self._start(job)
            else:
                self._backlog.put(job)
        return job

    def deliver_to(self, job: Job, done: Done) -> bool:
        """Have ``done`` called (in the worker thread) once the job finished; False if it
        already has."""
        with self._lock:
            if job.finished:
                return False
            job.done = done
            return True

    def free(self) -> bool:
        """Whether a job submitted now would get a thread at once (an idle one or a new one)."""
        return self._idle > 0 or self._workers < self.max_workers

    def when_started(self, job: Job, callback: Callable[[], None]) -> None:
        """Call ``callback`` (in the worker thread, or now) once the job has a thread."""
        with self._lock:
            if not job.started and not job.cancelled:
                job.on_start = callback
                return
        callback()

    def abandon(self, job: Job) -> None:
        """The caller gave up on ``job`` (it timed out): still queued, it will never run;
        running, its thread no longer counts. Its ``done`` may still be called."""
        with self._lock:
            if job.finished or job.abandoned or job.cancelled:
                return
            if not job.started:
                job.cancelled = True
                return
            job.abandoned = True
            self._workers -= 1
            if not self._backlog.empty() and self._workers < self.max_workers:
                self._workers += 1
                self._start(None)

    def _start(self, job: Job | None) -> None:
        self._started += 1
        threading.Thread(
            target=self._work, args=(job,), name=f"{self._name}-{self._started}", daemon=True
        ).start()

    def _next(self) -> Job | None:
        """Called with the lock held: a backlog job, or None after marking this thread idle.
        (Only lock holders take from the backlog: empty() is exact, and spares raising Empty
        between a body's end and its submitter's wake-up.)"""
        if self._backlog.empty():
            self._idle += 1
            return None
        return self._backlog.get_nowait()

    def _wait(self) -> Job | None:
        """An idle thread's next job, or None once it has been idle too long (it then stops)."""
        try:
            return self._handoff.get(timeout=_IDLE_SECONDS)
        except queue.Empty:
            with self._lock:
                try:  # a submitter counted on this thread just now
                    return self._handoff.get_nowait()
                except queue.Empty:
                    self._idle -= 1
                    self._workers -= 1
                    return None

    def _work(self, job: Job | None) -> None:
        if job is None:  # started in place of an abandoned thread: the backlog first
            with self._lock:
                job = self._next()
        while True:
            if job is None:  # marked idle
                job = self._wait()
                if job is None:
                    return
            with self._lock:
                run = not job.cancelled
                job.started = True
                on_start, job.on_start = job.on_start, None
            if run:
                if on_start is not None:
                    on_start()
                started = time.perf_counter()
                cpu = time.thread_time()
                try:
                    job.result = job.context.run(job.fn)
                except Exception as exc:
                    job.error = exc
                except BaseException as exc:  # sys.exit() in a step must not end the process
                    job.error = EscapedBaseException(exc)
                job.cpu = time.thread_time() - cpu
                job.seconds = time.perf_counter() - started
            with self._lock:
                job.finished = True
                abandoned = job.abandoned
                following = None if abandoned else self._next()
                done = job.done
            if run:
                if done is not None:
                    done()
                else:
                    job._signal.release()
            if abandoned:
                return  # a replacement was started when this one was given up on
            job = following
