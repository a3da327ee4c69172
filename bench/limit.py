"""L, the limit: raw SQLite commits on the same disk with the same settings as wf's store.

``python -m bench.limit --db PATH --durability fsync|os``

The connection is opened as ``wf.engine.store.sqlite_file.connect`` opens it (WAL, synchronous
FULL for fsync and NORMAL for os, busy_timeout, temp_store MEMORY, autocommit with explicit
``BEGIN IMMEDIATE``), from Python's ``sqlite3`` as wf's writer thread uses it. Each commit
inserts rows shaped like a step's (an instance number, a name, a small JSON output, two times).

* single-row commits per second: one ``BEGIN IMMEDIATE; INSERT; COMMIT`` after another. With
  fsync, each is one fsync of the WAL: the most durable commits per second one writer can make.
* rows per second at 64 rows per commit: what group commit can reach at best.
"""

from __future__ import annotations

import argparse
import sqlite3
import time
from pathlib import Path
from typing import Any

from bench.common import emit_result, fresh_db

SYNCHRONOUS = {"fsync": "FULL", "os": "NORMAL"}
ROW = '{"ok":true,"value":1}'


def connect(path: Path, durability: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30.0)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(f"PRAGMA synchronous = {SYNCHRONOUS[durability]}")
    conn.execute("PRAGMA busy_timeout = 30000")
    conn.execute("PRAGMA temp_store = MEMORY")
    conn.execute(
        "CREATE TABLE steps (instance INTEGER NOT NULL, name TEXT NOT NULL, "
        "output TEXT, started REAL, ended REAL, PRIMARY KEY (instance, name))"
    )
    return conn


def commits(conn: sqlite3.Connection, rows: int, seconds: float, first: int) -> tuple[int, float]:
    """Commit ``rows`` rows at a time for at least ``seconds``; (commits made, elapsed)."""
    insert = "INSERT INTO steps VALUES (?, ?, ?, ?, ?)"
    made = 0
    instance = first
    started = time.perf_counter()
    deadline = started + seconds
    while True:
        now = time.time()
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(insert, [(instance, f"step-{i}", ROW, now, now) for i in range(rows)])
        conn.execute("COMMIT")
        instance += 1
        made += 1
        if made % 16 == 0 and time.perf_counter() >= deadline:
            break
    return made, time.perf_counter() - started


def measure(args: argparse.Namespace) -> dict[str, Any]:
    fresh_db(args.db)
    conn = connect(args.db, args.durability)
    try:
        commits(conn, 1, 0.2, 1)  # warm-up: file growth, page cache, first checkpoints
        single, single_s = commits(conn, 1, args.seconds, 1_000_000)
        grouped, grouped_s = commits(conn, 64, args.seconds, 2_000_000)
        mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
    finally:
        conn.close()
    return {
        "engine": "sqlite",
        "workload": "L",
        "durability": args.durability,
        "journal_mode": mode,
        "synchronous": SYNCHRONOUS[args.durability],
        "commits_per_s": single / single_s,
        "commit_us": single_s / single * 1e6,
        "rows_per_s_64": grouped * 64 / grouped_s,
        "commits_per_s_64": grouped / grouped_s,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.limit")
    parser.add_argument("--db", type=Path, required=True)
    parser.add_argument("--durability", choices=sorted(SYNCHRONOUS), default="fsync")
    parser.add_argument("--seconds", type=float, default=1.5, help="for each of the two figures")
    args = parser.parse_args(argv)
    emit_result(measure(args))


if __name__ == "__main__":
    main()
