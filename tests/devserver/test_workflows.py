"""Health, workflows, routing errors, internal errors and the broken-project mode."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest
from aiohttp import web
from pytest_aiohttp import AiohttpClient

from tests.conftest import wait_status
from tests.devserver.conftest import CONFIGS, SPECS, Client, MakeClient, call, fails
from wf.devserver.api import create_app
from wf.devserver.state import ServerState
from wf.engine import Engine
from wf.engine.store.sqlite import SqliteStore

ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
ZERO = {
    "queued": 0,
    "running": 0,
    "paused": 0,
    "waiting": 0,
    "waitingForPause": 0,
    "errored": 0,
    "terminated": 0,
    "complete": 0,
}


async def test_health(client: Client) -> None:
    body = await call(client, "GET", "/api/health")
    assert body["result"] == {
        "status": "ok",
        "project": "demo",
        "version_id": "v-test",
        "workflows": ["quick", "napper", "approval"],
        "error": None,
    }


async def test_list_workflows(client: Client) -> None:
    body = await call(client, "GET", "/api/workflows")
    assert body["result_info"] == {"page": 1, "per_page": 25, "count": 3, "total_count": 3}
    assert [w["name"] for w in body["result"]] == ["quick", "napper", "approval"]
    first = body["result"][0]
    # No instance yet: the dates are when the code loaded (never null: wrangler sorts on them).
    assert ISO.match(first["created_on"]) and first["modified_on"] == first["created_on"]
    assert first == {
        "id": "quick",  # Cloudflare's workflow id (what instances' workflow_id holds)
        "name": "quick",
        "binding": "QUICK",
        "class_name": "Quick",
        "script_name": "demo",
        "version_id": "v-test",
        "created_on": first["created_on"],
        "modified_on": first["created_on"],
        "triggered_on": None,
        "instances": ZERO,
        "schedules": [],
    }
    body = await call(client, "GET", "/api/workflows", params={"page": "2", "per_page": "2"})
    assert [w["name"] for w in body["result"]] == ["approval"]
    assert body["result_info"] == {"page": 2, "per_page": 2, "count": 1, "total_count": 3}
    message = await fails(client, "GET", "/api/workflows", 400, 10002, params={"page": "-1"})
    assert "page" in message


async def test_list_workflows_searches_names(client: Client) -> None:
    # Cloudflare's ?search= filters by name; the paging counts what matched.
    body = await call(client, "GET", "/api/workflows", params={"search": "PP"})
    assert [w["name"] for w in body["result"]] == ["napper", "approval"]
    assert body["result_info"] == {"page": 1, "per_page": 25, "count": 2, "total_count": 2}
    params = {"search": "p", "per_page": "1", "page": "2"}
    body = await call(client, "GET", "/api/workflows", params=params)
    assert [w["name"] for w in body["result"]] == ["approval"]
    assert body["result_info"] == {"page": 2, "per_page": 1, "count": 1, "total_count": 2}
    body = await call(client, "GET", "/api/workflows", params={"search": "nothing"})
    assert body["result"] == [] and body["result_info"]["total_count"] == 0
    body = await call(client, "GET", "/api/workflows", params={"search": ""})
    assert body["result_info"]["total_count"] == 3


async def test_workflow_counts_and_times(client: Client, engine: Engine) -> None:
    for one in ("q1", "q2"):
        await call(client, "POST", "/api/workflows/quick/instances", 201, json={"id": one})
        await wait_status(engine, "quick", one, "complete")
    await call(client, "POST", "/api/workflows/napper/instances", 201, json={"id": "n1"})
    await wait_status(engine, "napper", "n1", "waiting")
    await call(
        client, "PATCH", "/api/workflows/napper/instances/n1/status", json={"status": "terminate"}
    )
    quick = (await call(client, "GET", "/api/workflows/quick"))["result"]
    assert quick["instances"] == ZERO | {"complete": 2}
    assert ISO.match(quick["created_on"]) and ISO.match(quick["modified_on"])
    assert quick["created_on"] <= quick["modified_on"]
    first = (await engine.details("quick", "q1"))["created"]
    last_end = (await engine.details("quick", "q2"))["end"]
    assert quick["created_on"] == first and quick["modified_on"] >= last_end
    napper = (await call(client, "GET", "/api/workflows/napper"))["result"]
    assert napper["instances"] == ZERO | {"terminated": 1}


async def test_unknown_workflow(client: Client) -> None:
    message = await fails(client, "GET", "/api/workflows/nope", 404, 10200)
    assert message == 'workflow "nope" not found; known workflows: approval, napper, quick'
    await fails(client, "DELETE", "/api/workflows/nope", 404, 10200)


async def test_delete_workflow_removes_its_instances(client: Client, engine: Engine) -> None:
    await call(client, "POST", "/api/workflows/quick/instances", 201, json={"id": "keep"})
    for one in ("a", "b"):
        await call(client, "POST", "/api/workflows/napper/instances", 201, json={"id": one})
    await wait_status(engine, "napper", "a", "waiting")
    body = await call(client, "DELETE", "/api/workflows/napper")
    assert body["result"] == {"status": "ok", "name": "napper", "deleted": 2}
    assert (await call(client, "GET", "/api/workflows/napper/instances"))["result"] == []
    assert (await call(client, "GET", "/api/workflows/napper"))["result"]["instances"] == ZERO
    await fails(client, "GET", "/api/workflows/napper/instances/a", 404, 10400)
    # other workflows keep theirs, and the deleted ids can be used again
    assert (await call(client, "GET", "/api/workflows/quick/instances"))["result_info"][
        "total_count"
    ] == 1
    await call(client, "POST", "/api/workflows/napper/instances", 201, json={"id": "a"})
    assert (await call(client, "DELETE", "/api/workflows/napper"))["result"]["deleted"] == 1


async def test_unknown_route_and_wrong_method(client: Client) -> None:
    message = await fails(client, "GET", "/api/nothing", 404, 10007)
    assert "/api/nothing" in message
    await fails(client, "GET", "/", 404, 10007)
    await fails(client, "GET", "/api/workflows/quick/instances/x/steps", 404, 10007)
    resp = await client.put("/api/workflows")
    body = await resp.json()
    assert resp.status == 405 and body["errors"][0]["code"] == 10007
    assert "PUT" in body["errors"][0]["message"] and "GET" in body["errors"][0]["message"]
    assert resp.headers["Allow"] == "GET"
    await fails(client, "POST", "/api/health", 405, 10007)
    await fails(client, "PUT", "/api/workflows/quick/instances/x", 405, 10007)


async def test_store_failure_is_500_without_traceback(
    make_client: MakeClient, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    engine = Engine(SqliteStore(tmp_path / "closed.db", durability="os"), SPECS)
    await engine.start()
    await engine.stop()  # the store is closed under the server's feet
    client = await make_client(ServerState(project_name="demo", engine=engine))
    with caplog.at_level(logging.ERROR, logger="wf.server"):
        message = await fails(client, "GET", "/api/workflows/quick/instances", 500, 10001)
    assert message == "database error: the store is closed"
    assert any(r.name == "wf.server" for r in caplog.records)


async def test_unexpected_exception_is_500_and_logged(
    aiohttp_client: AiohttpClient, state: ServerState, caplog: pytest.LogCaptureFixture
) -> None:
    async def boom(request: web.Request) -> web.Response:
        raise RuntimeError("the flux capacitor\nbroke")

    app = create_app(state)
    app.router.add_get("/api/boom", boom)  # a handler bug, to see what the client gets
    client = await aiohttp_client(app)
    with caplog.at_level(logging.ERROR, logger="wf.server"):
        message = await fails(client, "GET", "/api/boom", 500, 10001)
    assert message == (
        "internal error while handling GET /api/boom: RuntimeError: the flux capacitor\\nbroke "
        "(details in the server log)"
    )
    logged = [r for r in caplog.records if r.name == "wf.server"]
    assert logged and logged[0].exc_info is not None  # the traceback went to the log


async def test_broken_project_is_503_but_health_answers(make_client: MakeClient) -> None:
    error = "workflows.py:3: SyntaxError: invalid syntax"
    state = ServerState(project_name="demo", workflows=CONFIGS, engine=None, load_error=error)
    client = await make_client(state)
    health = (await call(client, "GET", "/api/health"))["result"]
    assert health == {
        "status": "error",
        "project": "demo",
        "version_id": None,
        "workflows": ["quick", "napper", "approval"],
        "error": error,
    }
    for method, path in [
        ("GET", "/api/workflows"),
        ("GET", "/api/workflows/quick"),
        ("DELETE", "/api/workflows/quick"),
        ("GET", "/api/workflows/quick/instances"),
        ("POST", "/api/workflows/quick/instances"),
        ("POST", "/api/workflows/quick/instances/batch"),
        ("GET", "/api/workflows/quick/instances/x"),
        ("PATCH", "/api/workflows/quick/instances/x/status"),
        ("POST", "/api/workflows/quick/instances/x/events/t"),
    ]:
        assert await fails(client, method, path, 503, 10004, data=b"{not json") == error
    resp = await client.get("/api/openapi.json")
    assert resp.status == 200 and (await resp.json())["openapi"] == "3.1.0"


async def test_update_answers_when_it_matches_the_project_and_refuses_changes(
    client: Client,
) -> None:
    workflow = (await call(client, "GET", "/api/workflows/quick"))["result"]
    same = {"class_name": workflow["class_name"], "script_name": workflow["script_name"]}
    # Cloudflare's create-or-update: nothing to change (a null config key asks for nothing).
    body = await call(client, "PUT", "/api/workflows/quick", json={**same, "limits": None})
    assert body["result"]["name"] == "quick" and body["result"]["is_deleted"] == 0
    message = await fails(
        client, "PUT", "/api/workflows/quick", 409, 10201, json={**same, "class_name": "Other"}
    )
    assert "change wf.toml or the code and deploy it" in message, message
    message = await fails(
        client, "PUT", "/api/workflows/quick", 409, 10201, json={**same, "schedules": []}
    )
    assert "schedules is set in wf.toml" in message
    await fails(client, "PUT", "/api/workflows/quick", 400, 10002, json=[same])
    await fails(client, "PUT", "/api/workflows/quick", 400, 10002, json={"class_name": "X"})
    await fails(client, "PUT", "/api/workflows/nope", 404, 10200, json=same)
