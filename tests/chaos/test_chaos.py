"""The chaos suite: ``wf dev`` SIGKILLed as a whole (supervisor and child) at random moments while
a client creates instances and sends events over REST, restarted each time on the same project.

Quick form by default (part of ``make test``); ``WF_CHAOS=full`` (``make chaos``) runs the full
form. The kill schedule is seeded: the seed is printed, and ``WF_CHAOS_SEED`` replays it.

What must hold (checked after every kill, and at the end after a final, undisturbed life):

* every instance whose creation was acknowledged (HTTP 201, or 400 with code 10405 "already
  exists" when an unanswered request is sent again) exists, and in the end completes with the
  output its committed steps give;
* every step body ran at least once, and none ran again once its outcome was committed (the
  committed output is the token of the step's last body run, and never changes);
* a body runs only as an attempt recorded before it began, each attempt at most once;
* ``PRAGMA integrity_check`` is ok, and no instance is left queued, running or waiting.
"""

from __future__ import annotations

import math
import os
import random
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.chaos import checks, workload
from tests.chaos.harness import NO_ANSWER, Client, Server, request
from tests.e2e.helpers import free_port
from tests.summary_lines import add_summary_line

FULL = os.environ.get("WF_CHAOS", "").strip().lower() == "full"
FORM = "full" if FULL else "quick"
TARGET_KILLS = 210 if FULL else 20
INSTANCES = 1100 if FULL else 90
FINISH_TIMEOUT = 240.0 if FULL else 40.0  # the final life must finish every instance in this
START_TIMEOUT = 45.0  # a restarted server must answer /api/health within this

# The quick form takes about 30-50 s; the timeout leaves room for a loaded machine.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(3600 if FULL else 300)]


def kill_plan(rng: random.Random, startup: float) -> tuple[str, float]:
    """How a life ends: killed early (the supervisor or the child starting), killed while the
    child starts or recovers, killed a moment after a creation request went out (while it
    commits or answers), or killed at a random moment once it serves."""
    r = rng.random()
    if r < 0.12:
        return "early", rng.uniform(0.0, 0.3)
    if r < 0.27:
        return "startup", rng.uniform(0.3, max(0.35, startup * 1.2))
    if r < 0.45:
        return "request", rng.uniform(0.0, 0.003)
    return "running", rng.uniform(0.02, 2.2)


def unfinished(url: str) -> dict[str, int] | None:
    """Instances per unfinished status (plus "total"), over REST; None if nothing answers."""
    base = f"{url}/api/workflows/{workload.WORKFLOW_NAME}/instances?per_page=1"
    counts: dict[str, int] = {}
    try:
        for status in ("", *checks.UNFINISHED):
            code, body = request(base + (f"&status={status}" if status else ""))
            if code != 200:
                return None
            counts[status or "total"] = int(body["result_info"]["total_count"])
    except NO_ANSWER:
        return None
    return counts


def test_wf_dev_survives_sigkills_of_the_whole_server(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    seed = int(os.environ.get("WF_CHAOS_SEED", random.randrange(2**32)))
    print(f"chaos ({FORM}) seed {seed} (replay with WF_CHAOS_SEED={seed})")
    rng = random.Random(seed)
    project, marker, logs = tmp_path / "proj", tmp_path / "marks.log", tmp_path / "logs"
    logs.mkdir()
    db = project / ".wf" / "wf.db"
    port = free_port()
    units, numbers = workload.plan(rng, INSTANCES)
    watch = checks.Watch(seed)
    fail = watch.fail
    client = Client(f"http://127.0.0.1:{port}", units, numbers, rng.randrange(2**32))
    landing: Counter[str] = Counter()
    durabilities: Counter[str] = Counter()
    startups: list[float] = []
    kills = lives = 0
    server: Server | None = None
    before = checks.Snapshot()
    began = time.monotonic()
    client.start()
    try:
        while kills < TARGET_KILLS:
            lives += 1
            durability = "os" if rng.random() < 1 / 3 else "fsync"
            durabilities[durability] += 1
            workload.write_project(project, marker, port, durability)
            client.released = max(
                client.released, math.ceil(len(units) * (kills + 1) / TARGET_KILLS)
            )
            server = Server(project, port, logs / f"life-{lives:04d}.log")
            estimate = sum(startups[-10:]) / len(startups[-10:]) if startups else 0.7
            kind, delay = kill_plan(rng, estimate)
            if kind in ("running", "request"):
                assert server.wait_healthy(START_TIMEOUT), fail(
                    f"wf dev did not come back in life {lives} after {kills} kills:\n"
                    f"{server.output()}"
                )
                startups.append(time.monotonic() - server.started)
                if kind == "request":
                    time.sleep(rng.uniform(0.0, 0.5))
                    client.creating.clear()
                    if client.release_one_more():
                        client.creating.wait(3.0)
                time.sleep(delay)
            else:
                time.sleep(max(0.0, server.started + delay - time.monotonic()))
            assert server.process.poll() is None, fail(
                f"wf dev exited by itself with {server.process.returncode} in life {lives}:\n"
                f"{server.output()}"
            )
            where = {"request in flight"} if client.inflight else set()
            if not server.has_child():
                where.add("supervisor startup")
            elif not server.serving():
                where.add("child startup")
            server.kill()
            kills += 1
            acked = client.acked_ids()  # every one of these was answered before the kill
            after = checks.snapshot(db)
            marks = checks.read_marks(marker)
            where |= checks.landed(before, after, marks)
            landing.update(where or {"between steps"})
            watch.check(kills, after, marks, acked)
            if db.exists():
                integrity = checks.integrity(db)
                assert integrity == ["ok"], fail(f"integrity_check after kill {kills}: {integrity}")
            before = after
        acked_in_chaos = len(client.acked_ids())

        # The last life, undisturbed: every creation and event goes through, everything ends.
        lives += 1
        durabilities["fsync"] += 1
        workload.write_project(project, marker, port, "fsync")
        client.released = len(units)
        server = Server(project, port, logs / f"life-{lives:04d}.log")
        assert server.wait_healthy(START_TIMEOUT), fail(
            f"wf dev did not come back after the last kill:\n{server.output()}"
        )
        deadline = time.monotonic() + FINISH_TIMEOUT
        counts = None
        while time.monotonic() < deadline:
            counts = unfinished(server.url) if client.done() else None
            if (
                counts
                and counts["total"] == len(numbers)
                and not any(counts[s] for s in checks.UNFINISHED)
            ):
                break
            time.sleep(0.1)
        else:
            client.stop()
            server.stop()
            snap = checks.snapshot(db)
            pytest.fail(
                fail(
                    f"{FINISH_TIMEOUT:.0f}s after the last restart: client done "
                    f"{client.done()} ({len(client.acked_ids())}/{len(numbers)} acknowledged, "
                    f"{client.stats}), REST counts {counts}; stuck: "
                    f"{checks.describe_unfinished(snap)}\n{server.output()}"
                )
            )
        client.stop()
        code = server.stop()
        assert code == 0, fail(f"wf dev stopped with {code} on Ctrl-C:\n{server.output()}")
    finally:
        client.stop()
        if server is not None:
            server.kill()
    elapsed = time.monotonic() - began

    assert not client.problems, fail(f"unexpected answers: {client.problems[:5]}")
    acked = client.acked_ids()
    assert acked == set(numbers), fail(f"never acknowledged: {sorted(set(numbers) - acked)}")
    final, marks = checks.snapshot(db), checks.read_marks(marker)
    assert checks.integrity(db) == ["ok"], fail(f"integrity_check: {checks.integrity(db)}")
    watch.check(kills + 1, final, marks, acked)
    totals = checks.verify_final(watch, final, marks, numbers, acked)
    batches = sum(1 for u in units if u.batch)
    summary = (
        f"chaos ({FORM}): {kills} kills in {lives} lives of wf dev "
        f"(fsync {durabilities['fsync']}, os {durabilities['os']}); {len(numbers)} instances "
        f"in {len(units)} creations ({batches} batches), {len(acked)} acknowledged "
        f"({acked_in_chaos} during the kills), {client.stats['creation retries']} creations "
        f"sent again ({client.stats['exists on retry']} answered 400 already exists), "
        f"{client.stats['events sent']} events; {totals['runs']} bodies run for "
        f"{totals['do steps']} committed do steps, {totals['re-runs']} re-runs before commit "
        f"({totals['interrupted attempts']} interrupted attempts, "
        f"{totals['planned failures']} planned failures), 0 after commit; kills landed: "
        f"{', '.join(f'{k} {v}' for k, v in sorted(landing.items()))}; "
        f"{elapsed:.1f}s; seed {seed}"
    )
    print(summary)
    add_summary_line(request.node, summary)
    if FULL:
        assert kills >= 200 and len(numbers) >= 1000, fail(summary)
        for place in ("child startup", "request in flight", "mid-step", "mid-commit"):
            assert landing[place] >= 1, fail(f"no kill landed in {place}: {summary}")
