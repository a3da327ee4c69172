"""The crash test: SIGKILL a process running workflows at random moments, many times over.

A child process (``tests/crash_child.py crash``) runs rounds of concurrent ``crashy`` instances on
one SQLite file. The test kills it after a random (seeded) delay, looks at what the database and the
step bodies' marker file say, and starts it again; the engine recovers by itself on start. When a
child finishes its instances before the kill, the next round begins.

What must hold, checked after every kill and at the end:

* a step whose outcome was committed never runs its body again: the number of body runs of a
  committed step never changes after the kill that first saw it committed, and its committed
  output is the token returned by its last body run;
* every body run belongs to an attempt that was recorded before it began (runs <= attempts, each
  attempt number runs at most once);
* every instance completes with the right output; interrupted attempts are recorded as
  ``WorkflowInternalError``, planned failures as ``ConnectionError``.

Set ``WF_CRASH_SEED`` to replay a seed (it is printed, and named in every failure).
"""

from __future__ import annotations

import json
import os
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests import crash_child as cc
from tests.recovery.helpers import Child, Mark, children, query, read_marks, runs_by_step

pytestmark = pytest.mark.slow

TARGET_KILLS = 60
INSTANCES = 5
MAX_LIVES = 250
STARTUP_EVERY = 7  # every 7th life is killed within its first 50 ms
INTERRUPTED = "WorkflowInternalError"

StepKey = tuple[str, str]  # (instance id, step display name)


@dataclass
class Snapshot:
    """What the database held after a kill (nothing runs while it is read)."""

    statuses: dict[str, str]
    outputs: dict[str, Any]
    steps: dict[StepKey, dict[str, Any]]
    attempts: dict[StepKey, list[dict[str, Any]]]

    @property
    def open_attempts(self) -> set[tuple[str, str, int]]:
        return {
            (key[0], key[1], a["number"])
            for key, attempts in self.attempts.items()
            for a in attempts
            if a["ended"] is None
        }

    def committed(self) -> dict[StepKey, str]:
        """The do steps whose outcome (success) is committed, with their stored output."""
        return {
            key: step["output"]
            for key, step in self.steps.items()
            if step["kind"] == "do" and step["state"] == "succeeded"
        }


def snapshot(db: Path) -> Snapshot:
    # A life killed while it opened the file, before its schema was committed, leaves an empty
    # database: nothing was written yet. (A schema only half there still fails the queries.)
    if not db.exists() or not query(db, "SELECT 1 FROM sqlite_master WHERE name = 'instances'"):
        return Snapshot({}, {}, {}, {})
    statuses, outputs = {}, {}
    for instance, status, output in query(db, "SELECT id, status, output FROM instances"):
        statuses[instance] = status
        outputs[instance] = None if output is None else json.loads(output)
    steps: dict[StepKey, dict[str, Any]] = {}
    for row in query(
        db,
        "SELECT i.id, s.name || '-' || s.count, s.kind, s.state, s.output, s.started, s.ended, "
        "s.wake_at, s.duration FROM steps s JOIN instances i ON i.pk = s.instance",
    ):
        names = ("kind", "state", "output", "started", "ended", "wake_at", "duration")
        steps[(row[0], row[1])] = dict(zip(names, row[2:], strict=True))
    attempts: dict[StepKey, list[dict[str, Any]]] = {}
    for row in query(
        db,
        "SELECT i.id, a.name || '-' || a.count, a.number, a.ended, a.success, a.error "
        "FROM attempts a JOIN instances i ON i.pk = a.instance ORDER BY a.number",
    ):
        error = None if row[5] is None else json.loads(row[5])
        attempts.setdefault((row[0], row[1]), []).append(
            {"number": row[2], "ended": row[3], "success": row[4], "error": error}
        )
    return Snapshot(statuses, outputs, steps, attempts)


def classify(
    kill_at: float, started: bool, before: Snapshot, after: Snapshot, marks: list[Mark]
) -> set[str]:
    """Where a kill landed: during startup (engine not started yet), in an attempt (one this
    process began was still open; "outcome in flight" if its body had already returned or raised),
    in a sleep or a wait (a sleep, a retry delay or an event wait was pending), or elsewhere
    ("between steps": replaying, claiming, committing, finishing)."""
    if not started:
        return {"startup"}
    landed = set()
    new_open = after.open_attempts - before.open_attempts
    if new_open:
        landed.add("mid-attempt")
        done = {(m.instance, m.step, m.attempt) for m in marks if m.kind in ("ret", "err")}
        if new_open & done:
            landed.add("outcome in flight")
    for step in after.steps.values():
        if step["state"] != "running" or step["started"] > kill_at:
            continue
        timer = step["wake_at"]
        if step["kind"] == "wait" or (timer is not None and kill_at < timer):
            landed.add("sleeping/waiting")
    if not landed:
        landed.add("between steps")
    return landed


@dataclass
class Watch:
    """Facts from earlier kills that later states must keep."""

    seed: int
    # step -> (committed output, body runs when it was first seen committed, life that saw it)
    committed: dict[StepKey, tuple[str, int, int]] = field(default_factory=dict)

    def fail(self, message: str) -> str:
        return f"{message} (seed {self.seed}; replay with WF_CRASH_SEED={self.seed})"

    def check(self, life: int, snap: Snapshot, marks: list[Mark]) -> None:
        runs = runs_by_step(marks)
        for key, output in snap.committed().items():
            count = len(runs.get(key, []))
            first = self.committed.setdefault(key, (output, count, life))
            assert output == first[0], self.fail(
                f"{key}: committed output changed from {first[0]} to {output} after life {life}"
            )
            assert count == first[1], self.fail(
                f"{key}: its body ran {count - first[1]} more time(s) after its outcome was "
                f"committed (seen committed after life {first[2]}, checked after life {life})"
            )
            assert count >= 1 and output == json.dumps(runs[key][-1].token), self.fail(
                f"{key}: committed output {output} is not the token of its last body run "
                f"{runs.get(key, [])[-1:]}"
            )
        for key, body_runs in runs.items():
            recorded = {a["number"] for a in snap.attempts.get(key, [])}
            numbers = [m.attempt for m in body_runs]
            assert len(numbers) == len(set(numbers)), self.fail(
                f"{key}: one attempt ran its body twice: attempts {numbers}"
            )
            assert set(numbers) <= recorded, self.fail(
                f"{key}: bodies ran as attempts {numbers} but only {sorted(recorded)} are "
                "recorded: a body ran without its attempt being committed first"
            )


def kill_delay(rng: random.Random, life: int) -> float:
    if life % STARTUP_EVERY == 3:
        return rng.uniform(0.0, 0.05)  # while the interpreter or the engine starts
    return rng.uniform(0.05, 0.9)  # a round takes about a second: attempts, sleeps, commits


def test_sigkill_at_random_points_never_reruns_a_committed_step(tmp_path: Path) -> None:
    seed = int(os.environ.get("WF_CRASH_SEED", random.randrange(2**32)))
    print(f"crash test seed {seed} (replay with WF_CRASH_SEED={seed})")
    rng = random.Random(seed)
    db, marker = tmp_path / "crash.db", tmp_path / "markers.tsv"
    watch = Watch(seed)
    landed: Counter[str] = Counter()
    durabilities: Counter[str] = Counter()
    kills = lives = 0
    current_round = 0
    began = time.monotonic()
    before = snapshot(db)
    with children() as started:
        while kills < TARGET_KILLS:
            assert lives < MAX_LIVES, watch.fail(f"only {kills} kills in {lives} lives")
            durability = "os" if lives % 3 == 2 else "fsync"
            durabilities[durability] += 1
            delay = kill_delay(rng, lives)
            child = Child(
                "crash", db, marker, "--create", current_round, "--instances", INSTANCES,
                "--durability", durability, "--seed", rng.randrange(2**31),
            )  # fmt: skip
            started.append(child)
            lives += 1
            code = child.wait(delay)
            kill_at = time.time()
            if code is None:
                code = child.kill()
            if code == 0:  # it finished its instances before the kill: next round
                current_round += 1
                before = snapshot(db)
                watch.check(lives, before, read_marks(marker))
                continue
            assert code == -9, watch.fail(f"exit {code} instead of SIGKILL; {child.describe()}")
            kills += 1
            after = snapshot(db)
            marks = read_marks(marker)
            landed.update(classify(kill_at, child.has_line("started"), before, after, marks))
            watch.check(lives, after, marks)
            before = after
        # The last round, undisturbed.
        child = Child("crash", db, marker, "--durability", "fsync", "--seed", rng.randrange(2**31))
        started.append(child)
        assert child.finish(60) == 0, watch.fail(child.describe())
    elapsed = time.monotonic() - began

    final, marks = snapshot(db), read_marks(marker)
    watch.check(lives + 1, final, marks)
    totals = verify_final(watch, final, marks)
    rounds = len({instance.split("-")[0] for instance in final.statuses})
    summary = (
        f"crash test: {kills} SIGKILLs survived in {lives + 1} processes "
        f"(fsync {durabilities['fsync'] + 1}, os {durabilities['os']}), "
        f"{len(final.statuses)} instances in {rounds} rounds all complete; kills "
        f"landed: {', '.join(f'{k} {v}' for k, v in sorted(landed.items()))}; "
        f"{totals['steps']} committed do steps, {totals['runs']} body runs, "
        f"{totals['interrupted']} interrupted attempts, {totals['reran']} bodies re-run after a "
        f"kill before their outcome was committed; {elapsed:.1f}s; seed {seed}"
    )
    print(summary)
    assert landed["mid-attempt"] >= 1, watch.fail(summary)
    assert landed["sleeping/waiting"] >= 1, watch.fail(summary)
    assert landed["startup"] + landed["between steps"] >= 1, watch.fail(summary)


def verify_final(watch: Watch, snap: Snapshot, marks: list[Mark]) -> dict[str, int]:
    fail = watch.fail
    runs = runs_by_step(marks)
    by_token = {(m.instance, m.step, m.attempt, m.kind): m.token for m in marks}
    totals = Counter(runs=sum(len(r) for r in runs.values()))
    assert snap.statuses, fail("no instances were created")
    for instance, status in snap.statuses.items():
        assert status == "complete", fail(f"{instance} ended {status}")
        n = int(instance.split("-i")[1])
        names = {step for (owner, step) in snap.steps if owner == instance}
        assert names == set(cc.CRASHY_STEPS), fail(f"{instance} has steps {sorted(names)}")
        token = {s: json.loads(snap.steps[(instance, s)]["output"]) for s in cc.CRASHY_DO_STEPS}
        assert snap.outputs[instance] == {
            "n": n,
            "fetch": token["fetch-1"],
            "transform": token["transform-1"],
            "flaky": token["flaky-1"],
            "parts": [token[f"part {k}-1"] for k in range(cc.PARTS)],
            "event": cc.event_payload(instance),
            "tally": [token[f"tally-{k + 1}"] for k in range(cc.TALLIES)],
        }, fail(f"{instance}: wrong output {snap.outputs[instance]}")
        for name in names:
            step = snap.steps[(instance, name)]
            assert step["state"] == "succeeded", fail(f"{instance} {name}: {step}")
            if step["kind"] == "sleep":
                slept = step["ended"] - step["started"]
                assert slept >= step["duration"] - 1e-3, fail(
                    f"{instance} {name}: slept {slept:.3f}s of {step['duration']}s"
                )
        for name in cc.CRASHY_DO_STEPS:
            key = (instance, name)
            attempts = snap.attempts[key]
            body_runs = runs[key]
            totals["steps"] += 1
            numbers = [a["number"] for a in attempts]
            assert numbers == list(range(1, len(attempts) + 1)), fail(f"{key}: {numbers}")
            *failed, last = attempts
            assert last["success"] == 1 and last["ended"] is not None, fail(f"{key}: {last}")
            assert body_runs[-1].attempt == last["number"], fail(
                f"{key}: last body run was attempt {body_runs[-1].attempt}, the successful "
                f"attempt is {last['number']}"
            )
            assert by_token.get((instance, name, last["number"], "ret")) == token[name], fail(
                f"{key}: the successful attempt did not return the committed token"
            )
            for attempt in failed:
                assert attempt["success"] == 0 and attempt["ended"] is not None, fail(
                    f"{key}: attempt {attempt} left open or successful before the last one"
                )
                error = attempt["error"]["name"]
                planned = name == "flaky-1" and attempt["number"] <= cc.FLAKY_FAILURES
                assert error in ((INTERRUPTED, "ConnectionError") if planned else (INTERRUPTED,)), (
                    fail(f"{key}: attempt {attempt}")
                )
                if error == "ConnectionError":
                    assert (instance, name, attempt["number"], "err") in by_token, fail(
                        f"{key}: attempt {attempt} failed without its body raising"
                    )
                else:
                    totals["interrupted"] += 1
            interrupted = {a["number"] for a in failed if a["error"]["name"] == INTERRUPTED}
            totals["reran"] += sum(1 for m in body_runs if m.attempt in interrupted)
            if name == "flaky-1":
                assert last["number"] > cc.FLAKY_FAILURES, fail(f"{key}: {attempts}")
    return dict(totals)
