"""SIGKILL a process whose parents run child workflows, at random moments, many times over:
every parent gets exactly one child, and ends complete with that child's output.

Set ``WF_CHILD_CRASH_SEED`` to replay a seed (it is printed, and named in every failure)."""

from __future__ import annotations

import json
import os
import random
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path
from typing import Any

PARENTS = 6
KILLS = 15
ROOT = Path(__file__).resolve().parents[2]


def _query(db: Path, sql: str) -> list[tuple[Any, ...]]:
    with closing(sqlite3.connect(db)) as conn:
        return conn.execute(sql).fetchall()


def _children_per_parent(db: Path) -> dict[str, int]:
    rows = _query(
        db, "SELECT parent_id, count(*) FROM instances WHERE workflow = 'child' GROUP BY 1"
    )
    return {str(parent): int(n) for parent, n in rows}


def test_sigkill_around_run_workflow_creates_each_child_once(tmp_path: Path) -> None:
    seed = int(os.environ.get("WF_CHILD_CRASH_SEED", random.randrange(2**32)))
    print(f"child crash test seed {seed} (replay with WF_CHILD_CRASH_SEED={seed})")
    rng = random.Random(seed)
    db = tmp_path / "wf.db"
    kills = 0
    for life in range(KILLS + 1):
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.children.proc", str(db), str(life), str(PARENTS)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        assert proc.stdout is not None
        try:
            first = proc.stdout.readline()  # "started": recovered, its parents created
            if life < KILLS:  # the last life runs to its end
                time.sleep(rng.uniform(0.0, 0.4))
                if proc.poll() is None:
                    proc.kill()
                    kills += 1
            proc.wait(timeout=60)
            out = first.decode() + proc.stdout.read().decode()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stdout.close()
        # At every moment: no parent ever has more than one child.
        many = {p: n for p, n in _children_per_parent(db).items() if n > 1}
        assert not many, f"parents with several children {many} (seed {seed})"
    assert proc.returncode == 0 and "done" in out, f"the last life failed: {out!r} (seed {seed})"
    everyone = {f"r{r}p{i}": 1 for r in range(KILLS + 1) for i in range(PARENTS)}
    assert _children_per_parent(db) == everyone, f"seed {seed}"
    parents = _query(db, "SELECT id, status, output FROM instances WHERE workflow = 'parent'")
    for parent_id, status, output in parents:
        n = int(str(parent_id).split("p")[1])
        assert status == "complete", f"{parent_id} ended {status} (seed {seed})"
        assert json.loads(str(output)) == {"child": {"square": n * n}, "after": n + 1}, seed
    links = _query(
        db,
        "SELECT p.id, s.config, c.id FROM steps s JOIN instances p ON p.pk = s.instance "
        "JOIN instances c ON c.parent_pk = p.pk WHERE s.kind = 'child'",
    )
    assert len(links) == len(everyone)
    for parent_id, config, child_id in links:
        assert json.loads(str(config))["id"] == child_id, f"{parent_id} (seed {seed})"
    assert kills >= KILLS // 2, f"only {kills} kills landed (seed {seed})"
    print(f"child crash test: {kills} SIGKILLs in {KILLS + 1} processes; seed {seed}")
