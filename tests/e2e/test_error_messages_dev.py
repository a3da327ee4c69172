"""Odd and huge errors as a user of ``wf dev`` meets them: in the terminal, in ``describe``."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.helpers import api, dev_server, wait_until, wf

pytestmark = pytest.mark.slow

WORKFLOW = """
from wf import WorkflowEntrypoint


class Unprintable(Exception):
    def __str__(self):
        raise RuntimeError("no text for you")


class MyWorkflow(WorkflowEntrypoint):
    async def run(self, event, step):
        if event.payload.get("unprintable"):
            raise Unprintable()

        def shout():
            raise ValueError("x" * 2_000_000)

        await step.do("shout", {"retries": {"limit": 0, "delay": 0}}, shout)
"""

MARKER = " … [truncated, 2,000,000 characters in all]"


def details(url: str, instance_id: str) -> dict[str, object]:
    found: dict[str, object] = api(url, f"/api/workflows/workflows-starter/instances/{instance_id}")
    return found


def test_huge_and_unprintable_errors_in_the_terminal_and_describe(tmp_path: Path) -> None:
    wf("init", "proj", cwd=tmp_path)
    project = tmp_path / "proj"
    (project / "workflows.py").write_text(WORKFLOW)
    with dev_server(project) as server:
        url = ["--url", server.url]
        wf("trigger", "workflows-starter", "--id", "loud", *url, cwd=project)
        wf(
            "trigger",
            "workflows-starter",
            '{"unprintable": true}',
            "--id",
            "odd",
            *url,
            cwd=project,
        )
        for instance_id in ("loud", "odd"):
            wait_until(
                lambda i=instance_id: details(server.url, i)["status"] == "errored",  # type: ignore[misc]
                what=f"{instance_id} errored",
            )
        assert details(server.url, "odd")["error"] == {
            "name": "Unprintable",
            "message": "Unprintable",
        }
        described = wf("instances", "describe", "workflows-starter", "loud", *url, cwd=project)
        wait_until(lambda: MARKER in server.output(), what="the failure in the terminal")
        terminal = server.output()
    # The message is kept three times (attempt, step, instance): 16 KiB each, not 2 MB.
    assert MARKER in described.stdout
    assert len(described.stdout) < 100_000, len(described.stdout)
    assert len(terminal) < 100_000, len(terminal)
    assert "Traceback" not in terminal
    assert "Unprintable" in terminal
