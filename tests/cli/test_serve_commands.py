"""wf deploy, wf versions, wf secret and wf instances upgrade: what they send and what they show.

The server here is a test double of ``wf serve``'s new routes only (issue 4's contract), backed by
dicts: a real aiohttp server on 127.0.0.1 (port 0) in a background thread, with the token check,
the envelope and realistic refusals (a bundle is really opened, its wf.toml read and its Python
files compiled). It checks how the client and the CLI translate requests and answers; the real
``wf serve`` is exercised by the end-to-end tests.
"""

from __future__ import annotations

import ast
import asyncio
import gzip
import hashlib
import io
import json
import os
import select
import socket
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.typedefs import Handler
from typer.testing import CliRunner

from wf import bundle as wf_bundle
from wf.bundle import format_size
from wf.cli import render
from wf.cli.main import app
from wf.client import Client, ClientError

from .conftest import unused_port
from .test_render import check_golden, rendered

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 only
    import tomli as tomllib

UTC = timezone.utc
TOKEN = "t0ken-for-tests"
MAX_BUNDLE = 32 * 1024 * 1024
MAX_SECRET = 64 * 1024
FINISHED = ("complete", "errored", "terminated")
MISSING_TOKEN = (
    "wf: the server needs an API token: pass --token or set WF_API_TOKEN "
    "(wf serve printed it when it first started)"
)

runner = CliRunner()
ENV = {"COLUMNS": "100"}


# ---- the test double of wf serve ---------------------------------------------------------------


def iso(moment: datetime) -> str:
    return (
        moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    )


class Refused(Exception):
    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@dataclass
class Version:
    id: str
    created_on: str
    workflows: list[dict[str, str]]


@dataclass
class Instance:
    workflow: str
    id: str
    version_id: str
    status: str
    created_on: str


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class FakeState:
    versions: list[Version] = field(default_factory=list)  # oldest first
    active: str | None = None
    secrets: dict[str, tuple[str, str]] = field(default_factory=dict)  # name → (value, updated)
    instances: list[Instance] = field(default_factory=list)  # oldest first
    requests: list[Recorded] = field(default_factory=list)


def envelope(result: Any, status: int = 200) -> web.Response:
    body = {"success": True, "errors": [], "messages": [], "result": result}
    return web.json_response(body, status=status)


def refusal(
    status: int, code: int, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    body = {
        "success": False,
        "errors": [{"code": code, "message": message}],
        "messages": [],
        "result": None,
    }
    return web.json_response(body, status=status, headers=headers)


class FakeServe:
    """The routes of issue 4 over in-memory state; ``requests`` records what arrived."""

    def __init__(self, token: str | None = TOKEN, max_bundle: int = MAX_BUNDLE) -> None:
        self.token = token
        self.max_bundle = max_bundle
        self.state = FakeState()
        self.url = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="fake-wf-serve", daemon=True)

    # ---- lifecycle ----
    def start(self) -> FakeServe:
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("the fake server did not start")
        if self._failure is not None:
            raise self._failure
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)
        if self._failure is not None:
            raise self._failure

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
        application = web.Application(
            middlewares=[self._errors, self._check_token], client_max_size=self.max_bundle
        )
        application.router.add_get("/api/health", self._health)
        application.router.add_post("/api/deploy", self._deploy)
        application.router.add_get("/api/workflows/{name}/versions", self._versions)
        application.router.add_get("/api/workflows/{name}/instances", self._instances)
        application.router.add_post("/api/workflows/{name}/instances/{id}/upgrade", self._upgrade)
        application.router.add_get("/api/secrets", self._secrets)
        application.router.add_put("/api/secrets/{name}", self._put_secret)
        application.router.add_delete("/api/secrets/{name}", self._delete_secret)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        app_runner = web.AppRunner(application)
        await app_runner.setup()
        try:
            await web.SockSite(app_runner, sock).start()
            self.url = f"http://127.0.0.1:{port}"
            self._ready.set()
            await self._stop.wait()
        finally:
            await app_runner.cleanup()

    # ---- seeding and reading from tests (thread-safe enough: the GIL and short critical parts)
    def add_instance(
        self, workflow: str, instance_id: str, version_id: str, status: str = "running"
    ) -> None:
        now = iso(datetime.now(UTC))
        self.state.instances.append(Instance(workflow, instance_id, version_id, status, now))

    def last(self, method: str, path_start: str) -> Recorded:
        found = [
            r for r in self.state.requests if r.method == method and r.path.startswith(path_start)
        ]
        assert found, f"no {method} {path_start} request arrived"
        return found[-1]

    # ---- middlewares ----
    @web.middleware
    async def _errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except Refused as exc:
            return refusal(exc.status, exc.code, exc.message)
        except web.HTTPRequestEntityTooLarge:
            return refusal(
                413, 10003, f"request body is too large: the limit is {self.max_bundle} bytes"
            )
        except web.HTTPNotFound:
            return refusal(404, 10007, f"no route {request.method} {request.path}")
        except web.HTTPMethodNotAllowed:
            return refusal(405, 10007, f"method {request.method} is not allowed")

    @web.middleware
    async def _check_token(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if self.token is not None:
            header = request.headers.get("Authorization")
            if header != f"Bearer {self.token}":
                problem = "missing" if header is None else "wrong"
                return refusal(
                    401,
                    10006,
                    f"{problem} API token: send Authorization: Bearer <token> "
                    "(wf: --token or WF_API_TOKEN)",
                    headers={"WWW-Authenticate": "Bearer"},
                )
        body = await request.read()
        self.state.requests.append(
            Recorded(
                request.method,
                request.path_qs,
                {k.lower(): v for k, v in request.headers.items()},
                body,
            )
        )
        return await handler(request)

    # ---- deploy and versions ----
    async def _health(self, request: web.Request) -> web.Response:
        return envelope({"status": "ok", "project": "wf serve", "version_id": self.state.active})

    async def _deploy(self, request: web.Request) -> web.Response:
        body = await request.read()
        if request.content_type != "application/gzip":
            raise Refused(
                400, 10002, f"the bundle must be application/gzip, not {request.content_type}"
            )
        announced = request.headers.get("X-WF-Bundle-Sha256")
        digest = hashlib.sha256(body).hexdigest()
        if announced is not None and announced.lower() != digest:
            raise Refused(
                400, 10008, f"the bundle's sha256 is {digest}, not {announced} as announced"
            )
        workflows = self._check_bundle(body)
        version_id = digest[:12]
        already = self.state.active == version_id
        known = next((v for v in self.state.versions if v.id == version_id), None)
        if known is None:
            known = Version(version_id, iso(datetime.now(UTC)), workflows)
            self.state.versions.append(known)
        self.state.active = version_id
        with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as archive:
            members = archive.getmembers()
        return envelope(
            {
                "version_id": version_id,
                "created_on": known.created_on,
                "workflows": workflows,
                "files": len(members),
                "size": sum(m.size for m in members),
                "already_active": already,
            },
            status=201,
        )

    def _check_bundle(self, body: bytes) -> list[dict[str, str]]:
        """What the real server refuses, checked for real on the uploaded archive."""

        def invalid(message: str) -> Refused:
            return Refused(400, 10008, message)

        try:
            with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as archive:
                sources = self._read_members(archive)
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise invalid(f"the bundle is not a gzip-compressed tar archive ({exc})") from None
        if "wf.toml" not in sources:
            raise invalid("the bundle has no wf.toml")
        try:
            config = tomllib.loads(sources["wf.toml"])
        except tomllib.TOMLDecodeError as exc:
            raise invalid(f"wf.toml: is not valid TOML: {exc}") from None
        classes: set[str] = set()
        for name, text in sources.items():
            if not name.endswith(".py"):
                continue
            try:
                tree = ast.parse(text, name)
            except SyntaxError as exc:
                raise Refused(400, 10009, f"{name}:{exc.lineno}: SyntaxError: {exc.msg}") from None
            classes.update(n.name for n in ast.walk(tree) if isinstance(n, ast.ClassDef))
        workflows = []
        for entry in config.get("workflows", []):
            if entry["class_name"] not in classes:
                raise Refused(
                    400,
                    10009,
                    f'{config["main"]}: class "{entry["class_name"]}" of workflow '
                    f'"{entry["name"]}" is not defined',
                )
            workflows.append(
                {
                    "name": entry["name"],
                    "binding": entry["binding"],
                    "class_name": entry["class_name"],
                }
            )
        return workflows

    @staticmethod
    def _read_members(archive: tarfile.TarFile) -> dict[str, str]:
        sources: dict[str, str] = {}
        for member in archive.getmembers():
            name = member.name
            if member.issym() or member.islnk():
                raise Refused(400, 10008, f'bundle entry "{name}" is a link')
            if name.startswith("/") or ".." in name.split("/"):
                raise Refused(400, 10008, f'bundle entry "{name}" points outside the project')
            if not member.isfile():
                raise Refused(400, 10008, f'bundle entry "{name}" is not a regular file')
            extracted = archive.extractfile(member)
            assert extracted is not None
            sources[name] = extracted.read().decode("utf-8")
        return sources

    def _known_workflows(self) -> list[str]:
        return sorted({w["name"] for v in self.state.versions for w in v.workflows})

    async def _versions(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        rows = []
        for version in reversed(self.state.versions):
            entry = next((w for w in version.workflows if w["name"] == name), None)
            if entry is None:
                continue
            unfinished = sum(
                1
                for i in self.state.instances
                if i.workflow == name and i.version_id == version.id and i.status not in FINISHED
            )
            active = version.id == self.state.active
            rows.append(
                {
                    "id": version.id,
                    "workflow": name,
                    "created_on": version.created_on,
                    "active": active,
                    "loaded": active or unfinished > 0,
                    "unfinished": unfinished,
                    "class_name": entry["class_name"],
                }
            )
        if not rows:
            known = ", ".join(self._known_workflows()) or "none"
            raise Refused(404, 10200, f'workflow "{name}" not found; known workflows: {known}')
        return envelope(rows)

    async def _instances(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        per_page = int(request.query.get("per_page", "25"))
        newest = [i for i in reversed(self.state.instances) if i.workflow == name]
        result = [
            {
                "id": i.id,
                "status": i.status,
                "version_id": i.version_id,
                "workflow": name,
                "created_on": i.created_on,
                "modified_on": i.created_on,
                "trigger": "api",
            }
            for i in newest[:per_page]
        ]
        return envelope(result)

    async def _upgrade(self, request: web.Request) -> web.Response:
        name, instance_id = request.match_info["name"], request.match_info["id"]
        found = next(
            (i for i in self.state.instances if i.workflow == name and i.id == instance_id), None
        )
        if found is None:
            raise Refused(404, 10400, f'instance "{instance_id}" not found in workflow "{name}"')
        if found.status in FINISHED:
            raise Refused(
                409,
                10406,
                f'instance "{instance_id}" is {found.status}; only unfinished instances move',
            )
        if found.version_id == self.state.active:
            raise Refused(
                409,
                10406,
                f'instance "{instance_id}" already runs the active version {self.state.active}',
            )
        before, found.version_id = found.version_id, str(self.state.active)
        return envelope(
            {
                "id": instance_id,
                "from_version": before,
                "to_version": found.version_id,
                "status": found.status,
            }
        )

    # ---- secrets ----
    async def _secrets(self, request: web.Request) -> web.Response:
        return envelope(
            [{"name": n, "updated_on": u} for n, (_, u) in sorted(self.state.secrets.items())]
        )

    async def _put_secret(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if not name.isidentifier() or len(name) > 64:
            raise Refused(400, 10002, f'secret name "{name}" must be a Python identifier')
        try:
            body = await request.json()
        except json.JSONDecodeError as exc:
            raise Refused(400, 10002, f"the body is not valid JSON: {exc}") from None
        if not isinstance(body, dict) or set(body) != {"value"}:
            raise Refused(400, 10002, 'the body must be {"value": "..."}')
        value = body["value"]
        if not isinstance(value, str):
            raise Refused(400, 10002, "the secret value must be a string")
        if len(value.encode("utf-8")) > MAX_SECRET:
            raise Refused(400, 10002, f"the secret value is over {MAX_SECRET} bytes")
        updated = iso(datetime.now(UTC))
        self.state.secrets[name] = (value, updated)
        return envelope({"name": name, "updated_on": updated})

    async def _delete_secret(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in self.state.secrets:
            raise Refused(404, 10404, f'secret "{name}" not found')
        del self.state.secrets[name]
        return envelope({"name": name, "deleted": True})


@pytest.fixture
def fake() -> Iterator[FakeServe]:
    server = FakeServe().start()
    try:
        yield server
    finally:
        server.stop()


# ---- a project to deploy -----------------------------------------------------------------------

WF_TOML = """\
name = "shop"
main = "workflows.py"

[[workflows]]
name = "purchase"
binding = "PURCHASE"
class_name = "Purchase"

[[workflows]]
name = "reminder"
binding = "REMINDER"
class_name = "CartReminder"
"""

WORKFLOWS_PY = """\
from wf import WorkflowEntrypoint

from helpers.prices import total


class Purchase(WorkflowEntrypoint):
    async def run(self, event, step):
        return await step.do("charge", lambda: total(event.payload))


class CartReminder(WorkflowEntrypoint):
    async def run(self, event, step):
        await step.sleep("wait", "1 hour")
"""

PRICES_PY = """\
def total(items):
    return sum(item["price"] for item in items or [])
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "shop"
    (root / "helpers").mkdir(parents=True)
    (root / "wf.toml").write_text(WF_TOML, encoding="utf-8")
    (root / "workflows.py").write_text(WORKFLOWS_PY, encoding="utf-8")
    (root / "helpers" / "__init__.py").write_text("", encoding="utf-8")
    (root / "helpers" / "prices.py").write_text(PRICES_PY, encoding="utf-8")
    monkeypatch.chdir(root)
    return root


# ---- running the CLI ---------------------------------------------------------------------------


def wf(
    server: FakeServe | None,
    *args: str,
    token: str | None = TOKEN,
    input: str | bytes | None = None,
    env: dict[str, str] | None = None,
) -> Any:
    extra = ["--url", server.url] if server is not None else []
    if token is not None:
        extra += ["--token", token]
    return runner.invoke(app, [*args, *extra], input=input, env={**ENV, **(env or {})})


def ok(result: Any) -> str:
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    assert result.stderr == ""
    out: str = result.stdout
    return out


def error_line(result: Any, code: int = 1) -> str:
    """Exactly one line on stderr, no traceback."""
    assert result.exit_code == code, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    line: str = lines[0]
    return line


def failed(result: Any, code: int = 1) -> str:
    """The error line of a command that printed nothing else."""
    line = error_line(result, code)
    assert result.stdout == ""
    return line


# ---- renderers (golden text) -------------------------------------------------------------------


def test_upload_view_golden() -> None:
    files = [
        ("wf.toml", 312),
        ("workflows.py", 3180),
        ("helpers/__init__.py", 0),
        ("helpers/prices.py", 820),
        ("data/\x1b[31mevil.py", 1_600_000),
    ]
    skipped = [("latest.json", "symlink"), ("fifo", "not a regular file")]
    check_golden("serve_upload", rendered(render.upload_view(files, skipped)))


def test_upload_view_of_one_file() -> None:
    assert rendered(render.upload_view([("wf.toml", 10)])) == (
        "Uploading 1 file (10 bytes)…\n  wf.toml  10 bytes\n"
    )


WORKFLOWS = [
    {"name": "purchase", "binding": "PURCHASE", "class_name": "Purchase"},
    {"name": "reminder", "binding": "REMINDER", "class_name": "CartReminder"},
]


def test_deployed_view_golden() -> None:
    result = {
        "version_id": "3f9c0a7e12b4",
        "created_on": "2024-10-15T13:55:31.000Z",
        "workflows": WORKFLOWS,
        "files": 4,
        "size": 4312,
        "already_active": False,
    }
    check_golden("serve_deployed", rendered(render.deployed_view(result)))


def test_deployed_view_when_already_active() -> None:
    result = {"version_id": "3f9c0a7e12b4", "workflows": WORKFLOWS, "already_active": True}
    assert rendered(render.deployed_view(result)) == "Version 3f9c0a7e12b4 is already active\n"


def test_deployed_view_without_workflows() -> None:
    result = {"version_id": "abc", "workflows": [], "already_active": False}
    assert rendered(render.deployed_view(result)) == "✨ Deployed version abc\n"


def test_versions_table_golden() -> None:
    versions = [
        {
            "id": "3f9c0a7e12b4",
            "workflow": "purchase",
            "created_on": "2024-10-15T13:55:31.000Z",
            "active": True,
            "loaded": True,
            "unfinished": 2,
            "class_name": "Purchase",
        },
        {
            "id": "91d2e5b0c6aa",
            "workflow": "purchase",
            "created_on": "2024-10-14T09:02:03.250Z",
            "active": False,
            "loaded": True,
            "unfinished": 17,
            "class_name": "Purchase",
        },
        {
            "id": "0a0b0c0d0e0f",
            "workflow": "purchase",
            "created_on": "2024-10-01T23:59:59.999Z",
            "active": False,
            "loaded": False,
            "unfinished": 0,
            "class_name": "OldPurchase",
        },
    ]
    check_golden("serve_versions", rendered(render.versions_table(versions, tz=UTC)))


def test_secrets_table_golden() -> None:
    secrets = [
        {"name": "SENDGRID_KEY", "updated_on": "2024-10-15T13:55:31.000Z"},
        {"name": "STRIPE_KEY", "updated_on": "2024-10-01T08:00:00.000Z"},
    ]
    check_golden("serve_secrets", rendered(render.secrets_table(secrets, tz=UTC)))


# ---- the client --------------------------------------------------------------------------------


def test_client_deploy_sends_the_bytes_the_type_and_the_digest(
    fake: FakeServe, project: Path
) -> None:
    data = make_bundle(
        {
            "wf.toml": WF_TOML,
            "workflows.py": WORKFLOWS_PY,
            "helpers/prices.py": PRICES_PY,
            "helpers/__init__.py": "",
        }
    )
    digest = hashlib.sha256(data).hexdigest()
    client = Client(fake.url, token=TOKEN)
    result = client.deploy(data, digest)
    assert result["version_id"] == digest[:12]
    assert result["already_active"] is False
    assert result["workflows"] == WORKFLOWS
    sent = fake.last("POST", "/api/deploy")
    assert sent.body == data
    assert sent.headers["content-type"] == "application/gzip"
    assert sent.headers["x-wf-bundle-sha256"] == digest
    assert sent.headers["authorization"] == f"Bearer {TOKEN}"
    assert client.deploy(data)["already_active"] is True
    assert "x-wf-bundle-sha256" not in fake.last("POST", "/api/deploy").headers


def test_client_deploy_refusals_carry_code_and_status(fake: FakeServe) -> None:
    client = Client(fake.url, token=TOKEN)
    with pytest.raises(ClientError) as caught:
        client.deploy(b"not a tarball", hashlib.sha256(b"not a tarball").hexdigest())
    assert caught.value.api_code == 10008
    assert caught.value.http_status == 400
    assert caught.value.message.startswith("the bundle is not a gzip-compressed tar archive")
    with pytest.raises(ClientError) as caught:
        client.deploy(b"x", "0" * 64)
    assert caught.value.api_code == 10008
    assert "sha256" in caught.value.message


def test_client_secrets_upgrade_and_versions(fake: FakeServe) -> None:
    client = Client(fake.url, token=TOKEN)
    assert client.secrets() == []
    saved = client.put_secret("API_KEY", "v4lue")
    assert saved["name"] == "API_KEY"
    assert json.loads(fake.last("PUT", "/api/secrets/API_KEY").body) == {"value": "v4lue"}
    assert [s["name"] for s in client.secrets()] == ["API_KEY"]
    assert "v4lue" not in json.dumps(client.secrets())
    assert client.delete_secret("API_KEY") == {"name": "API_KEY", "deleted": True}
    with pytest.raises(ClientError) as caught:
        client.delete_secret("API_KEY")
    assert (caught.value.api_code, caught.value.http_status) == (10404, 404)

    first = deploy_bundle(client, WORKFLOWS_PY)
    fake.add_instance("purchase", "p1", first)
    second = deploy_bundle(client, WORKFLOWS_PY + "\n# v2\n")
    versions = client.versions("purchase")
    assert [(v["id"], v["active"], v["unfinished"]) for v in versions] == [
        (second, True, 0),
        (first, False, 1),
    ]
    moved = client.upgrade("purchase", "p1")
    assert moved == {"id": "p1", "from_version": first, "to_version": second, "status": "running"}
    upgrade = fake.last("POST", "/api/workflows/purchase/instances/p1/upgrade")
    assert upgrade.body == b""


def test_client_deploy_timeout_is_generous() -> None:
    import inspect

    from wf import client as client_module

    assert client_module.DEPLOY_TIMEOUT >= 120
    default = inspect.signature(Client.deploy).parameters["timeout"].default
    assert default == client_module.DEPLOY_TIMEOUT


def test_client_deploy_says_how_long_it_waited() -> None:
    """A server that accepts the upload but never answers: the deploy's own timeout is named."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        with pytest.raises(ClientError) as caught:
            Client(url).deploy(b"x" * 10, timeout=0.3)
    assert caught.value.message == f"the wf server at {url} did not answer within 0.3 seconds"


# ---- helpers to build bundles by hand ----------------------------------------------------------


def make_bundle(files: dict[str, str], extra: list[tarfile.TarInfo] | None = None) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, text in sorted(files.items()):
            data = text.encode("utf-8")
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 0
            archive.addfile(info, io.BytesIO(data))
        for info in extra or []:
            archive.addfile(info)
    return buffer.getvalue()


def deploy_bundle(client: Client, workflows_py: str) -> str:
    data = make_bundle(
        {"wf.toml": WF_TOML, "workflows.py": workflows_py, "helpers/prices.py": PRICES_PY}
    )
    version: str = client.deploy(data, hashlib.sha256(data).hexdigest())["version_id"]
    return version


def test_the_fake_refuses_links_and_escapes(fake: FakeServe) -> None:
    """The double's refusals are real: a link or a path out of the project is refused."""
    client = Client(fake.url, token=TOKEN)
    link = tarfile.TarInfo("workflows_link.py")
    link.type = tarfile.SYMTYPE
    link.linkname = "/etc/passwd"
    with pytest.raises(ClientError, match="is a link"):
        client.deploy(make_bundle({"wf.toml": WF_TOML}, [link]))
    with pytest.raises(ClientError, match="outside the project"):
        client.deploy(make_bundle({"wf.toml": WF_TOML, "../evil.py": ""}))
    assert fake.state.active is None


# ---- wf deploy ---------------------------------------------------------------------------------


def test_deploy_uploads_the_bundle_and_shows_the_workflows(fake: FakeServe, project: Path) -> None:
    from wf.bundle import build_bundle
    from wf.project import load_project

    out = ok(wf(fake, "deploy"))
    bundle = build_bundle(load_project(project / "wf.toml"))
    sent = fake.last("POST", "/api/deploy")
    assert sent.body == bundle.data
    assert (
        sent.headers["x-wf-bundle-sha256"] == bundle.sha256 == hashlib.sha256(sent.body).hexdigest()
    )
    assert sent.headers["content-type"] == "application/gzip"
    assert gzip.decompress(sent.body)  # a gzip stream indeed
    with tarfile.open(fileobj=io.BytesIO(sent.body), mode="r:gz") as archive:
        names = set(archive.getnames())
    assert {"wf.toml", "workflows.py", "helpers/prices.py"} <= names

    files = list(bundle.files)
    total = sum(size for _, size in files)
    lines = out.splitlines()
    assert lines[0] == f"Uploading {len(files)} files ({format_size(total)})…"
    listed = lines[1 : 1 + len(files)]
    for (path, size), line in zip(files, listed, strict=True):
        assert line.startswith(f"  {path}")
        assert line.endswith(format_size(size))
    rest = "\n".join(lines[1 + len(files) :])
    version = bundle.sha256[:12]
    assert rest.startswith(f"✨ Deployed version {version}\n")
    assert "│ Name " in rest and "Binding" in rest and "Class name" in rest
    assert "│ purchase │ PURCHASE │ Purchase " in rest
    assert "│ reminder │ REMINDER │ CartReminder " in rest
    assert fake.state.active == version


def test_deploy_twice_says_the_version_is_already_active(fake: FakeServe, project: Path) -> None:
    ok(wf(fake, "deploy"))
    out = ok(wf(fake, "deploy"))
    version = str(fake.state.active)
    assert out.splitlines()[-1] == f"Version {version} is already active"
    assert "Deployed" not in out


def test_deploy_json_prints_only_the_result(fake: FakeServe, project: Path) -> None:
    out = ok(wf(fake, "deploy", "--json"))
    result = json.loads(out)
    assert result["version_id"] == fake.state.active
    assert result["workflows"] == WORKFLOWS
    assert result["already_active"] is False
    assert out.startswith('{\n  "version_id"')


def test_deploy_refused_import_is_one_line_and_changes_nothing(
    fake: FakeServe, project: Path
) -> None:
    ok(wf(fake, "deploy"))
    before = fake.state.active
    (project / "workflows.py").write_text(WORKFLOWS_PY + "\ndef broken(:\n", encoding="utf-8")
    result = wf(fake, "deploy")
    line = error_line(result)
    broken_line = WORKFLOWS_PY.count("\n") + 2
    assert line == f"wf: workflows.py:{broken_line}: SyntaxError: invalid syntax"
    assert result.stdout == ""  # found before anything was uploaded
    assert fake.state.active == before


def test_deploy_missing_class_is_refused(fake: FakeServe, project: Path) -> None:
    (project / "workflows.py").write_text(
        WORKFLOWS_PY.replace("class CartReminder", "class Reminder"), encoding="utf-8"
    )
    line = error_line(wf(fake, "deploy"))
    assert line == 'wf: workflows.py: class "CartReminder" of workflow "reminder" is not defined'
    assert fake.state.active is None


def test_deploy_too_large_is_the_servers_line(project: Path) -> None:
    small = FakeServe(max_bundle=64).start()
    try:
        line = error_line(wf(small, "deploy"))
    finally:
        small.stop()
    assert line == "wf: request body is too large: the limit is 64 bytes"


def test_deploy_without_a_token(fake: FakeServe, project: Path) -> None:
    result = wf(fake, "deploy", token=None)
    assert error_line(result) == MISSING_TOKEN
    assert fake.state.active is None


def test_deploy_with_a_wrong_token_shows_the_servers_line(fake: FakeServe, project: Path) -> None:
    line = error_line(wf(fake, "deploy", token="nope"))
    assert line.startswith("wf: wrong API token")


def test_deploy_checks_the_token_before_building_or_uploading(
    fake: FakeServe, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    built: list[object] = []
    real_build = wf_bundle.build_bundle

    def build(project: Any) -> Any:
        built.append(project)
        return real_build(project)

    monkeypatch.setattr(wf_bundle, "build_bundle", build)
    result = wf(fake, "deploy", token="nope")
    assert failed(result).startswith("wf: wrong API token")  # and nothing on stdout
    assert built == [] and fake.state.active is None
    ok(wf(fake, "deploy"))
    assert len(built) == 1


def test_deploy_token_and_url_from_the_environment(fake: FakeServe, project: Path) -> None:
    result = wf(None, "deploy", token=None, env={"WF_URL": fake.url, "WF_API_TOKEN": TOKEN})
    ok(result)
    assert fake.state.active is not None


def test_deploy_defaults_to_wf_serves_address(
    fake: FakeServe, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # wf.toml's [dev] address is wf dev's: deploy goes to wf serve's default (8788, here the
    # double's address) unless --url or WF_URL says otherwise.
    (project / "wf.toml").write_text(WF_TOML + "\n[dev]\nport = 9\n", encoding="utf-8")
    monkeypatch.setattr("wf.cli.options.SERVE_URL", fake.url)
    ok(wf(None, "deploy"))
    assert fake.state.active is not None


def test_deploy_no_server(project: Path) -> None:
    url = f"http://127.0.0.1:{unused_port()}"
    line = error_line(wf(None, "deploy", "--url", url))
    assert line == f"wf: no wf server at {url}; start one with wf serve"


def test_deploy_outside_a_project(fake: FakeServe, tmp_path: Path) -> None:
    line = failed(wf(fake, "deploy"))
    assert line == (
        f"wf: no wf.toml in {Path.cwd()} or its parents; create a project with `wf init`"
    )
    assert fake.state.requests == []


def test_deploy_invalid_wf_toml_is_one_line(fake: FakeServe, project: Path) -> None:
    (project / "wf.toml").write_text(WF_TOML.replace('main = "workflows.py"', 'main = "nope.py"'))
    line = failed(wf(fake, "deploy"))
    assert line.startswith("wf: ") and "main" in line
    assert fake.state.requests == []


def test_deploy_against_wf_dev_says_it_needs_wf_serve(project: Path) -> None:
    from .conftest import LiveServer

    # wf dev's API has no /api/deploy: its 404 says which server this command needs.
    live = LiveServer(project.parent / "dev.db").start()
    try:
        line = error_line(wf(None, "deploy", "--url", live.url, token=None))
    finally:
        live.stop()
    assert line == (
        f"wf: the server at {live.url} has no such route; is it wf dev? this command needs wf serve"
    )


# ---- wf versions list --------------------------------------------------------------------------


def test_versions_list(fake: FakeServe) -> None:
    client = Client(fake.url, token=TOKEN)
    first = deploy_bundle(client, WORKFLOWS_PY)
    fake.add_instance("purchase", "a", first)
    fake.add_instance("purchase", "b", first, status="complete")
    second = deploy_bundle(client, WORKFLOWS_PY + "# v2\n")
    out = ok(wf(fake, "versions", "list", "purchase"))
    lines = out.splitlines()
    assert lines[0] == 'Showing 2 versions of workflow "purchase", newest first:'
    header = lines[2]
    for column in ("Version Id", "Created", "Active", "Loaded", "Unfinished"):
        assert column in header
    rows = [line for line in lines if line.startswith("│ ") and "Version Id" not in line]
    assert rows[0].startswith(f"│ {second} ") and "✅ Yes" in rows[0]
    assert rows[0].rstrip().endswith("0 │")
    assert rows[1].startswith(f"│ {first} ") and "✅" not in rows[1]
    assert rows[1].rstrip().endswith("1 │")


def test_versions_list_json(fake: FakeServe) -> None:
    version = deploy_bundle(Client(fake.url, token=TOKEN), WORKFLOWS_PY)
    result = json.loads(ok(wf(fake, "versions", "list", "reminder", "--json")))
    assert [(v["id"], v["workflow"], v["active"], v["class_name"]) for v in result] == [
        (version, "reminder", True, "CartReminder")
    ]


def test_versions_list_unknown_workflow(fake: FakeServe) -> None:
    deploy_bundle(Client(fake.url, token=TOKEN), WORKFLOWS_PY)
    line = failed(wf(fake, "versions", "list", "nope"))
    assert line == 'wf: workflow "nope" not found; known workflows: purchase, reminder'


def test_versions_list_without_a_token(fake: FakeServe) -> None:
    assert failed(wf(fake, "versions", "list", "purchase", token=None)) == MISSING_TOKEN


# ---- wf instances upgrade ----------------------------------------------------------------------


def test_instances_upgrade(fake: FakeServe) -> None:
    client = Client(fake.url, token=TOKEN)
    first = deploy_bundle(client, WORKFLOWS_PY)
    fake.add_instance("purchase", "order-1", first, status="waiting")
    second = deploy_bundle(client, WORKFLOWS_PY + "# v2\n")
    out = ok(wf(fake, "instances", "upgrade", "purchase", "order-1"))
    assert out == (
        f'⬆️ The instance "order-1" from purchase was moved from version {first} to {second}\n'
    )
    assert fake.state.instances[0].version_id == second


def test_instances_upgrade_latest(fake: FakeServe) -> None:
    client = Client(fake.url, token=TOKEN)
    first = deploy_bundle(client, WORKFLOWS_PY)
    fake.add_instance("purchase", "older", first)
    fake.add_instance("purchase", "newer", first)
    second = deploy_bundle(client, WORKFLOWS_PY + "# v2\n")
    out = ok(wf(fake, "instances", "upgrade", "purchase", "latest"))
    assert out.startswith('⬆️ The instance "newer" from purchase was moved')
    assert [(i.id, i.version_id) for i in fake.state.instances] == [
        ("older", first),
        ("newer", second),
    ]
    assert fake.last("GET", "/api/workflows/purchase/instances").path.endswith("per_page=1")


def test_instances_upgrade_latest_without_instances(fake: FakeServe) -> None:
    line = failed(wf(fake, "instances", "upgrade", "purchase", "latest"))
    assert line == (
        'wf: there are no instances in workflow "purchase"; trigger one with: wf trigger purchase'
    )


def test_instances_upgrade_refusals(fake: FakeServe) -> None:
    client = Client(fake.url, token=TOKEN)
    first = deploy_bundle(client, WORKFLOWS_PY)
    fake.add_instance("purchase", "current", first)
    deploy_bundle(client, WORKFLOWS_PY + "# v2\n")
    fake.add_instance("purchase", "done", first, status="complete")
    line = failed(wf(fake, "instances", "upgrade", "purchase", "done"))
    assert line == 'wf: instance "done" is complete; only unfinished instances move'
    ok(wf(fake, "instances", "upgrade", "purchase", "current"))
    line = failed(wf(fake, "instances", "upgrade", "purchase", "current"))
    assert line.startswith('wf: instance "current" already runs the active version')
    line = failed(wf(fake, "instances", "upgrade", "purchase", "ghost"))
    assert line == 'wf: instance "ghost" not found in workflow "purchase"'


def test_instances_upgrade_json(fake: FakeServe) -> None:
    client = Client(fake.url, token=TOKEN)
    first = deploy_bundle(client, WORKFLOWS_PY)
    fake.add_instance("purchase", "x", first)
    second = deploy_bundle(client, WORKFLOWS_PY + "# v2\n")
    result = json.loads(ok(wf(fake, "instances", "upgrade", "purchase", "x", "--json")))
    assert result == {"id": "x", "from_version": first, "to_version": second, "status": "running"}


def test_instances_upgrade_without_a_token(fake: FakeServe) -> None:
    line = failed(wf(fake, "instances", "upgrade", "purchase", "x", token=None))
    assert line == MISSING_TOKEN


# ---- wf secret ---------------------------------------------------------------------------------


def test_secret_put_reads_stdin_and_never_echoes_the_value(fake: FakeServe) -> None:
    result = wf(fake, "secret", "put", "STRIPE_KEY", input="sk_live_s3cr3t\n")
    out = ok(result)
    assert out == '✨ Secret "STRIPE_KEY" saved\n'
    assert "sk_live_s3cr3t" not in result.output
    assert fake.state.secrets["STRIPE_KEY"][0] == "sk_live_s3cr3t"


def test_secret_put_strips_one_trailing_newline_only(fake: FakeServe) -> None:
    ok(wf(fake, "secret", "put", "PEM", input="line one\nline two\n\n"))
    assert fake.state.secrets["PEM"][0] == "line one\nline two\n"
    ok(wf(fake, "secret", "put", "SPACED", input="  padded  "))
    assert fake.state.secrets["SPACED"][0] == "  padded  "
    ok(wf(fake, "secret", "put", "WINDOWS", input="value\r\n"))
    assert fake.state.secrets["WINDOWS"][0] == "value"


def test_secret_put_replaces_a_value(fake: FakeServe) -> None:
    ok(wf(fake, "secret", "put", "KEY", input="one"))
    ok(wf(fake, "secret", "put", "KEY", input="two"))
    assert fake.state.secrets["KEY"][0] == "two"


def test_secret_put_refuses_an_empty_value(fake: FakeServe) -> None:
    for empty in ("", "\n"):
        line = failed(wf(fake, "secret", "put", "KEY", input=empty))
        assert (
            line
            == 'wf: the secret value is empty; pipe it in: printf %s "$VALUE" | wf secret put KEY'
        )
    assert fake.state.secrets == {}
    assert fake.state.requests == []


def test_secret_put_refuses_a_bad_name_before_reading(fake: FakeServe) -> None:
    line = failed(wf(fake, "secret", "put", "not-an-identifier", input="value"))
    assert line == (
        'wf: "not-an-identifier" is not a valid secret name: use a Python identifier of at most '
        "64 characters, such as STRIPE_KEY"
    )
    for bad in ("K" * 65, "café", "1KEY", ""):
        assert failed(wf(fake, "secret", "put", bad, input="value")).startswith(f'wf: "{bad}"')
    assert fake.state.requests == []
    ok(wf(fake, "secret", "put", "K" * 64, input="value"))
    assert list(fake.state.secrets) == ["K" * 64]


def test_secret_put_value_too_large_does_not_echo_it(fake: FakeServe) -> None:
    value = "v" * (MAX_SECRET + 1)
    result = wf(fake, "secret", "put", "BIG", input=value)
    line = failed(result)
    assert line == f"wf: the secret value is over {MAX_SECRET} bytes"
    assert "vvvv" not in result.output


def test_secret_put_not_utf8(fake: FakeServe) -> None:
    line = failed(wf(fake, "secret", "put", "BIN", input=b"\xff\xfe\x00"))
    assert line == "wf: the secret value on stdin is not UTF-8 text"


def test_secret_put_json(fake: FakeServe) -> None:
    result = wf(fake, "secret", "put", "KEY", "--json", input="hush")
    out = ok(result)
    saved = json.loads(out)
    assert saved["name"] == "KEY"
    assert set(saved) == {"name", "updated_on"}
    assert "hush" not in result.output


def test_secret_list_and_delete(fake: FakeServe) -> None:
    assert ok(wf(fake, "secret", "list")) == (
        'There are no secrets. Add one with "wf secret put NAME"\n'
    )
    ok(wf(fake, "secret", "put", "B_KEY", input="bbb"))
    ok(wf(fake, "secret", "put", "A_KEY", input="aaa"))
    out = ok(wf(fake, "secret", "list"))
    lines = out.splitlines()
    assert lines[0] == "Showing 2 secrets:"
    assert "│ Name " in lines[2] and "Updated" in lines[2]
    names = [line.split("│")[1].strip() for line in lines[4:-1]]
    assert names == ["A_KEY", "B_KEY"]
    assert "aaa" not in out and "bbb" not in out
    listed = json.loads(ok(wf(fake, "secret", "list", "--json")))
    assert [s["name"] for s in listed] == ["A_KEY", "B_KEY"]
    assert all(set(s) == {"name", "updated_on"} for s in listed)

    assert ok(wf(fake, "secret", "delete", "A_KEY")) == '✨ Secret "A_KEY" deleted\n'
    assert list(fake.state.secrets) == ["B_KEY"]
    deleted = json.loads(ok(wf(fake, "secret", "delete", "B_KEY", "--json")))
    assert deleted == {"name": "B_KEY", "deleted": True}
    line = failed(wf(fake, "secret", "delete", "B_KEY"))
    assert line == 'wf: secret "B_KEY" not found'


def test_secret_commands_without_a_token(fake: FakeServe) -> None:
    assert failed(wf(fake, "secret", "list", token=None)) == MISSING_TOKEN
    assert failed(wf(fake, "secret", "put", "K", input="v", token=None)) == MISSING_TOKEN
    assert failed(wf(fake, "secret", "delete", "K", token=None)) == MISSING_TOKEN
    assert fake.state.secrets == {}


def test_secret_no_server() -> None:
    url = f"http://127.0.0.1:{unused_port()}"
    line = failed(wf(None, "secret", "list", "--url", url))
    assert line == f"wf: no wf server at {url}; start one with wf serve"


def test_serve_commands_default_to_port_8788() -> None:
    from wf.cli.options import SERVE_URL, make_serve_client

    assert SERVE_URL == "http://127.0.0.1:8788"
    assert make_serve_client(None, None).url == SERVE_URL
    assert make_serve_client("  ", None).url == SERVE_URL
    assert make_serve_client("http://10.0.0.2:9000/", "t").url == "http://10.0.0.2:9000"


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="needs a pseudo-terminal")
def test_secret_put_on_a_terminal_prompts_without_echo(fake: FakeServe, tmp_path: Path) -> None:
    """A real terminal: the value is asked for with a hidden prompt and never shown."""
    main, secondary = os.openpty()
    prelude = (
        "import fcntl, sys, termios; fcntl.ioctl(0, termios.TIOCSCTTY, 0); "
        "from wf.cli.main import main; sys.argv[0] = 'wf'; main()"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("WF_")}
    env.update(COLUMNS="100", PYTHONIOENCODING="utf-8")
    process = subprocess.Popen(
        [sys.executable, "-c", prelude, "secret", "put", "TTY_KEY", "--url", fake.url],
        stdin=secondary,
        stdout=secondary,
        stderr=secondary,
        env={**env, "WF_API_TOKEN": TOKEN},
        start_new_session=True,
        cwd=tmp_path,
    )
    os.close(secondary)
    seen = b""
    try:
        # getpass writes the space after the colon once echo is off: type only then.
        seen = read_until(main, b": ", seen)
        os.write(main, b"typed-s3cret\n")
        seen = read_until(main, b"saved", seen)
        assert process.wait(30) == 0, seen
        seen += drain(main)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
        os.close(main)
    text = seen.decode("utf-8", "replace")
    assert 'Enter the value of secret "TTY_KEY"' in text
    assert "typed-s3cret" not in text
    assert '✨ Secret "TTY_KEY" saved' in text
    assert fake.state.secrets["TTY_KEY"][0] == "typed-s3cret"


def read_until(fd: int, marker: bytes, seen: bytes, timeout: float = 30) -> bytes:
    deadline = time.monotonic() + timeout
    while marker not in seen:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"waited for {marker!r}; got {seen!r}")
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
    return seen


def drain(fd: int) -> bytes:
    got = b""
    while select.select([fd], [], [], 0.2)[0]:
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        got += chunk
    return got
