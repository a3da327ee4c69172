"""A step that kills its process (``os._exit(1)``), without ``wf dev``: an engine in a child
process, started again by the test each time it dies, as a supervisor (or a user) would.

The instance must end errored after a bounded number of lives instead of killing every process
that recovers it, and the instances beside it must complete.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.faults.helpers import query

pytestmark = pytest.mark.slow

CHILD = Path(__file__).with_name("engine_child.py")
MAX_LIVES = 15


CASES = [
    # A small retry limit: the interrupted attempts use it up (no help from the supervisor).
    pytest.param("step", 2, False, id="step-retries-2"),
    # A large one, or outside any step: the engine itself must stop after a few deaths in a
    # row, once it is told (as wf dev's supervisor tells its new child) that they were deaths.
    pytest.param("step", 100, True, id="step-retries-100-after-crash"),
    pytest.param("run", 0, True, id="run-after-crash"),
]


@pytest.mark.parametrize(("where", "retries", "tell"), CASES)
def test_user_code_calling_os_exit_is_errored_after_a_bounded_number_of_lives(
    tmp_path: Path, where: str, retries: int, tell: bool
) -> None:
    db = tmp_path / "wf.db"
    offender = "offender:crasher:" + json.dumps({"where": where, "retries": retries})
    wanted = [offender, "good-1:good", "good-2:good", "good-3:good"]
    origin = time.time()
    codes: list[int] = []
    last = subprocess.CompletedProcess[str]([], 0, "", "")
    for _ in range(MAX_LIVES):
        after_crash = ["--after-crash"] if tell and codes and codes[-1] == 1 else []
        last = subprocess.run(
            [sys.executable, str(CHILD), str(db), str(origin), *after_crash, *wanted],
            capture_output=True,
            text=True,
            timeout=60,
        )
        codes.append(last.returncode)
        if last.returncode != 1:  # 1: os._exit(1) in the offender's step
            break
    assert codes[-1] == 0, (
        f"after {len(codes)} lives (exit codes {codes}) the engine still dies or fails; "
        f"last stderr:\n{last.stderr[-3000:]}"
    )
    statuses = json.loads(last.stdout.strip().splitlines()[-1])
    offender = statuses["offender"]
    assert offender["status"] == "errored", offender
    assert offender["error"]["name"] == "WorkflowInternalError", offender
    message = offender["error"]["message"]
    if tell:  # the engine's own bound, not the step's retries
        assert re.search(r"crash|died|killed", message), message
        assert "times" in message, message
    else:
        assert re.search(r"interrupted|crash|died|killed", message), message
    for n in (1, 2, 3):
        assert statuses[f"good-{n}"]["status"] == "complete", statuses
        assert statuses[f"good-{n}"]["output"] == 2
    crashes = codes.count(1)
    assert 2 <= crashes <= 10, f"the process died {crashes} times: {codes}"
    # The offender's committed first step never ran again; its killing step was tried once
    # per life, no more.
    rows = query(
        db,
        "SELECT a.name, count(*) FROM attempts a JOIN instances i ON i.pk = a.instance "
        "WHERE i.id = 'offender' GROUP BY a.name",
    )
    attempts = dict(rows)
    assert attempts.get("before") == 1, rows
    if where == "step":
        assert 1 <= attempts.get("die", 0) <= crashes, rows
