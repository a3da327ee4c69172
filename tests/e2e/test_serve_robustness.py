"""wf serve under abuse: huge messages, big secrets, a crash mid-step, hostile bundles and headers.
Each of these froze a worker, stranded an instance or ran a step twice before it was fixed."""

from __future__ import annotations

import io
import socket
import subprocess
import tarfile
from pathlib import Path

import pytest

from tests.e2e.helpers import (
    WF,
    assert_unparseable_requests_get_the_envelope,
    free_port,
    wait_until,
)
from tests.e2e.serve_helpers import Serve, serving, write_project

pytestmark = pytest.mark.slow

LOUD = """\
from wf import NonRetryableError, WorkflowEntrypoint

VERSION = "v1"


class PinWorkflow(WorkflowEntrypoint):
    async def run(self, event, step):
        def fail():
            raise NonRetryableError("x" * 5_000_000)

        try:
            await step.do("boom", fail)
        except Exception:
            pass
        return await step.do("after", lambda: VERSION)
"""

SLOW_STEP = """\
import os
import time

from wf import WorkflowEntrypoint

VERSION = "v1"


class PinWorkflow(WorkflowEntrypoint):
    async def run(self, event, step):
        def slow():
            for _ in range(20):  # a tick every 0.1 s while the body runs
                with open(event.payload["mark"], "a") as out:
                    out.write(f"{os.getpid()} {time.time()}\\n")
                time.sleep(0.1)
            return VERSION

        return await step.do("slow", slow)
"""


# Its step kills the worker process that runs it, every time.
KILLER = """\
import os

from wf import WorkflowEntrypoint

VERSION = "v1"


class PinWorkflow(WorkflowEntrypoint):
    async def run(self, event, step):
        if event.payload.get("kill"):
            await step.do("kill", {"retries": {"limit": 50, "delay": 0}}, lambda: os._exit(1))
        return await step.do("fine", lambda: VERSION)
"""


@pytest.mark.timeout(240)
def test_an_instance_that_keeps_killing_its_worker_is_errored_and_the_terminal_says_so(
    tmp_path: Path,
) -> None:
    project = write_project(tmp_path / "killer", source=KILLER)
    with serving(tmp_path) as server:
        server.deploy(project)
        server.trigger(project, "killer", {"kill": True})
        done = server.finished("killer", timeout=180)
        assert done["status"] == "errored", done
        assert "died 5 times in a row" in done["error"]["message"], done["error"]
        said = "pin/killer 💥 errored: killed its process 5 times in a row"
        wait_until(lambda: said in server.output(), what=f"the terminal to say: {said}")
        server.trigger(project, "fine", {})
        assert server.finished("fine")["output"] == "v1"


def test_a_huge_error_message_does_not_freeze_the_worker(tmp_path: Path) -> None:
    project = write_project(tmp_path / "loud", source=LOUD)
    with serving(tmp_path) as server:
        server.deploy(project)
        for n in range(3):
            server.request("POST", "/api/workflows/pin/instances", {"id": f"loud{n}"})
        for n in range(3):
            assert server.finished(f"loud{n}", timeout=60)["output"] == "v1"
        server.request("POST", "/api/workflows/pin/instances", {"id": "quiet"})
        assert server.finished("quiet")["output"] == "v1"


def test_large_secrets_still_reach_the_workers(tmp_path: Path) -> None:
    source = (
        "from wf import WorkflowEntrypoint\n\n\nclass PinWorkflow(WorkflowEntrypoint):\n"
        "    async def run(self, event, step):\n"
        "        return await step.do('size', lambda: len(self.env.BIG_0))\n"
    )
    project = write_project(tmp_path / "p", source=source)
    with serving(tmp_path) as server:
        server.deploy(project)
        for n in range(5):
            reply = server.request("PUT", f"/api/secrets/BIG_{n}", {"value": "é" * 30_000})
            assert reply.status == 200, reply.text
        server.request("POST", "/api/workflows/pin/instances", {"id": "sized"})
        assert server.finished("sized")["output"] == 30_000
        too_much = server.request("PUT", "/api/secrets/HUGE", {"value": "x" * 60_000})
        assert too_much.status in (200, 400)
        if too_much.status == 200:  # within 1 MiB in all: fine; and the workers still start
            server.request("POST", "/api/workflows/pin/instances", {"id": "after"})
            assert server.finished("after")["output"] == 30_000


def test_after_a_server_crash_a_running_step_is_never_run_twice_at_once(tmp_path: Path) -> None:
    project = write_project(tmp_path / "slow", source=SLOW_STEP)
    mark = tmp_path / "marks"
    server = Serve(tmp_path, tmp_path / "state").start()
    try:
        server.deploy(project)
        server.request(
            "POST", "/api/workflows/pin/instances", {"id": "s", "params": {"mark": str(mark)}}
        )
        wait_until(lambda: mark.exists() and mark.read_text(), what="the step to start")
        server.kill()  # the whole group: but workers run in sessions of their own
        server = Serve(tmp_path, tmp_path / "state", server.port).start()
        assert server.finished("s", timeout=30)["output"] == "v1"
    finally:
        server.stop()
        server.kill()
    ticks: dict[str, list[float]] = {}
    for line in filter(None, mark.read_text().split("\n")):
        pid, when = line.split()
        ticks.setdefault(pid, []).append(float(when))
    assert len(ticks) == 2, ticks  # cut short by the crash, then run again in the next worker
    first, second = sorted(ticks.values(), key=min)
    assert max(first) < min(second), "two workers ran the step body at the same time"


def test_a_bundle_whose_main_points_outside_it_is_refused(tmp_path: Path) -> None:
    with serving(tmp_path) as server:
        version = server.deploy(write_project(tmp_path / "ok"))
        toml = (
            f'name = "pin"\nmain = "../{version}/workflows.py"\n[[workflows]]\nname = "pin"\n'
            'binding = "PIN"\nclass_name = "PinWorkflow"\n'
        ).encode()
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
            info = tarfile.TarInfo("wf.toml")
            info.size = len(toml)
            archive.addfile(info, io.BytesIO(toml))
        reply = server.request(
            "POST",
            "/api/deploy",
            data=buffer.getvalue(),
            headers={"Content-Type": "application/gzip"},
        )
        assert reply.status == 400 and "outside the bundle" in reply.error["message"]
        assert server.bundles() == [version]


def test_a_header_that_is_not_utf8_is_a_wrong_token(tmp_path: Path) -> None:
    with serving(tmp_path) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(
                b"GET /api/workflows HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b"Authorization: Bearer \xff\xfe\r\nConnection: close\r\n\r\n"
            )
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 401"), answer[:200]
        assert "Traceback" not in server.output()


def test_requests_the_http_parser_refuses_are_answered_in_the_envelope(tmp_path: Path) -> None:
    with serving(tmp_path) as server:
        assert_unparseable_requests_get_the_envelope(server.port)
        assert server.request("GET", "/api/workflows").status == 200
        assert "Traceback" not in server.output()


def test_rotating_the_token_of_a_running_server_changes_nothing(tmp_path: Path) -> None:
    with serving(tmp_path) as server:
        before = (server.state / "token").read_text()
        second = subprocess.run(
            [
                *WF,
                "serve",
                "--port",
                str(free_port()),
                "--state",
                str(server.state),
                "--rotate-token",
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert second.returncode == 1 and "in use by another wf process" in second.stderr
        assert "API token" not in second.stdout
        assert (server.state / "token").read_text() == before
        assert server.request("GET", "/api/workflows").status == 200
