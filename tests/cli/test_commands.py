"""The commands through typer's CliRunner against a real server (real engine, real SQLite)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from unittest.mock import ANY

import pytest
from typer.testing import CliRunner

from wf.cli.main import app
from wf.client import Client

from .conftest import LiveServer, unused_port, wait_status

runner = CliRunner()
ENV = {"COLUMNS": "100"}


def wf(server: LiveServer | None, *args: str, env: dict[str, str] | None = None) -> Any:
    url = ["--url", server.url] if server is not None else []
    return runner.invoke(app, [*args, *url], env={**ENV, **(env or {})})


def ok(result: Any) -> str:
    assert result.exit_code == 0, (result.stdout, result.stderr)
    assert result.stderr == ""
    out: str = result.stdout
    return out


def failed(result: Any, code: int = 1) -> str:
    """The error line of a failed command: exactly one line on stderr, nothing on stdout."""
    assert result.exit_code == code, (result.stdout, result.stderr)
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    line: str = lines[0]
    return line


def trigger(client: Client, workflow: str, instance_id: str, params: Any = None) -> None:
    client.create_instance(workflow, id=instance_id, params=params)


# ---- wf trigger -------------------------------------------------------------------------------


def test_trigger_queues_an_instance_and_says_how_to_describe_it(server: LiveServer) -> None:
    out = ok(wf(server, "trigger", "quick", '{"n": 21}', "--id", "first"))
    assert out == (
        '🚀 Workflow instance "first" has been queued successfully\n'
        f"   wf instances describe quick first --url {server.url}\n"  # the server it asked
    )
    from_env = ok(wf(None, "trigger", "quick", "--id", "second", env={"WF_URL": server.url}))
    assert from_env.splitlines()[1] == "   wf instances describe quick second"  # WF_URL holds
    details = wait_status(server.client(), "quick", "first")
    assert details["status"] == "complete"
    assert details["output"] == {"double": 42}
    assert details["params"] == {"n": 21}
    # Cloudflare's enum (wrangler's triggers are api there), and who asked
    assert details["trigger"] == {"source": "api", "via": "cli"}


def test_trigger_without_id_or_params(server: LiveServer) -> None:
    out = ok(wf(server, "trigger", "quick"))
    new_id = out.split('"')[1]
    details = wait_status(server.client(), "quick", new_id)
    assert details["output"] == {"double": 0}
    assert details["params"] == {}


def test_trigger_json_prints_the_api_result(server: LiveServer) -> None:
    out = ok(wf(server, "trigger", "quick", "--id", "j1", "--json"))
    assert json.loads(out) == {
        "id": "j1",
        "status": "queued",
        "version_id": "v-test",
        "workflow_id": "quick",
        "workflow": "quick",
        "trigger_source": "api",  # Cloudflare's field: the CLI is an API client
    }
    assert out.startswith('{\n  "id"')  # pretty, two spaces


def test_trigger_refuses_invalid_json_with_its_position() -> None:
    line = failed(wf(None, "trigger", "quick", '{"a": 1 "b": 2}', "--url", "http://127.0.0.1:9"))
    assert line == "wf: params are not valid JSON: Expecting ',' delimiter (line 1, column 9)"


def test_params_and_payloads_come_from_a_file_or_standard_input(
    server: LiveServer, tmp_path: Path
) -> None:
    # Beyond what a command line holds (about 128 KiB): the server takes 1 MiB of params.
    big = {"n": 2, "pad": "x" * 300_000}
    (tmp_path / "params.json").write_text(json.dumps(big))
    ok(wf(server, "trigger", "quick", f"@{tmp_path / 'params.json'}", "--id", "from-file"))
    piped = runner.invoke(
        app, ["trigger", "quick", "-", "--id", "from-stdin", "--url", server.url], input='{"n": 5}'
    )
    assert piped.exit_code == 0, piped.stderr
    client = server.client()
    assert wait_status(client, "quick", "from-file")["params"] == big
    assert wait_status(client, "quick", "from-stdin")["output"] == {"double": 10}
    trigger(client, "approval", "a-file")
    wait_status(client, "approval", "a-file", ("waiting",))
    (tmp_path / "event.json").write_text('{"by": "file"}')
    payload = f"@{tmp_path / 'event.json'}"
    sent = ("instances", "send-event", "approval", "a-file", "--type", "approve")
    ok(wf(server, *sent, "--payload", payload))
    assert wait_status(client, "approval", "a-file")["output"] == {"approved_with": {"by": "file"}}
    missing = tmp_path / "nope.json"
    line = failed(wf(server, "trigger", "quick", f"@{missing}"))
    assert line == f"wf: cannot read the params from {missing}: No such file or directory"
    (tmp_path / "bad.json").write_text("{")
    line = failed(wf(server, "trigger", "quick", f"@{tmp_path / 'bad.json'}"))
    assert line.startswith(f"wf: params in {tmp_path / 'bad.json'} are not valid JSON: ")


def test_trigger_unknown_workflow_lists_the_known_ones(server: LiveServer) -> None:
    line = failed(wf(server, "trigger", "nope"))
    assert line == (
        'wf: workflow "nope" not found; known workflows: approval, chatty, failing, napper, quick'
    )


def test_trigger_duplicate_id(server: LiveServer) -> None:
    ok(wf(server, "trigger", "quick", "--id", "twice"))
    line = failed(wf(server, "trigger", "quick", "--id", "twice"))
    assert line == 'wf: an instance with id "twice" already exists in workflow "quick"'


def test_trigger_bad_id_is_refused_by_the_server(server: LiveServer) -> None:
    line = failed(wf(server, "trigger", "quick", "--id", "no spaces"))
    assert line.startswith('wf: instance id "no spaces" may only contain')


def test_no_server_is_one_clear_line() -> None:
    url = f"http://127.0.0.1:{unused_port()}"
    line = failed(wf(None, "trigger", "quick", "--url", url))
    assert line == f"wf: no wf server at {url}; start one with wf dev"


def test_usage_errors_exit_2(server: LiveServer) -> None:
    assert wf(server, "trigger").exit_code == 2
    assert wf(server, "instances", "list", "quick", "--page", "0").exit_code == 2
    result = wf(server, "instances", "list", "quick", "--status", "sleepy")
    assert result.exit_code == 2
    assert "is not a status" in result.stderr
    assert wf(server, "instances", "send-event", "approval", "x").exit_code == 2  # no --type


# ---- wf workflows ------------------------------------------------------------------------------


def test_workflows_list(server: LiveServer) -> None:
    client = server.client()
    trigger(client, "quick", "q1")
    wait_status(client, "quick", "q1")
    out = ok(wf(server, "workflows", "list"))
    lines = out.splitlines()
    assert lines[0] == "Showing 5 workflows from page 1:"
    assert "│ Name " in lines[2] and "Binding" in lines[2] and "Class name" in lines[2]
    quick = next(line for line in lines if "│ quick " in line)
    assert "QUICK" in quick and "Quick" in quick and "1 completed" in quick
    out = ok(wf(server, "workflows", "list", "--per-page", "2", "--page", "2"))
    assert out.splitlines()[0] == "Showing 2 workflows from page 2:"
    out = ok(wf(server, "workflows", "list", "--page", "9"))
    assert out == "No workflows found on page 9. Please try a smaller page number.\n"


def test_workflows_list_json(server: LiveServer) -> None:
    out = ok(wf(server, "workflows", "list", "--json"))
    workflows = json.loads(out)
    assert [w["name"] for w in workflows] == ["quick", "failing", "napper", "approval", "chatty"]
    assert workflows[0]["binding"] == "QUICK"


def test_workflows_describe(server: LiveServer) -> None:
    client = server.client()
    trigger(client, "failing", "f1")
    wait_status(client, "failing", "f1")
    out = ok(wf(server, "workflows", "describe", "failing"))
    lines = out.splitlines()
    assert lines[:5] == [
        "Name:         failing",
        "Binding:      FAILING",
        "Class Name:   Failing",
        "Script Name:  shop",
        "Version Id:   v-test",
    ]
    assert "Instance Status Counts:" in lines
    counts = lines[lines.index("Instance Status Counts:") + 1 :]
    assert "  Errored:            1" in counts
    assert "  Completed:          0" in counts
    line = failed(wf(server, "workflows", "describe", "nope"))
    assert line.startswith('wf: workflow "nope" not found; known workflows: ')


def test_workflows_delete(server: LiveServer) -> None:
    client = server.client()
    for n in range(3):
        trigger(client, "quick", f"d{n}")
    for n in range(3):
        wait_status(client, "quick", f"d{n}")
    out = ok(wf(server, "workflows", "delete", "quick"))
    assert out == '✅ Workflow "quick" removed successfully.\n   3 instances removed.\n'
    assert client.list_instances("quick")[0] == []
    out = ok(wf(server, "instances", "list", "quick"))
    assert out == (
        'There are no instances in workflow "quick". You can trigger it with "wf trigger quick"\n'
    )


# ---- wf instances list -------------------------------------------------------------------------


def test_instances_list(server: LiveServer) -> None:
    client = server.client()
    for name in ("old", "mid", "new"):
        trigger(client, "quick", name)
        wait_status(client, "quick", name)
    trigger(client, "napper", "sleepy")
    out = ok(wf(server, "instances", "list", "quick"))
    lines = out.splitlines()
    assert lines[0] == "Showing 3 instances from page 1:"
    header = lines[2]
    for column in ("Instance ID", "Version", "Created", "Modified", "Status"):
        assert column in header
    rows = [line for line in lines if "v-test" in line]
    assert [row.split("│")[1].strip() for row in rows] == ["new", "mid", "old"]
    assert all("✅ Completed" in row for row in rows)

    out = ok(wf(server, "instances", "list", "quick", "--reverse"))
    rows = [line for line in out.splitlines() if "v-test" in line]
    assert [row.split("│")[1].strip() for row in rows] == ["old", "mid", "new"]

    out = ok(wf(server, "instances", "list", "quick", "--per-page", "1", "--page", "2"))
    assert out.splitlines()[0] == "Showing 1 instance from page 2:"
    assert "│ mid " in out

    out = ok(wf(server, "instances", "list", "quick", "--page", "3"))
    assert out == "No instances found on page 3. Please try a smaller page number.\n"

    out = ok(wf(server, "instances", "list", "quick", "--status", "errored"))
    assert out == 'There are no errored instances in workflow "quick".\n'

    out = ok(wf(server, "instances", "list", "quick", "--json", "--status", "complete"))
    listed = json.loads(out)
    assert [i["id"] for i in listed] == ["new", "mid", "old"]
    assert listed[0]["trigger"] == "api"

    line = failed(wf(server, "instances", "list", "nope"))
    assert line.startswith('wf: workflow "nope" not found')


# ---- wf instances describe ---------------------------------------------------------------------


def test_describe_an_instance(server: LiveServer) -> None:
    client = server.client()
    trigger(client, "failing", "f1", {"card": "4242"})
    wait_status(client, "failing", "f1")
    # 120 columns: at 100, a date with a two-digit month, day and hour ("11/27/2026, 10:05:05
    # AM") leaves the attempts table too little room, and the error wraps onto a second row.
    out = ok(wf(server, "instances", "describe", "failing", "f1", env={"COLUMNS": "120"}))
    lines = out.splitlines()
    assert lines[0] == "Describing instance f1:"
    # Values align two spaces after the longest label of the block (wrangler's layout).
    assert lines[1:7] == [
        "Workflow Name:  failing",
        "Instance Id:    f1",
        "Version Id:     v-test",
        "Status:         ❌ Errored",
        "Trigger:        🌎 API",
        lines[6],
    ]
    assert lines[6].startswith("Queued:         ")
    assert "Success:        ❌ No" in lines
    assert "Error:          ValueError: card declined" in lines
    assert "Steps:" in lines
    assert "  Name:      charge-1" in lines
    assert "  Type:      🎯 Step" in lines
    assert any("❌ Error" in line and "ValueError: card" in line for line in lines)
    timeline = lines.index(next(line for line in lines if line.startswith("Timeline:")))
    row = lines[timeline + 1]
    assert row.startswith("charge-1 ") and "▓" in row and " ✗ " in row
    assert lines[-1] == "▓ failed attempt"


def test_describe_latest(server: LiveServer) -> None:
    client = server.client()
    trigger(client, "quick", "older", {"n": 1})
    wait_status(client, "quick", "older")
    trigger(client, "quick", "newest", {"n": 2})
    wait_status(client, "quick", "newest")
    for args in (("instances", "describe", "quick"), ("instances", "describe", "quick", "latest")):
        lines = ok(wf(server, *args)).splitlines()
        assert lines[0] == "Describing latest instance:"
        assert lines[2] == "Instance Id:           newest"
        assert "Last Successful Step:  double-1" in lines
        assert '  Output:    {"double":4}' in lines


def test_describe_latest_without_instances(server: LiveServer) -> None:
    line = failed(wf(server, "instances", "describe", "quick"))
    assert (
        line == 'wf: there are no instances in workflow "quick"; trigger one with: wf trigger quick'
    )


def test_describe_step_output_options(server: LiveServer) -> None:
    client = server.client()
    trigger(client, "chatty", "c1")
    wait_status(client, "chatty", "c1")
    out = ok(wf(server, "instances", "describe", "chatty", "c1", "--truncate-output-limit", "12"))
    assert '  Output:    "blah blah b[...output truncated]' in out.splitlines()
    out = ok(wf(server, "instances", "describe", "chatty", "c1", "--no-step-output"))
    assert "Output:" not in out
    out = ok(wf(server, "instances", "describe", "chatty", "c1"))
    assert "[...output truncated]" not in out


def test_describe_json_is_the_api_result(server: LiveServer) -> None:
    client = server.client()
    trigger(client, "quick", "j1", {"n": 5})
    wait_status(client, "quick", "j1")
    out = ok(wf(server, "instances", "describe", "quick", "j1", "--json"))
    assert json.loads(out) == client.get_instance("quick", "j1")


def test_describe_unknown_instance(server: LiveServer) -> None:
    line = failed(wf(server, "instances", "describe", "quick", "ghost"))
    assert line == 'wf: instance "ghost" not found in workflow "quick"'


# ---- controls ----------------------------------------------------------------------------------


def test_pause_resume_terminate(server: LiveServer) -> None:
    client = server.client()
    trigger(client, "napper", "n1")
    wait_status(client, "napper", "n1", ("waiting",))
    out = ok(wf(server, "instances", "pause", "napper", "n1"))
    assert out == '⏸️ The instance "n1" from napper was paused successfully\n'
    wait_status(client, "napper", "n1", ("paused",))
    out = ok(wf(server, "instances", "resume", "napper", "latest"))
    assert out == '🔄 The instance "n1" from napper was resumed successfully\n'
    out = ok(wf(server, "instances", "terminate", "napper", "n1"))
    assert out == '🥷 The instance "n1" from napper was terminated successfully\n'
    details = wait_status(client, "napper", "n1", ("terminated",))
    assert details["steps"][-1] == {
        "type": "termination",
        "trigger": {"source": "api", "via": "cli"},
    }
    line = failed(wf(server, "instances", "terminate", "napper", "n1"))
    assert line == 'wf: cannot terminate instance "n1": it is already terminated'
    out = ok(wf(server, "instances", "describe", "napper", "n1"))
    assert "  Type:     🚫 Termination" in out.splitlines()
    assert "  Trigger:  🌎 API (wf CLI)" in out.splitlines()


def test_restart(server: LiveServer) -> None:
    client = server.client()
    trigger(client, "quick", "r1", {"n": 3})
    wait_status(client, "quick", "r1")
    out = ok(wf(server, "instances", "restart", "quick", "r1"))
    assert out == '🥷 The instance "r1" from quick was restarted successfully\n'
    assert wait_status(client, "quick", "r1")["output"] == {"double": 6}


def test_control_json(server: LiveServer) -> None:
    client = server.client()
    trigger(client, "napper", "n2")
    wait_status(client, "napper", "n2", ("waiting",))
    out = ok(wf(server, "instances", "terminate", "napper", "n2", "--json"))
    result = json.loads(out)
    assert result["status"] == "terminated"
    assert result["timestamp"].endswith("Z")


def test_control_unknown_instance(server: LiveServer) -> None:
    line = failed(wf(server, "instances", "pause", "napper", "ghost"))
    assert line == 'wf: instance "ghost" not found in workflow "napper"'


def test_send_event(server: LiveServer) -> None:
    client = server.client()
    trigger(client, "approval", "a1")
    wait_status(client, "approval", "a1", ("waiting",))
    out = ok(
        wf(
            server,
            "instances",
            "send-event",
            "approval",
            "a1",
            "--type",
            "approve",
            "--payload",
            '{"by": "ana"}',
        )
    )
    assert out == (
        '📤 The event with type "approve" and payload "{"by":"ana"}" was sent to the instance '
        '"a1" from approval\n'
    )
    details = wait_status(client, "approval", "a1")
    assert details["output"] == {"approved_with": {"by": "ana"}}
    line = failed(wf(server, "instances", "send-event", "approval", "a1", "--type", "approve"))
    assert line == 'wf: cannot send an event to instance "a1": it is already complete'


def test_send_event_default_payload_and_json(server: LiveServer) -> None:
    client = server.client()
    trigger(client, "approval", "a2")
    wait_status(client, "approval", "a2", ("waiting",))
    out = ok(
        wf(server, "instances", "send-event", "approval", "latest", "--type", "approve", "--json")
    )
    sent = json.loads(out)
    assert sent == {"type": "approve", "instance_id": "a2", "instanceId": "a2", "timestamp": ANY}
    assert wait_status(client, "approval", "a2")["output"] == {"approved_with": {}}


def test_send_event_refuses_invalid_payload() -> None:
    line = failed(
        wf(
            None,
            "instances",
            "send-event",
            "approval",
            "a1",
            "--type",
            "t",
            "--payload",
            "[1,",
            "--url",
            "http://127.0.0.1:9",
        )
    )
    assert line == "wf: payload is not valid JSON: Expecting value (line 1, column 4)"
    line = failed(
        wf(
            None,
            "instances",
            "send-event",
            "approval",
            "a1",
            "--type",
            "t",
            "--payload",
            "NaN",
            "--url",
            "http://127.0.0.1:9",
        )
    )
    assert line == "wf: payload is not valid JSON: NaN is not allowed in JSON"


# ---- where the server is, and who may talk to it -----------------------------------------------


def test_url_from_the_environment(server: LiveServer) -> None:
    out = ok(runner.invoke(app, ["workflows", "list", "--json"], env={"WF_URL": server.url}))
    assert len(json.loads(out)) == 5


@pytest.mark.parametrize("toml_ok", [True, False])
def test_url_from_wf_toml(server: LiveServer, tmp_path, monkeypatch, toml_ok: bool) -> None:
    port = server.url.rsplit(":", 1)[1]
    project = tmp_path / "project"
    (project / "src" / "deep").mkdir(parents=True)
    (project / "src" / "main.py").write_text("")
    valid = (
        'name = "shop"\nmain = "src/main.py"\n'
        '[[workflows]]\nname = "quick"\nbinding = "QUICK"\nclass_name = "Quick"\n'
    )
    # An invalid wf.toml (unknown key) still gives its [dev] address to the client.
    text = valid if toml_ok else valid + "surprise = 1\n"
    (project / "wf.toml").write_text(text + f'[dev]\nhost = "127.0.0.1"\nport = {port}\n')
    monkeypatch.chdir(project / "src" / "deep")
    out = ok(runner.invoke(app, ["workflows", "list", "--json"]))
    assert len(json.loads(out)) == 5


def test_token(tmp_path) -> None:
    live = LiveServer(tmp_path / "secure.db", token="s3cret").start()
    try:
        line = failed(runner.invoke(app, ["workflows", "list", "--url", live.url]))
        assert line.startswith("wf: missing API token")
        line = failed(
            runner.invoke(app, ["workflows", "list", "--url", live.url, "--token", "nope"])
        )
        assert line.startswith("wf: wrong API token")
        out = ok(
            runner.invoke(
                app,
                ["workflows", "list", "--url", live.url, "--json"],
                env={"WF_API_TOKEN": "s3cret"},
            )
        )
        assert len(json.loads(out)) == 5
    finally:
        live.stop()


def test_an_unexpected_error_is_one_line_without_traceback(monkeypatch) -> None:
    import typer

    from wf.cli.exit import exits

    broken = typer.Typer()

    @broken.command()
    @exits
    def boom() -> None:
        raise RuntimeError("first line\nsecond line")

    result = runner.invoke(broken, [])
    assert failed(result) == (
        "wf: internal error: RuntimeError: first line second line "
        "(set WF_DEBUG=1 to see the traceback)"
    )
    monkeypatch.setenv("WF_DEBUG", "1")
    result = runner.invoke(broken, [])
    assert isinstance(result.exception, RuntimeError)
