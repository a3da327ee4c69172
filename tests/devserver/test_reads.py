"""The read routes while the project's code does not load: answered from the store (read-only)
exactly as the engine answered them; the routes that need the code answer 503 with the load
error."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pytest_aiohttp import AiohttpClient

from tests.conftest import wait_for, wait_status
from tests.devserver.conftest import CONFIGS, SPECS, Client, MakeClient, call, fails
from wf.dashboard.routes import install as install_dashboard
from wf.devserver.api import create_app
from wf.devserver.reads import StoreReader, open_reader
from wf.devserver.state import ServerState
from wf.engine import Engine, EngineSettings
from wf.engine.store.sqlite import SqliteStore
from wf.project import DevConfig, Project, WorkflowConfig

BASE = "/api/workflows"
LOAD_ERROR = "workflows.py:7: SyntaxError: invalid syntax"
READS = (
    f"{BASE}",
    f"{BASE}?per_page=2&page=2",
    f"{BASE}/quick",
    f"{BASE}/quick/instances",
    f"{BASE}/approval/instances?status=waiting",
    f"{BASE}/approval/instances?reverse=true&per_page=1",
    f"{BASE}/quick/instances/q1",
    f"{BASE}/napper/instances/n1",
    f"{BASE}/approval/instances/a1",
    f"{BASE}/approval/instances/a2",
    f"{BASE}/quick/instances/q1/history",
    f"{BASE}/approval/instances/a2/history",
)
NEED_CODE = (
    ("POST", f"{BASE}/quick/instances", {"id": "new"}),
    ("POST", f"{BASE}/quick/instances/batch", [{"id": "new"}]),
    ("PATCH", f"{BASE}/approval/instances/a1/status", {"status": "terminate"}),
    ("POST", f"{BASE}/approval/instances/a1/events/approve", {"ok": True}),
    ("DELETE", f"{BASE}/quick", None),
)


def project_at(root: Path, workflows: tuple[WorkflowConfig, ...] = CONFIGS) -> Project:
    return Project(
        root=root,
        config_path=root / "wf.toml",
        name="demo",
        main=root / "workflows.py",
        workflows=workflows,
        dev=DevConfig(state_dir=".wf"),
    )


def broken(
    reader: StoreReader | None, workflows: tuple[WorkflowConfig, ...] = CONFIGS
) -> ServerState:
    """What the dev server's child serves when the module fails to import."""
    return ServerState(
        project_name="demo", workflows=workflows, load_error=LOAD_ERROR, reader=reader
    )


@pytest.fixture
async def history(tmp_path: Path, make_client: MakeClient) -> dict[str, Any]:
    """A project's database with finished, sleeping, waiting and terminated instances, and the
    answers the API gave for it while the engine ran; the engine is stopped afterwards."""
    project = project_at(tmp_path)
    engine = Engine(
        SqliteStore(project.database, durability="os"),
        SPECS,
        settings=EngineSettings(poll_interval=0.2, hibernate_after=0),
    )
    await engine.start()
    try:
        await engine.create("quick", "q1", {"n": 21})
        await engine.create("quick", "q2")
        await engine.create("napper", "n1", ["a", "tuple", "once"])
        await engine.create("approval", "a1")
        await engine.create("approval", "a2")
        await wait_status(engine, "quick", "q1")
        await wait_status(engine, "quick", "q2")
        for workflow, instance_id in (("napper", "n1"), ("approval", "a1"), ("approval", "a2")):
            await wait_status(engine, workflow, instance_id, "waiting")
        await engine.terminate("approval", "a2")

        async def all_hibernated() -> bool:  # nothing changes after the answers are taken
            rows = [
                await engine.store.get_instance(w, i)
                for w, i in (("napper", "n1"), ("approval", "a1"))
            ]
            return all(r is not None and r.owner is None for r in rows)

        await wait_for(all_hibernated, 10)
        running = ServerState(
            project_name="demo", workflows=CONFIGS, engine=engine, version_id="v-test"
        )
        client = await make_client(running)
        answers = {path: await call(client, "GET", path) for path in READS}
    finally:
        await engine.stop()
    return {"project": project, "answers": answers}


@pytest.fixture
async def reader(history: dict[str, Any]) -> AsyncIterator[StoreReader]:
    opened = await open_reader(history["project"])
    try:
        yield opened
    finally:
        await opened.store.close()


def without_workflow_versions(body: dict[str, Any]) -> dict[str, Any]:
    """A workflow's version_id is the code's that runs now: there is none while it is broken."""
    result = body["result"]
    items = result if isinstance(result, list) else [result]
    for item in items:
        if "instances" in item and isinstance(item["instances"], dict):
            item.pop("version_id")
    return body


async def test_the_read_routes_answer_as_the_engine_did(
    history: dict[str, Any], reader: StoreReader, make_client: MakeClient
) -> None:
    client = await make_client(broken(reader))
    for path, before in history["answers"].items():
        after = await call(client, "GET", path)
        if path.split("?")[0] in (BASE, f"{BASE}/quick"):
            workflows = after["result"] if isinstance(after["result"], list) else [after["result"]]
            assert all(w["version_id"] is None for w in workflows), after
            before, after = without_workflow_versions(before), without_workflow_versions(after)
        assert after == before, path
    details = history["answers"][f"{BASE}/quick/instances/q1"]["result"]
    assert details["output"] == {"double": 42} and details["steps"][0]["name"] == "double-1"


async def test_the_routes_that_need_the_code_answer_503_with_the_load_error(
    history: dict[str, Any], reader: StoreReader, make_client: MakeClient
) -> None:
    client = await make_client(broken(reader))
    for method, path, body in NEED_CODE:
        assert await fails(client, method, path, 503, 10004, json=body) == LOAD_ERROR
    health = (await call(client, "GET", "/api/health"))["result"]
    assert health["status"] == "error" and health["error"] == LOAD_ERROR
    listed = (await call(client, "GET", f"{BASE}/quick/instances"))["result"]
    assert sorted(i["id"] for i in listed) == ["q1", "q2"]  # nothing was created
    a1 = (await call(client, "GET", f"{BASE}/approval/instances/a1"))["result"]
    assert a1["status"] == "waiting"  # nor terminated
    document = await client.get("/api/openapi.json")
    assert document.status == 200 and (await document.json())["openapi"] == "3.1.0"


async def test_unknown_names_are_404_as_with_the_engine(
    reader: StoreReader, make_client: MakeClient
) -> None:
    client = await make_client(broken(reader))
    message = await fails(client, "GET", f"{BASE}/nope/instances", 404, 10200)
    assert message == 'workflow "nope" not found; known workflows: approval, napper, quick'
    message = await fails(client, "GET", f"{BASE}/quick/instances/nope", 404, 10400)
    assert message == 'instance "nope" not found in workflow "quick"'
    await fails(client, "GET", f"{BASE}/quick/instances?status=sleepy", 400, 10002)


async def test_workflows_on_record_but_gone_from_wf_toml_are_listed_after_its_own(
    history: dict[str, Any], make_client: MakeClient
) -> None:
    """The user renamed "napper" in wf.toml and broke the module: its history still shows."""
    renamed = (CONFIGS[0], WorkflowConfig("dozer", "DOZER", "Dozer"), CONFIGS[2])
    opened = await open_reader(project_at(history["project"].root, renamed))
    try:
        client = await make_client(broken(opened, renamed))
        listed = (await call(client, "GET", BASE))["result"]
        assert [(w["name"], w["binding"], w["class_name"]) for w in listed] == [
            ("quick", "QUICK", "Quick"),
            ("dozer", "DOZER", "Dozer"),
            ("approval", "APPROVAL", "Approval"),
            ("napper", None, ""),
        ]
        assert listed[1]["instances"]["waiting"] == 0 and listed[3]["instances"]["waiting"] == 1
        n1 = (await call(client, "GET", f"{BASE}/napper/instances/n1"))["result"]
        assert n1 == history["answers"][f"{BASE}/napper/instances/n1"]["result"]
    finally:
        await opened.store.close()


async def test_a_project_that_never_ran_reads_as_empty(
    tmp_path: Path, make_client: MakeClient
) -> None:
    project = project_at(tmp_path)
    opened = await open_reader(project)
    try:
        client = await make_client(broken(opened))
        listed = await call(client, "GET", BASE)
        assert [w["name"] for w in listed["result"]] == ["quick", "napper", "approval"]
        assert listed["result"][0]["instances"]["complete"] == 0
        # Never null (wrangler sorts on it): with no instance, when the server loaded the project.
        first = listed["result"][0]
        assert first["created_on"] == first["modified_on"] and first["triggered_on"] is None
        empty = await call(client, "GET", f"{BASE}/quick/instances")
        assert empty["result"] == [] and empty["result_info"]["total_count"] == 0
    finally:
        await opened.store.close()
    assert not project.state_dir.exists()  # reading created nothing


async def test_without_a_reader_the_reads_say_why_they_cannot_answer(
    make_client: MakeClient,
) -> None:
    """wf.toml broken: no database is known, so reads answer 503 saying so."""
    toml_error = "wf.toml:2: name must be a string, got 5"
    state = ServerState(
        project_name="demo",
        load_error=toml_error,
        read_error=f"{toml_error}; instances can be read once wf.toml loads",
    )
    client = await make_client(state)
    for path in (
        BASE,
        f"{BASE}/quick",
        f"{BASE}/quick/instances",
        f"{BASE}/quick/instances/x",
        f"{BASE}/quick/instances/x/history",
    ):
        message = await fails(client, "GET", path, 503, 10004)
        assert message == f"{toml_error}; instances can be read once wf.toml loads"
    assert await fails(client, "POST", f"{BASE}/quick/instances", 503, 10004) == toml_error
    assert (await call(client, "GET", "/api/health"))["result"]["error"] == toml_error


async def test_a_running_engine_is_asked_rather_than_a_reader(
    client: Client, state: ServerState, tmp_path: Path
) -> None:
    """During a reload both may be there: the engine answers, and writes go to it."""
    state.reader = await open_reader(project_at(tmp_path / "elsewhere"))
    try:
        await call(client, "POST", f"{BASE}/quick/instances", 201, json={"id": "x"})
        listed = (await call(client, "GET", f"{BASE}/quick/instances"))["result"]
        assert [i["id"] for i in listed] == ["x"]
    finally:
        await state.reader.store.close()


async def test_the_dashboard_pages_say_the_project_does_not_load(
    reader: StoreReader, aiohttp_client: AiohttpClient
) -> None:
    app = create_app(broken(reader))
    install_dashboard(app)
    client = await aiohttp_client(app)
    for path in ("/", "/w/quick", "/w/quick/i/q1"):
        response = await client.get(path)
        text = await response.text()
        assert response.status == 200, (path, text)
        assert 'data-testid="project-problem"' in text and LOAD_ERROR in text, path
    # Without a load problem there is no such line.
    running = create_app(ServerState(project_name="demo", workflows=CONFIGS, reader=reader))
    install_dashboard(running)
    fine = await (await aiohttp_client(running)).get("/")
    assert 'data-testid="project-problem"' not in await fine.text()
