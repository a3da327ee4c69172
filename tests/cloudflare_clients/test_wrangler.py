"""Cloudflare's ``wrangler`` 4.86, unmodified, runs every ``wrangler workflows`` command it has
against wf dev and wf serve (``CLOUDFLARE_API_BASE_URL=.../client/v4``): each exits 0, its output
names what wf's own CLI shows for the same instance, and the instance does what the command said
(read back with wf's own CLI). The commands: list, describe, trigger, delete, instances list,
describe (by id and "latest"), send-event, pause, resume, terminate, restart, and the hidden
terminate-all. Instances are made over HTTP where the command under test is another one."""

from __future__ import annotations

import json
import re
import socket
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cloudflare_clients.conftest import WORKFLOW, Target
from tests.cloudflare_clients.wrangler import Wrangler, install

pytestmark = pytest.mark.slow

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@pytest.fixture(scope="session")
def wrangler(tmp_path_factory: pytest.TempPathFactory) -> Wrangler:
    return install(tmp_path_factory.mktemp("wrangler-home"))


def _create(target: Target, instance_id: str, params: dict[str, Any]) -> None:
    """An instance made over wf's REST API, for the commands that act on one."""
    request = urllib.request.Request(
        f"{target.url}/api/workflows/{WORKFLOW}/instances",
        data=json.dumps({"id": instance_id, "params": params}).encode(),
        headers={"Authorization": f"Bearer {target.token}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as reply:
        assert reply.status == 201


def _waiting(target: Target, instance_id: str, **params: Any) -> None:
    _create(target, f"{instance_id}", {"wait": True, **params})
    target.wait_status(instance_id, "waiting")


def _field(output: str, label: str) -> str:
    """The value of ``Label:   value`` in wrangler's (or wf's) describe output."""
    found = re.search(rf"^\s*{re.escape(label)}:\s+(.+?)\s*$", output, re.MULTILINE)
    assert found is not None, f"no {label!r} in:\n{output}"
    return found[1]


def _row(output: str, instance_id: str) -> str:
    """The table row of ``instance_id`` in ``instances list``."""
    rows = [line for line in output.splitlines() if f" {instance_id} " in line]
    assert len(rows) == 1, f"{instance_id} in:\n{output}"
    return rows[0]


def test_workflows_list_and_describe(target: Target, wrangler: Wrangler) -> None:
    listed = wrangler.run(target, "workflows", "list")
    assert "Showing 1 workflow from page 1" in listed
    ours = target.wf("workflows", "describe", WORKFLOW)
    row = next(line for line in listed.splitlines() if f" {WORKFLOW} " in line)
    assert _field(ours, "Class Name") in row and _field(ours, "Script Name") in row

    described = wrangler.run(target, "workflows", "describe", WORKFLOW)
    assert _field(described, "Name") == WORKFLOW
    assert _field(described, "Class Name") == _field(ours, "Class Name") == "PinWorkflow"
    assert _field(described, "Script Name") == _field(ours, "Script Name")
    # "Latest Version:" then its Id: the version wf runs.
    assert _field(described.split("Latest Version:")[1], "Id") == _field(ours, "Version Id")


def test_trigger_then_instances_list_and_describe(target: Target, wrangler: Wrangler) -> None:
    waiting = f"trig-{target.kind}"
    said = wrangler.run(target, "workflows", "trigger", WORKFLOW, '{"wait": true}', "--id", waiting)
    assert f'Workflow instance "{waiting}" has been queued successfully' in said
    target.wait_status(waiting, "waiting")
    ours = target.instance(waiting)
    assert ours["params"] == {"wait": True}
    said = wrangler.run(target, "workflows", "trigger", WORKFLOW)  # no params, no id: a UUID
    found = UUID.search(said)
    assert found is not None and "has been queued successfully" in said, said
    done = found[0]
    assert target.wait_finished(done) == "complete"
    finished = target.instance(done)
    assert finished["output"] == {"version": "v1"}

    listed = wrangler.run(target, "workflows", "instances", "list", WORKFLOW)
    assert ours["versionId"] in _row(listed, waiting) and "Waiting" in _row(listed, waiting)
    assert "Completed" in _row(listed, done)
    only = wrangler.run(target, "workflows", "instances", "list", WORKFLOW, "--status", "waiting")
    assert waiting in only and done not in only

    described = wrangler.run(target, "workflows", "instances", "describe", WORKFLOW, waiting)
    assert _field(described, "Instance Id") == waiting
    assert _field(described, "Version Id") == ours["versionId"]
    assert "Waiting" in _field(described, "Status")
    names = [s["name"] for s in ours["steps"]]
    assert names == ["before-1", "go-1"]  # wf's names, as wrangler shows them
    assert [_field(part, "Name") for part in described.split("Steps:")[1].split("\n\n")[1:]] == (
        names
    )
    latest = wrangler.run(target, "workflows", "instances", "describe", WORKFLOW)  # id "latest"
    assert _field(latest, "Instance Id") == done  # the newest instance
    assert "Completed" in _field(latest, "Status")
    assert _field(latest, "Last Successful Step") == finished["steps"][-1]["name"]


def test_pause_resume_send_event(target: Target, wrangler: Wrangler) -> None:
    instance = f"ev-{target.kind}"
    _waiting(target, instance)
    said = wrangler.run(target, "workflows", "instances", "pause", WORKFLOW, instance)
    assert f'The instance "{instance}" from {WORKFLOW} was paused successfully' in said
    target.wait_status(instance, "paused")
    said = wrangler.run(target, "workflows", "instances", "resume", WORKFLOW, instance)
    assert f'The instance "{instance}" from {WORKFLOW} was resumed successfully' in said
    target.wait_status(instance, "waiting")
    said = wrangler.run(
        target, "workflows", "instances", "send-event", WORKFLOW, instance,
        "--type", "go", "--payload", '{"ok": 1}',
    )  # fmt: skip
    assert 'The event with type "go"' in said and f'to the instance "{instance}"' in said
    assert target.wait_finished(instance) == "complete"
    steps = {s["name"]: s for s in target.instance(instance)["steps"]}
    assert steps["go-1"]["output"] == {"ok": 1}  # the payload wrangler sent


def test_terminate_and_restart(target: Target, wrangler: Wrangler, tmp_path: Path) -> None:
    instance, mark = f"tr-{target.kind}", tmp_path / "runs"
    _waiting(target, instance, mark=str(mark))
    said = wrangler.run(target, "workflows", "instances", "terminate", WORKFLOW, instance)
    assert f'The instance "{instance}" from {WORKFLOW} was terminated successfully' in said
    assert target.wait_finished(instance) == "terminated"
    said = wrangler.run(target, "workflows", "instances", "restart", WORKFLOW, instance)
    assert f'The instance "{instance}" from {WORKFLOW} was restarted successfully' in said
    target.wait_status(instance, "waiting")
    assert mark.read_text() == "ran\nran\n"  # its first step ran again: a restart from scratch


def test_terminate_all(target: Target, wrangler: Wrangler) -> None:
    kept, paused = f"ta1-{target.kind}", f"ta2-{target.kind}"
    _waiting(target, kept)
    _waiting(target, paused)
    wrangler.run(target, "workflows", "instances", "pause", WORKFLOW, paused)
    target.wait_status(paused, "paused")
    said = wrangler.run(
        target, "workflows", "instances", "terminate-all", WORKFLOW, "--status", "paused"
    )
    assert f'A job to terminate instances from Workflow "{WORKFLOW}"' in said
    assert target.status(paused) == "terminated"  # done before wf answers
    assert target.status(kept) == "waiting"
    wrangler.run(target, "workflows", "instances", "terminate-all", WORKFLOW)
    assert target.status(kept) == "terminated"
    listed = target.wf("instances", "list", WORKFLOW, "--json")
    assert not [i for i in json.loads(listed) if i["status"] in ("waiting", "paused", "running")]


class _Listener:
    """A socket on 127.0.0.1 that records the first line of every connection (answering 502,
    so a client gives up rather than retries): the proxy and the npm registry wrangler is given."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.sock.settimeout(0.2)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.seen: list[str] = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(5)
                try:
                    first = conn.recv(4096).split(b"\r\n", 1)[0]
                    self.seen.append(first.decode(errors="replace"))
                    conn.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
                except OSError as exc:
                    self.seen.append(f"(connection: {exc})")

    def close(self) -> None:
        self.stopping.set()
        self.thread.join()
        self.sock.close()


@pytest.fixture
def listener() -> Iterator[_Listener]:
    made = _Listener()
    yield made
    made.close()


def test_no_traffic_but_to_wf(target: Target, wrangler: Wrangler, listener: _Listener) -> None:
    """Every proxy variable points at the listener (wrangler then sends its fetches through it;
    NO_PROXY keeps wf's loopback address direct), and so does the npm registry (wrangler's
    update check goes there directly, not through a proxy). With wrangler's three switches
    (wrangler.QUIET) the listener sees nothing; without them it sees the metrics and the update
    check, which shows it would have."""
    proxied = {
        **dict.fromkeys(("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"), listener.url),
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
    }
    quiet = wrangler.env(target) | proxied | {"npm_registry": listener.url + "/"}
    listed = wrangler.run(target, "workflows", "list", env=quiet)
    assert f" {WORKFLOW} " in listed  # it reached wf, directly
    assert listener.seen == []

    loud = wrangler.env(target, quiet=False) | proxied | {"npm_registry": listener.url + "/"}
    wrangler.run(target, "workflows", "list", env=loud)
    assert "CONNECT sparrow.cloudflare.com:443 HTTP/1.1" in listener.seen  # usage metrics
    assert "GET /wrangler HTTP/1.1" in listener.seen  # the update check


def test_delete(target: Target, wrangler: Wrangler) -> None:
    """Last: it deletes every instance of the workflow (the workflow is its code: it stays)."""
    assert json.loads(target.wf("instances", "list", WORKFLOW, "--json"))
    said = wrangler.run(target, "workflows", "delete", WORKFLOW)
    assert f'Workflow "{WORKFLOW}" removed successfully' in said
    assert "There are no instances" in target.wf("instances", "list", WORKFLOW)
