"""``GET /api/workflows/{name}/instances/{id}/history``: an instance's full history (format
"wf-history") over real HTTP, for an instance that retried a step, slept, received an event,
timed out waiting for another, failed a step, and was sent an event nobody took."""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import wait_for, wait_status
from tests.devserver.conftest import Client, MakeClient, call, fails
from tests.postgres import SKIP_REASON, find_binaries, own_cluster
from wf import NonRetryableError, StepError, WorkflowEntrypoint
from wf.devserver.reads import StoreReader
from wf.devserver.state import ServerState
from wf.engine import Engine, EngineSettings, WorkflowSpec
from wf.engine.limits import Limits
from wf.engine.model import NewInstance
from wf.engine.store.sqlite import SqliteStore
from wf.project import WorkflowConfig

BASE = "/api/workflows"
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
ERROR = {"name": "ConnectionError", "message": "card network down"}


class Story(WorkflowEntrypoint):
    async def run(self, event, step):
        def charge(ctx: Any) -> Any:
            if ctx.attempt == 1:
                raise ConnectionError("card network down")
            return {"paymentId": "p1", "cart": event.payload["cartId"]}

        retry_fast = {"retries": {"limit": 2, "delay": 0.01, "backoff": "constant"}}
        paid = await step.do("charge card", retry_fast, charge)
        await step.sleep("cool off", 0.05)
        shipped = await step.wait_for_event("shipped", type="shipped", timeout=30)
        try:
            await step.wait_for_event("returned", type="returned", timeout=0.1)
        except StepError as exc:
            late = exc.error_name

        def refuse() -> None:
            raise NonRetryableError("smtp refused the address")

        with contextlib.suppress(StepError):
            await step.do("send receipt", refuse)
        return {"paid": paid["paymentId"], "carrier": shipped.payload["carrier"], "late": late}


@pytest.fixture
async def story(tmp_path: Path, make_client: MakeClient) -> AsyncIterator[tuple[Client, Engine]]:
    engine = Engine(
        SqliteStore(tmp_path / "wf.db", durability="os"),
        [WorkflowSpec("story", Story, "STORY")],
        settings=EngineSettings(poll_interval=0.2, limits=Limits(event_timeout_min=0.05)),
    )
    await engine.start()
    try:
        state = ServerState(
            project_name="demo",
            workflows=(WorkflowConfig("story", "STORY", "Story"),),
            engine=engine,
            version_id="v-test",
        )
        yield await make_client(state), engine
    finally:
        await engine.stop()


async def test_the_history_of_an_instance_that_ran_every_kind_of_step(
    story: tuple[Client, Engine],
) -> None:
    client, engine = story
    await engine.create("story", "cart-1", {"cartId": "cart-1"})
    await engine.send_event("story", "cart-1", "gift-wrap", {"paper": "red"})  # nobody waits
    await wait_status(engine, "story", "cart-1", "waiting")
    await engine.send_event("story", "cart-1", "shipped", {"carrier": "DHL"})
    await wait_status(engine, "story", "cart-1")

    body = await call(client, "GET", f"{BASE}/story/instances/cart-1/history")
    got = body["result"]
    row = await engine.row("story", "cart-1")
    assert {k: got[k] for k in ("format", "format_version", "workflow", "id", "version")} == {
        "format": "wf-history",
        "format_version": 1,
        "workflow": "story",
        "id": "cart-1",
        "version": row.version_id,
    }
    assert (got["status"], got["trigger"], got["params"], got["error"]) == (
        "complete",
        "api",
        {"cartId": "cart-1"},
        None,
    )
    assert got["output"] == {"paid": "p1", "carrier": "DHL", "late": "WorkflowTimeoutError"}
    assert all(ISO.match(got[k]) for k in ("created", "start", "end"))

    charge, cool, shipped, returned, receipt = got["steps"]
    assert [(s["kind"], s["name"], s["count"], s["state"]) for s in got["steps"]] == [
        ("do", "charge card", 1, "succeeded"),
        ("sleep", "cool off", 1, "succeeded"),
        ("wait", "shipped", 1, "succeeded"),
        ("wait", "returned", 1, "failed"),
        ("do", "send receipt", 1, "failed"),
    ]
    assert charge["output"] == {"paymentId": "p1", "cart": "cart-1"} and charge["error"] is None
    assert charge["config"]["retries"]["limit"] == 2
    first, second = charge["attempts"]
    assert (first["number"], first["success"], first["error"]) == (1, False, ERROR)
    assert (second["number"], second["success"], second["error"]) == (2, True, None)
    assert not first["uncounted"] and ISO.match(second["end"])
    # A finished step holds no timer: the store clears wake_at when the step ends.
    assert (cool["duration"], cool["wake_at"]) == (0.05, None) and ISO.match(cool["end"])
    assert (shipped["event_type"], shipped["timeout"], shipped["output"]) == (
        "shipped",
        30.0,
        {"carrier": "DHL"},
    )
    assert shipped["wake_at"] is None and returned["wake_at"] is None
    assert ISO.match(shipped["event_time"]) and shipped["error"] is None
    assert (returned["event_type"], returned["output"], returned["event_time"]) == (
        "returned",
        None,
        None,
    )
    assert returned["error"]["name"] == "WorkflowTimeoutError"
    assert receipt["error"] == {"name": "NonRetryableError", "message": "smtp refused the address"}
    assert len(receipt["attempts"]) == 1 and receipt["output"] is None

    assert [(e["type"], e["payload"], e["consumed_by"]) for e in got["events"]] == [
        ("gift-wrap", {"paper": "red"}, None),
        ("shipped", {"carrier": "DHL"}, "shipped-1"),
    ]
    assert all(ISO.match(e["received"]) for e in got["events"])
    assert got["events"][1]["received"] == shipped["event_time"]
    # The details route tells the same story in Cloudflare's shape.
    details = await engine.details("story", "cart-1")
    assert [s["start"] for s in details["steps"]] == [s["start"] for s in got["steps"]]


async def test_the_history_of_an_unfinished_instance_ends_with_its_running_step(
    story: tuple[Client, Engine],
) -> None:
    client, engine = story
    await engine.create("story", "cart-2", {"cartId": "cart-2"})

    async def waiting_for_shipment() -> bool:
        steps = (await engine.history("story", "cart-2"))["steps"]
        return len(steps) == 3 and (await engine.status("story", "cart-2"))["status"] == "waiting"

    await wait_for(waiting_for_shipment)
    got = (await call(client, "GET", f"{BASE}/story/instances/cart-2/history"))["result"]
    assert (got["status"], got["end"], got["output"], got["events"]) == ("waiting", None, None, [])
    assert [(s["name"], s["state"]) for s in got["steps"]] == [
        ("charge card", "succeeded"),
        ("cool off", "succeeded"),
        ("shipped", "running"),
    ]
    wait = got["steps"][2]
    assert (wait["end"], wait["output"], wait["event_time"]) == (None, None, None)
    assert ISO.match(wait["wake_at"])


async def test_unknown_workflow_or_instance_is_404(story: tuple[Client, Engine]) -> None:
    client, _ = story
    message = await fails(client, "GET", f"{BASE}/nope/instances/x/history", 404, 10200)
    assert message == 'workflow "nope" not found; known workflows: story'
    message = await fails(client, "GET", f"{BASE}/story/instances/nope/history", 404, 10400)
    assert message == 'instance "nope" not found in workflow "story"'


@pytest.mark.slow
async def test_a_database_that_went_away_is_503_in_one_line(make_client: MakeClient) -> None:
    if find_binaries() is None:
        pytest.skip(SKIP_REASON)
    from wf.engine.store.postgres import PostgresStore

    with own_cluster() as cluster:
        store = PostgresStore(cluster.url("postgres"), durability="os")
        await store.open()
        try:
            new = NewInstance("story", "s1", '{"a": 1}', "api", "v1", 1_800_000_000.0)
            await store.create_instances([new], skip_existing=False)
            state = ServerState(
                project_name="demo",
                workflows=(WorkflowConfig("story", "STORY", "Story"),),
                load_error="workflows.py:1: SyntaxError",  # the read-only view answers
                reader=StoreReader(store, ["story"]),
            )
            client = await make_client(state)
            path = f"{BASE}/story/instances/s1/history"
            got = (await call(client, "GET", path))["result"]
            assert (got["params"], got["created"], got["steps"]) == (
                {"a": 1},
                "2027-01-15T08:00:00.000Z",
                [],
            )
            cluster.stop("immediate")
            message = await fails(client, "GET", path, 503, 10008)
            assert message.startswith("database error: PostgreSQL at ")
            assert message.endswith(" is unreachable: Connection refused; try again shortly")
        finally:
            await store.close()
