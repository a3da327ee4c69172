"""``GET /metrics`` of a real ``wf dev`` and ``wf serve``: the counters match what ran."""

from __future__ import annotations

import http.client
import os
import subprocess
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.helpers import WF, api, dev_server, free_port, wait_until
from tests.e2e.serve_helpers import Serve

INSTANCES = 4
BUSY = 0.1  # CPU seconds the "busy" step burns

WF_TOML = """\
name = "metered"
main = "workflows.py"

[[workflows]]
name = "metered"
binding = "METERED"
class_name = "Metered"
"""

WORKFLOWS = """\
import time

from wf import WorkflowEntrypoint


def busy():
    end = time.thread_time() + BUSY
    while time.thread_time() < end:
        pass
    return "busy"


def flaky(ctx):
    if ctx.attempt < 3:
        raise ValueError(f"attempt {ctx.attempt} fails")
    return ctx.attempt


class Metered(WorkflowEntrypoint):
    async def run(self, event, step):
        await step.do("busy", busy)
        tries = await step.do(
            "flaky", {"retries": {"limit": 3, "delay": 0.05, "backoff": "constant"}}, flaky
        )
        await step.wait_for_event("gate", type="go", timeout="1 hour")
        return tries
""".replace("BUSY", str(BUSY))


def write_project(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "wf.toml").write_text(WF_TOML)
    (root / "workflows.py").write_text(WORKFLOWS)
    return root


def wf_cli(*args: str) -> str:
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200"}
    done = subprocess.run([*WF, *args], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def scrape(port: int, token: str | None = None) -> tuple[int, str]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        connection.request("GET", "/metrics", headers=headers)
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(text: str, name: str, **labels: str) -> float:
    return samples(text).get((name, tuple(sorted(labels.items()))), 0.0)


def at_gate(details: dict[str, Any]) -> bool:
    """Past its steps, waiting for its event (a retry's wait shows "waiting" too)."""
    return details["status"] == "waiting" and any(
        str(s.get("name", "")).startswith("gate") for s in details["steps"]
    )


def check_while_waiting(text: str) -> None:
    """Every instance is past its steps, waiting for "go"."""
    wf = {"workflow": "metered"}
    assert value(text, "wf_instances_created_total", **wf) == INSTANCES
    assert value(text, "wf_step_attempts_total", step="busy", **wf) == INSTANCES
    assert value(text, "wf_step_attempts_total", step="flaky", **wf) == 3 * INSTANCES
    assert value(text, "wf_step_attempt_failures_total", step="flaky", **wf) == 2 * INSTANCES
    assert value(text, "wf_step_retries_total", step="flaky", **wf) == 2 * INSTANCES
    assert value(text, "wf_step_attempt_failures_total", step="busy", **wf) == 0
    assert value(text, "wf_instances", status="waiting", **wf) == INSTANCES
    assert value(text, "wf_instances", status="complete", **wf) == 0
    # CPU beside wall time: the busy loop's, at most the attempts' wall time.
    cpu = value(text, "wf_step_attempt_cpu_seconds_sum", step="busy", **wf)
    wall = value(text, "wf_step_attempt_seconds_sum", step="busy", **wf)
    assert 0.8 * BUSY * INSTANCES <= cpu <= wall, (cpu, wall)
    assert value(text, "wf_step_attempt_cpu_seconds_count", step="busy", **wf) == INSTANCES


def check_after(text: str) -> None:
    wf = {"workflow": "metered"}
    assert value(text, "wf_instances_completed_total", **wf) == INSTANCES
    assert value(text, "wf_instances", status="complete", **wf) == INSTANCES
    assert value(text, "wf_instances", status="waiting", **wf) == 0
    assert value(text, "wf_instance_duration_seconds_count", status="complete", **wf) == INSTANCES
    assert value(text, "wf_claim_lag_seconds_count") >= INSTANCES
    assert value(text, "wf_commits_total") > 0
    assert value(text, "wf_commit_batch_size_count") == value(text, "wf_commits_total")


def test_wf_dev_serves_metrics_that_count_what_ran(tmp_path: Path) -> None:
    project = write_project(tmp_path / "metered")
    with dev_server(project) as server:
        ids = [
            api(server.url, "/api/workflows/metered/instances", "POST", {})["id"]
            for _ in range(INSTANCES)
        ]

        def all_waiting() -> bool:
            return all(
                at_gate(api(server.url, f"/api/workflows/metered/instances/{i}")) for i in ids
            )

        wait_until(all_waiting, what="every instance waiting for its event")
        status, text = scrape(server.port)
        assert status == 200
        check_while_waiting(text)
        for i in ids:
            api(server.url, f"/api/workflows/metered/instances/{i}/events/go", "POST", {})
        wait_until(
            lambda: all(
                api(server.url, f"/api/workflows/metered/instances/{i}")["status"] == "complete"
                for i in ids
            ),
            what="every instance complete",
        )
        check_after(scrape(server.port)[1])
        # The CPU time is recorded with each attempt, beside its wall time.
        details = api(server.url, f"/api/workflows/metered/instances/{ids[0]}")
        busy = next(s for s in details["steps"] if s.get("name") == "busy-1")
        assert busy["attempts"][0]["cpu"] >= 0.8 * BUSY
        # ... and the dashboard's instance page shows it beside the wall time.
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        try:
            connection.request("GET", f"/w/metered/i/{ids[0]}")
            page = connection.getresponse().read().decode()
        finally:
            connection.close()
        assert 'data-testid="attempt-cpu"' in page and 'data-testid="step-cpu"' in page
        # ... and describe, in a CPU column beside the duration.
        described = wf_cli("instances", "describe", "metered", ids[0], "--url", server.url)
        assert "│ CPU" in described


def test_wf_dev_without_metrics(tmp_path: Path) -> None:
    project = write_project(tmp_path / "metered")
    with dev_server(project, args=("--no-metrics",)) as server:
        assert scrape(server.port)[0] == 404


def test_wf_serve_metrics_need_the_token_or_the_metrics_port(tmp_path: Path) -> None:
    project = write_project(tmp_path / "metered")
    metrics_port = free_port()
    server = Serve(tmp_path, tmp_path / "state")
    try:
        server.start("--metrics-port", str(metrics_port))
        server.deploy(project)
        ids = [
            server.api("/api/workflows/metered/instances", "POST", {})["id"]
            for _ in range(INSTANCES)
        ]
        wait_until(
            lambda: all(at_gate(server.instance(i, "metered")) for i in ids),
            what="every instance waiting for its event",
        )
        refused, body = scrape(server.port)
        assert refused == 401 and "API token" in body
        assert scrape(server.port, "not-the-token")[0] == 401
        status, text = scrape(server.port, server.token)
        assert status == 200
        check_while_waiting(text)
        for i in ids:
            server.api(f"/api/workflows/metered/instances/{i}/events/go", "POST", {})
        wait_until(
            lambda: all(server.instance(i, "metered")["status"] == "complete" for i in ids),
            what="every instance complete",
        )

        # The workers' figures arrive with their next beat (one a second).
        def settled() -> str | None:
            status, text = scrape(metrics_port)  # no token on the loopback listener
            assert status == 200
            return text if value(text, "wf_claim_lag_seconds_count") >= INSTANCES else None

        check_after(wait_until(settled, what="the workers' figures"))
    finally:
        try:
            server.stop()
        finally:
            server.kill()
