"""Nodes of a ``wf serve`` cluster on one PostgreSQL database, as an operator runs them: each
``python -m wf serve --database <url>`` in its own session with its own state folder and port.

``Node`` starts, stops (Ctrl-C), kills (SIGKILL, the node's whole process tree: a host that
dies takes its workers with it) and freezes (SIGSTOP of the tree, then SIGCONT: a long pause, a
partition) one node. Its workers run in sessions of their own, so the tree is found through
/proc, not by process group. The chaos suite and the benchmarks build on this.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg

from tests.e2e.helpers import WF, wait_until
from tests.e2e.serve_helpers import TOKEN_LINE, Serve, children, cmdline

CLUSTER_LINE = re.compile(r"cluster: node (\S+) on ")


def process_tree(pid: int) -> list[int]:
    """``pid`` and every live descendant of it."""
    found = [pid]
    for child in children(pid):
        found.extend(process_tree(child))
    return found


class Node(Serve):
    """One ``wf serve`` node of a cluster. ``token``: the cluster's (None: this node is the
    first, and prints one); ``lease``: ``--lease`` seconds; ``name``: WF_TEST_NODE in its
    environment (a workflow may say where it ran)."""

    def __init__(
        self,
        home: Path,
        database: str,
        name: str,
        *,
        lease: float | None = None,
        env: dict[str, str] | None = None,
        workflow: str = "pin",
    ) -> None:
        super().__init__(home, home / f"state-{name}")
        self.workflow = workflow  # what ``instance``, ``status`` and ``finished`` look at
        self.database = database
        self.name = name
        self.lease = lease
        self.env = env or {}
        self.node_id = ""
        self.printed_token: str | None = None
        self._tree: list[int] = []

    def start(self, *extra: str, token: str | None = None) -> Node:
        """Start and wait until it answers. ``token``: the cluster's, checked against the hash the
        first node stored (when none is given, the node must print one)."""
        env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "300", "WF_TEST_NODE": self.name}
        for name in ("WF_API_TOKEN", "WF_DATABASE_URL", "WF_URL"):
            env.pop(name, None)
        env.update(self.env)
        args = ["--database", self.database, *extra]
        if self.lease is not None:
            args += ["--lease", str(self.lease)]
        self.log = self.home / f"{self.name}-{time.monotonic_ns()}.log"
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [*WF, "serve", "--port", str(self.port), "--state", str(self.state), *args],
                cwd=self.home,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                env=env,
            )
        # The token line comes first, then the address, then the cluster line.
        found = wait_until(
            lambda: self.ready() and CLUSTER_LINE.search(self.output()),
            timeout=60,
            what=f"node {self.name} to be ready ({self.output()})",
        )
        self.node_id = found.group(1)
        output = self.output()
        printed = TOKEN_LINE.search(output)
        self.printed_token = printed.group(2) if printed else None
        self.token = self.printed_token or token or self.env.get("WF_API_TOKEN", "")
        assert self.token, f"node {self.name} printed no token and was given none: {output}"
        wait_until(self.healthy, timeout=30, what=f"node {self.name} on {self.url}")
        return self

    # ---- its processes --------------------------------------------------------------------------
    def tree(self) -> list[int]:
        """The node's server process and its workers (whatever is alive of them)."""
        return process_tree(self.pid) if self.process and self.process.poll() is None else []

    def signal_tree(self, signum: int) -> list[int]:
        """Send ``signum`` to the server and each of its workers; the pids it reached."""
        tree = self.tree()
        for pid in tree:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)
        return tree

    def kill(self) -> None:
        """SIGKILL the node and its workers at once: the host died."""
        if self.process is None:
            return
        tree = self.tree()
        for pid in tree:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.process.wait(10)
        wait_until(
            lambda: not any(_alive(pid) for pid in tree), timeout=10, what="the workers to die"
        )

    def freeze(self) -> None:
        """SIGSTOP the node and its workers: nothing of it runs until ``thaw``."""
        self._tree = self.signal_tree(signal.SIGSTOP)

    def thaw(self) -> None:
        for pid in self._tree:
            if self._ours(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)
        self._tree = []

    def stop(self) -> None:
        """Ctrl-C to the server (its workers stop gracefully, giving their instances back)."""
        if self.process is None or self.process.poll() is not None:
            return
        self.thaw()
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGINT)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.kill()

    def close(self) -> None:
        """Stop it (thawed first), and make sure nothing of it outlives the test: a worker that
        does not stop with its server is killed."""
        self.thaw()
        tree = self.tree()
        try:
            self.stop()
        finally:
            if self.process is not None and self.process.poll() is None:
                self.kill()
            with contextlib.suppress(AssertionError):
                wait_until(lambda: not any(self._ours(pid) for pid in tree), timeout=20)
            for pid in tree:
                if self._ours(pid):  # never a process that took a dead worker's pid
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)

    def _ours(self, pid: int) -> bool:
        """Whether ``pid`` is (still) this node's server or one of its workers."""
        if not _alive(pid) or not any("wf" in part for part in cmdline(pid)):
            return False
        try:
            return Path(os.readlink(f"/proc/{pid}/cwd")).is_relative_to(self.home)
        except OSError:
            return False

    def instance(self, instance_id: str, workflow: str | None = None) -> dict[str, Any]:
        return super().instance(instance_id, workflow or self.workflow)

    def health(self) -> dict[str, Any]:
        result: dict[str, Any] = self.api("/api/health")
        return result


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@contextlib.contextmanager
def cluster(
    home: Path,
    database: str,
    names: tuple[str, ...] = ("a", "b"),
    *,
    lease: float | None = None,
    workflow: str = "pin",
) -> Iterator[list[Node]]:
    """Nodes not yet started (the test starts them, the first without a token); every one is
    closed at the end, whatever state it is in."""
    nodes = [Node(home, database, name, lease=lease, workflow=workflow) for name in names]
    try:
        yield nodes
    finally:
        for node in nodes:
            node.close()


def query(database: str, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    """Rows of one query on the cluster's database (to check what was recorded)."""
    with psycopg.connect(database, autocommit=True, connect_timeout=10) as conn:
        return list(conn.execute(sql, args).fetchall())
