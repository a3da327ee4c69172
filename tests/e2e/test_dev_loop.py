"""The whole loop as a user lives it: init, dev, trigger, send an event, edit and reload, crash."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import signal
import sqlite3
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.e2e.helpers import (
    WF,
    DevServer,
    api,
    assert_unparseable_requests_get_the_envelope,
    dev_server,
    free_port,
    wait_until,
    wf,
)

pytestmark = pytest.mark.slow

WORKFLOW = """
from wf import WorkflowEntrypoint

VERSION = "v1"


class MyWorkflow(WorkflowEntrypoint):
    async def run(self, event, step):
        approval = await step.wait_for_event("approval", type="approval", timeout="1 hour")
        await step.sleep("cool down", event.payload.get("cool", 0))
        return {"version": VERSION, "approved": approval.payload}
"""


def status(url: str, instance_id: str) -> str:
    details = api(url, f"/api/workflows/workflows-starter/instances/{instance_id}")
    return str(details["status"])


def step_names(url: str, instance_id: str) -> list[str]:
    details = api(url, f"/api/workflows/workflows-starter/instances/{instance_id}")
    return [s["name"] for s in details["steps"]]


def test_init_dev_trigger_event_reload_crash_and_recover(tmp_path: Path) -> None:
    created = wf("init", "proj", cwd=tmp_path)
    project = tmp_path / "proj"
    assert (project / "wf.toml").is_file(), created.stdout
    (project / "workflows.py").write_text(WORKFLOW)
    port = free_port()
    server = DevServer(project, port).start()
    try:
        url = server.url
        first_version = server.health()["version_id"]
        triggered = wf(
            "trigger",
            "workflows-starter",
            '{"cool": 6}',
            "--id",
            "first",
            "--url",
            url,
            cwd=project,
        )
        assert '🚀 Workflow instance "first" has been queued successfully' in triggered.stdout
        wait_until(lambda: status(url, "first") == "waiting", what="first waits for its event")

        # Edit the module: the reload serves the new code; first waits on, for its event.
        (project / "workflows.py").write_text(WORKFLOW.replace('"v1"', '"v2"'))
        wait_until(
            lambda: server.health()["version_id"] not in (None, first_version),
            what="the reload with the edited module",
        )
        wf("trigger", "workflows-starter", "--id", "second", "--url", url, cwd=project)
        wf(
            "instances",
            "send-event",
            "workflows-starter",
            "second",
            "--type",
            "approval",
            "--url",
            url,
            cwd=project,
        )
        wait_until(lambda: status(url, "second") == "complete", what="second completes")
        second = api(url, "/api/workflows/workflows-starter/instances/second")
        assert second["output"] == {"version": "v2", "approved": {}}
        assert status(url, "first") == "waiting"  # still waiting for its event

        sent = wf(
            "instances",
            "send-event",
            "workflows-starter",
            "first",
            "--type",
            "approval",
            "--payload",
            '{"ok": true}',
            "--url",
            url,
            cwd=project,
        )
        assert '📤 The event with type "approval"' in sent.stdout
        wait_until(lambda: "cool down-1" in step_names(url, "first"), what="first sleeps")

        # Crash the whole server (supervisor and child) mid-sleep, then start it again.
        server.kill()
        server = DevServer(project, port).start()
        wait_until(lambda: status(url, "first") == "complete", what="first completes after restart")
        first = api(url, "/api/workflows/workflows-starter/instances/first")
        assert first["output"] == {"version": "v2", "approved": {"ok": True}}
        assert first["versionId"] == first_version  # it records the version it was created under
        described = wf(
            "instances", "describe", "workflows-starter", "first", "--url", url, cwd=project
        )
        assert "Completed" in described.stdout and "cool down-1" in described.stdout
    finally:
        server.stop()
        server.kill()


def test_no_request_fails_while_the_server_reloads(tmp_path: Path) -> None:
    wf("init", "proj", cwd=tmp_path)
    project = tmp_path / "proj"
    with dev_server(project) as server:
        failures: list[str] = []
        served: list[None] = []  # one item per answer (list.append is atomic)
        stop = threading.Event()

        def poll() -> None:
            while not stop.is_set():
                try:
                    with urllib.request.urlopen(
                        server.url + "/api/workflows/workflows-starter/instances", timeout=30
                    ) as response:
                        json.load(response)
                        served.append(None)
                except (OSError, ValueError) as exc:
                    failures.append(repr(exc))

        def serve_more(count: int) -> None:
            """Wait until the pollers have had ``count`` more answers (or a failure)."""
            target = len(served) + count
            wait_until(lambda: len(served) >= target or failures, what=f"{count} answers")

        pollers = [threading.Thread(target=poll) for _ in range(3)]
        for poller in pollers:
            poller.start()
        try:
            version = server.health()["version_id"]
            for n in range(3):
                serve_more(20)  # from the child serving now, then it is replaced
                with (project / "workflows.py").open("a") as source:
                    source.write(f"\n# edit {n}\n")
                version = wait_until(
                    functools.partial(_new_version, server, version), what="reload"
                )
            serve_more(20)
        finally:
            stop.set()
            for poller in pollers:
                poller.join(30)
        assert failures == []
        assert len(served) >= 80
        assert server.output().count("reloaded after changes to workflows.py") >= 3


def _new_version(server: DevServer, old: str) -> str | None:
    current = server.health()["version_id"]
    return str(current) if current not in (None, old) else None


def _hibernated(project: Path, instance_id: str) -> bool:
    """Waiting with nothing in memory: its row changes no more until something wakes it."""
    with contextlib.closing(sqlite3.connect(project / ".wf" / "wf.db")) as conn:
        row = conn.execute(
            "SELECT status, owner FROM instances WHERE id = ?", (instance_id,)
        ).fetchone()
    return bool(row == ("waiting", None))


def _without_workflow_versions(text: str) -> list[dict[str, object]]:
    """``wf workflows list --json``, less each workflow's version_id (the running code's: there
    is none while the module is broken)."""
    workflows: list[dict[str, object]] = json.loads(text)
    return [{k: v for k, v in w.items() if k != "version_id"} for w in workflows]


def test_a_broken_module_keeps_its_history_readable_until_it_is_fixed(tmp_path: Path) -> None:
    """A user breaks workflows.py: ``wf instances list / describe`` and ``wf workflows list``
    still show what ran, exactly as before; what needs the code says which line is wrong."""
    wf("init", "proj", cwd=tmp_path)
    project = tmp_path / "proj"
    source = project / "workflows.py"
    source.write_text(WORKFLOW)
    name = "workflows-starter"
    with dev_server(project) as server:
        url = ("--url", server.url)
        wf("trigger", name, '{"cool": 0}', "--id", "done", *url, cwd=project)
        wf("instances", "send-event", name, "done", "--type", "approval", *url, cwd=project)
        wf("trigger", name, "--id", "waiting", *url, cwd=project)
        wait_until(lambda: status(server.url, "done") == "complete", what="done completes")
        wait_until(lambda: _hibernated(project, "waiting"), what="waiting hibernates")
        reads = [
            ("instances", "list", name, "--json"),
            ("instances", "list", name, "--status", "complete", "--json"),
            ("instances", "describe", name, "done", "--json"),
            ("instances", "describe", name, "latest", "--json"),
        ]
        before = {r: wf(*r, *url, cwd=project).stdout for r in reads}
        workflows_before = wf("workflows", "list", "--json", *url, cwd=project).stdout

        source.write_text(WORKFLOW + "\ndef broken(:\n")
        wait_until(lambda: server.health()["status"] == "error", what="the broken module")
        line = f"workflows.py:{WORKFLOW.count(chr(10)) + 2}: SyntaxError: invalid syntax"
        assert server.health()["error"] == line
        said = "without the project's code: fix the error above and save"
        wait_until(lambda: said in server.output(), what="the terminal to say the reload is broken")

        for read in reads:
            assert wf(*read, *url, cwd=project).stdout == before[read], read
        workflows_after = wf("workflows", "list", "--json", *url, cwd=project).stdout
        assert _without_workflow_versions(workflows_after) == _without_workflow_versions(
            workflows_before
        )
        assert [w["version_id"] for w in json.loads(workflows_after)] == [None]
        shown = wf("instances", "describe", name, "done", *url, cwd=project).stdout
        assert "done" in shown and "approval-1" in shown
        listed = wf("instances", "list", name, *url, cwd=project).stdout
        assert "done" in listed and "waiting" in listed
        assert api(server.url, f"/api/workflows/{name}/instances/done") == json.loads(
            before[reads[2]]
        )

        for needs_code in (
            ("trigger", name, "--id", "refused"),
            ("instances", "send-event", name, "waiting", "--type", "approval"),
            ("instances", "terminate", name, "waiting"),
        ):
            refused = wf(*needs_code, *url, cwd=project, check=False)
            assert (refused.returncode, refused.stderr) == (1, f"wf: {line}\n"), needs_code
        refused_json = api(server.url, f"/api/workflows/{name}/instances", "POST", {})
        assert refused_json["errors"] == [{"code": 10004, "message": line}]

        source.write_text(WORKFLOW)  # fixed: the engine starts, the reads did not hold it up
        wait_until(server.healthy, what="the fixed module")
        wf("instances", "send-event", name, "waiting", "--type", "approval", *url, cwd=project)
        wait_until(lambda: status(server.url, "waiting") == "complete", what="waiting completes")
        assert (
            api(server.url, f"/api/workflows/{name}/instances/refused")["errors"][0]["code"]
            == 10400
        )


def test_ctrl_c_stops_the_server_within_seconds(tmp_path: Path) -> None:
    wf("init", "proj", cwd=tmp_path)
    project = tmp_path / "proj"
    server = DevServer(project, free_port()).start()
    try:
        started = time.monotonic()
        server.signal(2)  # SIGINT to the process group, as a terminal's Ctrl-C does
        assert server.process is not None
        server.process.wait(10)
        assert time.monotonic() - started < 8
        with pytest.raises(urllib.error.URLError):
            urllib.request.urlopen(server.url + "/api/health", timeout=2)
    finally:
        server.kill()


def test_foreign_host_headers_and_unparseable_requests_are_refused(tmp_path: Path) -> None:
    wf("init", "proj", cwd=tmp_path)
    with dev_server(tmp_path / "proj") as server:
        request = urllib.request.Request(
            server.url + "/api/workflows", headers={"Host": "evil.example:8787"}
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=5)
        assert refused.value.code == 403
        body = json.load(refused.value)
        assert body["errors"][0]["code"] == 10005
        assert_unparseable_requests_get_the_envelope(server.port)
        assert "Traceback" not in server.output()


def test_the_state_folder_is_private_and_wide_binds_are_warned_about(tmp_path: Path) -> None:
    wf("init", "proj", cwd=tmp_path)
    project = tmp_path / "proj"
    (project / ".wf").mkdir(mode=0o755)  # made earlier, too open: tightened on start
    with dev_server(project) as server:
        assert server.healthy()
        assert (project / ".wf").stat().st_mode & 0o777 == 0o700
    assert "warning" not in server.output()
    wide = DevServer(project, free_port())
    env = {**os.environ, "NO_COLOR": "1"}
    process = subprocess.Popen(
        [*WF, "dev", "--port", str(wide.port), "--host", "0.0.0.0"],
        cwd=project,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        start_new_session=True,
        env=env,
    )
    try:
        wait_until(wide.healthy, what="wf dev on 0.0.0.0")
    finally:
        os.killpg(process.pid, signal.SIGINT)
        _, err = process.communicate(timeout=15)
    assert "warning: listening on 0.0.0.0" in err.decode()
