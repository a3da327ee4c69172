"""What the chaos suite reads after each kill and at the end: the SQLite file (read-only, while
no server runs) and the step bodies' marker file, and the properties they must keep."""

from __future__ import annotations

import contextlib
import itertools
import json
import sqlite3
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.chaos import workload

INTERRUPTED = "WorkflowInternalError"  # an attempt cut short by the death of its process
PLANNED = "ConnectionError"  # the flaky step's planned failure of its first attempt
UNFINISHED = ("queued", "running", "waiting", "paused", "waitingForPause")

StepKey = tuple[str, str]  # (instance id, step display name such as "tally-2")


@dataclass(frozen=True)
class Mark:
    instance: str
    step: str
    attempt: int
    token: str
    phase: str  # start, end (returned the token) or fail (raised the planned failure)


def read_marks(path: Path) -> list[Mark]:
    if not path.exists():
        return []
    marks = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        parts = line.split(" ")
        if len(parts) != 5 or parts[4] not in ("start", "end", "fail"):
            raise AssertionError(f"{path.name}:{number}: malformed marker line {line!r}")
        marks.append(Mark(parts[0], parts[1], int(parts[2]), parts[3], parts[4]))
    return marks


def runs_by_step(marks: list[Mark]) -> dict[StepKey, list[Mark]]:
    """The body runs (start marks) of each step, in the order they began."""
    runs: dict[StepKey, list[Mark]] = defaultdict(list)
    for mark in marks:
        if mark.phase == "start":
            runs[(mark.instance, mark.step)].append(mark)
    return runs


@contextlib.contextmanager
def read_only(db: Path) -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(db.as_uri() + "?mode=ro", uri=True)
    try:
        yield conn
    finally:
        conn.close()


def integrity(db: Path) -> list[str]:
    with read_only(db) as conn:
        return [str(row[0]) for row in conn.execute("PRAGMA integrity_check").fetchall()]


@dataclass
class Snapshot:
    """The database as the last process left it."""

    statuses: dict[str, str] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, Any] = field(default_factory=dict)
    steps: dict[StepKey, dict[str, Any]] = field(default_factory=dict)
    attempts: dict[StepKey, list[dict[str, Any]]] = field(default_factory=dict)

    def committed(self) -> dict[StepKey, str]:
        """Do steps whose successful outcome is committed, with their stored output (JSON)."""
        return {
            key: step["output"]
            for key, step in self.steps.items()
            if step["kind"] == "do" and step["state"] == "succeeded"
        }

    def open_attempts(self) -> set[tuple[str, str, int]]:
        return {
            (key[0], key[1], a["number"])
            for key, attempts in self.attempts.items()
            for a in attempts
            if a["ended"] is None
        }


def snapshot(db: Path) -> Snapshot:
    snap = Snapshot()
    if not db.exists():
        return snap
    with read_only(db) as conn:
        try:
            rows = conn.execute("SELECT id, status, output, error FROM instances").fetchall()
        except sqlite3.OperationalError as exc:  # killed before the first migration committed
            if "no such table" in str(exc):
                return snap
            raise
        for instance, status, output, error in rows:
            snap.statuses[instance] = status
            snap.outputs[instance] = None if output is None else json.loads(output)
            snap.errors[instance] = None if error is None else json.loads(error)
        names = ("kind", "state", "output", "started", "ended", "duration")
        for row in conn.execute(
            "SELECT i.id, s.name || '-' || s.count, s.kind, s.state, s.output, s.started, "
            "s.ended, s.duration FROM steps s JOIN instances i ON i.pk = s.instance"
        ):
            snap.steps[(row[0], row[1])] = dict(zip(names, row[2:], strict=True))
        for row in conn.execute(
            "SELECT i.id, a.name || '-' || a.count, a.number, a.ended, a.success, a.error "
            "FROM attempts a JOIN instances i ON i.pk = a.instance ORDER BY a.number"
        ):
            snap.attempts.setdefault((row[0], row[1]), []).append(
                {
                    "number": row[2],
                    "ended": row[3],
                    "success": row[4],
                    "error": None if row[5] is None else json.loads(row[5]),
                }
            )
    return snap


def landed(before: Snapshot, after: Snapshot, marks: list[Mark]) -> set[str]:
    """Where in the step machinery a kill landed, from the attempts it left open."""
    where = set()
    phases = {(m.instance, m.step, m.attempt): m.phase for m in marks}  # the last phase wins
    for attempt in after.open_attempts() - before.open_attempts():
        phase = phases.get(attempt)
        if phase is None:
            where.add("attempt recorded, body not begun")
        elif phase == "start":
            where.add("mid-step")
        else:
            where.add("mid-commit")  # the body returned or raised; its outcome was not committed
    return where


@dataclass
class Watch:
    """Facts seen after one kill that every later state must keep."""

    seed: int
    # step -> (committed output, body runs when first seen committed, kill that first saw it)
    committed: dict[StepKey, tuple[str, int, int]] = field(default_factory=dict)
    # Marker lines written when PostgreSQL was crashed (stopped -m immediate): an attempt's
    # start is committed lazily there (synchronous_commit off), so one whose body began just
    # before a crash may be lost with it, and its number is used again afterwards.
    crash_cuts: list[int] = field(default_factory=list)
    lost_starts: set[tuple[StepKey, int]] = field(default_factory=set)

    def _lost_to_a_crash(self, key: StepKey, runs: list[Mark], where: dict[Mark, int]) -> bool:
        """Whether each run of one attempt number but the last began before a crash that came
        before the next one began."""
        for earlier, later in itertools.pairwise(runs):
            if not any(where[earlier] < cut <= where[later] for cut in self.crash_cuts):
                return False
        self.lost_starts.add((key, runs[0].attempt))
        return True

    def fail(self, message: str) -> str:
        return f"{message} (seed {self.seed}; replay with WF_CHAOS_SEED={self.seed})"

    def check(
        self, kill: int, snap: Snapshot, marks: list[Mark], acked: set[str], settled: bool = True
    ) -> None:
        """``settled``: nothing wrote since ``snap`` was taken and ``marks`` read. Otherwise (a
        cluster whose other nodes go on) the marks, read after the snapshot, may hold bodies
        begun since, so only what was committed at the snapshot is checked."""
        lost = sorted(acked - set(snap.statuses))
        assert not lost, self.fail(
            f"after kill {kill}: {len(lost)} acknowledged instance(s) missing from the "
            f"database: {lost[:10]}"
        )
        runs = runs_by_step(marks)
        for key, output in snap.committed().items():
            count = len(runs.get(key, []))
            first = self.committed.setdefault(key, (output, count, kill))
            assert output == first[0], self.fail(
                f"{key}: committed output changed from {first[0]} to {output} "
                f"(first seen after kill {first[2]}, changed by kill {kill})"
            )
            assert count == first[1], self.fail(
                f"{key}: its body ran {count - first[1]} more time(s) after its outcome was "
                f"committed (seen committed after kill {first[2]}, checked after kill {kill}): "
                f"{runs[key][first[1] :]}"
            )
            assert count >= 1, self.fail(f"{key}: committed {output} but its body never ran")
            assert json.loads(output) == runs[key][-1].token, self.fail(
                f"{key}: committed output {output} is not the token of its last body run "
                f"{runs[key][-1]}"
            )
        if not settled:
            return
        where = {mark: index for index, mark in enumerate(marks)}
        for key, body_runs in runs.items():
            recorded = {a["number"] for a in snap.attempts.get(key, [])}
            numbers = [m.attempt for m in body_runs]
            for number in {n for n in numbers if numbers.count(n) > 1}:
                same = [m for m in body_runs if m.attempt == number]
                assert self._lost_to_a_crash(key, same, where), self.fail(
                    f"{key}: one attempt ran its body more than once: attempts {numbers}"
                )
            assert set(numbers) <= recorded, self.fail(
                f"{key}: bodies ran as attempts {numbers} but only {sorted(recorded)} are "
                "recorded: a body ran before its attempt was committed"
            )


def verify_final(
    watch: Watch, snap: Snapshot, marks: list[Mark], numbers: dict[str, int], acked: set[str]
) -> Counter[str]:
    """Every acknowledged instance complete with the right output, every step's history sound."""
    fail = watch.fail
    runs = runs_by_step(marks)
    returned = {(m.instance, m.step, m.attempt): m.token for m in marks if m.phase == "end"}
    raised = {(m.instance, m.step, m.attempt) for m in marks if m.phase == "fail"}
    totals: Counter[str] = Counter(runs=sum(len(r) for r in runs.values()))
    unknown = sorted(set(snap.statuses) - set(numbers))
    assert not unknown, fail(f"instances nobody created: {unknown[:10]}")
    stuck = {i: s for i, s in snap.statuses.items() if s in UNFINISHED}
    assert not stuck, fail(f"{len(stuck)} instance(s) left unfinished: {_first(stuck)}")
    missing = sorted(acked - set(snap.statuses))
    assert not missing, fail(f"acknowledged instances lost: {missing[:10]}")
    strays = sorted({key for key in runs if key[0] not in snap.statuses})
    assert not strays, fail(f"bodies ran for instances that do not exist: {strays[:10]}")
    for instance in sorted(acked):
        n, status = numbers[instance], snap.statuses[instance]
        assert status == "complete", fail(f"{instance} ended {status}: {snap.errors.get(instance)}")
        names = {step for (owner, step) in snap.steps if owner == instance}
        assert names == workload.all_steps(n), fail(f"{instance} has steps {sorted(names)}")
        tokens: dict[str, str] = {}
        for name in sorted(names):
            step = snap.steps[(instance, name)]
            assert step["state"] == "succeeded", fail(f"{instance} {name}: {step}")
            if step["kind"] == "sleep":
                slept = step["ended"] - step["started"]
                assert slept >= step["duration"] - 1e-3, fail(
                    f"{instance} {name}: slept {slept:.3f}s of {step['duration']}s"
                )
        for name in workload.DO_STEPS:
            key = (instance, name)
            totals["do steps"] += 1
            body_runs = runs.get(key, [])
            assert body_runs, fail(f"{key}: committed but its body never ran")
            tokens[name] = json.loads(snap.steps[key]["output"])
            attempts = snap.attempts[key]
            numbers_seen = [a["number"] for a in attempts]
            assert numbers_seen == list(range(1, len(attempts) + 1)), fail(
                f"{key}: attempts {numbers_seen}"
            )
            *failed, last = attempts
            assert last["success"] == 1 and last["ended"] is not None, fail(f"{key}: {last}")
            assert body_runs[-1].attempt == last["number"], fail(
                f"{key}: its last body run was attempt {body_runs[-1].attempt}, but attempt "
                f"{last['number']} is the one that succeeded"
            )
            assert returned.get((instance, name, last["number"])) == tokens[name], fail(
                f"{key}: the committed output {tokens[name]} is not what the successful "
                f"attempt's body returned"
            )
            for attempt in failed:
                assert attempt["success"] == 0 and attempt["ended"] is not None, fail(
                    f"{key}: attempt {attempt} left open or successful before the last one"
                )
                error = attempt["error"]["name"]
                planned = name == workload.FLAKY_STEP and attempt["number"] == 1
                allowed = (INTERRUPTED, PLANNED) if planned else (INTERRUPTED,)
                assert error in allowed, fail(f"{key}: attempt {attempt}")
                if error == PLANNED:
                    totals["planned failures"] += 1
                    assert (instance, name, 1) in raised, fail(
                        f"{key}: attempt 1 failed with {PLANNED} without its body raising it"
                    )
                else:
                    totals["interrupted attempts"] += 1
            interrupted = {a["number"] for a in failed if a["error"]["name"] == INTERRUPTED}
            totals["re-runs"] += sum(1 for m in body_runs if m.attempt in interrupted)
            if name == workload.FLAKY_STEP:
                assert last["number"] >= 2, fail(f"{key}: the first attempt succeeded")
        expected = workload.expected_output(instance, n, tokens)
        assert snap.outputs[instance] == expected, fail(
            f"{instance}: output {snap.outputs[instance]}, expected {expected}"
        )
    return totals


def describe_unfinished(snap: Snapshot, limit: int = 10) -> str:
    """A few unfinished instances with the steps they have not finished, for a failure."""
    lines = []
    for instance, status in sorted(snap.statuses.items()):
        if status not in UNFINISHED:
            continue
        open_steps = [
            f"{name} {step['kind']} {step['state']}"
            for (owner, name), step in sorted(snap.steps.items())
            if owner == instance and step["state"] != "succeeded"
        ]
        done = sum(1 for (owner, _), s in snap.steps.items() if owner == instance)
        lines.append(f"{instance} {status}: {done} steps, unfinished {open_steps}")
        if len(lines) >= limit:
            break
    return "; ".join(lines)


def _first(mapping: dict[str, str], limit: int = 10) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(mapping.items())[:limit])
