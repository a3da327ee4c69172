"""A real wf server for CLI tests: the API app over a real engine on a real SQLite file, served
by aiohttp on 127.0.0.1 (port 0) from a background thread with its own event loop."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from aiohttp import web

from tests.e2e.helpers import free_port
from wf import RetryConfig, StepConfig, WorkflowEntrypoint
from wf.client import Client
from wf.devserver.api import create_app
from wf.devserver.state import ServerState
from wf.engine import Engine, EngineSettings, WorkflowSpec
from wf.engine.store.sqlite import SqliteStore
from wf.project import WorkflowConfig

T = TypeVar("T")
FINISHED = ("complete", "errored", "terminated")


class Quick(WorkflowEntrypoint):
    async def run(self, event, step):
        async def double() -> Any:
            return {"double": (event.payload or {}).get("n", 0) * 2}

        return await step.do("double", double)


class Failing(WorkflowEntrypoint):
    async def run(self, event, step):
        def charge() -> None:
            raise ValueError("card declined")

        return await step.do("charge", StepConfig(retries=RetryConfig(limit=0)), charge)


class Napper(WorkflowEntrypoint):
    async def run(self, event, step):
        await step.sleep("nap", "1 hour")
        return "rested"


class Approval(WorkflowEntrypoint):
    async def run(self, event, step):
        got = await step.wait_for_event("approval", type="approve", timeout="1 hour")
        return {"approved_with": got.payload}


class Chatty(WorkflowEntrypoint):
    async def run(self, event, step):
        async def talk() -> str:
            return "blah " * 200

        return await step.do("talk", talk)


SPECS = [
    WorkflowSpec("quick", Quick, "QUICK"),
    WorkflowSpec("failing", Failing, "FAILING"),
    WorkflowSpec("napper", Napper, "NAPPER"),
    WorkflowSpec("approval", Approval, "APPROVAL"),
    WorkflowSpec("chatty", Chatty, "CHATTY"),
]
CONFIGS = tuple(WorkflowConfig(s.name, s.binding or "", s.cls.__name__) for s in SPECS)


class LiveServer:
    """Runs the API app and its engine in a thread; ``url`` is where it listens."""

    def __init__(self, database: Path, token: str | None = None) -> None:
        self.database = database
        self.token = token
        self.url = ""
        self.engine: Engine | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="wf-test-server", daemon=True)

    def start(self) -> LiveServer:
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("the test server did not start")
        if self._failure is not None:
            raise self._failure
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)
        if self._failure is not None:
            raise self._failure

    def run(self, make: Callable[[Engine], Coroutine[Any, Any, T]]) -> T:
        """Run ``make(engine)`` on the server's loop and wait for its result."""
        assert self._loop is not None and self.engine is not None
        return asyncio.run_coroutine_threadsafe(make(self.engine), self._loop).result(30)

    def client(self) -> Client:
        return Client(self.url, token=self.token)

    def _main(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve())
        except BaseException as exc:
            self._failure = exc
            self._ready.set()
        finally:
            loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        engine = Engine(
            SqliteStore(self.database, durability="os"),
            SPECS,
            settings=EngineSettings(poll_interval=0.2),
            version_id="v-test",
        )
        await engine.start()
        self.engine = engine
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        state = ServerState(
            project_name="shop",
            workflows=CONFIGS,
            engine=engine,
            version_id="v-test",
            bound_host="127.0.0.1",
            port=port,
            token=self.token,
        )
        runner = web.AppRunner(create_app(state))
        await runner.setup()
        try:
            await web.SockSite(runner, sock).start()
            self.url = f"http://127.0.0.1:{port}"
            self._ready.set()
            await self._stop.wait()
        finally:
            await runner.cleanup()
            await engine.stop()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    live = LiveServer(tmp_path / "wf.db").start()
    try:
        yield live
    finally:
        live.stop()


@pytest.fixture(autouse=True)
def _plain_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No colour, no address or token from the developer's shell, no wf.toml found upward."""
    for name in ("FORCE_COLOR", "NO_COLOR", "WF_URL", "WF_API_TOKEN", "WF_DEBUG", "COLUMNS"):
        monkeypatch.delenv(name, raising=False)
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)


def unused_port() -> int:
    """A port where nothing listens, kept so (no other process can take it meanwhile)."""
    return free_port()


def wait_status(
    client: Client, workflow: str, instance_id: str, statuses: tuple[str, ...] = FINISHED
) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while True:
        details = client.get_instance(workflow, instance_id)
        if details["status"] in statuses:
            return details
        if time.monotonic() > deadline:
            raise AssertionError(f"{workflow}/{instance_id} stayed {details['status']}")
        time.sleep(0.02)
