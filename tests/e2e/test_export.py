"""``wf instances export`` as a user runs it: a real ``wf dev``, the CLI as a subprocess, the
history JSON read back from stdout and from a file; failures are one line and leave no file."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.e2e.helpers import api, dev_server, free_port, wait_until, wf

pytestmark = pytest.mark.slow

NAME = "workflows-starter"
WORKFLOW = """
from wf import NonRetryableError, StepError, WorkflowEntrypoint


class MyWorkflow(WorkflowEntrypoint):
    async def run(self, event, step):
        def charge(ctx):
            if ctx.attempt == 1:
                raise ConnectionError("card network down")
            return {"paymentId": "p1", "cart": event.payload["cartId"]}

        paid = await step.do("charge card", {"retries": {"limit": 3, "delay": 0.01}}, charge)
        await step.sleep("cool off", 0.05)
        shipped = await step.wait_for_event("shipped", type="shipped", timeout="1 hour")

        def refuse():
            raise NonRetryableError("smtp refused the address")

        try:
            await step.do("send receipt", refuse)
        except StepError:
            pass
        return {"paid": paid["paymentId"], "carrier": shipped.payload["carrier"]}
"""


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, result
    assert result.stdout == "" and "Traceback" not in result.stderr
    [line] = result.stderr.splitlines()
    return line


def run_cart_1(project: Path, url: str, *other_events: str) -> None:
    """Trigger cart-1 through the CLI, send it ``other_events`` (nobody waits for those) and its
    "shipped" event, and wait until it completes."""
    flag = ["--url", url]
    wf("trigger", NAME, '{"cartId": "cart-1"}', "--id", "cart-1", *flag, cwd=project)
    for event_type in other_events:
        wf("instances", "send-event", NAME, "cart-1", "--type", event_type, *flag, cwd=project)
    shipped = ["--type", "shipped", "--payload", '{"carrier": "DHL"}']
    wf("instances", "send-event", NAME, "cart-1", *shipped, *flag, cwd=project)
    wait_until(
        lambda: api(url, f"/api/workflows/{NAME}/instances/cart-1")["status"] == "complete",
        what="cart-1 complete",
    )


@pytest.fixture
def project(tmp_path: Path) -> Path:
    wf("init", "proj", cwd=tmp_path)
    root = tmp_path / "proj"
    (root / "workflows.py").write_text(WORKFLOW)
    return root


def test_export_a_finished_instance_to_stdout_and_to_a_file(project: Path) -> None:
    with dev_server(project) as server:
        url = ["--url", server.url]
        run_cart_1(project, server.url, "gift-wrap")
        printed = wf("instances", "export", NAME, "cart-1", *url, cwd=project)
        target = project / "history.json"
        target.write_text("an older export\n")
        written = wf("instances", "export", NAME, "latest", "-o", "history.json", *url, cwd=project)
        from_api = api(server.url, f"/api/workflows/{NAME}/instances/cart-1/history")
        details = api(server.url, f"/api/workflows/{NAME}/instances/cart-1")

    assert printed.stderr == "" and printed.stdout.endswith("}\n")
    assert not printed.stdout.endswith("\n\n")
    history = json.loads(printed.stdout)
    assert printed.stdout == json.dumps(history, indent=2, ensure_ascii=False) + "\n"
    assert history == from_api
    assert (history["format"], history["format_version"]) == ("wf-history", 1)
    assert (history["workflow"], history["id"], history["status"]) == (NAME, "cart-1", "complete")
    assert (history["params"], history["trigger"]) == ({"cartId": "cart-1"}, "cli")
    assert history["output"] == {"paid": "p1", "carrier": "DHL"}
    assert history["version"] == details["versionId"]
    steps = [(s["kind"], s["name"], s["count"], s["state"]) for s in history["steps"]]
    assert steps == [
        ("do", "charge card", 1, "succeeded"),
        ("sleep", "cool off", 1, "succeeded"),
        ("wait", "shipped", 1, "succeeded"),
        ("do", "send receipt", 1, "failed"),
    ]
    charge = history["steps"][0]
    assert [a["success"] for a in charge["attempts"]] == [False, True]
    assert charge["attempts"][0]["error"] == {
        "name": "ConnectionError",
        "message": "card network down",
    }
    assert history["steps"][2]["output"] == {"carrier": "DHL"}
    assert history["steps"][3]["error"]["name"] == "NonRetryableError"
    assert [(e["type"], e["payload"], e["consumed_by"]) for e in history["events"]] == [
        ("gift-wrap", {}, None),
        ("shipped", {"carrier": "DHL"}, "shipped-1"),
    ]

    assert written.stdout == ""
    assert written.stderr == (
        f'📄 Wrote the history of instance "cart-1" from {NAME} to history.json '
        "(4 steps, 2 events)\n"
    )
    assert target.read_text(encoding="utf-8") == printed.stdout  # the older export replaced
    assert sorted(p.name for p in project.iterdir() if p.name.startswith(".history")) == []


def test_export_failures_are_one_line_and_leave_no_file(project: Path) -> None:
    nobody = f"http://127.0.0.1:{free_port()}"
    line = one_error_line(
        wf("instances", "export", NAME, "x", "--url", nobody, cwd=project, check=False)
    )
    assert line == f"wf: no wf server at {nobody}; start one with wf dev"

    with dev_server(project) as server:
        url = ["--url", server.url]
        out = project / "out.json"
        result = wf(
            "instances", "export", NAME, "ghost", "-o", "out.json", *url, cwd=project, check=False
        )
        assert one_error_line(result) == f'wf: instance "ghost" not found in workflow "{NAME}"'
        result = wf("instances", "export", NAME, *url, cwd=project, check=False)
        assert one_error_line(result) == (
            f'wf: there are no instances in workflow "{NAME}"; trigger one with: wf trigger {NAME}'
        )
        result = wf("instances", "export", "nope", "x", *url, cwd=project, check=False)
        assert one_error_line(result).startswith('wf: workflow "nope" not found;')
        assert not out.exists()

        wf("trigger", NAME, '{"cartId": "c"}', "--id", "c", *url, cwd=project)
        (project / "a-file").write_text("")
        (project / "a-dir").mkdir()
        for where, reason in (
            ("a-file/out.json", "Not a directory"),
            ("no-such-dir/out.json", "No such file or directory"),
            ("a-dir", "Is a directory"),
        ):
            result = wf(
                "instances", "export", NAME, "c", "-o", where, *url, cwd=project, check=False
            )
            assert one_error_line(result) == f"wf: cannot write {where}: {reason}"
        assert list((project / "a-dir").iterdir()) == []
        assert [p.name for p in project.iterdir() if p.name.endswith(".tmp")] == []
