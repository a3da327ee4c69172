"""The step thread pool: capped, but an abandoned (timed-out) callback never starves the rest."""

from __future__ import annotations

import concurrent.futures
import contextvars
import threading
import time
from collections.abc import Callable
from typing import Any

from wf.engine.threads import Job, StepThreadPool
from wf.errors import EscapedBaseException


def submit(
    pool: StepThreadPool, fn: Callable[[], Any]
) -> tuple[Job, concurrent.futures.Future[Any]]:
    """Submit ``fn``; its outcome lands in the returned future (set from the worker thread)."""
    future: concurrent.futures.Future[Any] = concurrent.futures.Future()

    def done() -> None:
        if job.error is None:
            future.set_result(job.result)
        else:
            future.set_exception(job.error)

    job = pool.submit(fn, done)
    return job, future


def test_runs_jobs_and_propagates_results_and_errors() -> None:
    pool = StepThreadPool(max_workers=2)
    assert submit(pool, lambda: 21 * 2)[1].result(5) == 42
    _, failing = submit(pool, lambda: 1 / 0)
    try:
        failing.result(5)
    except ZeroDivisionError:
        pass
    else:
        raise AssertionError("the error did not come through")


def test_a_base_exception_comes_back_as_an_ordinary_error() -> None:
    pool = StepThreadPool(max_workers=1)

    def leave() -> None:
        raise SystemExit(3)

    _, exited = submit(pool, leave)
    error = exited.exception(5)
    assert isinstance(error, EscapedBaseException)
    assert error.message == "sys.exit(3) was called"
    assert submit(pool, lambda: "still working")[1].result(5) == "still working"


def test_a_job_runs_in_the_submitters_context() -> None:
    pool = StepThreadPool(max_workers=1)
    user: contextvars.ContextVar[str] = contextvars.ContextVar("user", default="nobody")
    user.set("ada")
    assert submit(pool, user.get)[1].result(5) == "ada"


def test_never_runs_more_than_max_workers_at_once() -> None:
    pool = StepThreadPool(max_workers=3)
    lock = threading.Lock()
    running = peak = 0
    three = threading.Event()  # the first jobs hold their threads until three run at once

    def job() -> None:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
            if running == 3:
                three.set()
        three.wait(10)
        with lock:
            running -= 1

    futures = [submit(pool, job)[1] for _ in range(20)]
    for future in futures:
        future.result(10)
    assert peak == 3
    assert pool.workers <= 3


def test_an_abandoned_job_no_longer_blocks_the_others() -> None:
    pool = StepThreadPool(max_workers=1)
    release = threading.Event()
    stuck, stuck_result = submit(pool, lambda: release.wait(10))
    _, queued_result = submit(pool, lambda: "ran")
    time.sleep(0.05)
    assert not pool.free()
    assert not queued_result.done()  # the only worker is stuck
    pool.abandon(stuck)
    assert queued_result.result(5) == "ran"
    release.set()
    assert stuck_result.result(5) is True  # the abandoned thread still finishes on its own


def test_abandoning_a_queued_job_cancels_it() -> None:
    pool = StepThreadPool(max_workers=1)
    release = threading.Event()
    _, first = submit(pool, lambda: release.wait(10))
    ran: list[int] = []
    second, second_result = submit(pool, lambda: ran.append(1))
    pool.abandon(second)
    assert second.cancelled
    release.set()
    assert first.result(5) is True
    assert submit(pool, lambda: "after")[1].result(5) == "after"  # the backlog was passed
    assert ran == [] and not second_result.done()


def test_the_submitter_may_wait_for_the_outcome_or_have_it_delivered() -> None:
    pool = StepThreadPool(max_workers=1)
    quick = pool.submit(lambda: "quick")
    assert quick.wait(5) and quick.result == "quick" and quick.error is None
    assert not pool.deliver_to(quick, lambda: None)  # finished: its outcome is on the job

    release = threading.Event()
    slow = pool.submit(lambda: release.wait(10))
    assert not slow.wait(0.01)  # still running: the waiter gives up
    delivered = threading.Event()
    assert pool.deliver_to(slow, delivered.set)
    release.set()
    assert delivered.wait(5) and slow.result is True
    assert not slow.wait(0.01)  # delivered, not signalled: nobody waits twice
