"""A durable sleep survives its process being SIGKILLed, in memory or hibernated."""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.recovery.helpers import Child, children, poll, query, read_marks

pytestmark = pytest.mark.slow

SECONDS = 1.5


def nap_row(db: Path) -> tuple[float, float | None, float]:
    """(started, wake_at, duration) of the nap step, once it is on disk (no wake_at: over)."""
    rows = poll(
        lambda: query(db, "SELECT started, wake_at, duration FROM steps WHERE name = 'nap'"),
        what="the nap step on disk",
    )
    started, wake_at, duration = rows[0]
    return started, wake_at, duration


def instance(db: Path) -> tuple[str, dict[str, float] | None]:
    status, output = query(db, "SELECT status, output FROM instances WHERE id = 's'")[0]
    return status, None if output is None else json.loads(output)


def after_step(db: Path) -> tuple[float, float]:
    """When the step after the nap started, and when the nap step ended."""
    (after_started,) = query(db, "SELECT started FROM steps WHERE name = 'after'")[0]
    (nap_ended,) = query(db, "SELECT ended FROM steps WHERE name = 'nap'")[0]
    return after_started, nap_ended


def with_longer_sleeps(test: Callable[[Path, float], bool], tmp_path: Path) -> None:
    """Run ``test(folder, seconds of sleep)`` until it returns True. False means the kill came
    after the sleep's end: a race with the real clock that a busy machine can lose, so the same
    test runs again with a longer sleep."""
    for n, seconds in enumerate((SECONDS, SECONDS * 4, SECONDS * 16)):
        folder = tmp_path / f"try-{n}"
        folder.mkdir()
        if test(folder, seconds):
            return
    pytest.fail("the process was never killed during its sleep")


def asleep(wake_at: float | None) -> bool:
    """Whether the sleep is still on (its row has no wake time once it is over)."""
    return wake_at is not None and time.time() < wake_at


@pytest.mark.parametrize("hibernated", [True, False], ids=["hibernated", "in-memory"])
def test_sleep_cut_by_sigkill_ends_on_time_in_the_next_process(
    tmp_path: Path, hibernated: bool
) -> None:
    with_longer_sleeps(functools.partial(sleep_cut_by_sigkill, hibernated=hibernated), tmp_path)


def sleep_cut_by_sigkill(folder: Path, seconds: float, hibernated: bool) -> bool:
    db, marker = folder / "wf.db", folder / "marks.tsv"
    horizon = 0.2 if hibernated else 60.0
    args = ("sleep", db, marker, "--seconds", seconds, "--hibernate-after", horizon)
    with children() as started:
        first = Child(*args)
        started.append(first)
        nap_started, wake_at, duration = nap_row(db)
        # Hibernated: out of memory, claim given up. In memory: shown waiting, still claimed.
        poll(
            lambda: (
                query(db, "SELECT status, owner IS NULL FROM instances")
                == [("waiting", int(hibernated))]
                or not asleep(wake_at)
            ),
            what="the instance waiting",
        )
        assert first.kill() == -9
        if not asleep(wake_at):
            return False
        assert wake_at is not None
        assert instance(db)[0] == "waiting"

        second = Child(*args)
        started.append(second)
        assert second.finish() == 0, second.describe()

    status, output = instance(db)
    assert status == "complete"
    assert output is not None and output["after"] >= wake_at
    after_started, nap_ended = after_step(db)
    assert after_started >= wake_at and nap_ended >= wake_at
    # The sleep kept its start and length: it did not begin again in the new process.
    nap = query(db, "SELECT started, wake_at, duration, state FROM steps WHERE name = 'nap'")
    assert nap == [(nap_started, None, seconds, "succeeded")] and duration == seconds
    assert [m.step for m in read_marks(marker)] == ["before-1", "before-1"]  # run, ret: once
    return True


def test_sleep_that_ended_while_no_process_ran_fires_on_start(tmp_path: Path) -> None:
    with_longer_sleeps(sleep_ended_with_no_process, tmp_path)


def sleep_ended_with_no_process(folder: Path, seconds: float) -> bool:
    db, marker = folder / "wf.db", folder / "marks.tsv"
    args = ("sleep", db, marker, "--seconds", seconds, "--hibernate-after", 0.2)
    with children() as started:
        first = Child(*args)
        started.append(first)
        nap_started, wake_at, _ = nap_row(db)
        assert first.kill() == -9
        if not asleep(wake_at):
            return False
        assert wake_at is not None
        assert instance(db)[0] in ("running", "waiting")
        time.sleep(max(0.0, wake_at - time.time()) + 0.2)  # the sleep ends with no process

        second = Child(*args)
        started.append(second)
        assert second.finish() == 0, second.describe()
        engine_started = float(second.line("started").split()[1])

    status, output = instance(db)
    assert status == "complete" and output is not None
    after_started, _ = after_step(db)
    nap = query(db, "SELECT started, duration, state FROM steps WHERE name = 'nap'")
    assert nap == [(nap_started, seconds, "succeeded")]  # the same sleep, not a new one
    assert output["after"] >= after_started >= engine_started > wake_at
    # Had the sleep started over in the new process, "after" would run a whole sleep after its
    # start.
    assert output["after"] < engine_started + seconds
    return True
