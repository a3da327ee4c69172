"""A real ``wf dev`` and a real ``wf serve`` (with its token), each serving workflow "pin"
(tests/e2e/serve_helpers.py: with ``{"wait": true}`` it waits for a "go" event; here its first
step also has a rollback handler), for Cloudflare's own clients to drive through ``/client/v4``."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.helpers import WF, dev_server, wait_until
from tests.e2e.serve_helpers import FINISHED, PIN_WORKFLOW, serving, write_project

pytestmark = pytest.mark.slow

WORKFLOW = "pin"

# "pin" with an undo for its first step: params["undo"] names a file it appends the error to.
UNDO = """
        def undo(context):
            if params.get("undo"):
                with open(params["undo"], "a") as out:
                    out.write(context.error.message + "\\n")

        await step.do("before", mark, rollback=undo)
"""
SOURCE = PIN_WORKFLOW.replace('\n        await step.do("before", mark)\n', UNDO)
assert SOURCE != PIN_WORKFLOW


@dataclass
class Target:
    """A running server as Cloudflare's clients see it."""

    kind: str  # "dev" or "serve"
    url: str
    token: str  # wf dev wants none; Cloudflare's clients send one anyway
    account: str
    project: Path

    @property
    def base_url(self) -> str:
        return f"{self.url}/client/v4"

    def wf(self, *args: str) -> str:
        """wf's own CLI against this server: its output."""
        env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200"}
        env.pop("WF_URL", None)
        env["WF_API_TOKEN"] = self.token
        done = subprocess.run(
            [*WF, *args, "--url", self.url],
            cwd=self.project,
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
            stdin=subprocess.DEVNULL,
        )
        assert done.returncode == 0, f"wf {' '.join(args)}: {done.stderr}{done.stdout}"
        return done.stdout

    def instance(self, instance_id: str) -> dict[str, Any]:
        """The instance as wf's own CLI describes it (--json)."""
        text = self.wf("instances", "describe", WORKFLOW, instance_id, "--json")
        found: dict[str, Any] = json.loads(text)
        return found

    def status(self, instance_id: str) -> str:
        return str(self.instance(instance_id)["status"])

    def wait_status(self, instance_id: str, *wanted: str) -> str:
        status: str = wait_until(
            lambda: s if (s := self.status(instance_id)) in wanted else None,
            timeout=30,
            what=f"{instance_id} to be {' or '.join(wanted)}",
        )
        return status

    def wait_finished(self, instance_id: str) -> str:
        return self.wait_status(instance_id, *FINISHED)


@pytest.fixture(scope="module", params=["dev", "serve"])
def target(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Target]:
    home = tmp_path_factory.mktemp(request.param)
    project = write_project(home / "proj", source=SOURCE)
    if request.param == "dev":
        with dev_server(project) as dev:
            yield Target("dev", dev.url, "any-token", "any-account", project)
    else:
        with serving(home) as serve:
            serve.deploy(project)
            yield Target("serve", serve.url, serve.token, "acc-1", project)
