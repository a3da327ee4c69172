"""``wf stats`` and traces as a user gets them, from a real ``wf dev`` with a known workload: the
JSON's figures, the Rich view, a bad ``--since``; and the spans the console exporter prints when
``OTEL_TRACES_EXPORTER=console`` is set (under the trace of the creating request)."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest

from tests.e2e.helpers import api, dev_server, wait_until, wf

pytestmark = pytest.mark.slow

NAME = "workflows-starter"
TRACE_ID = "5b8efff798038103d269b633813fc60c"
WORKFLOW = """
import time

from wf import NonRetryableError, WorkflowEntrypoint


class MyWorkflow(WorkflowEntrypoint):
    async def run(self, event, step):
        kind = event.payload.get("kind")

        def slow():
            time.sleep(0.05)
            return 1

        await step.do("slow", slow)
        if kind == "flaky":

            def flaky(ctx):
                if ctx.attempt < 2:
                    raise ConnectionError("the bank is down")
                return 2

            await step.do("flaky", {"retries": {"limit": 2, "delay": 0.01}}, flaky)
        if kind == "doomed":

            def doomed():
                raise NonRetryableError("card declined")

            await step.do("charge", doomed)
        return kind
"""


def _create(url: str, instance_id: str, kind: str) -> None:
    body = json.dumps({"id": instance_id, "params": {"kind": kind}}).encode()
    request = urllib.request.Request(
        f"{url}/api/workflows/{NAME}/instances",
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "traceparent": f"00-{TRACE_ID}-{instance_id.encode().hex():0>16}-01",
        },
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 201


def test_stats_and_traces_of_a_known_workload(tmp_path: Path) -> None:
    wf("init", "proj", cwd=tmp_path)
    project = tmp_path / "proj"
    (project / "workflows.py").write_text(WORKFLOW)
    env = {"OTEL_TRACES_EXPORTER": "console", "OTEL_BSP_SCHEDULE_DELAY": "50"}
    with dev_server(project, env=env) as server:
        workload = {"a1": "plain", "a2": "plain", "a3": "flaky", "a4": "doomed"}
        for instance_id, kind in workload.items():
            _create(server.url, instance_id, kind)

        def finished() -> bool:
            for instance_id in workload:
                status = api(server.url, f"/api/workflows/{NAME}/instances/{instance_id}")
                if status["status"] not in ("complete", "errored"):
                    return False
            return True

        wait_until(finished, what="the workload to finish")

        result = wf("stats", "--json", "--url", server.url, cwd=project)
        stats = json.loads(result.stdout)
        [mine] = stats["workflows"]
        assert mine["workflow"] == NAME
        assert mine["counts"]["complete"] == 3 and mine["counts"]["errored"] == 1
        assert mine["finished"] == {"total": 4, "complete": 3, "errored": 1, "terminated": 0}
        assert mine["attempts"]["total"] == 4 + 2 + 1 and mine["attempts"]["failed"] == 2
        assert mine["slowest_steps"][0]["step"] == "slow"
        assert mine["slowest_steps"][0]["p95_ms"] >= 50
        assert [(s["step"], s["failures"], s["last_error"]) for s in mine["failing_steps"]] == [
            ("charge", 1, {"name": "NonRetryableError", "message": "card declined"}),
            ("flaky", 1, {"name": "ConnectionError", "message": "the bank is down"}),
        ]

        view = wf("stats", NAME, "--since", "15m", "--url", server.url, cwd=project).stdout
        assert f"📊 {NAME} · last 15m" in view
        assert "Finished   4 (3 completed, 1 errored, 0 terminated)" in view
        assert " · CPU " in view and "CPU —" not in view  # the attempts' CPU time, measured
        assert "Slowest steps (by p95 of attempt wall time)" in view
        assert "NonRetryableError: card declined" in view

        bad = wf("stats", "--since", "soon", "--url", server.url, cwd=project, check=False)
        assert bad.returncode == 2 and bad.stdout == ""
        assert bad.stderr.splitlines() == [
            'wf: --since "soon" is not a duration; write a number and a unit, e.g. "30 '
            'seconds" (for example 15m, 1h, 7 days)'
        ]
        unknown = wf("stats", "nope", "--url", server.url, cwd=project, check=False)
        assert unknown.returncode == 1 and len(unknown.stderr.splitlines()) == 1
        assert 'workflow "nope" not found' in unknown.stderr

        # The console exporter printed each life as a span of the creating request's trace.
        def life_spans() -> list[dict[str, object]]:
            spans = _json_objects(server.output())
            lives = [s for s in spans if str(s.get("name", "")).startswith("life ")]
            return lives if len(lives) == 4 else []

        lives = wait_until(life_spans, what="4 life spans in wf dev's output")
        for span in lives:
            attributes = span["attributes"]
            assert isinstance(attributes, dict) and isinstance(span["context"], dict)
            assert span["context"]["trace_id"] == f"0x{TRACE_ID}"
            instance_id = str(attributes["wf.instance"])
            assert span["parent_id"] == f"0x{instance_id.encode().hex():0>16}"
            want = "errored" if workload[instance_id] == "doomed" else "complete"
            assert attributes["wf.end"] == want
            resource = span["resource"]
            assert isinstance(resource, dict)
            assert resource["attributes"]["service.name"] == "wf"


def _json_objects(text: str) -> list[dict[str, object]]:
    """The JSON objects printed in ``text`` among other lines (the console exporter's spans)."""
    decoder = json.JSONDecoder()
    found: list[dict[str, object]] = []
    at = text.find("{")
    while at != -1:
        try:
            value, end = decoder.raw_decode(text, at)
        except ValueError:
            at = text.find("{", at + 1)
            continue
        if isinstance(value, dict):
            found.append(value)
        at = text.find("{", end)
    return found
