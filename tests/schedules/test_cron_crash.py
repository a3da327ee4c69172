"""SIGKILL around cron firings (real processes, SQLite and PostgreSQL): whatever moment a process
dies at (before a firing's instance is written, between the instance and the firing's record,
after both, or at a random moment), the firings end up exactly one instance per minute, with no
minute lost and none doubled, and every instance runs to completion.

The child (``cron_child.py``) runs on a clock 15 times faster than the wall clock, continuous
across lives, so a restart takes far less than a simulated minute: a minute missed while no
process ran is made up at the next start, which keeps the sequence whole.
"""

from __future__ import annotations

import random
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.recovery.helpers import Child
from tests.schedules import cron_child

pytestmark = pytest.mark.slow

CHILD = Path(cron_child.__file__)
LIVES = ["after_create", "before_create", "random", "after_record", "after_create", "random"]


class CronChild(Child):
    """``cron_child.py`` instead of ``crash_child.py``, otherwise the same handling."""

    def __init__(self, *args: Any) -> None:
        self.args = [str(a) for a in args]
        self.started_at = time.time()
        self.proc = subprocess.Popen(
            [sys.executable, str(CHILD), *self.args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.out: list[str] = []
        self.err: list[str] = []
        self._readers = [
            threading.Thread(target=self._read, args=(self.proc.stdout, self.out), daemon=True),
            threading.Thread(target=self._read, args=(self.proc.stderr, self.err), daemon=True),
        ]
        for reader in self._readers:
            reader.start()


def instances(database: str) -> list[tuple[str, str, str]]:
    """(id, trigger, status) of every instance, read with a connection of the test's own."""
    if database.startswith("postgresql"):
        import psycopg

        with psycopg.connect(database) as conn:
            rows = conn.execute("SELECT id, trigger, status FROM wf.instances").fetchall()
    else:
        import sqlite3
        from contextlib import closing

        with closing(sqlite3.connect(database)) as conn:
            rows = conn.execute("SELECT id, trigger, status FROM instances").fetchall()
    return [(str(a), str(b), str(c)) for a, b, c in rows]


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgres":
        return str(request.getfixturevalue("pg_url"))
    return str(tmp_path / "wf.db")


def test_sigkill_around_cron_firings_leaves_one_instance_per_minute(
    database: str, tmp_path: Path
) -> None:
    rng = random.Random(12)
    marker = tmp_path / "marks.txt"
    t0 = time.time()
    for kill_at in LIVES:
        with CronChild(database, t0, marker, "never" if kill_at == "random" else kill_at) as child:
            child.line("started", timeout=30)
            if kill_at == "random":
                time.sleep(rng.uniform(0.5, 6.0))
                assert child.kill() == -9
            else:  # it kills itself at its first firing (within a simulated minute)
                code = child.wait(30)
                assert code == -9, child.describe()
    until = cron_child.BASE + (time.time() - t0) * cron_child.SPEED + 70  # one more minute
    with CronChild(database, t0, marker, "never", "--until", until) as child:
        assert child.finish(60) == 0, child.describe()

    kills = [line.split(" ", 2) for line in marker.read_text().splitlines()]
    assert [k[1] for k in kills] == [k for k in LIVES if k != "random"]
    rows = instances(database)
    assert {trigger for _, trigger, _ in rows} == {"cron"}
    assert {status for _, _, status in rows} == {"complete"}
    times = sorted(int(instance_id.rsplit("-", 1)[1]) for instance_id, _, _ in rows)
    assert len(times) == len(set(times))
    first = (cron_child.BASE + 30) * 1000
    assert times == [first + 60_000 * n for n in range(len(times))], times  # no gap
    # ... up to the last life's end: how many minutes that is depends on how fast the lives
    # came and went (a loaded machine makes more), not on the kills.
    assert times[-1] >= (until - 120) * 1000, (times, until)
    ids = {instance_id for instance_id, _, _ in rows}
    for _, where, instance_id in kills:  # each killed firing has its instance, once
        assert instance_id in ids, (where, instance_id)
