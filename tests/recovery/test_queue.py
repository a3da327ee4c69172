"""Queued instances are durable: after a SIGKILL they all run in the next process."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from tests.recovery.helpers import Child, children, poll, query, read_marks, runs_by_step

pytestmark = pytest.mark.slow

INSTANCES = 4


def statuses(db: Path) -> Counter[str]:
    return Counter(status for (status,) in query(db, "SELECT status FROM instances"))


def test_queued_instances_all_run_after_sigkill_and_restart(tmp_path: Path) -> None:
    db, marker = tmp_path / "wf.db", tmp_path / "marks.tsv"
    hold = marker.with_name(marker.name + ".hold")  # the first body runs until the kill
    hold.touch()
    args = ("queue", db, marker, "--instances", INSTANCES)  # concurrency 1
    with children() as started:
        first = Child(*args)
        started.append(first)
        poll(lambda: read_marks(marker), what="the first body to start")
        assert first.kill() == -9
        assert statuses(db) == {"queued": INSTANCES - 1, "running": 1}
        hold.unlink()

        second = Child(*args)
        started.append(second)
        assert second.finish() == 0, second.describe()

    rows = query(db, "SELECT id, status, output FROM instances ORDER BY id")
    assert [(i, s) for i, s, _ in rows] == [(f"q{n}", "complete") for n in range(INSTANCES)]
    runs = runs_by_step(read_marks(marker))
    for n, (instance, _, output) in enumerate(rows):
        body_runs = runs[(instance, "work-1")]
        assert json.loads(output) == {"n": n, "work": body_runs[-1].token}
        # Only the one running when the process died ran its body twice.
        assert len(body_runs) == (2 if n == 0 else 1)
    interrupted = query(
        db,
        "SELECT a.number, json_extract(a.error, '$.name') FROM attempts a "
        "JOIN instances i ON i.pk = a.instance WHERE i.id = 'q0' ORDER BY a.number",
    )
    assert interrupted == [(1, "WorkflowInternalError"), (2, None)]
