"""Run ``wf serve`` as a user runs it: its own session, a state folder, a token, real HTTP."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.e2e.helpers import WF, free_port, wait_until

DEPLOYED = re.compile(r"✨ Deployed version (\S+)")
TOKEN_LINE = re.compile(r"🔑 .*API token \(shown once; stored in (.+)\): (\S+)")
FINISHED = ("complete", "errored", "terminated")

WF_TOML = """\
name = "{name}"
main = "workflows.py"

[[workflows]]
name = "{name}"
binding = "PIN"
class_name = "{class_name}"
"""

# Sleeps for params["nap"] seconds, then answers with the module's VERSION (read when the step
# runs, so the code that runs it decides). params["mark"], a file, counts the runs of a step
# taken before the sleep: one line per run. With params["wait"], it first waits for a "go" event:
# a test that needs the instance unfinished until some point sends the event then, not a guess
# of how long the steps in between take.
PIN_WORKFLOW = """\
from pathlib import Path

from wf import WorkflowEntrypoint

VERSION = "v1"


class PinWorkflow(WorkflowEntrypoint):
    async def run(self, event, step):
        params = event.payload if isinstance(event.payload, dict) else {}

        def mark():
            if params.get("mark"):
                with open(params["mark"], "a") as out:
                    out.write("ran\\n")
            return True

        await step.do("before", mark)
        if params.get("wait"):
            await step.wait_for_event("go", type="go", timeout="1 hour")
        await step.sleep("nap", params.get("nap", 0))
        return await step.do("answer", lambda: {"version": VERSION})
"""


def write_project(
    root: Path, version: str = "v1", *, class_name: str = "PinWorkflow", source: str | None = None
) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "wf.toml").write_text(WF_TOML.format(name="pin", class_name=class_name))
    text = source if source is not None else PIN_WORKFLOW
    (root / "workflows.py").write_text(text.replace('VERSION = "v1"', f'VERSION = "{version}"'))
    return root


@dataclass
class Reply:
    status: int
    headers: Mapping[str, str]
    text: str

    @property
    def body(self) -> Any:
        return json.loads(self.text)

    @property
    def result(self) -> Any:
        body = self.body
        assert body["success"], f"{self.status}: {self.text}"
        return body["result"]

    @property
    def error(self) -> dict[str, Any]:
        errors: list[dict[str, Any]] = self.body["errors"]
        assert not self.body["success"] and len(errors) == 1, self.text
        return errors[0]


def _process_group_of(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return int(fields[2]) if fields[0] != "Z" else None  # zombies are gone already


def group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes of a process group."""
    members = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and _process_group_of(int(entry)) == pgid:
            members.append(int(entry))
    return members


def children(pid: int) -> list[int]:
    """The child processes of ``pid`` (from /proc/<pid>/task/*/children)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            found.extend(int(c) for c in (task / "children").read_text().split())
    return found


def cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


class Serve:
    """``python -m wf serve`` in its own session; the test kills its whole process group."""

    def __init__(self, home: Path, state: Path, port: int | None = None) -> None:
        self.home = home
        self.state = state
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = home / f"serve-{time.monotonic_ns()}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.token = ""

    # ---- the process ----------------------------------------------------------------------------
    def start(self, *extra: str) -> Serve:
        env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200"}
        env.pop("WF_API_TOKEN", None)
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [*WF, "serve", "--port", str(self.port), "--state", str(self.state), *extra],
                cwd=self.home,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                env=env,
            )
        # It prints its address once the token is written (and rotated, if asked).
        wait_until(self.ready, what=f"wf serve to say it is ready ({self.output()})")
        self.token = (self.state / "token").read_text().strip()
        wait_until(self.healthy, what=f"wf serve on {self.url} ({self.output()})")
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def ready(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise AssertionError(f"wf serve exited {self.process.returncode}: {self.output()}")
        return f"➜ {self.url}" in self.output()

    def healthy(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise AssertionError(f"wf serve exited {self.process.returncode}: {self.output()}")
        try:
            reply = self.request("GET", "/api/health", timeout=2)
        except OSError:
            return False
        return reply.status == 200

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def workers(self) -> dict[int, str]:
        """The server's worker processes: pid → the version whose bundle is its folder."""
        found: dict[int, str] = {}
        for child in children(self.pid):
            if "wf.server.worker" in cmdline(child):
                with contextlib.suppress(OSError):
                    found[child] = Path(os.readlink(f"/proc/{child}/cwd")).name
        return found

    def stop(self) -> None:
        """Ctrl-C, as a terminal sends it to the whole group."""
        if self.process is None or self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGINT)
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """SIGKILL the server and every worker at once (a crash of the whole machine's share)."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        self.process.wait(10)
        wait_until(lambda: not group_members(self.pid), timeout=10, what="the group to die")

    # ---- talking to it --------------------------------------------------------------------------
    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        token: str | None = "",
        data: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = 15,
    ) -> Reply:
        """One HTTP request. ``token``: "" (default) sends the server's, None sends none."""
        sent = dict(headers or {})
        if token is not None:
            sent["Authorization"] = f"Bearer {token or self.token}"
        if data is None and body is not None:
            data = json.dumps(body).encode()
            sent.setdefault("Content-Type", "application/json")
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            # If it answers (413) before reading the whole body, the answer is still there.
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                connection.request(method, path, body=data, headers=sent)
            response = connection.getresponse()
            text = response.read().decode(errors="replace")
            return Reply(response.status, dict(response.headers), text)
        finally:
            connection.close()

    def request_chunked(self, path: str, data: bytes, headers: Mapping[str, str]) -> Reply:
        """POST ``data`` with chunked transfer encoding (no Content-Length) and the token."""
        sent = {**headers, "Authorization": f"Bearer {self.token}"}
        chunks = (data[at : at + (1 << 20)] for at in range(0, len(data), 1 << 20))
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                connection.request("POST", path, body=chunks, headers=sent, encode_chunked=True)
            response = connection.getresponse()
            text = response.read().decode(errors="replace")
            return Reply(response.status, dict(response.headers), text)
        finally:
            connection.close()

    def api(self, path: str, method: str = "GET", body: Any = None) -> Any:
        return self.request(method, path, body).result

    def instance(self, instance_id: str, workflow: str = "pin") -> dict[str, Any]:
        result: dict[str, Any] = self.api(f"/api/workflows/{workflow}/instances/{instance_id}")
        return result

    def status(self, instance_id: str) -> str:
        return str(self.instance(instance_id)["status"])

    def go(self, instance_id: str) -> None:
        """Send the "go" event an instance created with ``{"wait": True}`` waits for."""
        self.api(f"/api/workflows/pin/instances/{instance_id}/events/go", "POST", {})

    def finished(self, instance_id: str, timeout: float = 20) -> dict[str, Any]:
        def done() -> dict[str, Any] | None:
            details = self.instance(instance_id)
            return details if details["status"] in FINISHED else None

        result: dict[str, Any] = wait_until(done, timeout=timeout, what=f"{instance_id} to finish")
        return result

    def versions(self, workflow: str = "pin") -> dict[str, dict[str, Any]]:
        return {v["id"]: v for v in self.api(f"/api/workflows/{workflow}/versions")}

    def bundles(self) -> list[str]:
        return sorted(os.listdir(self.state / "bundles"))

    def wf(
        self,
        *args: str,
        cwd: Path,
        token: str | None = "",
        stdin: str | None = None,
        check: bool = True,
        timeout: float = 60,
    ) -> subprocess.CompletedProcess[str]:
        """``python -m wf <args> --url <this server>`` with ``WF_API_TOKEN`` set."""
        env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200"}
        env.pop("WF_URL", None)
        env.pop("WF_API_TOKEN", None)
        if token is not None:
            env["WF_API_TOKEN"] = token or self.token
        result = subprocess.run(
            [*WF, *args, "--url", self.url],
            cwd=cwd,
            input=stdin if stdin is not None else "",
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"wf {' '.join(args)} exited {result.returncode}: {result.stderr}{result.stdout}"
            )
        return result

    def deploy(self, project: Path) -> str:
        """``wf deploy``; the version id it printed."""
        deployed = self.wf("deploy", cwd=project)
        found = DEPLOYED.search(deployed.stdout)
        assert found, deployed.stdout
        return found.group(1)

    def trigger(self, project: Path, instance_id: str, params: Mapping[str, Any]) -> None:
        triggered = self.wf("trigger", "pin", json.dumps(params), "--id", instance_id, cwd=project)
        assert f'🚀 Workflow instance "{instance_id}" has been queued' in triggered.stdout


@contextmanager
def serving(home: Path, state: Path | None = None) -> Iterator[Serve]:
    server = Serve(home, state or home / "state")
    try:
        yield server.start()
    finally:
        try:
            server.stop()
        finally:
            server.kill()  # whatever is left of the group
