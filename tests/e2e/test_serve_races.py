"""``wf serve`` races a randomized stress run found (issue 9, part 6): an upgrade that meets a
step in flight, right after a worker crash or in a healthy instance. Real ``wf serve``, real
worker processes killed with SIGKILL, the CLI run as a user runs it."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.helpers import wait_until
from tests.e2e.serve_helpers import Serve, serving, write_project

pytestmark = pytest.mark.slow

# One step: it writes the module's VERSION to params["mark"] (a line per attempt), then naps for
# params["nap"][VERSION] seconds (none on other versions) and answers with the VERSION.
WORK_WORKFLOW = """\
import asyncio

from wf import WorkflowEntrypoint

VERSION = "v1"


class PinWorkflow(WorkflowEntrypoint):
    async def run(self, event, step):
        params = event.payload

        async def work():
            with open(params["mark"], "a") as out:
                out.write(VERSION + "\\n")
            await asyncio.sleep(params["nap"].get(VERSION, 0))
            return {"version": VERSION}

        retries = {"limit": params["limit"], "delay": 0}
        return await step.do("work", {"retries": retries}, work)
"""


def attempts_run(mark: Path) -> list[str]:
    return mark.read_text().split() if mark.exists() else []


def upgrade(server: Serve, project: Path, instance_id: str) -> None:
    moved = server.wf("instances", "upgrade", "pin", instance_id, cwd=project)
    assert f'⬆️ The instance "{instance_id}"' in moved.stdout, moved.stdout


def attempts_of(done: dict[str, Any]) -> list[dict[str, Any]]:
    (work,) = done["steps"]
    attempts: list[dict[str, Any]] = work["attempts"]
    return attempts


def test_an_upgrade_during_the_retry_after_a_worker_crash_runs_it_on_the_new_version(
    tmp_path: Path,
) -> None:
    project = write_project(tmp_path / "proj", "v1", source=WORK_WORKFLOW)
    mark = tmp_path / "attempts"
    with serving(tmp_path) as server:
        server.deploy(project)
        server.trigger(project, "A", {"nap": {"v1": 60}, "limit": 3, "mark": str(mark)})
        wait_until(lambda: attempts_run(mark) == ["v1"], what="attempt 1 to run")
        (victim,) = server.workers()
        os.kill(victim, signal.SIGKILL)
        wait_until(lambda: attempts_run(mark) == ["v1", "v1"], what="attempt 2 to run")

        write_project(project, "v2", source=WORK_WORKFLOW)
        v2 = server.deploy(project)
        upgrade(server, project, "A")
        done = server.finished("A")
        assert (done["status"], done["output"], done["versionId"]) == (
            "complete",
            {"version": "v2"},
            v2,
        )
        assert attempts_run(mark) == ["v1", "v1", "v2"]
        killed, upgraded, last = attempts_of(done)
        assert "interrupted" in killed["error"]["message"]
        assert "upgrade" in upgraded["error"]["message"]
        assert last["success"] is True


def test_an_upgrade_mid_attempt_does_not_use_up_a_retry(tmp_path: Path) -> None:
    project = write_project(tmp_path / "proj", "v1", source=WORK_WORKFLOW)
    mark = tmp_path / "attempts"
    with serving(tmp_path) as server:
        server.deploy(project)
        server.trigger(project, "B", {"nap": {"v1": 60}, "limit": 0, "mark": str(mark)})
        wait_until(lambda: attempts_run(mark) == ["v1"], what="attempt 1 to run")

        write_project(project, "v2", source=WORK_WORKFLOW)
        v2 = server.deploy(project)
        upgrade(server, project, "B")
        done = server.finished("B")
        assert (done["status"], done["output"], done["versionId"]) == (
            "complete",
            {"version": "v2"},
            v2,
        ), done["error"]
        cut_short, last = attempts_of(done)
        assert cut_short["success"] is False
        assert "upgrade" in cut_short["error"]["message"]
        assert "does not count" in cut_short["error"]["message"]
        assert last["success"] is True
