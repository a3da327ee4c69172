"""``wf serve`` as a cluster (issue 10): several nodes on one PostgreSQL database, each a real
``python -m wf serve --database <url>`` with its own state folder and port, talked to over HTTP.

A deploy on one node runs on the others; controls and events sent to any node reach the instance
wherever it runs; a secret put on one node reaches every node's workflows; one token for all,
rotated from any node; a node killed with its workers loses its instances to another after the
lease; a node frozen past its lease finds every write it tries refused when it wakes.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.cluster_helpers import Node, cluster, query
from tests.e2e.helpers import wait_until
from tests.postgres import SKIP_REASON, find_binaries, own_cluster

pytestmark = pytest.mark.slow

# The cluster needs the PostgreSQL store (branch agent/pg-store until it is merged) and psycopg.

WF_TOML = """\
name = "roam"
main = "workflows.py"

[[workflows]]
name = "roam"
binding = "ROAM"
class_name = "Roam"
"""

# Each step says which node ran it (WF_TEST_NODE, set per node) and on which version.
WORKFLOWS = """\
import os
import time

from wf import WorkflowEntrypoint

VERSION = "v1"


def here():
    return {"node": os.environ.get("WF_TEST_NODE"), "version": VERSION}


class Roam(WorkflowEntrypoint):
    async def run(self, event, step):
        params = event.payload if isinstance(event.payload, dict) else {}
        seen = [await step.do("start", here)]
        if params.get("secret"):
            name = params["secret"]
            seen.append(
                await step.do("secret", lambda: {"value": getattr(self.env, name, None)})
            )
        if params.get("event"):
            got = await step.wait_for_event("go", type=params["event"], timeout="2 minutes")
            seen.append({"event": got.payload})
        nap = params.get("nap", 0.5)

        def work():
            time.sleep(nap)
            return here()

        for number in range(params.get("steps", 0)):
            seen.append(await step.do(f"work {number}", work))
        return seen
"""


def project(root: Path, version: str = "v1") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "wf.toml").write_text(WF_TOML)
    (root / "workflows.py").write_text(WORKFLOWS.replace('"v1"', f'"{version}"'))
    return root


def create(node: Node, instance_id: str, **params: Any) -> None:
    reply = node.request(
        "POST", "/api/workflows/roam/instances", {"id": instance_id, "params": params}
    )
    assert reply.status == 201, reply.text


def control(node: Node, instance_id: str, action: str) -> None:
    path = f"/api/workflows/roam/instances/{instance_id}/status"
    reply = node.request("PATCH", path, {"status": action})
    assert reply.status == 200, reply.text


def send_event(node: Node, instance_id: str, event_type: str, payload: Any) -> None:
    path = f"/api/workflows/roam/instances/{instance_id}/events/{event_type}"
    reply = node.request("POST", path, payload)
    assert reply.status == 200, reply.text


def output(node: Node, instance_id: str, timeout: float = 60) -> list[dict[str, Any]]:
    details = node.finished(instance_id, timeout=timeout)
    assert details["status"] == "complete", details
    result: list[dict[str, Any]] = details["output"]
    return result


def done_steps(node: Node, instance_id: str) -> list[dict[str, Any]]:
    """The outputs of the work steps recorded so far, in order."""
    steps = node.instance(instance_id)["steps"]
    return [
        s["output"]
        for s in steps
        if s.get("name", "").startswith("work") and s.get("success") and s.get("output")
    ]


def ran_a_step(node: Node, instance_id: str, where: str) -> bool:
    return any(s["node"] == where for s in done_steps(node, instance_id))


def running_steps(node: Node, ids: list[str]) -> None:
    """Wait until every instance of ``ids`` has done a work step."""
    for instance_id in ids:
        wait_until(
            functools.partial(done_steps, node, instance_id),
            timeout=30,
            what=f"{instance_id} to run",
        )


def worker_versions(node: Node) -> set[str]:
    return set(node.workers().values())


def test_a_deploy_on_one_node_runs_on_every_node_and_pins_versions(
    tmp_path: Path, pg_url: str
) -> None:
    with cluster(tmp_path, pg_url, workflow="roam") as (a, b):
        a.start()
        assert a.printed_token, a.output()
        b.start(token=a.token)
        assert b.printed_token is None, b.output()  # one token for the cluster, printed once
        assert b.request("GET", "/api/workflows").status == 200  # a's token, checked by b

        v1 = a.deploy(project(tmp_path / "v1", "v1"))
        began = time.monotonic()
        wait_until(lambda: v1 in worker_versions(b), timeout=20, what="b to run v1")
        print(f"deploy on a -> a worker of it on b: {time.monotonic() - began:.2f} s")
        assert b.bundles() == [v1]  # fetched from the database into b's own state folder

        wait_until(lambda: a.health()["nodes"] == 2, timeout=20, what="a to count 2 nodes")
        health = a.health()
        assert health["node"] == a.node_id and health["database"] == "postgresql"
        assert b.health()["node"] == b.node_id != a.node_id

        # An instance of v1 still waits when v2 is deployed (on the other node): it ends on v1.
        create(b, "old", event="go")
        wait_until(lambda: b.status("old") == "waiting", timeout=20, what="old to wait")
        v2 = b.deploy(project(tmp_path / "v2", "v2"))
        wait_until(lambda: v2 in worker_versions(a), timeout=20, what="a to run v2")
        assert v1 in worker_versions(a)  # v1 still has an unfinished instance
        create(a, "new", steps=1)
        send_event(a, "old", "go", {"from": "a"})
        assert {s.get("version") for s in output(b, "old")} == {"v1", None}
        assert {s.get("version") for s in output(b, "new")} == {"v2"}

        # Nothing needs v1 any more: every node unloads it, and its bundle leaves the database.
        wait_until(lambda: worker_versions(b) == {v2}, timeout=20, what="b to unload v1")
        wait_until(lambda: worker_versions(a) == {v2}, timeout=20, what="a to unload v1")
        wait_until(lambda: b.bundles() == [v2], timeout=20, what="b to delete v1's bundle")
        stored = query(pg_url, "SELECT version_id FROM wf.bundles ORDER BY 1")
        assert stored == [(v2,)]

        # With a gone, b runs everything on its own.
        a.stop()
        create(b, "alone", steps=2)
        assert {s["node"] for s in output(b, "alone")} == {"b"}


def test_controls_and_events_sent_to_one_node_reach_the_instance_on_another(
    tmp_path: Path, pg_url: str
) -> None:
    with cluster(tmp_path, pg_url, workflow="roam") as (a, b):
        a.start()
        a.deploy(project(tmp_path / "p"))
        # Created while a is alone: a runs them.
        create(a, "paused", steps=8, nap=1.0)
        create(a, "ended", steps=8, nap=1.0)
        create(a, "eventful", event="go", steps=1)
        running_steps(a, ["paused", "ended"])
        b.start(token=a.token)

        before = len(done_steps(b, "paused"))
        control(b, "paused", "pause")
        wait_until(lambda: b.status("paused") == "paused", timeout=30, what="the pause")
        # a heard of it at once, not at its next lease renewal: it stopped at the next step.
        at_pause = len(done_steps(b, "paused"))
        assert at_pause <= before + 1, (before, at_pause)
        assert {s["node"] for s in done_steps(b, "paused")} == {"a"}

        control(b, "ended", "terminate")
        assert b.status("ended") == "terminated"
        at_end = len(done_steps(b, "ended"))
        time.sleep(2.5)  # a's step in flight ends, and its write is refused
        assert len(done_steps(b, "ended")) == at_end
        assert a.status("ended") == "terminated"

        send_event(b, "eventful", "go", {"to": "a"})
        assert output(a, "eventful")[1] == {"event": {"to": "a"}}

        control(b, "paused", "resume")
        steps = output(a, "paused", timeout=90)
        assert len(steps) == 1 + 8


def test_a_secret_put_on_one_node_reaches_the_workflows_of_another(
    tmp_path: Path, pg_url: str
) -> None:
    with cluster(tmp_path, pg_url, workflow="roam") as (a, b):
        a.start()
        b.start(token=a.token)
        version = a.deploy(project(tmp_path / "p"))
        wait_until(lambda: version in worker_versions(b), timeout=20, what="b to run it")
        old_workers = set(b.workers())

        reply = a.request("PUT", "/api/secrets/GREETING", {"value": "hello from a"})
        assert reply.status == 200, reply.text
        # b restarts its workers with the new env (a fresh one first, then the old one stops).
        wait_until(
            lambda: (w := set(b.workers())) and not (w & old_workers),
            timeout=30,
            what="b's workers to restart",
        )
        a.stop()
        create(b, "greeted", secret="GREETING")
        steps = output(b, "greeted")
        assert steps[1] == {"value": "hello from a"}
        assert steps[0]["node"] == "b"
        assert b.api("/api/secrets")[0]["name"] == "GREETING"


def test_one_token_for_every_node_rotated_from_any(tmp_path: Path, pg_url: str) -> None:
    with cluster(tmp_path, pg_url, workflow="roam") as (a, b):
        a.start()
        first = a.printed_token
        assert first is not None
        b.start(token=first)
        assert b.printed_token is None
        assert b.request("GET", "/api/workflows").status == 200
        wrong = b.request("GET", "/api/workflows", token="not-the-token")
        assert wrong.status == 401, wrong.text
        # Only its hash is stored.
        stored = dict(query(pg_url, "SELECT name, value FROM wf.settings"))
        assert stored == {"api_token_sha256": hashlib.sha256(first.encode()).hexdigest()}

        b.stop()
        second = b.start("--rotate-token").printed_token
        assert second is not None and second != first
        assert "new API token" in b.output()
        # a hears of it (a message, or a failed check rereads the hash): the old token is out.
        wait_until(
            lambda: a.request("GET", "/api/workflows", token=first).status == 401,
            timeout=10,
            what="a to refuse the old token",
        )
        assert a.request("GET", "/api/workflows", token=second).status == 200
        assert b.request("GET", "/api/workflows", token=first).status == 401


def test_an_operators_token_from_the_environment_is_used_as_is(tmp_path: Path, pg_url: str) -> None:
    token = "an-operators-secret-of-some-length"
    node = Node(tmp_path, pg_url, "env", env={"WF_API_TOKEN": token})
    with cluster(tmp_path, pg_url, names=()) as nodes:
        nodes.append(node)
        node.start()
        assert node.printed_token is None and node.token == token
        assert node.request("GET", "/api/workflows").status == 200
        assert node.request("GET", "/api/workflows", token="other").status == 401
        assert query(pg_url, "SELECT count(*) FROM wf.settings") == [(0,)]


LEASE = 3.0


def test_a_killed_node_loses_its_instances_to_another_after_the_lease(
    tmp_path: Path, pg_url: str
) -> None:
    with cluster(tmp_path, pg_url, lease=LEASE, workflow="roam") as (a, b):
        a.start()
        a.deploy(project(tmp_path / "p"))
        ids = [f"kill-{n}" for n in range(4)]
        for instance_id in ids:
            create(a, instance_id, steps=8, nap=0.5)
        running_steps(a, ids)
        b.start(token=a.token)
        a.kill()
        killed = time.monotonic()
        wait_until(
            lambda: any(ran_a_step(b, i, "b") for i in ids), timeout=60, what="b to take over"
        )
        took_over = time.monotonic() - killed
        for instance_id in ids:
            steps = output(b, instance_id, timeout=90)
            nodes = [s["node"] for s in steps]
            assert nodes[0] == "a" and nodes[-1] == "b", nodes
        print(
            f"lease {LEASE} s: b's first step {took_over:.1f} s after the kill, all {len(ids)} "
            f"done {time.monotonic() - killed:.1f} s after"
        )


def test_a_frozen_node_wakes_up_fenced(tmp_path: Path, pg_url: str) -> None:
    with cluster(tmp_path, pg_url, lease=LEASE, workflow="roam") as (a, b):
        a.start()
        a.deploy(project(tmp_path / "p"))
        ids = [f"frozen-{n}" for n in range(3)]
        for instance_id in ids:
            create(a, instance_id, steps=10, nap=0.5)
        running_steps(a, ids)
        b.start(token=a.token)
        a.freeze()
        frozen = time.monotonic()
        try:
            for instance_id in ids:  # b takes them over once a's lease lapsed
                wait_until(
                    functools.partial(ran_a_step, b, instance_id, "b"),
                    timeout=60,
                    what=f"b to take {instance_id} over",
                )
            time.sleep(max(0.0, frozen + 2 * LEASE - time.monotonic()))
        finally:
            a.thaw()  # a's workers go on where they were: every write they try is refused
        outputs = {i: output(b, i, timeout=90) for i in ids}
        for steps in outputs.values():
            nodes = [s["node"] for s in steps]
            assert nodes == sorted(nodes), nodes  # a's, then b's: never a after b took over
            assert len(steps) == 1 + 10
        # What the database recorded: one step row each, one successful attempt each.
        rows = query(
            pg_url,
            "SELECT i.id, a.name, a.count, count(*) FILTER (WHERE a.success) "
            "FROM wf.attempts a JOIN wf.instances i ON i.pk = a.instance "
            "GROUP BY i.id, a.name, a.count",
        )
        assert rows and all(successes == 1 for *_, successes in rows), rows
        steps_per_instance = query(
            pg_url,
            "SELECT i.id, count(*) FROM wf.steps s JOIN wf.instances i ON i.pk = s.instance "
            "GROUP BY i.id",
        )
        assert dict(steps_per_instance) == dict.fromkeys(ids, 1 + 10)
        for instance_id, steps in outputs.items():
            recorded = query(
                pg_url,
                "SELECT s.output FROM wf.steps s JOIN wf.instances i ON i.pk = s.instance "
                "WHERE i.id = %s ORDER BY s.seq",
                instance_id,
            )
            assert [json.loads(text) for (text,) in recorded] == steps


def test_a_database_outage_is_one_line_on_a_node_and_503_meanwhile(tmp_path: Path) -> None:
    """PostgreSQL stopped under a serving node: requests get 503 with the reason in one line; the
    terminal says once that it is gone and once that it is back, not once a second (the node's
    round of its workers) nor once a request."""
    if find_binaries() is None:
        pytest.skip(SKIP_REASON)  # a server of its own: this one is stopped for a while
    with (
        own_cluster() as server,
        cluster(tmp_path, server.admin_url, names=("a",), workflow="roam") as (a,),
    ):
        a.start()
        a.deploy(project(tmp_path / "p"))
        server.stop("fast")
        try:
            wait_until(lambda: "is unreachable" in a.output(), timeout=20, what="a to see it gone")
            for _ in range(3):
                reply = a.request("GET", "/api/workflows/roam/instances")
                assert reply.status == 503, reply.text
                [error] = json.loads(reply.text)["errors"]
                assert "unreachable" in error["message"] and "\n" not in error["message"]
            time.sleep(3.5)  # a round of the workers each second
        finally:
            server.start()
        wait_until(a.healthy, timeout=30, what="a to be back")
        wait_until(lambda: "reachable again" in a.output(), timeout=20, what="the line saying so")
        # The server's lines (its worker says the same of its own connections, once each).
        lines = a.output().splitlines()
        said = [line for line in lines if line.startswith("wf serve:") and "reachable" in line]
        assert len(said) == 2, a.output()
        assert "Traceback" not in a.output()
        assert "error ignored terminating" not in a.output()  # psycopg repeating the outage


def test_a_node_stops_on_ctrl_c_while_its_database_is_down(tmp_path: Path) -> None:
    """Ctrl-C must stop a node whose database went away: what its workers held cannot be given
    back now, and need not be (their lease lapses); the node and its workers exit."""
    if find_binaries() is None:
        pytest.skip(SKIP_REASON)
    with (
        own_cluster() as server,
        cluster(tmp_path, server.admin_url, names=("a",), workflow="roam") as (a,),
    ):
        a.start()
        a.deploy(project(tmp_path / "p"))
        create(a, "held", steps=30, nap=0.5)
        running_steps(a, ["held"])
        tree = a.tree()
        assert len(tree) >= 2, tree  # the server and its worker
        server.stop("fast")
        wait_until(lambda: "is unreachable" in a.output(), timeout=20, what="a to see it gone")
        assert a.process is not None
        os.kill(a.pid, signal.SIGINT)
        try:
            a.process.wait(60)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the node did not stop on Ctrl-C with its database down: {a.output()}")
        wait_until(
            lambda: not any(a._ours(pid) for pid in tree), timeout=20, what="its workers to exit"
        )
        assert "Traceback" not in a.output()
