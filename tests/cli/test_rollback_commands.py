"""``wf instances terminate NAME ID --rollback`` and describe's rollback rows, against a real
server (real engine, real SQLite) whose project has a saga workflow."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from wf import RollbackContext, WorkflowEntrypoint
from wf.cli.main import app
from wf.engine import WorkflowSpec
from wf.project import WorkflowConfig

from . import conftest
from .conftest import LiveServer, wait_status

runner = CliRunner()
ENV = {"COLUMNS": "120"}
UNDONE: list[str] = []


class Saga(WorkflowEntrypoint):
    async def run(self, event, step):
        def undo(context: RollbackContext) -> None:
            UNDONE.append(f"{context.ctx.step_name}: {context.error.message}")

        await step.do("reserve", lambda: {"room": 7}, rollback=undo)
        await step.sleep("nap", "1 hour")


@pytest.fixture
def saga_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LiveServer]:
    monkeypatch.setattr(conftest, "SPECS", [WorkflowSpec("saga", Saga, "SAGA")])
    monkeypatch.setattr(conftest, "CONFIGS", (WorkflowConfig("saga", "SAGA", "Saga"),))
    UNDONE.clear()
    live = LiveServer(tmp_path / "wf.db").start()
    try:
        yield live
    finally:
        live.stop()


def wf(server: LiveServer, *args: str) -> Any:
    return runner.invoke(app, [*args, "--url", server.url], env=ENV)


def test_terminate_rollback_runs_handlers_and_describe_shows_them(saga_server: LiveServer) -> None:
    client = saga_server.client()
    client.create_instance("saga", id="s1")
    wait_status(client, "saga", "s1", ("waiting",))
    result = wf(saga_server, "instances", "terminate", "saga", "s1", "--rollback")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == (
        '🥷 The instance "s1" from saga is rolling back; it ends terminated once its rollback '
        "handlers ran\n"
    )
    details = wait_status(client, "saga", "s1", ("terminated",))
    assert UNDONE == ["reserve: Instance terminated during rollback"]
    assert details["rollback"] == {"outcome": "complete", "error": None}
    (undo,) = [s for s in details["steps"] if s["type"] == "rollback"]
    assert undo["name"] == "reserve-1" and undo["success"] is True
    out = wf(saga_server, "instances", "describe", "saga", "s1")
    assert out.exit_code == 0, out.stderr
    lines = out.stdout.splitlines()
    assert "Rollback:              ✅ Complete" in lines, out.stdout
    assert any(line.split() == ["Type:", "↩️", "Rollback"] for line in lines), out.stdout
    assert "reserve-1 ↩" in out.stdout  # the timeline's row
    again = wf(saga_server, "instances", "terminate", "saga", "s1", "--rollback")
    assert again.exit_code == 1
    assert again.stderr == 'wf: cannot terminate instance "s1": it is already terminated\n'


def test_terminate_rollback_json(saga_server: LiveServer) -> None:
    client = saga_server.client()
    client.create_instance("saga", id="s2")
    wait_status(client, "saga", "s2", ("waiting",))
    result = wf(saga_server, "instances", "terminate", "saga", "s2", "--rollback", "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["status"] == "running"  # Cloudflare reports running
    assert wait_status(client, "saga", "s2")["status"] == "terminated"
