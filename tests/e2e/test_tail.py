"""``wf instances tail`` as a user runs it, against a real ``wf dev``: the live stream of
``GET .../subscribe`` across a reload, the exit codes, and the drain a reload does."""

from __future__ import annotations

import functools
import json
import signal
import subprocess
import threading
import urllib.request
from pathlib import Path

import pytest

from tests.e2e.helpers import WF, DevServer, api, dev_server, wait_until, wf
from tests.e2e.serve_helpers import serving, write_project

pytestmark = pytest.mark.slow

NAME = "workflows-starter"
WORKFLOW = """
from wf import WorkflowEntrypoint


class MyWorkflow(WorkflowEntrypoint):
    async def run(self, event, step):
        await step.do("prepare", lambda: {"ready": True})
        approval = await step.wait_for_event("approval", type="approval", timeout="1 hour")
        return {"approved": approval.payload}
"""


def _project(tmp_path: Path) -> Path:
    wf("init", "proj", cwd=tmp_path)
    project = tmp_path / "proj"
    (project / "workflows.py").write_text(WORKFLOW)
    return project


def _tail(server: DevServer, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*WF, "instances", "tail", NAME, *args, "--url", server.url],
        cwd=server.project,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={"NO_COLOR": "1", "COLUMNS": "200", "PATH": "/usr/bin:/bin"},
    )


class Lines:
    """A process's stdout, read line by line in a thread (so a test can wait for one)."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        assert process.stdout is not None
        self.thread = threading.Thread(target=self._read, args=(process.stdout,))
        self.thread.start()

    def _read(self, stream: object) -> None:
        for line in stream:  # type: ignore[attr-defined]
            self.lines.append(line.rstrip("\n"))

    def saw(self, text: str) -> bool:
        return any(text in line for line in self.lines)


def _close(process: subprocess.Popen[str]) -> None:
    for stream in (process.stdout, process.stderr):
        if stream is not None:
            stream.close()


def _new_version(server: DevServer, old: str) -> str | None:
    current = server.health()["version_id"]
    return str(current) if current not in (None, old) else None


def test_tail_follows_an_instance_across_a_reload_and_exits_0_when_it_completes(
    tmp_path: Path,
) -> None:
    project = _project(tmp_path)
    with dev_server(project) as server:
        api(server.url, f"/api/workflows/{NAME}/instances", "POST", {"id": "t-1"})
        tail = _tail(server, "latest")
        lines = Lines(tail)
        # A second stream, read raw: a reload must end it (no "end" event), not wait on it.
        raw: list[str] = []
        stream = urllib.request.urlopen(
            f"{server.url}/api/workflows/{NAME}/instances/t-1/subscribe", timeout=30
        )

        def read_raw() -> None:
            with stream:
                raw.extend(line.decode() for line in stream)
            raw.append("<eof>")

        reader = threading.Thread(target=read_raw)
        reader.start()
        try:
            wait_until(lambda: lines.saw('waiting for event "approval"'), what="the wait")
            wait_until(lambda: any("event: status" in line for line in raw), what="raw stream")
            version = server.health()["version_id"]
            with (project / "workflows.py").open("a") as source:
                source.write("\n# an edit\n")
            wait_until(functools.partial(_new_version, server, version), what="reload")
            reader.join(30)
            assert raw[-1] == "<eof>" and not any("event: end" in line for line in raw)
            api(server.url, f"/api/workflows/{NAME}/instances/t-1/events/approval", "POST", {})
            assert tail.wait(30) == 0, tail.stderr.read() if tail.stderr else ""
        finally:
            if tail.poll() is None:
                tail.kill()
                tail.wait()
            lines.thread.join(10)
            reader.join(10)
            _close(tail)
        text = "\n".join(lines.lines)
        assert "started" in text and 'step "prepare-1" done' in text, text
        assert text.count('waiting for event "approval"') == 1, text  # resumed, not replayed
        assert 'received event "approval"' in text and text.endswith("✅ completed"), text
        assert all(line.split(" ")[1] == f"{NAME}/t-1" for line in lines.lines), text
        assert "still busy" not in server.output()  # the drain did not wait on the streams


def test_tail_exits_1_when_the_instance_is_terminated_and_errors_in_one_line(
    tmp_path: Path,
) -> None:
    project = _project(tmp_path)
    with dev_server(project) as server:
        api(server.url, f"/api/workflows/{NAME}/instances", "POST", {"id": "t-2"})
        tail = _tail(server, "t-2")
        lines = Lines(tail)
        try:
            wait_until(lambda: lines.saw("waiting for event"), what="the wait")
            api(
                server.url,
                f"/api/workflows/{NAME}/instances/t-2/status",
                "PATCH",
                {"status": "terminate"},
            )
            assert tail.wait(30) == 1
            assert tail.stderr is not None
            err = tail.stderr.read()
        finally:
            if tail.poll() is None:
                tail.kill()
                tail.wait()
            lines.thread.join(10)
            _close(tail)
        assert err == 'wf: instance "t-2" of workflow "workflows-starter" ended terminated\n'
        assert lines.lines[-1].endswith("🚫 terminated"), lines.lines

        # An instance that does not exist: one line, exit 1.
        missing = wf(
            "instances", "tail", NAME, "nope", "--url", server.url, check=False, cwd=project
        )
        assert missing.returncode == 1 and missing.stdout == ""
        assert missing.stderr.count("\n") == 1 and "nope" in missing.stderr, missing.stderr

        # --json: one event a line; a finished instance replays and ends at once.
        done = wf(
            "instances",
            "tail",
            NAME,
            "t-2",
            "--json",
            "--url",
            server.url,
            check=False,
            cwd=project,
        )
        events = [json.loads(line) for line in done.stdout.splitlines()]
        assert [e["event"] for e in events][-2:] == ["status", "end"] and done.returncode == 1


def test_ctrl_c_stops_tail_quietly(tmp_path: Path) -> None:
    project = _project(tmp_path)
    with dev_server(project) as server:
        api(server.url, f"/api/workflows/{NAME}/instances", "POST", {"id": "t-3"})
        tail = _tail(server, "t-3")
        lines = Lines(tail)
        try:
            wait_until(lambda: lines.saw("waiting for event"), what="the wait")
            tail.send_signal(signal.SIGINT)
            assert tail.wait(30) == 130
            assert tail.stderr is not None
            assert tail.stderr.read() == ""
        finally:
            if tail.poll() is None:
                tail.kill()
                tail.wait()
            lines.thread.join(10)
            _close(tail)


def test_tail_on_wf_serve_needs_the_token_and_a_stop_ends_the_streams(tmp_path: Path) -> None:
    home = tmp_path / "home"
    project = write_project(tmp_path / "project")
    home.mkdir()
    with serving(home) as server:
        server.deploy(project)
        server.trigger(project, "s-1", {"wait": True})
        refused = server.wf("instances", "tail", "pin", "s-1", cwd=home, token=None, check=False)
        assert refused.returncode == 1 and refused.stderr.count("\n") == 1
        assert "API token" in refused.stderr, refused.stderr
        env = {"NO_COLOR": "1", "COLUMNS": "200", "PATH": "/usr/bin:/bin"}
        tail = subprocess.Popen(
            [*WF, "instances", "tail", "pin", "s-1", "--url", server.url],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**env, "WF_API_TOKEN": server.token},
        )
        lines = Lines(tail)
        try:
            wait_until(lambda: lines.saw('waiting for event "go"'), what="the wait")
            server.go("s-1")
            assert tail.wait(30) == 0
        finally:
            if tail.poll() is None:
                tail.kill()
                tail.wait()
            lines.thread.join(10)
            _close(tail)
        assert lines.lines[-1].endswith("✅ completed"), lines.lines
        assert any('step "answer-1" done' in line for line in lines.lines), lines.lines

        # A stream still open when the server stops ends (no "end": the client may reconnect).
        server.trigger(project, "s-2", {"wait": True})
        request = urllib.request.Request(
            f"{server.url}/api/workflows/pin/instances/s-2/subscribe",
            headers={"Authorization": f"Bearer {server.token}"},
        )
        raw: list[str] = []
        with urllib.request.urlopen(request, timeout=30) as stream:
            while not raw or "event: status" not in raw[-1]:
                raw.append(stream.readline().decode())
            server.stop()
            raw.extend(line.decode() for line in stream)
        assert server.process is not None and server.process.returncode == 0
        assert not any("event: end" in line for line in raw)
        assert "Traceback" not in server.output()
