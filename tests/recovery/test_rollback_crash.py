"""SIGKILL during a rollback chain: a real child process (tests/recovery/rollback_child.py) is
killed while its saga's handlers run, again and again; each next process replays run() to
register the handlers again, runs no forward step, and never runs a handler that committed."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.recovery.helpers import ROOT, query

pytestmark = pytest.mark.slow

CHILD = ROOT / "tests" / "recovery" / "rollback_child.py"
STEPS = 4
KILLS = 3  # a 5th crash in a row would error the instance (wf's crash-loop guard)
HANDLER_SECONDS = 0.15


def marks(marker: Path) -> list[list[str]]:
    if not marker.exists():
        return []
    return [line.split("\t") for line in marker.read_text().splitlines() if line]


def begins(marker: Path) -> list[list[str]]:
    return [m for m in marks(marker) if m[0] == "begin"]


def start(db: Path, marker: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(CHILD), str(db), str(marker)],
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def kill_once_a_handler_began(
    proc: subprocess.Popen[str], marker: Path, rng: random.Random
) -> bool:
    """Wait for a handler to begin in this process, then SIGKILL it a moment later (inside a
    handler, or between one's commit and the next one's start). False if it finished first."""
    before = len(begins(marker))
    deadline = time.monotonic() + 60
    while len(begins(marker)) == before:
        if proc.poll() is not None or time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    time.sleep(rng.uniform(0, HANDLER_SECONDS * 1.5))
    if proc.poll() is not None:
        return False
    proc.send_signal(signal.SIGKILL)
    return proc.wait() == -signal.SIGKILL


def test_sigkill_during_a_rollback_chain_never_reruns_a_committed_handler(tmp_path: Path) -> None:
    db, marker = tmp_path / "wf.db", tmp_path / "marks.tsv"
    rng = random.Random()
    kills = 0
    for _ in range(KILLS + 1):
        proc = start(db, marker)
        try:
            if kills < KILLS and kill_once_a_handler_began(proc, marker, rng):
                kills += 1
                continue
            _, err = proc.communicate(timeout=90)
            assert proc.returncode == 0, err
            break
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.communicate()
    assert kills >= 1, "no kill landed during the rollback chain"

    ((status, error, rollback),) = query(db, "SELECT status, error, rollback FROM instances")
    assert status == "errored"
    assert json.loads(error) == {"name": "RuntimeError", "message": "payment declined"}
    assert json.loads(rollback)["outcome"] == "complete"

    lines = marks(marker)
    # Forward bodies ran once each: the replays ran none.
    assert Counter(m[1] for m in lines if m[0] == "fwd") == {f"s{k}": 1 for k in range(STEPS)}
    # Handlers began newest step first and never went back to a newer one: a handler whose
    # older neighbour began had committed, and never began again.
    order = [int(m[1][1:]) for m in begins(marker)]
    assert order == sorted(order, reverse=True), order
    assert set(order) == set(range(STEPS))
    assert len({m[2] for m in begins(marker)}) >= 2, "handlers ran in one process only"
    for k in range(STEPS):
        attempts = query(
            db,
            "SELECT number, success FROM attempts WHERE kind = 'rollback' AND name = ? "
            "ORDER BY number",
            (f"s{k}",),
        )
        started = sum(1 for m in begins(marker) if m[1] == f"s{k}")
        assert started <= len(attempts), (k, started, attempts)
        successes = [number for number, success in attempts if success]
        assert successes == [attempts[-1][0]], (k, attempts)  # one success, the last attempt
        (state,) = query(
            db, "SELECT state FROM steps WHERE kind = 'rollback' AND name = ?", (f"s{k}",)
        )[0]
        assert state == "succeeded"
