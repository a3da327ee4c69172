"""Cloudflare's Python examples (imports changed only) under ``wf dev`` as a subprocess: trigger
from the CLI, send the approval event, read the outputs over REST; and a sensitive step's output
is "[REDACTED]" over REST, in describe, in the export and on the terminal, while run() used it."""

from __future__ import annotations

import functools
import json
import shutil
from pathlib import Path

import pytest

from tests.e2e.helpers import api, dev_server, wait_until, wf

pytestmark = pytest.mark.slow

EXAMPLES = Path(__file__).resolve().parents[1] / "cloudflare" / "cloudflare_workflow.py"
NAME = "cf-examples"
TOML = f"""name = "cf"
main = "workflows.py"

[[workflows]]
name = "{NAME}"
binding = "CF_EXAMPLES"
class_name = "TestWorkflow"
"""


def test_cloudflares_examples_under_wf_dev(tmp_path: Path) -> None:
    project = tmp_path / "cf"
    project.mkdir()
    (project / "wf.toml").write_text(TOML)
    shutil.copy(EXAMPLES, project / "workflows.py")
    with dev_server(project) as server:
        url = server.url

        def trigger(mode: str) -> None:
            params = json.dumps({"mode": mode})
            wf("trigger", NAME, params, "--id", mode, "--url", url, cwd=project)

        def finished(instance_id: str) -> dict[str, object] | None:
            found = api(url, f"/api/workflows/{NAME}/instances/{instance_id}")
            return found if found["status"] in ("complete", "errored") else None

        for mode in ("concurrent", "retry", "wait_for_event", "sensitive"):
            trigger(mode)
        wait_until(
            lambda: (
                api(url, f"/api/workflows/{NAME}/instances/wait_for_event")["status"] == "waiting"
            )
        )
        wf(
            "instances",
            "send-event",
            NAME,
            "wait_for_event",
            "--type",
            "approval",
            "--payload",
            '{"approved": true}',
            "--url",
            url,
            cwd=project,
        )
        outputs = {}
        for mode in ("concurrent", "retry", "wait_for_event", "sensitive"):
            outputs[mode] = wait_until(functools.partial(finished, mode))["output"]
        assert outputs == {
            "concurrent": {"combined": 6},
            "retry": {"succeeded_on_attempt": 2},
            "wait_for_event": {"event_payload": {"approved": True}},
            "sensitive": {"used": "s3cr3t-sensitive"},  # run() had the real value
        }

        details = finished("sensitive")
        assert details is not None
        steps = {s["name"]: s for s in details["steps"]}  # type: ignore[attr-defined]
        assert steps["issue_token-1"]["output"] == "[REDACTED]"
        assert steps["issue_token-1"]["config"]["sensitive"] == "output"
        assert steps["use_token-1"]["output"] == {"used": "s3cr3t-sensitive"}
        described = wf("instances", "describe", NAME, "sensitive", "--url", url, cwd=project).stdout
        exported = wf("instances", "export", NAME, "sensitive", "--url", url, cwd=project).stdout
        assert "[REDACTED]" in described and "[REDACTED]" in exported
        token_outputs = [
            s["output"] for s in json.loads(exported)["steps"] if s["name"] == "issue_token"
        ]
        assert token_outputs == ["[REDACTED]"]
        # The token itself is nowhere: only what use_token and run() returned quote it.
        assert '"token": "s3cr3t' not in described + exported
        assert "s3cr3t-sensitive" in exported  # use_token's output, not redacted
    assert "s3cr3t" not in server.output()  # the dev terminal
