"""The cluster chaos suite: three ``wf serve`` nodes on one PostgreSQL database (a cluster of the
test's own, since it restarts it), the chaos workload deployed on them, and clients creating
instances and sending events through all three nodes in turn, while nodes are SIGKILLed and
restarted, one node is frozen (SIGSTOP) past its lease and thawed, and PostgreSQL itself is
stopped with ``pg_ctl stop -m fast`` or ``-m immediate`` and started again.

Quick form by default (part of ``make test``: at least one of each disruption); ``WF_CHAOS=full``
(``make chaos``) runs at least 3 of each across at least 1,000 acknowledged instances. The
schedule is seeded: the seed is printed, and ``WF_CHAOS_SEED`` replays it (as far as timing
allows: the nodes and PostgreSQL run on their own).

What must hold (checked after every disruption on what was committed, and at the end, after an
undisturbed finish, on everything):

* every instance whose creation was acknowledged (HTTP 201, or 400 with code 10405 "already
  exists" when an unanswered request is sent again) completes with the output its committed
  steps give;
* no committed step body runs again (the committed output is the token of the body's last run,
  and never changes), and a body runs only as a recorded attempt, each attempt at most once;
* no step and no attempt is recorded twice in ``wf.steps`` / ``wf.attempts``;
* no instance finishes twice (a trigger of the test logs every finish written to the database).
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.chaos import checks, pg_state, workload
from tests.chaos.harness import Client
from tests.e2e.cluster_helpers import Node
from tests.postgres import HOW_TO, SKIP_REASON, Cluster, find_binaries, own_cluster, required
from tests.summary_lines import add_summary_line

FULL = os.environ.get("WF_CHAOS", "").strip().lower() == "full"
FORM = "full" if FULL else "quick"
NAMES = ("a", "b", "c")
LEASE = 3.0  # --lease of every node: a frozen node loses its instances after this
INSTANCES = 1100 if FULL else 240
# How many of each disruption; they run one after another, in a seeded order.
PLAN = (
    {"kill": 8, "freeze": 4, "pg fast": 3, "pg immediate": 3}
    if FULL
    else {
        "kill": 2,
        "freeze": 2,
        "pg fast": 1,
        "pg immediate": 1,
    }
)
GAP = (1.0, 4.0)  # seconds of undisturbed running before each disruption
FINISH_TIMEOUT = 300.0 if FULL else 60.0  # after the last disruption, everything ends within it
CLIENTS = 3  # each starts its turns at another node
LOG_TAIL = 25  # lines of each node's log in a failure's message

# The quick form takes about a minute; the timeout leaves room for a loaded machine.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(3600 if FULL else 400)]


class Chaos:
    """The nodes, the database and what happened to them, for the figures and the messages."""

    def __init__(self, home: Path, database: str, seed: int, marker: Path) -> None:
        self.home = home
        self.marker = marker
        self.database = database
        self.seed = seed
        self.watch = checks.Watch(seed)
        self.nodes = [Node(home, database, name, lease=LEASE, workflow="chaos") for name in NAMES]
        self.token = ""
        self.done: Counter[str] = Counter()
        self.frozen_seconds = 0.0
        self.outages: list[float] = []  # seconds PostgreSQL was down, each time
        self.landed: Counter[str] = Counter()  # where the kills and freezes landed
        self.events: list[str] = []  # what was done when

    def fail(self, message: str) -> str:
        """``message``, the seed and the tail of every node's log."""
        return self.watch.fail(message) + "\n" + self.tails()

    @contextlib.contextmanager
    def told(self) -> Iterator[None]:
        """The checks of ``tests.chaos.checks`` (which name the seed) fail with the logs too."""
        try:
            yield
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.tails()}") from None

    def tails(self) -> str:
        tails = []
        for node in self.nodes:
            state = "never started"
            if node.process is not None:
                code = node.process.poll()
                state = "running" if code is None else f"exited {code}"
            lines = node.output().splitlines()[-LOG_TAIL:]
            tails.append(f"--- node {node.name} ({state}; {node.log}):\n" + "\n".join(lines))
        return "\n".join(["disruptions: " + "; ".join(self.events), *tails])

    def start(self, node: Node) -> None:
        try:
            node.start(token=self.token or None)
        except AssertionError as exc:
            raise AssertionError(self.fail(f"node {node.name} did not start: {exc}")) from None
        self.token = self.token or node.token

    def check_alive(self, when: str) -> None:
        for node in self.nodes:
            assert node.process is not None and node.process.poll() is None, self.fail(
                f"node {node.name} exited by itself ({when})"
            )


def victim(chaos: Chaos, rng: random.Random, what: str) -> Node:
    """A node to disrupt. Mostly one whose step bodies run at that moment (waiting up to two
    seconds for one), else any, weighted by the instances it holds: a kill that hits nothing
    tests little. Where it landed is counted for the figures."""
    ids = [node.node_id for node in chaos.nodes]
    held = pg_state.claims(chaos.database, ids)
    if rng.random() < 0.75:
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline and not any(running for _, running in held.values()):
            time.sleep(0.01)
            held = pg_state.claims(chaos.database, ids)
    weights = [held[i][1] * 100 + held[i][0] + 1 for i in ids]
    node = rng.choices(chaos.nodes, weights)[0]
    instances, running = held[node.node_id]
    chaos.landed[f"{what} {'mid-step' if running else 'holding' if instances else 'idle'}"] += 1
    return node


def kill_and_restart(chaos: Chaos, rng: random.Random) -> str:
    """A node dies with its workers (the host died), and comes back a moment or a lease later."""
    node = victim(chaos, rng, "kill")
    node.kill()
    time.sleep(rng.uniform(0.1, LEASE * 1.3))
    chaos.start(node)
    return f"killed {node.name}"


def freeze_and_thaw(chaos: Chaos, rng: random.Random) -> str:
    """A node (its server and workers) stops past its lease: the others take its instances over,
    and every write it tries when it wakes is refused."""
    node = victim(chaos, rng, "freeze")
    frozen = time.monotonic()
    node.freeze()
    try:
        time.sleep(LEASE + rng.uniform(1.0, 3.0))
    finally:
        node.thaw()
    chaos.frozen_seconds += time.monotonic() - frozen
    return f"froze {node.name}"


def restart_postgres(chaos: Chaos, cluster: Cluster, mode: str, rng: random.Random) -> str:
    """``pg_ctl stop -m <mode>``, down a moment (requests meanwhile get 503), then start."""
    down = time.monotonic()
    cluster.stop(mode)
    if mode == "immediate":  # what began before it may have lost its lazily committed start
        chaos.watch.crash_cuts.append(chaos.marker.read_text().count("\n"))
    time.sleep(rng.uniform(0.0, 2.0))
    cluster.start()
    chaos.outages.append(time.monotonic() - down)
    return f"PostgreSQL restarted ({mode})"


def release(clients: list[Client], fraction: float) -> None:
    for client in clients:
        client.released = max(client.released, math.ceil(len(client.units) * fraction))


def test_a_cluster_of_three_wf_serve_nodes_survives_kills_freezes_and_postgres_restarts(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if find_binaries() is None:
        if required():
            pytest.fail(f"{SKIP_REASON} and WF_REQUIRE_POSTGRES is set: {HOW_TO}")
        pytest.skip(f"{SKIP_REASON}: {HOW_TO}")
    seed = int(os.environ.get("WF_CHAOS_SEED", random.randrange(2**32)))
    print(f"cluster chaos ({FORM}) seed {seed} (replay with WF_CHAOS_SEED={seed})")
    rng = random.Random(seed)
    units, numbers = workload.plan(rng, INSTANCES)
    schedule = [what for what, times in PLAN.items() for _ in range(times)]
    rng.shuffle(schedule)
    project, marker = tmp_path / "project", tmp_path / "marks.log"
    workload.write_project(project, marker, 8787, "fsync")  # [dev] port: unused
    began = time.monotonic()
    with own_cluster() as cluster:
        database = cluster.url("postgres")
        chaos = Chaos(tmp_path, database, seed, marker)
        fail = chaos.fail
        # Each client sends its share of the creations to the nodes in turn, from its own first.
        shares = [units[k::CLIENTS] for k in range(CLIENTS)]
        clients: list[Client] = []
        try:
            for node in chaos.nodes:
                chaos.start(node)
            pg_state.install_finish_audit(database)
            version = chaos.nodes[0].deploy(project)
            for node in chaos.nodes:
                deadline = time.monotonic() + 30
                while version not in node.workers().values():
                    assert time.monotonic() < deadline, fail(f"node {node.name} runs no worker")
                    time.sleep(0.1)
            urls = [node.url for node in chaos.nodes]
            for k, share in enumerate(shares):
                turn = urls[k % len(urls) :] + urls[: k % len(urls)]
                client = Client(
                    turn, share, numbers, rng.randrange(2**32), token=chaos.token, name=f"c{k}"
                )
                clients.append(client)
                client.start()
            chaos_began = time.monotonic()

            for number, what in enumerate(schedule, 1):
                # Creations and events go on before and during each disruption.
                release(clients, (number - 0.5) / len(schedule))
                time.sleep(rng.uniform(*GAP))
                chaos.check_alive(f"before disruption {number}")
                release(clients, number / len(schedule))
                if what == "kill":
                    done = kill_and_restart(chaos, rng)
                elif what == "freeze":
                    done = freeze_and_thaw(chaos, rng)
                else:
                    mode = what.removeprefix("pg ")
                    done = restart_postgres(chaos, cluster, mode, rng)
                chaos.done[what] += 1
                chaos.events.append(f"{time.monotonic() - chaos_began:.1f}s {done}")
                # What was committed so far stays so, whatever the nodes do meanwhile.
                acked = set().union(*(c.acked_ids() for c in clients))
                snap = pg_state.snapshot(database)
                with chaos.told():
                    chaos.watch.check(number, snap, checks.read_marks(marker), acked, settled=False)
            chaos_seconds = time.monotonic() - chaos_began
            acked_in_chaos = sum(len(c.acked_ids()) for c in clients)

            # The undisturbed finish: every creation and event goes through, everything ends.
            release(clients, 1.0)
            deadline = time.monotonic() + FINISH_TIMEOUT
            counts: dict[str, int] = {}
            while time.monotonic() < deadline:
                chaos.check_alive("in the undisturbed finish")
                counts = pg_state.status_counts(database)
                finished = all(c.done() for c in clients) and not any(
                    counts.get(s) for s in checks.UNFINISHED
                )
                if finished and sum(counts.values()) == len(numbers):
                    break
                time.sleep(0.2)
            else:
                snap = pg_state.snapshot(database)
                stats = sum((c.stats for c in clients), Counter[str]())
                pytest.fail(
                    fail(
                        f"{FINISH_TIMEOUT:.0f}s after the last disruption: clients done "
                        f"{[c.done() for c in clients]}, {stats}; statuses {counts}; stuck: "
                        f"{checks.describe_unfinished(snap)}"
                    )
                )
            for client in clients:
                client.stop()
            for node in chaos.nodes:
                node.stop()
                assert node.process is not None and node.process.returncode == 0, fail(
                    f"node {node.name} stopped with {node.process and node.process.returncode} "
                    "on Ctrl-C"
                )

            # ---- the checks, on everything, with nothing running ------------------------------
            problems = [p for c in clients for p in c.problems]
            assert not problems, fail(f"unexpected answers: {problems[:5]}")
            acked = set().union(*(c.acked_ids() for c in clients))
            assert acked == set(numbers), fail(
                f"never acknowledged: {sorted(set(numbers) - acked)[:10]}"
            )
            final, marks = pg_state.snapshot(database), checks.read_marks(marker)
            with chaos.told():
                chaos.watch.check(len(schedule) + 1, final, marks, acked)
                totals = checks.verify_final(chaos.watch, final, marks, numbers, acked)
            twice = pg_state.recorded_twice(database)
            assert not twice, fail(f"recorded twice: {twice[:10]}")
            finishes = pg_state.finishes(database)
            for instance in sorted(acked):
                written = finishes.get(instance, [])
                assert len(written) == 1, fail(
                    f"{instance} was finished {len(written)} times: {written}"
                )
                _, status, output = written[0]
                assert status == "complete" and output is not None, fail(f"{instance}: {written}")
            held = pg_state.held(database)
            assert not held, fail(f"finished instances still claimed: {held[:10]}")
        finally:
            for client in clients:
                client.stop()
            for node in chaos.nodes:
                node.close()
    elapsed = time.monotonic() - began

    stats = sum((c.stats for c in clients), Counter[str]())
    batches = sum(1 for u in units if u.batch)
    unavailable = sum(v for k, v in stats.items() if k.startswith("HTTP 5"))
    no_answer = sum(v for k, v in stats.items() if k.startswith("no answer"))
    summary = (
        f"cluster chaos ({FORM}): 3 nodes, lease {LEASE:g}s; {chaos.done['kill']} kills, "
        f"{chaos.done['freeze']} freezes ({chaos.frozen_seconds:.1f}s frozen), "
        f"{chaos.done['pg fast'] + chaos.done['pg immediate']} PostgreSQL restarts "
        f"({chaos.done['pg fast']} fast, {chaos.done['pg immediate']} immediate; down "
        f"{sum(chaos.outages):.1f}s) in {chaos_seconds:.1f}s of chaos; {len(numbers)} "
        f"instances in {len(units)} creations ({batches} batches) by {CLIENTS} clients, "
        f"{len(acked)} acknowledged ({acked_in_chaos} during the chaos), "
        f"{stats['creation retries']} creations sent again ({stats['exists on retry']} answered "
        f"400 already exists), {stats['events sent']} events; {unavailable} answers 5xx, "
        f"{no_answer} requests unanswered; {totals['runs']} bodies run for "
        f"{totals['do steps']} committed do steps, {totals['re-runs']} re-runs before commit "
        f"({totals['interrupted attempts']} interrupted attempts, "
        f"{totals['planned failures']} planned failures), 0 after commit; "
        f"{len(chaos.watch.lost_starts)} attempt starts lost to immediate restarts; landed: "
        f"{', '.join(f'{k} {v}' for k, v in sorted(chaos.landed.items()))}; "
        f"{elapsed:.1f}s; seed {seed}"
    )
    told = f"{summary}\n  " + "\n  ".join(chaos.events)
    print(told)
    add_summary_line(request.node, told)
    if FULL:
        assert len(acked) >= 1000, fail(summary)
        assert all(chaos.done[what] >= 3 for what in PLAN), fail(summary)
