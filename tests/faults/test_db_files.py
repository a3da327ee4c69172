"""The database file under ``wf dev`` made read-only, deleted, left locked by a dead process, or
opened by a second ``wf dev``: a clear error or a recovery, and nothing acknowledged lost."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Harness, wait_status
from tests.e2e.helpers import wait_until
from tests.faults.helpers import (
    Dev,
    assert_clear_message,
    database,
    error_message,
    parent_pid,
    query,
    read_only_bind,
    request,
    running,
    write_project,
)
from wf import WorkflowEntrypoint, WorkflowEvent, WorkflowStep
from wf.engine import WorkflowSpec

pytestmark = pytest.mark.slow

SOURCE = """
from wf import WorkflowEntrypoint


class Approval(WorkflowEntrypoint):
    async def run(self, event, step):
        first = await step.do("first", lambda: "one")
        got = await step.wait_for_event("approval", type="approval", timeout="1 hour")
        return {"first": first, "approved": got.payload}


class Quick(WorkflowEntrypoint):
    async def run(self, event, step):
        return await step.do("only", lambda: "done")
"""

WORKFLOWS = (("approval", "Approval"), ("quick", "Quick"))


def project_at(root: Path) -> Path:
    return write_project(root, SOURCE, WORKFLOWS)


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def create(dev: Dev, workflow: str, instance_id: str) -> None:
    status, body = dev.create(workflow, instance_id)
    assert status == 201, (status, body, dev.tail())


def waits_for_event(dev: Dev, instance_id: str) -> None:
    wait_until(
        lambda: dev.instance("approval", instance_id)["status"] == "waiting",
        what=f"{instance_id} to wait for its event: {dev.tail()}",
    )


def approve_all(dev: Dev, ids: list[str]) -> None:
    for instance_id in ids:
        waits_for_event(dev, instance_id)
        status, body = dev.send_event("approval", instance_id, "approval")
        assert status == 200, (status, body)
    for instance_id in ids:
        details = dev.finished("approval", instance_id)
        assert details["status"] == "complete", (instance_id, details["error"], dev.tail())
        assert details["output"] == {"first": "one", "approved": {}}


# ---- read-only -------------------------------------------------------------------------------


def without_dac_override() -> list[str]:
    """A command prefix that runs as root without CAP_DAC_OVERRIDE: file modes then apply to
    root too (root ignores them otherwise, so a chmod would mean nothing)."""
    setpriv = shutil.which("setpriv")
    if os.geteuid() != 0 or setpriv is None:
        pytest.skip("needs root and setpriv to drop CAP_DAC_OVERRIDE")
    return [setpriv, "--bounding-set", "-dac_override,-dac_read_search", "--"]


def assert_refuses_read_only(dev: Dev) -> str:
    """A server on a read-only database says so in one line, naming the file or folder, in
    its health and on every API call (it does not quietly run on something else)."""
    health = wait_until(
        lambda: (h := dev.health(timeout=30)) and h.get("status") == "error" and h,
        timeout=60,
        what=f"the server to report the read-only database: {dev.tail()}",
    )
    message = str(health["error"])
    assert_clear_message(message)
    assert re.search(r"read-?only", message, re.IGNORECASE), message
    assert ".wf" in message, message  # names the file or the folder
    status, body = dev.create("quick", "refused")
    assert status >= 500, (status, body)
    assert_clear_message(error_message(body))
    return message


def test_a_database_made_read_only_by_chmod(tmp_path: Path) -> None:
    prefix = without_dac_override()
    project = project_at(tmp_path / "proj")
    db = database(project)
    with running(Dev(project, prefix=prefix)) as dev:
        create(dev, "approval", "before")
        waits_for_event(dev, "before")
        db.chmod(0o444)
        # The running server has the file open already: it goes on, or fails clearly.
        status, body = dev.create("approval", "during")
        acknowledged = ["before"] + (["during"] if status == 201 else [])
        if status != 201:
            assert status >= 500, (status, body)
            assert_clear_message(error_message(body))
    # A new server refuses it in one line, and writes nothing. (As an unprivileged user would:
    # the prefix takes root's power to ignore file modes away.)
    before = db.read_bytes()
    with running(Dev(project, prefix=prefix), wait=False) as dev:
        assert_refuses_read_only(dev)
    assert db.read_bytes() == before
    # Writable again: everything is there and goes on (nothing the refused start left behind,
    # such as a read-only -shm file, stands in the way).
    db.chmod(0o644)
    with running(Dev(project, prefix=prefix)) as dev:
        approve_all(dev, acknowledged)


def test_a_state_folder_bind_mounted_read_only(tmp_path: Path) -> None:
    project = project_at(tmp_path / "proj")
    state = project / ".wf"
    with running(Dev(project)) as dev:
        create(dev, "approval", "before")
        waits_for_event(dev, "before")
        with read_only_bind(state):
            # Files the server has open stay writable through the old mount; what it opens
            # anew is read-only. Either it goes on, or it fails clearly.
            status, body = dev.create("approval", "during")
            acknowledged = ["before"] + (["during"] if status == 201 else [])
            if status != 201:
                assert status >= 500, (status, body)
                assert_clear_message(error_message(body))
            dev.stop()
            with running(Dev(project), wait=False) as refused:
                assert_refuses_read_only(refused)
    assert query(database(project), "PRAGMA integrity_check") == [("ok",)]
    with running(Dev(project)) as dev:
        approve_all(dev, acknowledged)


# ---- deleted -----------------------------------------------------------------------------------


def test_a_database_deleted_under_a_running_server_is_not_silent_data_loss(
    tmp_path: Path,
) -> None:
    """``rm .wf/wf.db*`` while ``wf dev`` runs. The server keeps the deleted file open, so it
    could go on acknowledging writes that no restart will ever see. It must notice and say so
    (and refuse writes), or put the database back: either way, everything it acknowledged after
    the deletion is still there after a restart."""
    project = project_at(tmp_path / "proj")
    db = database(project)
    with running(Dev(project)) as dev:
        create(dev, "approval", "before")
        waits_for_event(dev, "before")
        for path in db.parent.glob("wf.db*"):
            if not path.name.endswith(".lock"):
                path.unlink()
        time.sleep(3)  # a moment to notice
        status, body = dev.create("approval", "after")
        acknowledged = status == 201
        if not acknowledged:
            message = error_message(body)
            assert_clear_message(message)
            assert re.search(r"deleted|removed|missing|no longer|gone", message), message
        said = re.search(r"deleted|removed|missing|no longer|gone", dev.output())
        health: Any = dev.health(timeout=10)
        assert said or (health and health.get("status") == "error"), (
            "the database was deleted under the server and it said nothing: "
            f"health {health}, log:\n{dev.tail()}"
        )
    with running(Dev(project)) as dev:
        if acknowledged:  # acknowledged after the deletion: it must have been kept
            status, body = request(dev.url, "GET", "/api/workflows/approval/instances/after")
            assert status == 200, (
                "the server acknowledged an instance after its database was deleted, and a "
                f"restart does not know it: {status} {body}"
            )


# ---- locks -----------------------------------------------------------------------------------


def test_a_stale_lock_file_from_a_dead_process_does_not_block_wf_dev(tmp_path: Path) -> None:
    project = project_at(tmp_path / "proj")
    with running(Dev(project)) as dev:
        create(dev, "approval", "before")
        waits_for_event(dev, "before")
        dev.kill()  # a crash: the lock file stays behind
    lock = database(project).with_name("wf.db.lock")
    assert lock.exists()
    pid = dead_pid()
    lock.write_text(f"{pid}\n")
    with running(Dev(project)) as dev:
        assert lock.read_text().strip() != str(pid)  # the new holder wrote its own pid
        approve_all(dev, ["before"])


class Quick(WorkflowEntrypoint):
    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        return await step.do("only", lambda: "done")


@pytest.mark.parametrize("content", ["dead pid", "garbage", "empty"])
async def test_a_stale_lock_file_does_not_block_an_engine(tmp_path: Path, content: str) -> None:
    db = tmp_path / "wf.db"
    lock = tmp_path / "wf.db.lock"
    text = {"dead pid": f"{dead_pid()}\n", "garbage": "\x00\xffnot a pid", "empty": ""}[content]
    lock.write_bytes(text.encode("utf-8", "surrogateescape"))
    harness = Harness(db)
    try:
        engine = await harness.start([WorkflowSpec("quick", Quick, "QUICK")])
        await engine.create("quick", "one")
        assert (await wait_status(engine, "quick", "one"))["output"] == "done"
        assert lock.read_text().strip() == str(os.getpid())
    finally:
        await harness.close()


def test_a_second_wf_dev_on_the_same_state_is_refused_and_harms_nothing(tmp_path: Path) -> None:
    project = project_at(tmp_path / "proj")
    with running(Dev(project)) as first:
        create(first, "approval", "first-before")
        waits_for_event(first, "first-before")
        holder = int(database(project).with_name("wf.db.lock").read_text().strip())
        assert parent_pid(holder) == first.pid  # the first server's child holds the lock
        with running(Dev(project), wait=False) as second:

            def refused() -> str | None:
                if not second.alive():  # refused to start at all: fine, if it said why
                    return second.output() or "exited"
                health = second.health(timeout=60)
                if health and health.get("status") == "error":
                    return str(health["error"])
                return None

            message = wait_until(refused, timeout=90, what=f"the second server: {second.tail()}")
            if second.alive():
                assert_clear_message(message)
                status, body = second.create("quick", "via-second")
                assert status >= 500, (status, body)
                assert f"pid {holder}" in error_message(body), body
            else:
                assert second.process is not None and second.process.returncode != 0
            assert "in use by another wf process" in message, message
            assert f"pid {holder}" in message, message
            # The first one never noticed.
            assert first.healthy()
            create(first, "approval", "first-during")
            approve_all(first, ["first-before", "first-during"])
        create(first, "quick", "first-after")
        assert first.finished("quick", "first-after")["output"] == "done"
    assert query(database(project), "PRAGMA integrity_check") == [("ok",)]
    rows = query(database(project), "SELECT id FROM instances ORDER BY id")
    assert rows == [("first-after",), ("first-before",), ("first-during",)]
