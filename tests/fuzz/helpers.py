"""Shared by the fuzz tests: deterministic Hypothesis settings, a project on disk, and the API
served over a real engine on a real port (so HTTP clients such as schemathesis can reach it)."""

from __future__ import annotations

import asyncio
import http.client
import json
import socket
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
import schemathesis
from aiohttp import web
from hypothesis import HealthCheck, settings

from wf.devserver.api import create_app
from wf.devserver.child import project_engine
from wf.devserver.state import ServerState
from wf.engine.engine import Engine
from wf.project import Project, load_project


def fuzz(max_examples: int) -> settings:
    """Deterministic (derandomized), no example database written to the repository, no
    deadline (a slow CI machine must not turn into a flaky failure)."""
    return settings(
        max_examples=max_examples,
        derandomize=True,
        database=None,
        deadline=None,
        print_blob=False,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.function_scoped_fixture,
            HealthCheck.filter_too_much,
        ],
    )


def one_line(message: str) -> bool:
    """A message a terminal shows on a single line."""
    return bool(message) and not any(c in message for c in "\n\r\x0b\x0c\x85\u2028\u2029")


# ---- a project on disk ---------------------------------------------------------------------

# A secret that must never come back from the API: long and random-looking, so that a response
# containing it cannot be a coincidence.
SECRET = "wf-fuzz-secret-9c1f7e2ab44d0e3b"
SECRET_NAME = "STORAGE_API_TOKEN"
MODULE = "fuzzflows"

WORKFLOWS = """
from wf import NonRetryableError, WorkflowEntrypoint


class Quick(WorkflowEntrypoint):
    async def run(self, event, step):
        async def measure():
            # reads the secret (as a real workflow would) without returning it
            return {"secret_length": len(self.env.STORAGE_API_TOKEN), "params": event.payload}

        return await step.do("measure", measure)


class Napper(WorkflowEntrypoint):
    async def run(self, event, step):
        await step.sleep("nap", "1 hour")
        return "rested"


class Approval(WorkflowEntrypoint):
    async def run(self, event, step):
        got = await step.wait_for_event("approval", type="approve", timeout="1 hour")
        return {"approved_with": got.payload}


class Broken(WorkflowEntrypoint):
    async def run(self, event, step):
        async def fail():
            raise NonRetryableError("always fails", "Kaput")

        await step.do("fail", {"retries": {"limit": 0}}, fail)


class Named(WorkflowEntrypoint):
    # runs one step named by its params (code points, so that any name can be asked for)

    async def run(self, event, step):
        payload = event.payload if isinstance(event.payload, dict) else {}
        name = "".join(chr(c) for c in payload.get("codepoints", [110]))

        async def ran():
            return {"ran": name}

        return await step.do(name, ran)


class Emit(WorkflowEntrypoint):
    # returns the text of its params' code points, from a step or from run() itself
    async def run(self, event, step):
        payload = event.payload if isinstance(event.payload, dict) else {}
        text = "".join(chr(c) for c in payload.get("codepoints", [111]))
        if payload.get("from") == "step":

            async def emit():
                return text

            return await step.do("emit", emit)
        return text
"""

WF_TOML = f'''
name = "fuzz-project"
main = "{MODULE}.py"

[[workflows]]
name = "quick"
binding = "QUICK"
class_name = "Quick"

[[workflows]]
name = "napper"
binding = "NAPPER"
class_name = "Napper"

[[workflows]]
name = "approval"
binding = "APPROVAL"
class_name = "Approval"

[[workflows]]
name = "broken"
binding = "BROKEN"
class_name = "Broken"

[[workflows]]
name = "named"
binding = "NAMED"
class_name = "Named"

[[workflows]]
name = "emit"
binding = "EMIT"
class_name = "Emit"

[vars]
GREETING = "hello"

[engine]
durability = "os"
'''

WORKFLOW_NAMES = ("quick", "napper", "approval", "broken", "named", "emit")


def write_project(root: Path) -> Path:
    """A wf project with four workflows and a ``.dev.vars`` secret; returns its wf.toml."""
    root.mkdir(parents=True, exist_ok=True)
    (root / f"{MODULE}.py").write_text(WORKFLOWS, encoding="utf-8")
    (root / ".dev.vars").write_text(
        f"# secrets for wf dev\n{SECRET_NAME}={SECRET}\n", encoding="utf-8"
    )
    config = root / "wf.toml"
    config.write_text(WF_TOML, encoding="utf-8")
    return config


def listing(folder: Path, skip: Path | None = None) -> dict[str, tuple[bool, int]]:
    """Every path under ``folder`` (but ``skip``) → (is a folder, size)."""
    found: dict[str, tuple[bool, int]] = {}
    for path in sorted(folder.rglob("*")):
        if skip is not None and (path == skip or skip in path.parents):
            continue
        if "__pycache__" in path.parts:
            continue
        stat = path.lstat()
        found[str(path.relative_to(folder))] = (path.is_dir(), 0 if path.is_dir() else stat.st_size)
    return found


# ---- the API on a real port ----------------------------------------------------------------


@dataclass
class LiveApi:
    """``create_app`` over a real engine (the project's own, as ``wf dev``'s child builds it),
    served on 127.0.0.1 by a background event loop."""

    project: Project
    state: ServerState
    engine: Engine
    loop: asyncio.AbstractEventLoop
    thread: threading.Thread
    runner: web.AppRunner
    port: int
    notes: dict[str, Any] = field(default_factory=dict)  # what tests keep across a module

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def run(self, coro: Any, timeout: float = 30) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        async def shutdown() -> None:
            await self.runner.cleanup()
            await self.engine.stop(grace=1.0)

        try:
            self.run(shutdown())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()


def start_live_api(config: Path) -> LiveApi:
    project = load_project(config)
    engine = project_engine(project)
    state = ServerState(
        project_name=project.name,
        workflows=project.workflows,
        version_id=engine.version_id,
        bound_host="127.0.0.1",
        port=0,
    )
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="wf-fuzz-api", daemon=True)
    thread.start()

    async def start() -> tuple[web.AppRunner, int]:
        await engine.start()
        state.engine = engine
        runner = web.AppRunner(create_app(state), access_log=None)
        await runner.setup()
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
        await web.SockSite(runner, sock).start()
        state.port = port  # the Origin check compares with the real port
        return runner, port

    runner, port = asyncio.run_coroutine_threadsafe(start(), loop).result(30)
    return LiveApi(project, state, engine, loop, thread, runner, port)


def forget_project(project: Project) -> None:
    """The project's module was imported into this process; do not leak it to other tests."""
    sys.modules.pop(MODULE, None)
    folder = str(project.main.parent)
    while folder in sys.path:
        sys.path.remove(folder)


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]  # names in lower case
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def request(
    url: str,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: Mapping[str, str | bytes] | None = None,
    timeout: float = 30,
) -> Reply:
    """One raw HTTP request: the path is sent as given (already percent-encoded), and the Host
    header is whatever ``headers`` says (http.client adds the right one otherwise)."""
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=timeout)
    try:
        given = dict(headers or {})
        skip_host = any(k.lower() == "host" for k in given)
        conn.putrequest(method, path, skip_host=skip_host, skip_accept_encoding=True)
        if body is not None:
            given.setdefault("Content-Type", "application/json")
            given["Content-Length"] = str(len(body))
        for key, value in given.items():
            conn.putheader(key, value)
        conn.endheaders(body)
        response = conn.getresponse()
        received = {k.lower(): v for k, v in response.getheaders()}
        return Reply(response.status, received, response.read())
    finally:
        conn.close()


def check_envelope(reply: Reply) -> dict[str, Any]:
    """The contract's envelope, on success and on error; returns the body."""
    assert reply.headers.get("content-type", "").startswith("application/json"), reply
    body = reply.json()
    assert isinstance(body, dict), body
    assert set(body) - {"result_info"} == {"success", "errors", "messages", "result"}, body
    assert body["messages"] == [], body
    assert isinstance(body["success"], bool)
    if reply.status < 400:
        assert body["success"] is True and body["errors"] == [], body
    else:
        assert body["success"] is False and body["result"] is None, body
        assert len(body["errors"]) == 1, body
        error = body["errors"][0]
        assert set(error) == {"code", "message"}, body
        assert isinstance(error["code"], int) and isinstance(error["message"], str), body
        assert one_line(error["message"]), body
        assert "Traceback" not in error["message"], body
    return body


def wait_until(predicate: Callable[[], Any], timeout: float = 20, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what or predicate}: last saw {last!r}")


def as_schemathesis_response(reply: Reply, method: str, url: str) -> schemathesis.Response:
    """A raw reply in the form schemathesis's checks take."""
    prepared = requests.Request(method, url).prepare()
    headers = {k: [v] for k, v in reply.headers.items()}
    return schemathesis.Response(reply.status, headers, reply.body, prepared, 0.0, True)
