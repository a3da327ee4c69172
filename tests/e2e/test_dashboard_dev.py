"""The dashboard in a real ``wf dev``: its address in the banner, its pages over loopback, and a
form POST (with the page's own Origin) that terminates an instance."""

from __future__ import annotations

import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from tests.e2e.helpers import api, dev_server, wait_until, wf

pytestmark = pytest.mark.slow

WORKFLOW = """
from wf import WorkflowEntrypoint


class MyWorkflow(WorkflowEntrypoint):
    async def run(self, event, step):
        await step.wait_for_event("approval", type="approval", timeout="1 hour")
"""


def get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return resp.status, resp.read().decode()


def test_wf_dev_serves_the_dashboard(tmp_path: Path) -> None:
    wf("init", "proj", cwd=tmp_path)
    project = tmp_path / "proj"
    (project / "workflows.py").write_text(WORKFLOW)
    with dev_server(project) as server:
        assert f"➜ Dashboard: {server.url}/" in server.output()
        status, home = get(server.url + "/")
        assert status == 200
        assert 'href="/w/workflows-starter"' in home

        api(server.url, "/api/workflows/workflows-starter/instances", "POST", {"id": "one"})
        path = "/api/workflows/workflows-starter/instances/one"
        wait_until(lambda: api(server.url, path)["status"] == "waiting", what="one waits")
        status, detail = get(server.url + "/w/workflows-starter/i/one")
        assert status == 200 and 'data-testid="step-event-type">approval<' in detail

        form = urllib.request.Request(
            server.url + "/w/workflows-starter/i/one/terminate",
            data=urllib.parse.urlencode({}).encode(),
            headers={"Origin": server.url},
            method="POST",
        )
        with urllib.request.urlopen(form, timeout=10) as resp:  # follows the 303 back
            assert resp.status == 200
            assert resp.url.endswith("/w/workflows-starter/i/one?done=terminate")
        wait_until(lambda: api(server.url, path)["status"] == "terminated", what="terminated")
