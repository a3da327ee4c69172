"""The wf serve app in-process (aiohttp's test client) over a real runtime: a real SQLite file,
real bundles and real worker processes."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import sqlite3
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient

from tests.conftest import wait_for
from wf.bundle import build_bundle
from wf.devserver.api import create_app
from wf.devserver.openapi import document
from wf.devserver.state import ServerState
from wf.project import load_project
from wf.server.deploys import refresh
from wf.server.routes import add_serve_routes
from wf.server.runtime import Runtime
from wf.server.state import StateDir

Client = TestClient[web.Request, web.Application]
TOKEN = "test-token-123"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
METHODS = {"get", "put", "post", "delete", "patch"}

WF_TOML = """
name = "served"
main = "workflows.py"

[[workflows]]
name = "greet"
binding = "GREET"
class_name = "Greet"
"""

WORKFLOWS = """
from wf import WorkflowEntrypoint

VERSION = "{version}"


class Greet(WorkflowEntrypoint):
    async def run(self, event, step):
        secret = await step.do("read secret", lambda: getattr(self.env, "API_KEY", None))
        return {{"version": VERSION, "secret": secret, "params": event.payload}}
"""


def bundle_of(folder: Path, version: str, toml: str = WF_TOML) -> bytes:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "wf.toml").write_text(toml)
    (folder / "workflows.py").write_text(textwrap.dedent(WORKFLOWS.format(version=version)))
    return build_bundle(load_project(folder / "wf.toml")).data


@pytest.fixture
async def served(
    tmp_path: Path, aiohttp_client: AiohttpClient
) -> AsyncIterator[tuple[Client, Runtime]]:
    state = StateDir(tmp_path / "state")
    state.prepare()
    runtime = Runtime(state, "os", lambda notice: None)
    await runtime.start()
    try:
        server_state = ServerState(project_name="wf serve", engine=runtime.controller)
        server_state.token, server_state.serve = TOKEN, True
        app = create_app(server_state)
        add_serve_routes(app, runtime)
        yield await aiohttp_client(app), runtime
    finally:
        await runtime.stop()


async def result_of(client: Client, method: str, path: str, **kwargs: Any) -> Any:
    response = await client.request(method, path, headers=AUTH, **kwargs)
    body = await response.json()
    assert body["success"], body
    return body["result"]


async def wait_complete(client: Client, workflow: str, instance_id: str) -> Any:
    for _ in range(300):
        details = await result_of(
            client, "GET", f"/api/workflows/{workflow}/instances/{instance_id}"
        )
        if details["status"] in ("complete", "errored"):
            return details
        await asyncio.sleep(0.05)
    raise AssertionError(f"{instance_id} did not finish: {details['status']}")


async def test_every_serve_route_is_documented(served: tuple[Client, Runtime]) -> None:
    client, _ = served
    response = await client.get("/api/openapi.json", headers=AUTH)
    doc = await response.json()
    documented = {
        (m.upper(), path) for path, item in doc["paths"].items() for m in item if m in METHODS
    }
    served_routes = {
        (route.method, route.resource.canonical)
        for route in client.app.router.routes()
        if route.resource is not None
    }
    assert documented == served_routes
    assert doc == document(serve=True)


async def test_every_route_needs_the_token(served: tuple[Client, Runtime]) -> None:
    client, _ = served
    for route in client.app.router.routes():
        assert route.resource is not None
        path = route.resource.canonical.format(
            name="greet", id="x", type="t", account_id="acc", version_id="v"
        )
        for headers in ({}, {"Authorization": "Bearer wrong"}):
            response = await client.request(route.method, path, headers=headers)
            assert response.status == 401, (route.method, path)
            body = await response.json()
            assert body["errors"][0]["code"] == 10006


async def test_a_version_deployed_before_script_name_was_kept_gets_it_when_deployed_again(
    served: tuple[Client, Runtime], tmp_path: Path
) -> None:
    client, runtime = served
    data = bundle_of(tmp_path / "v1", "v1")
    await result_of(client, "POST", "/api/deploy", data=data)
    with contextlib.closing(sqlite3.connect(runtime.state.database)) as db, db:
        old = [{"name": "greet", "binding": "GREET", "class_name": "Greet"}]  # as wf kept it
        db.execute("UPDATE versions SET workflows = ?", (json.dumps(old),))
    await refresh(runtime.store, runtime.catalog)
    workflow = await result_of(client, "GET", "/api/workflows/greet")
    assert workflow["script_name"] == "wf serve"  # unknown: the server's own name
    again = await result_of(client, "POST", "/api/deploy", data=data)
    assert again["already_active"] is False  # the same bundle, recorded again, whole
    assert again["workflows"][0]["script_name"] == "served"
    workflow = await result_of(client, "GET", "/api/workflows/greet")
    assert workflow["script_name"] == "served"
    assert (await result_of(client, "POST", "/api/deploy", data=data))["already_active"] is True


async def test_deploy_run_redeploy_and_versions(
    served: tuple[Client, Runtime], tmp_path: Path
) -> None:
    client, runtime = served
    first = await result_of(client, "POST", "/api/deploy", data=bundle_of(tmp_path / "v1", "v1"))
    assert first["workflows"] == [
        {"name": "greet", "binding": "GREET", "class_name": "Greet", "script_name": "served"}
    ]
    workflow = await result_of(client, "GET", "/api/workflows/greet")
    assert workflow["script_name"] == "served"  # the deployed project's name, as Cloudflare's
    again = await result_of(client, "POST", "/api/deploy", data=bundle_of(tmp_path / "v1", "v1"))
    assert again["already_active"] is True and again["version_id"] == first["version_id"]
    created = await result_of(
        client, "POST", "/api/workflows/greet/instances", json={"id": "a", "params": {"n": 1}}
    )
    assert created["version_id"] == first["version_id"]
    response = await client.post(
        "/api/workflows/greet/instances", json={"id": "a"}, headers=AUTH
    )  # an id taken: 400 with Cloudflare's code, as wf dev answers
    assert (response.status, (await response.json())["errors"][0]["code"]) == (400, 10405)
    # A batch's limit is per instance (Cloudflare's 1 MiB of params each), not 1 MiB in all.
    half = "x" * (600 * 1024)
    batch = [{"id": "h1", "params": half}, {"id": "h2", "params": half}]
    raw = io.BytesIO(json.dumps(batch).encode())  # aiohttp warns of large bytes bodies
    created_batch = await result_of(
        client, "POST", "/api/workflows/greet/instances/batch", data=raw
    )
    assert [c["id"] for c in created_batch] == ["h1", "h2"]
    done = await wait_complete(client, "greet", "a")
    assert done["output"] == {"version": "v1", "secret": None, "params": {"n": 1}}
    history = await result_of(client, "GET", "/api/workflows/greet/instances/a/history")
    assert (history["format"], history["version"], history["params"]) == (
        "wf-history",
        first["version_id"],
        {"n": 1},
    )
    assert history["output"] == done["output"]
    [secret] = history["steps"]
    assert (secret["kind"], secret["name"], secret["count"], secret["state"]) == (
        "do",
        "read secret",
        1,
        "succeeded",
    )

    await result_of(client, "PUT", "/api/secrets/API_KEY", json={"value": "s3cret"})
    listed = await result_of(client, "GET", "/api/secrets")
    assert [s["name"] for s in listed] == ["API_KEY"] and "s3cret" not in str(listed)
    second = await result_of(client, "POST", "/api/deploy", data=bundle_of(tmp_path / "v2", "v2"))
    assert second["version_id"] != first["version_id"]
    await result_of(client, "POST", "/api/workflows/greet/instances", json={"id": "b"})
    done = await wait_complete(client, "greet", "b")
    assert done["output"]["version"] == "v2" and done["output"]["secret"] == "s3cret"
    assert done["versionId"] == second["version_id"]

    versions = await result_of(client, "GET", "/api/workflows/greet/versions")
    assert [v["id"] for v in versions] == [second["version_id"], first["version_id"]]
    assert all(v["workflow_id"] == v["workflow"] == "greet" for v in versions)
    assert [v["active"] for v in versions] == [True, False]
    assert all(v["unfinished"] == 0 for v in versions)
    await runtime.reconcile()  # the old version has nothing left to run: it is unloaded
    versions = await result_of(client, "GET", "/api/workflows/greet/versions")
    assert [v["loaded"] for v in versions] == [True, False]
    assert not runtime.state.bundle(first["version_id"]).exists()

    response = await client.post("/api/workflows/greet/instances/b/upgrade", headers=AUTH)
    assert response.status == 409  # finished instances stay where they are

    # "a" ran on the unloaded version; restarted, it runs on the active one.
    await result_of(
        client, "PATCH", "/api/workflows/greet/instances/a/status", json={"status": "restart"}
    )
    done = await wait_complete(client, "greet", "a")
    assert done["output"]["version"] == "v2" and done["versionId"] == second["version_id"]


async def test_rejected_deploys_change_nothing(
    served: tuple[Client, Runtime], tmp_path: Path
) -> None:
    client, runtime = served
    good = await result_of(client, "POST", "/api/deploy", data=bundle_of(tmp_path / "ok", "ok"))
    broken_code = tmp_path / "broken"
    bundle_of(broken_code, "x")
    (broken_code / "workflows.py").write_text("def oops(:\n")
    wrong_class = tmp_path / "wrong"
    wrong = bundle_of(wrong_class, "x", WF_TOML.replace('"Greet"', '"Gret"'))
    cases = [
        (build_bundle(load_project(broken_code / "wf.toml")).data, 10009, "workflows.py:1"),
        (wrong, 10009, '"Gret" is not defined'),
        (b"not a tarball at all", 10008, "gzip"),
    ]
    for data, code, text in cases:
        response = await client.post("/api/deploy", data=data, headers=AUTH)
        body = await response.json()
        assert response.status == 400, body
        assert body["errors"][0]["code"] == code and text in body["errors"][0]["message"]
        assert (
            runtime.catalog.active is not None and runtime.catalog.active.id == good["version_id"]
        )
        assert sorted(p.name for p in runtime.state.bundles.iterdir()) == [good["version_id"]]
    await result_of(client, "POST", "/api/workflows/greet/instances", json={"id": "still"})
    assert (await wait_complete(client, "greet", "still"))["output"]["version"] == "ok"


SLOW = """
import asyncio

from wf import WorkflowEntrypoint


class Greet(WorkflowEntrypoint):
    async def run(self, event, step):
        async def slow(ctx):
            if ctx.attempt <= 2:  # outlasts a worker's grace: cut short when it stops
                await asyncio.sleep(600)
            return ctx.attempt

        return await step.do("slow", slow)
"""


async def test_attempts_cut_short_say_a_worker_restart_from_a_shutdown(
    tmp_path: Path, aiohttp_client: AiohttpClient
) -> None:
    """A secret's change restarts the worker, SIGTERM shuts the server down: neither is a
    reload, and the attempts each cuts short say which it was."""
    state = StateDir(tmp_path / "state")
    state.prepare()
    runtime = Runtime(state, "os", lambda notice: None)
    await runtime.start()
    try:
        server_state = ServerState(project_name="wf serve", engine=runtime.controller)
        server_state.token, server_state.serve = TOKEN, True
        app = create_app(server_state)
        add_serve_routes(app, runtime)
        client = await aiohttp_client(app)
        project = tmp_path / "slow"
        bundle_of(project, "slow")
        (project / "workflows.py").write_text(SLOW)
        bundle = build_bundle(load_project(project / "wf.toml")).data
        await result_of(client, "POST", "/api/deploy", data=bundle)
        await result_of(client, "POST", "/api/workflows/greet/instances", json={"id": "s"})

        async def attempts_running(count: int) -> bool:
            details = await result_of(client, "GET", "/api/workflows/greet/instances/s")
            attempts = details["steps"][0]["attempts"] if details["steps"] else []
            return len(attempts) == count and attempts[-1]["end"] is None

        await wait_for(lambda: attempts_running(1), timeout=30)
        await result_of(client, "PUT", "/api/secrets/API_KEY", json={"value": "new"})
        await wait_for(lambda: attempts_running(2), timeout=30)
    finally:
        await runtime.stop()  # what SIGTERM and Ctrl-C do to wf serve
    with contextlib.closing(sqlite3.connect(state.database)) as db:
        errors = [
            json.loads(e)["message"]
            for (e,) in db.execute("SELECT error FROM attempts ORDER BY number")
        ]
    assert errors == [
        "the attempt was cut short because the server restarted the process running it; it does "
        "not count toward the retry limit",
        "the attempt was cut short because the server shut down; it does not count toward the "
        "retry limit",
    ]


async def test_restart_from_delete_and_retention_under_wf_serve(
    served: tuple[Client, Runtime], tmp_path: Path
) -> None:
    """Issue 12 through wf serve's worker processes: default_retention from the deployed wf.toml,
    restart from a step with new params, delete one and in a batch, create_batch's object form."""
    client, runtime = served
    toml = WF_TOML + 'default_retention = { success_retention = "3 days" }\n'
    await result_of(client, "POST", "/api/deploy", data=bundle_of(tmp_path / "v1", "v1", toml))
    base = "/api/workflows/greet/instances"
    await result_of(client, "POST", base, json={"id": "a", "params": {"n": 1}})
    await result_of(
        client,
        "POST",
        base,
        json={"id": "b", "instance_retention": {"error_retention": "1 hour"}},
    )
    first = await wait_complete(client, "greet", "a")
    assert first["retention"] == {"success_retention": "3 days", "error_retention": None}
    assert (await wait_complete(client, "greet", "b"))["retention"] == {
        "success_retention": "3 days",
        "error_retention": "1 hour",
    }
    body = {"status": "restart", "from": {"name": "read secret"}, "params": {"n": 2}}
    await result_of(client, "PATCH", f"{base}/a/status", json=body)
    again = await wait_complete(client, "greet", "a")
    assert again["output"]["params"] == {"n": 2} and again["restarted"]["new_params"] is True
    created = await result_of(client, "POST", f"{base}/batch", json={"count": 2})
    assert len(created["created"]) == 2 and created["errors"] == []
    assert await result_of(client, "DELETE", f"{base}/a") == {"id": "a", "deleted": True}
    ids = ["b", *(c["id"] for c in created["created"]), "a"]
    result = await result_of(client, "POST", f"{base}/batch/delete", json={"instances": ids})
    assert [d["id"] for d in result["deleted"]] == ids[:3]
    assert [e["id"] for e in result["errors"]] == ["a"]
    assert await runtime.store.get_instance("greet", "b") is None


SAGA_TOML = """
name = "served"
main = "workflows.py"

[[workflows]]
name = "saga"
binding = "SAGA"
class_name = "Saga"
"""

SAGA = """
import json

from wf import WorkflowEntrypoint


def undo(context):
    with open(LOG, "a") as out:
        out.write(json.dumps(context.output) + "\\n")


def charge(ctx):
    if ctx.attempt == 1:
        raise RuntimeError("card network busy")
    return {"card": "4242"}


CHARGE = {"sensitive": "output", "retries": {"limit": 2, "delay": lambda ctx, error: "10 ms"}}
UNDO = {"retries": {"limit": 1, "delay": lambda ctx, error: 0.01}}


class Saga(WorkflowEntrypoint):
    async def run(self, event, step):
        card = await step.do("charge", CHARGE, charge, rollback=undo, rollback_config=UNDO)
        if event.payload.get("mode") == "fail":
            raise ValueError("out of stock")
        if event.payload.get("mode") == "wait":
            await step.wait_for_event("go", "go", "1 hour")
        return card
"""


async def test_rollbacks_sensitive_outputs_and_delay_functions_under_wf_serve(
    served: tuple[Client, Runtime], tmp_path: Path
) -> None:
    """Issue 12's rollbacks, sensitive outputs, retry-delay functions and delete through wf
    serve's worker processes and its REST API."""
    client, runtime = served
    log = tmp_path / "undone.log"
    folder = tmp_path / "saga"
    folder.mkdir()
    (folder / "wf.toml").write_text(SAGA_TOML)
    (folder / "workflows.py").write_text(SAGA.replace("LOG", repr(str(log))))
    bundle = build_bundle(load_project(folder / "wf.toml")).data
    await result_of(client, "POST", "/api/deploy", data=bundle)
    base = "/api/workflows/saga/instances"
    for instance_id, mode in (("failed", "fail"), ("held", "wait"), ("gone", "wait")):
        await result_of(client, "POST", base, json={"id": instance_id, "params": {"mode": mode}})

    failed = await wait_complete(client, "saga", "failed")
    assert failed["error"] == {"name": "ValueError", "message": "out of stock"}
    assert failed["rollback"] == {"outcome": "complete", "error": None}
    charge, undone = failed["steps"]
    assert (charge["type"], charge["output"], len(charge["attempts"])) == ("step", "[REDACTED]", 2)
    assert charge["config"]["retries"]["delay"] == "[dynamic]"
    assert (undone["type"], undone["name"], undone["success"]) == ("rollback", "charge-1", True)
    history = await result_of(client, "GET", f"{base}/failed/history")
    assert [s["output"] for s in history["steps"] if s["kind"] == "do"] == ["[REDACTED]"]
    # The handler got the real output.
    assert log.read_text().splitlines() == ['{"card": "4242"}']

    async def reached(instance_id: str, wanted: str) -> None:
        async def there() -> bool:
            details = await result_of(client, "GET", f"{base}/{instance_id}")
            return bool(details["status"] == wanted)

        await wait_for(there)

    await reached("held", "waiting")
    await reached("gone", "waiting")
    body = {"status": "terminate", "rollback": True}
    await result_of(client, "PATCH", f"{base}/held/status", json=body)
    await reached("held", "terminated")
    held = await result_of(client, "GET", f"{base}/held")
    assert held["rollback"] == {"outcome": "complete", "error": None}
    assert log.read_text().splitlines() == ['{"card": "4242"}'] * 2
    assert await result_of(client, "DELETE", f"{base}/gone") == {"id": "gone", "deleted": True}
    assert await runtime.store.get_instance("saga", "gone") is None
    assert log.read_text().splitlines() == ['{"card": "4242"}'] * 2  # no rollback on delete
