"""An attempt that dies with its process counts toward the step's retry limit."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from tests import crash_child
from tests.recovery.helpers import Child, children, read_marks, runs_by_step
from wf.engine import Engine
from wf.engine.store.sqlite import SqliteStore

pytestmark = pytest.mark.slow


async def details(db: Path, instance_id: str) -> dict[str, Any]:
    spec = crash_child.SPECS["suicide"]
    async with Engine(SqliteStore(db), [spec]) as engine:
        return await engine.details(spec.name, instance_id)


def test_attempts_killing_their_process_exhaust_the_retry_limit(tmp_path: Path) -> None:
    db, marker = tmp_path / "wf.db", tmp_path / "marks.tsv"
    codes: list[int] = []
    with children() as started:
        while not codes or codes[-1] != 0:
            assert len(codes) < 5, f"still not finished after {codes}"
            child = Child("suicide", db, marker)
            started.append(child)
            codes.append(child.finish())
            assert codes[-1] in (0, -9), child.describe()
    # retries limit 1: two attempts, each killed the process; the third process gives up.
    assert codes == [-9, -9, 0]

    found = asyncio.run(details(db, "d"))
    assert found["status"] == "errored"
    assert found["error"]["name"] == "WorkflowInternalError"
    assert "interrupted" in found["error"]["message"]
    first, doomed = found["steps"]
    assert first["name"] == "first-1" and first["success"] is True
    assert len(first["attempts"]) == 1
    assert doomed["name"] == "doomed-1" and doomed["success"] is False
    assert doomed["error"] == found["error"]
    assert [(a["success"], a["error"]["name"]) for a in doomed["attempts"]] == [
        (False, "WorkflowInternalError"),
        (False, "WorkflowInternalError"),
    ]
    assert all(a["end"] is not None for a in doomed["attempts"])
    runs = runs_by_step(read_marks(marker))
    assert [m.attempt for m in runs[("d", "doomed-1")]] == [1, 2]
    assert [m.attempt for m in runs[("d", "first-1")]] == [1]

    # What the terminal is told: the second process retries the killed attempt 1 at once; the
    # third does not retry the killed attempt 2 (the last one allowed) but fails the step.
    second, third = ([n for n in notices(child) if n[1] == "doomed-1"] for child in started[1:])
    assert [(kind, detail.get("attempt")) for kind, _, detail in second] == [("attempt_failed", 1)]
    assert [(kind, detail.get("attempt")) for kind, _, detail in third] == [("step_failed", 2)]
    assert third[0][2]["error"] == found["error"]


def notices(child: Child) -> list[tuple[str, str, dict[str, Any]]]:
    """The notices a child printed: (kind, step, detail)."""
    found = []
    for line in child.out:
        if line.startswith("notice\t"):
            _, kind, step, detail = line.split("\t", 3)
            found.append((kind, step, json.loads(detail)))
    return found
