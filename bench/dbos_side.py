"""The DBOS Transact side of the benchmark, run with bench/.venv-dbos's Python (not wf's venv).

``python -m bench.dbos_side KIND --db PATH --durability fsync|os|default --style threads|asyncio``

DBOS is a process-wide singleton, so each run is its own subprocess. Its system database is SQLite.
Durability, to match wf's SqliteStore as closely as SQLite allows:

* ``fsync``:   journal_mode=WAL, synchronous=FULL   (what wf's durability="fsync" sets)
* ``os``:      journal_mode=WAL, synchronous=NORMAL (what wf's durability="os" sets)
* ``default``: DBOS as shipped: SQLite's defaults, a rollback journal (DELETE) with
  synchronous=FULL; durable like ``fsync`` but with more fsyncs per commit.

The pragmas are set by a SQLAlchemy ``connect`` listener on every engine, before DBOS's own one
(which adds busy_timeout, foreign_keys and IMMEDIATE transactions). The journal mode DBOS really
ran with is read back from the file and reported.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import importlib.metadata
import logging
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from bench.common import emit_result, fresh_db, latency_summary

sa: Any = importlib.import_module("sqlalchemy")
dbos: Any = importlib.import_module("dbos")
DBOS: Any = dbos.DBOS

PRAGMAS = {
    "fsync": ("WAL", "FULL"),
    "os": ("WAL", "NORMAL"),
    "default": (None, None),
}

STEP_TIMES: list[float] = []


class Commits:
    """Counts the write transactions DBOS commits on its system database (a commit of a
    connection with no transaction open, after reads only, is not counted)."""

    def __init__(self) -> None:
        self.count = 0
        self.empty = 0
        self._lock = threading.Lock()

    def __call__(self, conn: Any) -> None:
        dbapi_conn = conn.connection.dbapi_connection
        with self._lock:
            if dbapi_conn is not None and dbapi_conn.in_transaction:
                self.count += 1
            else:
                self.empty += 1


COMMITS = Commits()


def configure(db: Path, durability: str) -> None:
    journal, synchronous = PRAGMAS[durability]

    def pragmas(dbapi_conn: Any, record: Any) -> None:
        if journal is not None:
            dbapi_conn.execute(f"PRAGMA journal_mode={journal}")
        if synchronous is not None:
            dbapi_conn.execute(f"PRAGMA synchronous={synchronous}")

    sa.event.listen(sa.engine.Engine, "connect", pragmas)
    sa.event.listen(sa.engine.Engine, "commit", COMMITS)
    fresh_db(db)
    logging.getLogger("dbos").setLevel(logging.WARNING)
    DBOS(
        config={
            "name": "wfbench",
            "system_database_url": f"sqlite:///{db}",
            "run_admin_server": False,
            "log_level": "WARNING",
        }
    )


# ---- the workflows, in both styles ------------------------------------------------------------
def _step_sync(i: int) -> int:
    return 1


async def _step_async(i: int) -> int:
    return 1


step_sync: Any = None
step_async: Any = None
flow_sync: Any = None
flow_async: Any = None
timed_sync: Any = None
timed_async: Any = None


def _flow_sync(n: int) -> int:
    for i in range(n):
        step_sync(i)
    return n


async def _flow_async(n: int) -> int:
    for i in range(n):
        await step_async(i)
    return n


def _timed_sync(n: int) -> int:
    for i in range(n):
        started = time.perf_counter()
        step_sync(i)
        STEP_TIMES.append(time.perf_counter() - started)
    return n


async def _timed_async(n: int) -> int:
    for i in range(n):
        started = time.perf_counter()
        await step_async(i)
        STEP_TIMES.append(time.perf_counter() - started)
    return n


def register() -> None:
    """Register the workflows with DBOS (after ``DBOS(config=...)``, before ``launch``)."""
    global step_sync, step_async, flow_sync, flow_async, timed_sync, timed_async
    step_sync = DBOS.step(name="step_sync")(_step_sync)
    step_async = DBOS.step(name="step_async")(_step_async)
    flow_sync = DBOS.workflow(name="flow_sync")(_flow_sync)
    flow_async = DBOS.workflow(name="flow_async")(_flow_async)
    timed_sync = DBOS.workflow(name="timed_sync")(_timed_sync)
    timed_async = DBOS.workflow(name="timed_async")(_timed_async)


async def run_many(style: str, count: int, n: int, timed: bool = False) -> None:
    """Start ``count`` workflows of ``n`` steps, then wait for all of them."""
    if style == "threads":
        flow = timed_sync if timed else flow_sync
        handles = [DBOS.start_workflow(flow, n) for _ in range(count)]
        await asyncio.to_thread(lambda: [h.get_result() for h in handles])
    else:
        flow = timed_async if timed else flow_async
        async_handles = [await DBOS.start_workflow_async(flow, n) for _ in range(count)]
        for handle in async_handles:
            await handle.get_result()


def journal_mode(db: Path) -> str:
    conn = sqlite3.connect(db)
    try:
        return str(conn.execute("PRAGMA journal_mode").fetchone()[0])
    finally:
        conn.close()


async def throughput(args: argparse.Namespace) -> dict[str, Any]:
    await run_many(args.style, 10, args.steps)  # warm-up, as on the wf side
    commits_before = COMMITS.count
    started = time.perf_counter()
    await run_many(args.style, args.instances, args.steps)
    elapsed = time.perf_counter() - started
    commits = COMMITS.count - commits_before
    steps = args.instances * args.steps
    return {
        "instances": args.instances,
        "steps_per_instance": args.steps,
        "seconds": elapsed,
        "instances_per_s": args.instances / elapsed,
        "steps_per_s": steps / elapsed,
        "commits": commits,
        "commits_per_step": commits / steps,
    }


async def latency(args: argparse.Namespace) -> dict[str, Any]:
    await run_many(args.style, 1, 10, timed=True)  # warm-up
    STEP_TIMES.clear()
    commits_before = COMMITS.count
    elapsed = []
    for _ in range(args.rounds):  # one instance at a time, never two at once
        started = time.perf_counter()
        await run_many(args.style, 1, args.steps, timed=True)
        elapsed.append(time.perf_counter() - started)
    return {
        "steps": args.steps,
        "rounds": args.rounds,
        "instance_seconds": sorted(elapsed)[len(elapsed) // 2],
        "commits_per_step": (COMMITS.count - commits_before) / (args.steps * args.rounds),
        **latency_summary(STEP_TIMES),
        "samples": len(STEP_TIMES),
    }


KINDS = {"throughput": throughput, "latency": latency}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    DBOS.launch()
    try:
        return await KINDS[args.kind](args)
    finally:
        DBOS.destroy()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.dbos_side")
    parser.add_argument("kind", choices=sorted(KINDS))
    parser.add_argument("--db", type=Path, required=True)
    parser.add_argument("--durability", choices=sorted(PRAGMAS), default="fsync")
    parser.add_argument("--style", choices=("threads", "asyncio"), default="threads")
    parser.add_argument("--instances", type=int, default=200)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=5, help="latency: instances, one by one")
    args = parser.parse_args(argv)
    configure(args.db, args.durability)
    register()
    result = asyncio.run(run(args))
    emit_result(
        {
            "engine": "dbos",
            "kind": args.kind,
            "durability": args.durability,
            "style": args.style,
            "journal_mode": journal_mode(args.db),
            "dbos_version": importlib.metadata.version("dbos"),
            **result,
        }
    )


if __name__ == "__main__":
    main()
