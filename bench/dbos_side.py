"""The DBOS Transact side, run with bench/.venv-dbos's Python (not wf's venv): one measurement per
process, ``python -m bench.dbos_side W --dir DIR [--durability default|fsync|os] [--style ...]``.

DBOS is a process-wide singleton, which is one more reason for a process per measurement. Its
system database is SQLite (``system_database_url = sqlite:///…``, DBOS's default kind of
database when no Postgres is given), or with ``--database postgresql://…`` the bench's
PostgreSQL server (an empty database of its own; DBOS's tables go in its schema ``dbos``, and its
durability is the server's: fsync and synchronous_commit on). On SQLite, durability:

* ``default`` (what ``python -m bench --peer dbos`` runs): DBOS as shipped. It sets busy_timeout
  (30 s) and foreign_keys and leaves SQLite's defaults: a rollback journal (``DELETE``) with
  ``synchronous=FULL``, durable, with an fsync of the journal and of the database per commit.
* ``fsync`` / ``os`` (for a comparison by hand): ``journal_mode=WAL`` with ``synchronous=FULL``
  / ``NORMAL``, what wf's two durability modes set; applied by a SQLAlchemy ``connect`` listener
  on every engine, before DBOS's own one.

The journal mode DBOS really ran with is read back from the file and reported.

Styles: ``sync`` workflows and steps (DBOS runs each workflow on a thread of its executor,
started with ``DBOS.start_workflow``) and ``async`` ones (``async def``, started with
``DBOS.start_workflow_async``, on the caller's event loop).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import importlib.metadata
import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, TypeVar, cast

from bench.common import (
    Group,
    Http,
    HttpApi,
    emit_result,
    files_mib,
    free_port,
    fresh_db,
    mark,
    measure_http,
    median,
    peak_rss_kib,
    percentile,
    read_rest,
    rss_kib,
    stop_on_sigterm,
    wait_mark,
)

PRAGMAS: dict[str, tuple[str | None, str | None]] = {
    "default": (None, None),
    "fsync": ("WAL", "FULL"),
    "os": ("WAL", "NORMAL"),
}
DB_NAME = "dbos.sqlite"

sa: Any = None
DBOS: Any = None


class Where:
    """The system database of this process: SQLite at ``path``, or PostgreSQL at ``url``."""

    def __init__(self, path: Path, url: str | None) -> None:
        self.path = path
        self.url = url

    @property
    def system_database_url(self) -> str:
        return self.url or f"sqlite:///{self.path}"

    def count(self, sql: str) -> int:
        """One integer from the system database (table names unqualified: DBOS's schema is on
        the search path for PostgreSQL)."""
        if self.url is None:
            return count(self.path, sql)
        psycopg: Any = importlib.import_module("psycopg")
        with psycopg.connect(self.url, options="-c search_path=dbos") as conn:
            return int(conn.execute(sql).fetchone()[0] or 0)

    def journal_mode(self) -> str:
        return "postgres" if self.url else journal_mode(self.path)

    def mib(self) -> float:
        if self.url is None:
            return files_mib(self.path)
        size = self.count("SELECT pg_database_size(current_database())")
        return size / (1024 * 1024)


def configure(db: Path, durability: str, fresh: bool = True, url: str | None = None) -> None:
    """Import DBOS and configure it on ``db`` (on PostgreSQL at ``url`` if given; it is not
    launched yet)."""
    global sa, DBOS
    sa = importlib.import_module("sqlalchemy")
    DBOS = importlib.import_module("dbos").DBOS
    journal, synchronous = PRAGMAS[durability]

    def pragmas(dbapi_conn: Any, record: Any) -> None:
        if journal is not None:
            dbapi_conn.execute(f"PRAGMA journal_mode={journal}")
        if synchronous is not None:
            dbapi_conn.execute(f"PRAGMA synchronous={synchronous}")

    if url is None:
        sa.event.listen(sa.engine.Engine, "connect", pragmas)
    if fresh and url is None:
        fresh_db(db)
    logging.getLogger("dbos").setLevel(logging.WARNING)
    DBOS(
        config={
            "name": "wfbench",
            "system_database_url": url or f"sqlite:///{db}",
            "run_admin_server": False,
            "log_level": "WARNING",
        }
    )
    register()


def journal_mode(db: Path) -> str:
    conn = sqlite3.connect(db)
    try:
        return str(conn.execute("PRAGMA journal_mode").fetchone()[0])
    finally:
        conn.close()


def count(db: Path, sql: str) -> int:
    conn = sqlite3.connect(db, timeout=30)
    try:
        return int(conn.execute(sql).fetchone()[0])
    finally:
        conn.close()


# ---- the workflows (registered after DBOS(config=...), before launch) -------------------------
class Tally:
    """What the workflows of this process report (one DBOS, so one run, per process)."""

    step_seconds: ClassVar[list[float]] = []
    returned = 0
    lock = threading.Lock()
    gate_flag = ""
    gate_entered = 0
    gate_target = 0
    gate_full = threading.Event()
    never = threading.Event()

    @classmethod
    def done(cls) -> None:
        with cls.lock:
            cls.returned += 1


W: dict[str, Any] = {}
F = TypeVar("F", bound=Callable[..., Any])


def step(name: str) -> Callable[[F], F]:
    """``DBOS.step``, typed (DBOS is imported at run time, so mypy sees ``Any``)."""
    return cast("Callable[[F], F]", DBOS.step(name=name))


def workflow(name: str) -> Callable[[F], F]:
    """``DBOS.workflow``, typed like ``step``."""
    return cast("Callable[[F], F]", DBOS.workflow(name=name))


def register() -> None:
    """Define and register the workflows: after ``DBOS(config=...)``, before ``DBOS.launch()``."""

    @step(name="trivial_sync")
    def trivial_sync() -> int:
        return 1

    @step(name="trivial_async")
    async def trivial_async() -> int:
        return 1

    @workflow(name="seq_sync")
    def seq_sync(n: int) -> int:
        clock = time.perf_counter
        for _ in range(n):
            started = clock()
            trivial_sync()
            Tally.step_seconds.append(clock() - started)
        return n

    @workflow(name="seq_async")
    async def seq_async(n: int) -> int:
        clock = time.perf_counter
        for _ in range(n):
            started = clock()
            await trivial_async()
            Tally.step_seconds.append(clock() - started)
        return n

    @workflow(name="three_sync")
    def three_sync() -> int:
        trivial_sync()
        trivial_sync()
        trivial_sync()
        return 3

    @workflow(name="three_async")
    async def three_async() -> int:
        await trivial_async()
        await trivial_async()
        await trivial_async()
        return 3

    @step(name="gate")
    def gate() -> int:
        if os.path.exists(Tally.gate_flag):
            return 2
        with Tally.lock:
            Tally.gate_entered += 1
            if Tally.gate_entered >= Tally.gate_target:
                Tally.gate_full.set()
        Tally.never.wait()
        return 2

    @workflow(name="gated")
    def gated() -> int:
        trivial_sync()
        gate()
        trivial_sync()
        Tally.done()
        return 3

    @workflow(name="nap_sync")
    def nap_sync() -> int:
        DBOS.sleep(3600)
        return 1

    @workflow(name="nap_async")
    async def nap_async() -> int:
        await DBOS.sleep_async(3600)
        return 1

    W.update(locals())


async def start(name: str, style: str, *args: Any) -> Any:
    if style == "async":
        return await DBOS.start_workflow_async(W[f"{name}_async"], *args)
    return DBOS.start_workflow(W[f"{name}_sync"], *args)


async def result(handle: Any, style: str) -> Any:
    if style == "async":
        return await handle.get_result()
    return await asyncio.to_thread(handle.get_result)


# ---- W1 -------------------------------------------------------------------------------------
async def w1(args: argparse.Namespace) -> dict[str, Any]:
    await result(await start("seq", args.style, 100), args.style)  # warm-up
    Tally.step_seconds.clear()
    started = time.perf_counter()
    await result(await start("seq", args.style, args.steps), args.style)
    elapsed = time.perf_counter() - started
    times = Tally.step_seconds
    return {
        "steps": args.steps,
        "seconds": elapsed,
        "step_us": elapsed / args.steps * 1e6,
        "step_us_median": median(times) * 1e6,
        "step_us_p90": percentile(times, 90) * 1e6,
        "step_us_max": max(times) * 1e6,
    }


# ---- W2 -------------------------------------------------------------------------------------
async def w2(args: argparse.Namespace) -> dict[str, Any]:
    warm = [await start("three", args.style) for _ in range(50)]
    for handle in warm:
        await result(handle, args.style)
    started = time.perf_counter()
    # DBOS has no batch create: each instance is started on its own, one after the other.
    handles = [await start("three", args.style) for _ in range(args.instances)]
    created = time.perf_counter() - started
    if args.style == "async":
        await asyncio.gather(*(h.get_result() for h in handles))
    else:
        await asyncio.to_thread(lambda: [h.get_result() for h in handles])
    elapsed = time.perf_counter() - started
    return {
        "instances": args.instances,
        "seconds": elapsed,
        "instances_per_s": args.instances / elapsed,
        "create_seconds": created,
    }


# ---- W2-http: a FastAPI app (DBOS's documented way to serve it) under uvicorn ------------------
def dbos_api() -> HttpApi:
    def create(http: Http) -> str:
        status, body = http.call("POST", "/instances", {"params": {}})
        if status != 200:
            raise RuntimeError(f"create answered {status}: {body}")
        return str(body["id"])

    def state(http: Http, instance_id: str) -> str:
        status, body = http.call("GET", f"/instances/{instance_id}")
        if status != 200:
            raise RuntimeError(f"get answered {status}: {body}")
        return {"SUCCESS": "done", "ERROR": "failed"}.get(body["status"], "running")

    return HttpApi(create, state)


def w2_http(args: argparse.Namespace) -> dict[str, Any]:
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "bench.dbos_app",
        "--db",
        str(args.dir / DB_NAME),
        "--durability",
        args.durability,
        "--port",
        str(port),
        *(["--database", args.database] if args.database else []),
    ]
    api = dbos_api()
    with Group(argv, Path.cwd(), args.dir / "app.log", dict(os.environ)) as server:

        def healthy() -> bool:
            http = Http(port, timeout=2)
            try:
                return http.call("GET", "/health")[0] == 200
            finally:
                http.close()

        ready = server.wait_ready(healthy)
        result = measure_http(server, port, api, args, ready)
    return {**result, "style": "sync"}


# ---- W3 -------------------------------------------------------------------------------------
def child(args: argparse.Namespace, phase: str) -> subprocess.Popen[str]:
    argv = [sys.executable, "-m", "bench.dbos_side", "W3-child", "--phase", phase]
    argv += ["--dir", str(args.dir), "--durability", args.durability]
    argv += ["--instances", str(args.instances)]
    if args.database:
        argv += ["--database", args.database]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, start_new_session=True)


def w3(args: argparse.Namespace) -> dict[str, Any]:
    loader = child(args, "load")
    try:
        wait_mark(loader, "ready", args.timeout)
    finally:
        os.killpg(loader.pid, signal.SIGKILL)
        loader.wait()
    (args.dir / "release").touch()
    os.sync()
    time.sleep(0.3)
    started = time.perf_counter()
    restarted = child(args, "recover")
    try:
        imported = wait_mark(restarted, "imported", args.timeout) - started
        launched = wait_mark(restarted, "started", args.timeout) - started
        done = wait_mark(restarted, "done", args.timeout) - started
        out = read_rest(restarted, 60)
    finally:
        if restarted.poll() is None:
            os.killpg(restarted.pid, signal.SIGKILL)
            restarted.wait()
    line = next((ln for ln in out.splitlines() if ln.startswith("BENCH-RESULT ")), None)
    if line is None:
        raise RuntimeError(f"the restarted process gave no result: {out!r}")
    started = time.perf_counter()
    only = child(args, "import")
    try:
        import_only = wait_mark(only, "imported", args.timeout) - started
        only.wait(args.timeout)
    finally:
        if only.poll() is None:
            os.killpg(only.pid, signal.SIGKILL)
            only.wait()
    inner = json.loads(line[len("BENCH-RESULT ") :])
    return {
        "instances": args.instances,
        "seconds": done,
        "import_seconds": import_only,
        "engine_seconds": done - import_only,
        "imported_mark_seconds": imported,
        "engine_started_seconds": launched,
        "complete": inner["complete"],
        "style": "sync",
    }


def w3_child(args: argparse.Namespace) -> None:
    where = Where(args.dir / DB_NAME, args.database)
    Tally.gate_flag = str(args.dir / "release")
    configure(where.path, args.durability, fresh=args.phase == "load", url=args.database)
    if args.phase == "load":
        Tally.gate_target = args.instances
        DBOS.launch()
        for _ in range(args.instances):
            DBOS.start_workflow(W["gated"])
        if not Tally.gate_full.wait(args.timeout):
            raise TimeoutError(f"only {Tally.gate_entered} workflows reached step 2")
        mark("ready")
        Tally.never.wait()  # until SIGKILLed
    DBOS.launch()  # recovers the pending workflows of this executor
    mark("started")
    deadline = time.monotonic() + args.timeout
    while Tally.returned < args.instances:  # the workflow functions returned ...
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {Tally.returned} workflows returned")
        time.sleep(0.002)
    success = "SELECT count(*) FROM workflow_status WHERE status = 'SUCCESS'"
    while (complete := where.count(success)) < args.instances:  # ... and their outcome is stored
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {complete} workflows complete")
        time.sleep(0.002)
    mark("done")
    emit_result({"complete": complete})
    sys.stdout.flush()
    os._exit(0)  # DBOS.destroy() would wait on executor threads; nothing is left to write


# ---- W4 -------------------------------------------------------------------------------------
async def w4(args: argparse.Namespace) -> dict[str, Any]:
    where = Where(args.dir / DB_NAME, args.database)
    sleeping = "SELECT count(*) FROM operation_outputs WHERE function_name = 'DBOS.sleep'"

    async def all_sleeping(target: int) -> None:
        deadline = time.monotonic() + args.timeout
        while where.count(sleeping) < target:
            if time.monotonic() > deadline:
                raise TimeoutError(f"fewer than {target} workflows sleeping")
            await asyncio.sleep(0.1)

    warm = 50
    for _ in range(warm):
        await start("nap", args.style)
    await all_sleeping(warm)
    rss_before = rss_kib()
    epoch_started = time.time()
    started = time.perf_counter()
    for _ in range(args.instances):
        await start("nap", args.style)
    created = time.perf_counter() - started
    await all_sleeping(warm + args.instances)
    rss_waiting = rss_kib()
    peak = peak_rss_kib()
    last = where.count(
        "SELECT max(started_at_epoch_ms) FROM operation_outputs WHERE function_name = 'DBOS.sleep'",
    )
    waiting = last / 1000 - epoch_started
    return {
        "instances": args.instances,
        "create_seconds": created,
        "creates_per_s": args.instances / created,
        "waiting_seconds": waiting,
        "waiting_per_s": args.instances / waiting,
        "rss_before_mib": rss_before / 1024,
        "rss_waiting_mib": rss_waiting / 1024,
        "rss_peak_mib": peak / 1024,
        "kib_per_instance": (rss_waiting - rss_before) / args.instances,
        "peak_kib_per_instance": (peak - rss_before) / args.instances,
        "db_mib": where.mib(),
        "threads": threading.active_count(),
    }


WORKLOADS = {"W1": w1, "W2": w2, "W4": w4}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.dbos_side")
    parser.add_argument("workload", choices=[*WORKLOADS, "W2-http", "W3", "W3-child"])
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--durability", choices=sorted(PRAGMAS), default="default")
    parser.add_argument("--style", choices=("sync", "async"), default="sync")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--instances", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--phase", choices=("load", "recover", "import"))
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--database", help="postgresql://... (an empty database): run on it")
    args = parser.parse_args(argv)
    where = Where(args.dir / DB_NAME, args.database)
    if args.workload == "W3-child":
        importlib.import_module("dbos")
        mark("imported")
        if args.phase != "import":
            w3_child(args)
        return
    stop_on_sigterm()
    if args.workload in ("W2-http", "W3"):
        outcome = w2_http(args) if args.workload == "W2-http" else w3(args)
    else:
        configure(where.path, args.durability, url=args.database)

        async def launched() -> dict[str, Any]:
            DBOS.launch()  # on the loop that async workflows run on
            return await WORKLOADS[args.workload](args)

        outcome = asyncio.run(launched())
        outcome["style"] = args.style
    emit_result(
        {
            "engine": "dbos",
            "workload": args.workload,
            "durability": args.durability,
            "journal_mode": where.journal_mode(),
            "store": "postgres" if args.database else "sqlite",
            "dbos_version": importlib.metadata.version("dbos"),
            **outcome,
        }
    )
    # DBOS.destroy() waits for executor threads (W4's sleep for an hour): nothing is left to
    # write, so leave at once.
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
