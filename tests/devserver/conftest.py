"""A real engine on a real SQLite file, served by the API app through aiohttp's test client."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient

from wf import WorkflowEntrypoint
from wf.devserver.api import create_app
from wf.devserver.state import ServerState
from wf.engine import Engine, EngineSettings, WorkflowSpec
from wf.engine.store.sqlite import SqliteStore
from wf.project import WorkflowConfig

Client = TestClient[web.Request, web.Application]
MakeClient = Callable[..., Coroutine[Any, Any, Client]]
PORT = 8787


class Quick(WorkflowEntrypoint):
    async def run(self, event, step):
        async def double() -> Any:
            return {"double": (event.payload or {}).get("n", 0) * 2}

        return await step.do("double", double)


class Napper(WorkflowEntrypoint):
    async def run(self, event, step):
        await step.sleep("nap", "1 hour")
        return "rested"


class Approval(WorkflowEntrypoint):
    async def run(self, event, step):
        got = await step.wait_for_event("approval", type="approve", timeout="1 hour")
        return {"approved_with": got.payload}


SPECS = [
    WorkflowSpec("quick", Quick, "QUICK"),
    WorkflowSpec("napper", Napper, "NAPPER"),
    WorkflowSpec("approval", Approval, "APPROVAL"),
]
CONFIGS = (
    WorkflowConfig("quick", "QUICK", "Quick"),
    WorkflowConfig("napper", "NAPPER", "Napper"),
    WorkflowConfig("approval", "APPROVAL", "Approval"),
)


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[Engine]:
    engine = Engine(
        SqliteStore(tmp_path / "wf.db", durability="os"),
        SPECS,
        settings=EngineSettings(poll_interval=0.2),
    )
    await engine.start()
    try:
        yield engine
    finally:
        await engine.stop()


@pytest.fixture
def state(engine: Engine) -> ServerState:
    return ServerState(
        project_name="demo",
        workflows=CONFIGS,
        engine=engine,
        version_id="v-test",
        bound_host="127.0.0.1",
        port=PORT,
    )


@pytest.fixture
def make_client(aiohttp_client: AiohttpClient) -> MakeClient:
    """A test client for the API app over any ``ServerState``."""

    async def make(state: ServerState) -> Client:
        return await aiohttp_client(create_app(state))

    return make


@pytest.fixture
async def client(make_client: MakeClient, state: ServerState) -> Client:
    return await make_client(state)


async def call(
    client: Client, method: str, path: str, expect: int = 200, **kwargs: Any
) -> dict[str, Any]:
    """One request; checks the HTTP status and the envelope, returns the whole body."""
    resp = await client.request(method, path, **kwargs)
    body: dict[str, Any] = await resp.json()
    assert resp.status == expect, body
    assert resp.content_type == "application/json"
    assert set(body) >= {"success", "errors", "messages", "result"}, body
    assert body["messages"] == []
    if expect < 400:
        assert body["success"] is True and body["errors"] == []
    else:
        assert body["success"] is False and body["result"] is None
        assert len(body["errors"]) == 1
        message = body["errors"][0]["message"]
        assert "\n" not in message and "Traceback" not in message
    return body


async def fails(
    client: Client, method: str, path: str, expect: int, code: int, **kwargs: Any
) -> str:
    """One request that must fail with this HTTP status and code; returns the message."""
    body = await call(client, method, path, expect, **kwargs)
    assert body["errors"][0]["code"] == code, body
    message: str = body["errors"][0]["message"]
    return message
