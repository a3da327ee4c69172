"""Rollbacks over REST: ``PATCH …/status {"status": "terminate", "rollback": true}`` and the
``rollback`` of an instance's details, on a real engine and SQLite file."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.conftest import wait_status
from tests.devserver.conftest import Client, MakeClient, call, fails
from wf import RollbackContext, WorkflowEntrypoint
from wf.devserver.state import ServerState
from wf.engine import Engine, EngineSettings, WorkflowSpec
from wf.engine.store.sqlite import SqliteStore
from wf.project import WorkflowConfig

BASE = "/api/workflows/saga/instances"
UNDONE: list[str] = []


class Saga(WorkflowEntrypoint):
    async def run(self, event, step):
        async def undo(context: RollbackContext) -> None:
            UNDONE.append(context.ctx.step_name)
            if (event.payload or {}).get("refuse"):
                raise RuntimeError("refund refused")

        await step.do(
            "reserve", lambda: 1, rollback=undo, rollback_config={"retries": {"limit": 0}}
        )
        await step.sleep("nap", "1 hour")


@pytest.fixture
async def saga(tmp_path: Path, make_client: MakeClient) -> AsyncIterator[tuple[Client, Engine]]:
    UNDONE.clear()
    engine = Engine(
        SqliteStore(tmp_path / "wf.db", durability="os"),
        [WorkflowSpec("saga", Saga, "SAGA")],
        settings=EngineSettings(poll_interval=0.2),
    )
    await engine.start()
    state = ServerState(
        project_name="demo",
        workflows=(WorkflowConfig("saga", "SAGA", "Saga"),),
        engine=engine,
        version_id="v-test",
        bound_host="127.0.0.1",
        port=8787,
    )
    try:
        yield await make_client(state), engine
    finally:
        await engine.stop()


async def test_terminate_with_rollback_over_rest(saga: tuple[Client, Engine]) -> None:
    client, engine = saga
    await call(client, "POST", BASE, 201, json={"id": "r1"})
    await wait_status(engine, "saga", "r1", "waiting")
    body = await call(
        client, "PATCH", f"{BASE}/r1/status", json={"status": "terminate", "rollback": True}
    )
    assert body["result"]["status"] == "running"  # it rolls back first, as Cloudflare reports
    await wait_status(engine, "saga", "r1", "terminated")
    details = (await call(client, "GET", f"{BASE}/r1"))["result"]
    assert details["status"] == "terminated" and details["error"] is None
    assert details["rollback"] == {"outcome": "complete", "error": None}
    assert [s["type"] for s in details["steps"]] == ["step", "sleep", "rollback", "termination"]
    assert UNDONE == ["reserve"]
    history = (await call(client, "GET", f"{BASE}/r1/history"))["result"]
    assert history["rollback"] == {"outcome": "complete", "error": None}
    (undo,) = [s for s in history["steps"] if s["kind"] == "rollback"]
    assert undo["name"] == "reserve" and undo["count"] == 1 and undo["state"] == "succeeded"
    assert [a["success"] for a in undo["attempts"]] == [True]


async def test_a_failed_rollback_shows_its_error(saga: tuple[Client, Engine]) -> None:
    client, engine = saga
    await call(client, "POST", BASE, 201, json={"id": "r2", "params": {"refuse": True}})
    await wait_status(engine, "saga", "r2", "waiting")
    await call(client, "PATCH", f"{BASE}/r2/status", json={"status": "terminate", "rollback": True})
    await wait_status(engine, "saga", "r2", "terminated")
    details = (await call(client, "GET", f"{BASE}/r2"))["result"]
    assert details["rollback"] == {
        "outcome": "failed",
        "error": {"name": "RuntimeError", "message": "refund refused"},
    }


async def test_bad_rollback_bodies_are_400(saga: tuple[Client, Engine]) -> None:
    client, _ = saga
    await call(client, "POST", BASE, 201, json={"id": "r3"})
    path = f"{BASE}/r3/status"
    message = await fails(
        client, "PATCH", path, 400, 10002, json={"status": "terminate", "rollback": "yes"}
    )
    assert message == '"rollback" must be true or false, got string'
    message = await fails(
        client, "PATCH", path, 400, 10002, json={"status": "pause", "rollback": True}
    )
    assert message == '"rollback" goes with {"status": "terminate"} only'
