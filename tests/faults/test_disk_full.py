"""A full disk: writes fail with one clear line (an API 500 with a message, not a traceback), no
instance the API acknowledged is lost, and once there is room again everything goes on by itself,
without a restart.

Two ways to fill it: a small tmpfs holding the state folder of a real ``wf dev`` (needs
``mount``; skipped where that is not allowed), and SQLite's own ``PRAGMA max_page_count`` on the
engine's writing connection (works anywhere).
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
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
    fill_disk,
    query,
    running,
    tmpfs,
    write_project,
)
from wf import WorkflowEntrypoint, WorkflowEvent, WorkflowStep
from wf.engine import WorkflowSpec
from wf.engine.store.sqlite import SqliteStore
from wf.errors import InstanceNotFound, StoreError

SOURCE = """
from wf import WorkflowEntrypoint


class Writer(WorkflowEntrypoint):
    async def run(self, event, step):
        size = await step.do("measure", lambda: len(event.payload["blob"]))
        await step.sleep("rest", event.payload.get("rest", 0))
        more = await step.do("write more", lambda: "y" * 200_000)
        return {"size": size, "more": len(more)}
"""


def blob(n: int, size: int) -> dict[str, Any]:
    return {"blob": f"{n:08d}" + "x" * (size - 8)}


@pytest.mark.slow
def test_a_full_disk_under_wf_dev_fails_clearly_and_recovers_by_itself(tmp_path: Path) -> None:
    project = write_project(tmp_path / "proj", SOURCE, (("writer", "Writer"),))
    acknowledged: dict[str, int] = {}
    with tmpfs(project / ".wf", "24m") as state:
        with running(Dev(project)) as dev:

            def create(instance_id: str, params: dict[str, Any]) -> tuple[int, Any]:
                status, body = dev.create("writer", instance_id, params)
                if status == 201:
                    acknowledged[instance_id] = len(params["blob"])
                return status, body

            for n in range(3):
                assert create(f"early-{n}", blob(n, 10_000))[0] == 201
            for n in range(3):
                assert dev.finished("writer", f"early-{n}")["status"] == "complete"
            for n in range(3):  # asleep while the disk fills, they wake to a full disk
                assert create(f"mid-{n}", {**blob(n, 10_000), "rest": 0.5})[0] == 201

            ballast = state / "ballast"
            size = fill_disk(ballast)
            # Nearly full rather than full to the last byte: small writes still fit, 200 kB
            # ones do not (the usual way a disk fills up under a running program).
            os.truncate(ballast, size - 128 * 1024)
            failures: list[tuple[int, Any]] = []
            for n in range(300):
                status, body = create(f"full-{n}", blob(n, 200_000))
                if status != 201:
                    failures.append((status, body))
                    if len(failures) >= 3:
                        break
            assert failures, "the disk never filled up"
            for status, body in failures:
                assert status == 500, (status, body)
                message = error_message(body)
                assert_clear_message(message)
                assert "full" in message.lower(), message
            # Reading still works on a full disk.
            assert dev.instance("writer", "early-0")["status"] == "complete"
            assert dev.healthy(), dev.tail()
            time.sleep(1.5)  # the mid ones wake and try to store their 200 kB step outputs

            # Room again: the same server goes on by itself.
            ballast.unlink()
            wait_until(
                lambda: create("after", blob(0, 10_000))[0] == 201,
                timeout=30,
                what=f"a create to succeed once there is room: {dev.tail()}",
            )
            for instance_id, size in acknowledged.items():
                details = dev.finished("writer", instance_id, timeout=60)
                assert details["status"] == "complete", (instance_id, details["error"], dev.tail())
                assert details["output"] == {"size": size, "more": 200_000}
            assert "Traceback" not in dev.output(), dev.output()[-5000:]

        # Stopped: the file is sound, and a new server finds every acknowledged instance.
        assert query(database(project), "PRAGMA integrity_check") == [("ok",)]
        with running(Dev(project)) as again:
            for instance_id, size in acknowledged.items():
                details = again.instance("writer", instance_id)
                assert details["status"] == "complete", (instance_id, details)
                assert details["output"] == {"size": size, "more": 200_000}


class Filler(WorkflowEntrypoint):
    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        size = await step.do("measure", lambda: len(event.payload["blob"]))
        await step.sleep("rest", event.payload.get("rest", 0))
        more = await step.do("write more", lambda: "y" * 200_000)
        return {"size": size, "more": len(more)}


class Waiter(WorkflowEntrypoint):
    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        got = await step.wait_for_event("go", type="go", timeout="1 hour")
        return got.payload


SPECS = [WorkflowSpec("filler", Filler, "FILLER"), WorkflowSpec("waiter", Waiter, "WAITER")]


async def cap_pages(store: SqliteStore, extra: int | None) -> int:
    """Set ``PRAGMA max_page_count`` on the engine's writing connection (the limit is per
    connection): the current size plus ``extra`` pages, or no limit (``None``)."""

    def apply(conn: sqlite3.Connection) -> int:
        pages = int(conn.execute("PRAGMA page_count").fetchone()[0])
        limit = 2**31 - 2 if extra is None else pages + extra
        return int(conn.execute(f"PRAGMA max_page_count = {limit}").fetchone()[0])

    return await store._write(apply)


async def test_a_database_at_its_page_limit_fails_clearly_and_recovers(harness: Harness) -> None:
    engine = await harness.start(SPECS, durability="fsync")
    store = engine.store
    assert isinstance(store, SqliteStore)
    for n in range(3):
        await engine.create("filler", f"early-{n}", blob(n, 10_000))
    for n in range(3):
        assert (await wait_status(engine, "filler", f"early-{n}"))["status"] == "complete"
    await engine.create("waiter", "waiting")
    await wait_status(engine, "waiter", "waiting", "waiting")
    await engine.create("filler", "sleeper", {**blob(7, 10_000), "rest": 0.5})
    await wait_status(engine, "filler", "sleeper", ("waiting", "running"))

    await cap_pages(store, 2)
    with pytest.raises(StoreError) as refused:
        await engine.create("filler", "refused", blob(1, 300_000))
    assert_clear_message(str(refused.value))
    assert "full" in str(refused.value).lower(), refused.value
    await asyncio.sleep(1.0)  # the sleeper wakes and cannot store its 200 kB step output

    await cap_pages(store, None)
    await engine.create("filler", "after", blob(2, 10_000))
    await engine.send_event("waiter", "waiting", "go", {"ok": True})
    for instance_id, size in (("sleeper", 10_000), ("after", 10_000)):
        status = await wait_status(engine, "filler", instance_id, timeout=30)
        assert status["status"] == "complete", (instance_id, status)
        assert status["output"] == {"size": size, "more": 200_000}
    assert (await wait_status(engine, "waiter", "waiting"))["output"] == {"ok": True}
    for n in range(3):
        assert (await engine.status("filler", f"early-{n}"))["status"] == "complete"
    # A create that failed left nothing behind: the client was told it failed.
    with pytest.raises(InstanceNotFound):
        await engine.status("filler", "refused")
    await harness.close()
    assert query(harness.path, "PRAGMA integrity_check") == [("ok",)]
