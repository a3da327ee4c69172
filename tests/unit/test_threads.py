"""The step thread pool: capped, but an abandoned (timed-out) callback never starves the rest."""

from __future__ import annotations

import threading
import time

from wf.engine.threads import StepThreadPool


def test_runs_jobs_and_propagates_results_and_errors() -> None:
    pool = StepThreadPool(max_workers=2)
    assert pool.submit(lambda: 21 * 2).result(5) == 42
    failing = pool.submit(lambda: 1 / 0)
    try:
        failing.result(5)
    except ZeroDivisionError:
        pass
    else:
        raise AssertionError("the error did not come through")


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

    futures = [pool.submit(job) for _ in range(20)]
    for future in futures:
        future.result(10)
    assert peak == 3
    assert pool.workers <= 3


def test_an_abandoned_job_no_longer_blocks_the_others() -> None:
    pool = StepThreadPool(max_workers=1)
    release = threading.Event()
    stuck = pool.submit(lambda: release.wait(10))
    queued = pool.submit(lambda: "ran")
    time.sleep(0.05)
    assert not queued.done()  # the only worker is stuck
    pool.abandon(stuck)
    assert queued.result(5) == "ran"
    release.set()
    assert stuck.result(5) is True  # the abandoned thread still finishes on its own


def test_abandoning_a_queued_job_cancels_it() -> None:
    pool = StepThreadPool(max_workers=1)
    release = threading.Event()
    first = pool.submit(lambda: release.wait(10))
    ran: list[int] = []
    second = pool.submit(lambda: ran.append(1))
    pool.abandon(second)
    release.set()
    assert first.result(5) is True
    assert second.cancelled()
    time.sleep(0.05)
    assert ran == []
