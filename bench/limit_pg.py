"""L for PostgreSQL: raw psycopg commits on the bench's server, the most a store on it can do.

``python -m bench.limit_pg --database URL --durability fsync|os``

One connection from Python (psycopg 3, the driver wf's store uses), on the same server and with
its settings (fsync, synchronous_commit and full_page_writes on); ``os`` sets
``synchronous_commit = off`` for the session, as wf's store does in that mode (a commit does not
wait for its WAL flush: a crash of the server may lose the last ones, never corrupt). Each commit
inserts rows shaped like a step's (an instance number, a name, a small JSON output, two times).

* single-row commits per second: one ``INSERT`` then ``COMMIT`` after another. Each waits for
  its WAL record to be flushed: the most durable commits per second one client can make.
* rows per second at 64 rows per commit: ``executemany`` (psycopg sends it in pipeline mode, one
  round trip) and one commit: what group commit can reach at best.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import psycopg

from bench.common import emit_result

ROW = '{"ok":true,"value":1}'
INSERT = "INSERT INTO steps VALUES (%s, %s, %s, %s, %s)"


def commits(
    conn: psycopg.Connection[Any], rows: int, seconds: float, first: int
) -> tuple[int, float]:
    """Commit ``rows`` rows at a time for at least ``seconds``; (commits made, elapsed)."""
    made = 0
    instance = first
    started = time.perf_counter()
    deadline = started + seconds
    with conn.cursor() as cur:
        while True:
            now = time.time()
            if rows == 1:
                cur.execute(INSERT, (instance, "step-0", ROW, now, now))
            else:
                cur.executemany(
                    INSERT, [(instance, f"step-{i}", ROW, now, now) for i in range(rows)]
                )
            conn.commit()
            instance += 1
            made += 1
            if made % 16 == 0 and time.perf_counter() >= deadline:
                break
    return made, time.perf_counter() - started


def measure(args: argparse.Namespace) -> dict[str, Any]:
    with psycopg.connect(args.database, connect_timeout=10) as conn:
        if args.durability == "os":
            conn.execute("SET synchronous_commit = off")
        conn.execute(
            "CREATE TABLE steps (instance bigint NOT NULL, name text NOT NULL, output text, "
            "started double precision, ended double precision, PRIMARY KEY (instance, name))"
        )
        conn.commit()
        commits(conn, 1, 0.2, 1)  # warm-up: the first pages, plans, caches
        single, single_s = commits(conn, 1, args.seconds, 1_000_000)
        grouped, grouped_s = commits(conn, 64, args.seconds, 2_000_000)
        shown = conn.execute("SELECT current_setting('synchronous_commit')").fetchone()
    return {
        "engine": "postgres",
        "workload": "L",
        "durability": args.durability,
        "store": "postgres",
        "synchronous_commit": shown[0] if shown else "?",
        "commits_per_s": single / single_s,
        "commit_us": single_s / single * 1e6,
        "rows_per_s_64": grouped * 64 / grouped_s,
        "commits_per_s_64": grouped / grouped_s,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.limit_pg")
    parser.add_argument("--database", required=True, help="postgresql://... (an empty database)")
    parser.add_argument("--durability", choices=("fsync", "os"), default="fsync")
    parser.add_argument("--seconds", type=float, default=1.5, help="for each of the two figures")
    args = parser.parse_args(argv)
    emit_result(measure(args))


if __name__ == "__main__":
    main()
