"""``wf instances restart --from-step-*/--params`` and ``wf instances delete`` against a real
server (real engine, real SQLite, real HTTP)."""

from __future__ import annotations

import json
from pathlib import Path

from wf.engine.cron import Cron

from .conftest import LiveServer, wait_status
from .test_commands import failed, ok, trigger, wf


def test_restart_from_a_step_with_new_params(server: LiveServer) -> None:
    client = server.client()
    trigger(client, "quick", "r1", {"n": 3})
    wait_status(client, "quick", "r1")
    out = ok(
        wf(
            server,
            "instances",
            "restart",
            "quick",
            "r1",
            "--from-step-name",
            "double",
            "--from-step-count",
            "1",
            "--from-step-type",
            "do",
            "--params",
            '{"n": 4}',
        )
    )
    assert out == '🥷 The instance "r1" from quick was restarted successfully\n'
    assert wait_status(client, "quick", "r1")["output"] == {"double": 8}
    described = ok(wf(server, "instances", "describe", "quick", "r1"))
    [line] = [x for x in described.splitlines() if x.startswith("Restarted:")]
    assert line.endswith('from step "double" (do, count 1), with new params')
    line = failed(wf(server, "instances", "restart", "quick", "r1", "--from-step-name", "nope"))
    assert line == 'wf: (instance.cannot_restart) Step "nope" not found in execution history'
    line = failed(wf(server, "instances", "restart", "quick", "r1", "--from-step-count", "2"))
    assert line == "wf: --from-step-count and --from-step-type go with --from-step-name"
    result = wf(server, "instances", "restart", "quick", "r1", "--from-step-type", "step")
    assert result.exit_code == 2 and "not a step type" in result.stderr
    line = failed(wf(server, "instances", "restart", "quick", "r1", "--params", "{oops"))
    assert line.startswith("wf: params are not valid JSON")


def test_delete_ids_latest_and_a_file(server: LiveServer, tmp_path: Path) -> None:
    client = server.client()
    for i in ("a", "b", "c", "d"):
        trigger(client, "napper", i)
    wait_status(client, "napper", "d", ("waiting",))
    out = ok(wf(server, "instances", "delete", "napper", "a", "latest"))
    assert out == '🗑️  Deleted workflow instances from "napper": "a", "d"\n'
    ids = tmp_path / "ids.json"
    ids.write_text(json.dumps(["b"]))
    out = ok(wf(server, "instances", "delete", "napper", "c", "--filename", str(ids)))
    assert out == '🗑️  Deleted workflow instances from "napper": "c", "b"\n'
    assert client.list_instances("napper")[0] == []
    line = failed(wf(server, "instances", "delete", "napper", "zz"))
    assert line == 'wf: "zz": instance "zz" not found in workflow "napper"'
    line = failed(wf(server, "instances", "delete", "napper"))
    assert line.startswith("wf: give the ids of the instances to delete")
    ids.write_text('{"not": "a list"}')
    line = failed(wf(server, "instances", "delete", "napper", "--filename", str(ids)))
    assert line.endswith('must hold a JSON array of instance ids, such as ["a", "b"]')
    trigger(client, "napper", "e")
    out = ok(wf(server, "instances", "delete", "napper", "e", "--json"))
    assert json.loads(out) == {"deleted": [{"id": "e"}], "errors": []}


def test_a_cron_firings_instance_by_its_id(server: LiveServer) -> None:
    """A firing's id has spaces, "*" and "/": describe, restart from a step and delete take it
    as it is (quoted on the wire)."""
    cron = Cron.parse("*/15 * * * *")
    server.run(lambda engine: engine.create_scheduled("quick", cron, 1_700_000_100.0))
    fired = cron.instance_id(1_700_000_100.0)
    client = server.client()
    wait_status(client, "quick", fired)
    described = ok(wf(server, "instances", "describe", "quick", fired))
    assert fired in described
    out = ok(wf(server, "instances", "restart", "quick", fired, "--from-step-name", "double"))
    assert out == f'🥷 The instance "{fired}" from quick was restarted successfully\n'
    wait_status(client, "quick", fired)
    out = ok(wf(server, "instances", "delete", "quick", fired))
    assert out == f'🗑️  Deleted workflow instances from "quick": "{fired}"\n'
    assert client.list_instances("quick")[0] == []
