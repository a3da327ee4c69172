"""``wf serve`` races a randomized stress run found (issue 9, part 6): an upgrade that meets a
step in flight, right after a worker crash or in a healthy instance, and a pause acknowledged
while a step runs. Real ``wf serve``, real worker processes killed with SIGKILL, the CLI run as a
user runs it."""

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


# A step that runs until params["release"] exists, then a wait for the event "go".
GATED_WORKFLOW = """\
import asyncio
import os

from wf import WorkflowEntrypoint


class PinWorkflow(WorkflowEntrypoint):
    async def run(self, event, step):
        async def gated():
            with open(event.payload["mark"], "a") as out:
                out.write("running\\n")
            while not os.path.exists(event.payload["release"]):
                await asyncio.sleep(0.02)
            return True

        await step.do("gated", gated)
        received = await step.wait_for_event("go", type="go")
        return received.payload
"""


def test_a_pause_acknowledged_during_a_step_holds_the_buffered_event_after_it(
    tmp_path: Path,
) -> None:
    project = write_project(tmp_path / "proj", "v1", source=GATED_WORKFLOW)
    mark, release = tmp_path / "mark", tmp_path / "release"
    with serving(tmp_path) as server:
        server.deploy(project)
        server.trigger(project, "C", {"mark": str(mark), "release": str(release)})
        wait_until(mark.exists, what="the gated step to run")
        server.wf(
            "instances",
            "send-event",
            "pin",
            "C",
            "--type",
            "go",
            "--payload",
            '{"n": 1}',
            cwd=project,
        )
        server.wf("instances", "pause", "pin", "C", cwd=project)
        assert server.status("C") == "waitingForPause"
        release.touch()
        wait_until(lambda: server.status("C") == "paused", what="C to pause")
        steps = server.instance("C")["steps"]
        assert [s["name"] for s in steps] == ["gated-1"], steps  # nothing began after it
        server.wf("instances", "resume", "pin", "C", cwd=project)
        done = server.finished("C")
        assert (done["status"], done["output"]) == ("complete", {"n": 1}), done["error"]
