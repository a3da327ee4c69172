"""The project the browser suite runs: one workflow that does a step, waits for an "approval"
event, sleeps a moment and finishes. Instances are made and steered over the REST API, as a
user's other tools would, so each test starts from a state the server really reached."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

from tests.e2e.helpers import api, wait_until

WORKFLOW_NAME = "approvals"
# The same class under a second name, for the one test that counts every instance of a workflow:
# no other test makes instances of it, so its counts are exact.
TALLY_NAME = "tally"

WF_TOML = f"""\
name = "browser-suite"
main = "workflows.py"

[[workflows]]
name = "{WORKFLOW_NAME}"
binding = "APPROVALS"
class_name = "Approvals"

[[workflows]]
name = "{TALLY_NAME}"
binding = "TALLY"
class_name = "Approvals"
"""

WORKFLOW = """\
from wf import WorkflowEntrypoint


class Approvals(WorkflowEntrypoint):
    async def run(self, event, step):
        params = event.payload if isinstance(event.payload, dict) else {}
        order = await step.do("prepare", lambda: {"order": params.get("order", 1)})
        approval = await step.wait_for_event("approval", type="approval", timeout="1 hour")
        await step.sleep("settle", "300 milliseconds")
        return await step.do(
            "finish", lambda: {**order, "approval": approval.payload, "note": params.get("note")}
        )
"""


def write_project(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "wf.toml").write_text(WF_TOML)
    (root / "workflows.py").write_text(WORKFLOW)
    return root


class Instances:
    """The REST API of one server, for one workflow."""

    def __init__(self, url: str, workflow: str = WORKFLOW_NAME) -> None:
        self.url = url
        self.base = f"/api/workflows/{workflow}/instances"

    def create(self, instance_id: str, params: Any = None) -> None:
        body: dict[str, Any] = {"id": instance_id}
        if params is not None:
            body["params"] = params
        created = api(self.url, self.base, "POST", body)
        assert created.get("id") == instance_id, created

    def count(self, status: str) -> int:
        """How many instances have this status, by the API's own count."""
        url = f"{self.url}{self.base}?status={status}&per_page=1"
        with urllib.request.urlopen(url, timeout=10) as response:
            return int(json.load(response)["result_info"]["total_count"])

    def exists(self, instance_id: str) -> bool:
        found = api(self.url, f"{self.base}/{instance_id}")
        return "status" in found  # else the API's error envelope

    def status(self, instance_id: str) -> str:
        return str(api(self.url, f"{self.base}/{instance_id}")["status"])

    def wait_for(self, instance_id: str, status: str, timeout: float = 15) -> None:
        wait_until(
            lambda: self.status(instance_id) == status,
            timeout=timeout,
            what=f"{instance_id} to be {status}",
        )

    def waiting(self, instance_id: str, params: Any = None) -> str:
        """A new instance, once it waits for its approval."""
        self.create(instance_id, params)
        self.wait_for(instance_id, "waiting")
        return instance_id

    def status_change(self, instance_id: str, action: str) -> None:
        """pause, resume, terminate or restart."""
        api(self.url, f"{self.base}/{instance_id}/status", "PATCH", {"status": action})

    def approve(self, instance_id: str, payload: Any = True) -> None:
        api(self.url, f"{self.base}/{instance_id}/events/approval", "POST", payload)
