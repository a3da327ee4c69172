"""The instance page links a parent's runWorkflow step to its child, and the child to its
parent; the CLI's describe says the same in words."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timezone
from pathlib import Path

import pytest
from pytest_aiohttp import AiohttpClient

from tests.conftest import Harness, wait_status
from tests.devserver.conftest import PORT, Client
from tests.devserver.test_dashboard import Elements
from wf import WorkflowEntrypoint
from wf.cli import render
from wf.dashboard.routes import install
from wf.devserver.api import create_app
from wf.devserver.state import ServerState
from wf.engine import Engine, WorkflowSpec
from wf.project import WorkflowConfig


class Kid(WorkflowEntrypoint):
    async def run(self, event, step):
        return {"got": event.payload["n"]}


class Mom(WorkflowEntrypoint):
    async def run(self, event, step):
        return await step.run_workflow("kid", {"n": 7}, id="kid-1", name="raise a kid")


NAMES = {"mom": Mom, "kid": Kid}


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[Engine]:
    h = Harness(tmp_path / "wf.db")
    try:
        yield await h.start([WorkflowSpec(n, c, n.upper()) for n, c in NAMES.items()])
    finally:
        await h.close()


@pytest.fixture
async def ui(aiohttp_client: AiohttpClient, engine: Engine) -> Client:
    state = ServerState(
        project_name="demo",
        workflows=tuple(WorkflowConfig(n, n.upper(), c.__name__) for n, c in NAMES.items()),
        engine=engine,
        version_id="v-test",
        bound_host="127.0.0.1",
        port=PORT,
    )
    app = create_app(state)
    install(app)
    return await aiohttp_client(app)


async def test_parent_and_child_pages_link_each_other(ui: Client, engine: Engine) -> None:
    await engine.create("mom", "m1")
    assert (await wait_status(engine, "mom", "m1"))["output"] == {"got": 7}
    parent_page = Elements(await (await ui.get("/w/mom/i/m1")).text())
    (child_link,) = parent_page.all("child-link")
    assert child_link["href"] == "/w/kid/i/kid-1"
    assert parent_page.text("child-link") == "kid / kid-1"
    child_page = Elements(await (await ui.get("/w/kid/i/kid-1")).text())
    (parent_link,) = child_page.all("parent-link")
    assert parent_link["href"] == "/w/mom/i/m1"
    assert child_page.text("fact-trigger") == "binding (via parent)"
    assert not Elements(await (await ui.get("/w/mom/i/m1")).text()).all("parent-link")


async def test_describe_names_the_child_and_the_parent(engine: Engine) -> None:
    await engine.create("mom", "m1")
    await wait_status(engine, "mom", "m1")
    parent = await engine.details("mom", "m1")
    now = datetime.now(timezone.utc)
    step = parent["steps"][0]
    rows = dict(render._step_rows(step, step_output=True, limit=1000, now=now, tz=None))
    assert str(rows["Type"]) == "🧩 Child workflow"
    assert rows["Child"] == "kid kid-1" and str(rows["Success"]).startswith("✅")
    child = dict(render._instance_rows(await engine.details("kid", "kid-1"), "kid-1", now, None))
    assert child["Parent"] == "mom m1 (step raise a kid-1)"
