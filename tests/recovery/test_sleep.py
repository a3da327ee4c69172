"""A durable sleep survives its process being SIGKILLed, in memory or hibernated."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.recovery.helpers import Child, children, poll, query, read_marks

pytestmark = pytest.mark.slow

SECONDS = 1.5


def nap_row(db: Path) -> tuple[float, float, float]:
    """(started, wake_at, duration) of the nap step, once it is on disk."""
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


@pytest.mark.parametrize("hibernated", [True, False], ids=["hibernated", "in-memory"])
def test_sleep_cut_by_sigkill_ends_on_time_in_the_next_process(
    tmp_path: Path, hibernated: bool
) -> None:
    db, marker = tmp_path / "wf.db", tmp_path / "marks.tsv"
    horizon = 0.2 if hibernated else 60.0
    args = ("sleep", db, marker, "--seconds", SECONDS, "--hibernate-after", horizon)
    with children() as started:
        first = Child(*args)
        started.append(first)
        nap_started, wake_at, duration = nap_row(db)
        # Hibernated: out of memory, claim given up. In memory: shown waiting, still claimed.
        poll(
            lambda: (
                query(db, "SELECT status, owner IS NULL FROM instances")
                == [("waiting", int(hibernated))]
            ),
            what="the instance waiting",
        )
        assert first.kill() == -9
        assert time.time() < wake_at, "the process was not killed during the sleep"
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
    assert nap == [(nap_started, None, SECONDS, "succeeded")] and duration == SECONDS
    assert [m.step for m in read_marks(marker)] == ["before-1", "before-1"]  # run, ret: once


def test_sleep_that_ended_while_no_process_ran_fires_on_start(tmp_path: Path) -> None:
    db, marker = tmp_path / "wf.db", tmp_path / "marks.tsv"
    args = ("sleep", db, marker, "--seconds", SECONDS, "--hibernate-after", 0.2)
    with children() as started:
        first = Child(*args)
        started.append(first)
        nap_started, wake_at, _ = nap_row(db)
        assert first.kill() == -9
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
    assert nap == [(nap_started, SECONDS, "succeeded")]  # the same sleep, not a new one
    assert output["after"] >= after_started >= engine_started > wake_at
    # Had the sleep started over in the new process, "after" would run SECONDS after its start.
    assert output["after"] < engine_started + SECONDS
