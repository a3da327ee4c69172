"""``concurrency`` across a cluster: three ``wf serve`` nodes on one PostgreSQL database, 30
instances of a workflow limited to 3 running; the test samples the database all along. Each
node runs at most 2 at once ([engine] concurrency), so reaching 3 takes two nodes at once: the
node whose instance ends claims the next one at once, and would otherwise keep every slot."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from tests.e2e.cluster_helpers import cluster, query
from tests.e2e.helpers import wait_until

pytestmark = pytest.mark.slow

WF_TOML = """\
name = "flow"
main = "workflows.py"

[[workflows]]
name = "busy"
binding = "BUSY"
class_name = "Busy"
concurrency = 3

[engine]
concurrency = 2
"""

WORKFLOWS = """\
import os
import time

from wf import WorkflowEntrypoint


class Busy(WorkflowEntrypoint):
    async def run(self, event, step):
        def work():
            time.sleep(0.2)
            return os.environ.get("WF_TEST_NODE")

        await step.do("one", work)
        return await step.do("two", work)
"""

RUNNING = (
    "SELECT count(*) FROM wf.instances WHERE workflow = 'busy' AND status = 'running' "
    "AND owner IS NOT NULL"
)
MOST_ON_ONE_NODE = (
    "SELECT coalesce(max(n), 0) FROM (SELECT count(*) AS n FROM wf.instances i "
    "JOIN wf.owners o ON o.owner = i.owner WHERE i.workflow = 'busy' AND i.status = 'running' "
    "GROUP BY o.node) AS per_node"
)


def test_three_nodes_never_run_more_than_the_limit(tmp_path: Path, pg_url: str) -> None:
    root = tmp_path / "proj"
    root.mkdir()
    (root / "wf.toml").write_text(WF_TOML)
    (root / "workflows.py").write_text(WORKFLOWS)
    most = 0
    most_on_one = 0
    samples = 0
    stop = threading.Event()

    def sample() -> None:
        nonlocal most, most_on_one, samples
        while not stop.is_set():
            most = max(most, query(pg_url, RUNNING)[0][0])
            most_on_one = max(most_on_one, query(pg_url, MOST_ON_ONE_NODE)[0][0])
            samples += 1
            time.sleep(0.005)

    with cluster(tmp_path, pg_url, ("a", "b", "c"), workflow="busy") as nodes:
        a, b, c = nodes
        a.start()
        a.deploy(root)
        b.start(token=a.token)
        c.start(token=a.token)
        # A node's worker starts a moment after the node answers.
        wait_until(
            lambda: query(pg_url, "SELECT count(DISTINCT node) FROM wf.owners")[0][0] == 3,
            timeout=60,
            what="a worker on each of the three nodes",
        )
        sampler = threading.Thread(target=sample)
        sampler.start()
        try:
            for index in range(30):
                node = nodes[index % 3]
                node.api("/api/workflows/busy/instances", "POST", {"id": f"i{index}"})

            def all_complete() -> bool:
                done = query(
                    pg_url,
                    "SELECT count(*) FROM wf.instances WHERE workflow = 'busy' "
                    "AND status = 'complete'",
                )
                return bool(done[0][0] == 30)

            wait_until(all_complete, timeout=180, what="the 30 instances to complete")
        finally:
            stop.set()
            sampler.join()
    ran_on = {row[0] for row in query(pg_url, "SELECT output FROM wf.instances")}
    assert samples > 50
    assert most == 3  # reached (by two nodes at once), never passed
    assert most_on_one == 2
    assert len(ran_on) >= 2, ran_on
