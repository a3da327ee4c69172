"""The wf side of the benchmark: one measurement per process, ``python -m bench.wf_side W ...``.

It prints one ``BENCH-RESULT {json}`` line for the parent (``python -m bench``) to collect.
Every measurement starts from an empty database in ``--dir`` (a fresh temporary folder) and warms
up first (imports, first connections, caches), outside the timed part. In-process, the end of an
instance is learnt from the engine's ``on_notice`` callback (``completed`` / ``errored``
notices), never by polling the store.

``--database URL`` runs it on PostgreSQL (an empty database of the bench's server) instead of an
SQLite file in ``--dir``; W2-scale and takeover run there alone (several processes share it).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import (
    RESULT_MARK,
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
from bench.wf_workflows import Gate, Gated, Nap, Sequential, ThreeSteps
from wf.engine import Engine, EngineSettings, Notice, WorkflowSpec, codec
from wf.engine.limits import Limits
from wf.engine.model import NewInstance
from wf.engine.store import open_store
from wf.engine.store.base import Store
from wf.engine.store.sqlite import SqliteStore
from wf.engine.version import version_of_classes

HERE = Path(__file__).resolve().parent


class Finished:
    """The engine's ``on_notice`` callback: counts ``completed`` and ``errored`` notices."""

    def __init__(self) -> None:
        self.complete = 0
        self.errored = 0
        self.errors: list[str] = []
        self._target = 0
        self._reached: asyncio.Event | None = None
        self.metrics: Any = None  # wf.devserver.metrics.Metrics, with --metrics

    def __call__(self, notice: Notice) -> None:
        if notice.kind == "completed":
            self.complete += 1
        elif notice.kind == "errored":
            self.errored += 1
            if len(self.errors) < 3:
                self.errors.append(f"{notice.instance_id}: {notice.detail.get('error')}")
        else:
            return
        if self._reached is not None and self.complete + self.errored >= self._target:
            self._reached.set()

    async def reach(self, count: int, timeout: float) -> float:
        """Wait until ``count`` instances in all have finished; ``time.perf_counter()`` then."""
        if self.complete + self.errored < count:
            self._target = count
            self._reached = asyncio.Event()
            try:
                await asyncio.wait_for(self._reached.wait(), timeout)
            except asyncio.TimeoutError:
                raise TimeoutError(
                    f"{self.complete + self.errored} of {count} instances finished after "
                    f"{timeout:.0f} s"
                ) from None
            finally:
                self._reached = None
        return time.perf_counter()


def store_for(args: argparse.Namespace, fresh: bool = True) -> Store:
    """The run's store: PostgreSQL when ``--database`` names one, else ``wf.db`` in ``--dir``
    (removed first when ``fresh``)."""
    if args.database:
        return open_store(args.database, durability=args.durability)
    db = args.dir / "wf.db"
    if fresh:
        fresh_db(db)
    return SqliteStore(db, durability=args.durability)


def commits(store: Store) -> int | None:
    """How many commits the store made so far, if it counts them (SqliteStore does)."""
    made = getattr(store, "commits", None)
    return made if isinstance(made, int) else None


def db_mib(args: argparse.Namespace) -> float:
    if args.database:
        from bench.pg_server import database_mib

        return database_mib(args.database)
    return files_mib(args.dir / "wf.db")


def engine_for(
    args: argparse.Namespace, spec: WorkflowSpec, on_notice: Finished | None
) -> tuple[Engine, Store]:
    """The run's engine; with ``--metrics``, its notices and figures are counted for
    ``GET /metrics`` as ``wf dev`` counts them (and scraped once at the end: ``scrape``)."""
    store = store_for(args)
    observe: Callable[[Notice], None] | None = on_notice
    metrics = None
    if getattr(args, "metrics", False):
        from wf.devserver.metrics import Metrics, statuses_of, tee
        from wf.engine.counters import Totals

        async def statuses() -> dict[str, dict[str, int]]:
            return await statuses_of(engine.workflow_names, store.count_statuses)

        metrics = Metrics(statuses, lambda: Totals().add(engine.stats_snapshot()))
        observe = tee(metrics.observe, on_notice)
    engine = Engine(store, [spec], settings=EngineSettings(), on_notice=observe)
    if on_notice is not None:
        on_notice.metrics = metrics
    return engine, store


async def scrape(done: Finished) -> int | None:
    """Render ``/metrics`` once (with ``--metrics``): its size in bytes."""
    return None if done.metrics is None else len(await done.metrics.render())


async def create_many(engine: Engine, workflow: str, count: int) -> None:
    """``count`` instances, by ``create_batch`` of 100, all submitted at once."""
    batches: list[list[dict[str, Any]]] = [
        [{"params": {}} for _ in range(min(100, count - first))] for first in range(0, count, 100)
    ]
    await asyncio.gather(*(engine.create_batch(workflow, batch) for batch in batches))


# ---- W1 and W1-def: sequential ----------------------------------------------------------------
async def w1(args: argparse.Namespace, body: str = "async") -> dict[str, Any]:
    done = Finished()
    engine, store = engine_for(args, WorkflowSpec("seq", Sequential), done)
    await engine.start()
    try:
        await engine.create("seq", params={"n": 100, "body": body})  # warm-up
        await done.reach(1, args.timeout)
        Sequential.step_seconds.clear()
        before = commits(store)
        started = time.perf_counter()
        await engine.create("seq", params={"n": args.steps, "body": body})
        ended = await done.reach(2, args.timeout)
        after = commits(store)
        scraped = await scrape(done)
    finally:
        await engine.stop()
    times = Sequential.step_seconds
    made = None if before is None or after is None else after - before
    return {
        "body": body,
        "metrics": scraped is not None,
        "steps": args.steps,
        "seconds": ended - started,
        "step_us": (ended - started) / args.steps * 1e6,
        "step_us_median": median(times) * 1e6,
        "step_us_p90": percentile(times, 90) * 1e6,
        "step_us_max": max(times) * 1e6,
        **({} if made is None else {"commits_per_step": made / args.steps}),
        "errored": done.errored,
        "error_samples": done.errors,
    }


async def w1_def(args: argparse.Namespace) -> dict[str, Any]:
    """W1 with a ``def`` body, run in a worker thread: what the hop to it and back costs."""
    return await w1(args, body="def")


# ---- W2: fan-out in-process -------------------------------------------------------------------
async def w2(args: argparse.Namespace) -> dict[str, Any]:
    done = Finished()
    engine, store = engine_for(args, WorkflowSpec("three", ThreeSteps), done)
    warm = 50
    await engine.start()
    try:
        await create_many(engine, "three", warm)
        await done.reach(warm, args.timeout)
        before = commits(store)
        started = time.perf_counter()
        await create_many(engine, "three", args.instances)
        created = time.perf_counter() - started
        ended = await done.reach(warm + args.instances, args.timeout)
        after = commits(store)
        scraped = await scrape(done)
    finally:
        await engine.stop()
    elapsed = ended - started
    made = None if before is None or after is None else after - before
    return {
        "instances": args.instances,
        "metrics": scraped is not None,
        "seconds": elapsed,
        "instances_per_s": args.instances / elapsed,
        "create_seconds": created,
        **({} if made is None else {"commits_per_instance": made / args.instances}),
        "errored": done.errored,
        "error_samples": done.errors,
    }


# ---- W2-http: a real wf dev -------------------------------------------------------------------
WF_TOML = """\
name = "bench"
main = "workflows.py"

[[workflows]]
name = "three"
binding = "THREE"
class_name = "ThreeDefSteps"

[dev]
host = "127.0.0.1"
port = {port}

[engine]
durability = "{durability}"
"""

FINISHED_WF = {"complete": "done", "errored": "failed", "terminated": "failed"}


def wf_dev_api() -> HttpApi:
    def create(http: Http) -> str:
        status, body = http.call("POST", "/api/workflows/three/instances", {"params": {}})
        if status != 201:
            raise RuntimeError(f"create answered {status}: {body}")
        return str(body["result"]["id"])

    def state(http: Http, instance_id: str) -> str:
        status, body = http.call("GET", f"/api/workflows/three/instances/{instance_id}")
        if status != 200:
            raise RuntimeError(f"get answered {status}: {body}")
        return FINISHED_WF.get(body["result"]["status"], "running")

    return HttpApi(create, state)


def w2_http(args: argparse.Namespace) -> dict[str, Any]:
    project = args.dir / "project"
    project.mkdir()
    port = free_port()
    (project / "wf.toml").write_text(WF_TOML.format(port=port, durability=args.durability))
    (project / "workflows.py").write_text((HERE / "wf_workflows.py").read_text())
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "120"}
    for name in ("WF_URL", "WF_API_TOKEN"):
        env.pop(name, None)
    argv = [sys.executable, "-m", "wf", "dev", "--host", "127.0.0.1", "--port", str(port)]
    if args.database:
        argv += ["--database", args.database]
    api = wf_dev_api()
    with Group(argv, project, args.dir / "dev.log", env) as server:

        def healthy() -> bool:
            http = Http(port, timeout=2)
            try:
                status, body = http.call("GET", "/api/health")
                return status == 200 and body["result"]["status"] == "ok"
            finally:
                http.close()

        ready = server.wait_ready(healthy)
        result = measure_http(server, port, api, args, ready)
    return result


# ---- W3: recovery after SIGKILL ---------------------------------------------------------------
def child(args: argparse.Namespace, phase: str) -> subprocess.Popen[str]:
    argv = [sys.executable, "-m", "bench.wf_side", "W3-child", "--phase", phase]
    argv += ["--dir", str(args.dir), "--durability", args.durability]
    argv += ["--instances", str(args.instances), "--timeout", str(args.timeout)]
    if args.database:
        argv += ["--database", args.database]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, start_new_session=True)


def reap(proc: subprocess.Popen[str]) -> None:
    """SIGKILL ``proc``'s process group if it is still there, and wait for it."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    for pipe in (proc.stdin, proc.stdout):
        if pipe is not None:
            with contextlib.suppress(OSError):  # a pipe to a killed process may be broken
                pipe.close()


def w3(args: argparse.Namespace) -> dict[str, Any]:
    # A process creates the instances and is SIGKILLed once every one is inside step 2.
    loader = child(args, "load")
    try:
        wait_mark(loader, "ready", args.timeout)
        os.killpg(loader.pid, signal.SIGKILL)
    finally:
        reap(loader)
    (args.dir / "release").touch()  # from now on, step 2 returns at once
    os.sync()  # what the killed process left for the disk to write is not the restart's cost
    time.sleep(0.3)

    # The restart: from the command to every instance complete (its notice, in that process).
    started = time.perf_counter()
    restarted = child(args, "recover")
    try:
        imported = wait_mark(restarted, "imported", args.timeout) - started
        engine_started = wait_mark(restarted, "started", args.timeout) - started
        done = wait_mark(restarted, "done", args.timeout) - started
        out = read_rest(restarted, 60)
    finally:
        reap(restarted)
    line = next((ln for ln in out.splitlines() if ln.startswith(RESULT_MARK)), None)
    if line is None:
        raise RuntimeError("the restarted process gave no result")
    inner = json.loads(line[len(RESULT_MARK) :])

    # Python start-up and imports alone, measured separately (the same command, which exits
    # once it has imported what the recovery imports).
    started = time.perf_counter()
    only = child(args, "import")
    try:
        import_only = wait_mark(only, "imported", args.timeout) - started
        only.wait(args.timeout)
    finally:
        reap(only)
    return {
        "instances": args.instances,
        "seconds": done,
        "import_seconds": import_only,
        "engine_seconds": done - import_only,
        "imported_mark_seconds": imported,
        "engine_started_seconds": engine_started,
        **inner,
    }


async def w3_child(args: argparse.Namespace) -> None:
    Gate.flag = str(args.dir / "release")
    done = Finished()
    store = store_for(args, fresh=args.phase == "load")
    spec = WorkflowSpec("gated", Gated)
    engine = Engine(store, [spec], settings=EngineSettings(), on_notice=done)
    await engine.start()  # plain start: what it finds running is recovered, all at once
    if args.phase == "load":
        Gate.target = args.instances
        Gate.full = asyncio.Event()
        await create_many(engine, "gated", args.instances)
        await asyncio.wait_for(Gate.full.wait(), args.timeout)
        mark("ready")
        await asyncio.Event().wait()  # until SIGKILLed
    mark("started")
    await done.reach(args.instances, args.timeout)
    mark("done")
    _, complete = await engine.list_instances("gated", status="complete", per_page=1)
    await engine.stop()
    emit_result(
        {"complete": complete, "errored": done.errored, "error_samples": done.errors},
    )


# ---- W4: hibernation --------------------------------------------------------------------------
async def w4(args: argparse.Namespace) -> dict[str, Any]:
    engine, _ = engine_for(args, WorkflowSpec("nap", Nap), None)

    async def all_waiting(count: int) -> float:
        """Poll until ``count`` instances are ``waiting``; ``time.perf_counter()`` then."""
        deadline = time.monotonic() + args.timeout
        while True:
            _, waiting = await engine.list_instances("nap", status="waiting", per_page=1)
            if waiting >= count:
                return time.perf_counter()
            if time.monotonic() > deadline:
                raise TimeoutError(f"{waiting} of {count} waiting after {args.timeout:.0f} s")
            await asyncio.sleep(0.05)

    warm = 200
    await engine.start()
    try:
        await create_many(engine, "nap", warm)
        await all_waiting(warm)
        await asyncio.sleep(0.5)
        gc.collect()
        rss_before = rss_kib()
        started = time.perf_counter()
        for first in range(0, args.instances, 100):  # one batch after another, as a client would
            size = min(100, args.instances - first)
            await engine.create_batch("nap", [{"params": {}} for _ in range(size)])
        created = time.perf_counter() - started
        waiting = await all_waiting(warm + args.instances) - started
        # A sleep longer than hibernate_after leaves memory as soon as it has started; give the
        # last lives a moment to go, then measure what stays.
        await asyncio.sleep(0.5)
        gc.collect()
        rss_waiting = rss_kib()
        peak = peak_rss_kib()
        _, errored = await engine.list_instances("nap", status="errored", per_page=1)
    finally:
        await engine.stop()
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
        "db_mib": db_mib(args),
        "errored": errored,
    }


# ---- W2-scale and takeover: several node processes on one PostgreSQL database ----------------
def node(args: argparse.Namespace, role: str, owner: str) -> subprocess.Popen[str]:
    """A node process: an Engine on its own PostgresStore (``owns_store=False``: it frees no one
    else's claims), owner ``owner``; told what to do on its stdin."""
    argv = [sys.executable, "-m", "bench.wf_side", "node", "--role", role, "--owner", owner]
    argv += ["--dir", str(args.dir), "--database", args.database, "--lease", str(args.lease)]
    argv += ["--instances", str(args.instances), "--timeout", str(args.timeout)]
    return subprocess.Popen(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, start_new_session=True
    )


def tell(proc: subprocess.Popen[str], line: str) -> None:
    assert proc.stdin is not None
    proc.stdin.write(line + "\n")
    proc.stdin.flush()


def node_result(proc: subprocess.Popen[str], timeout: float) -> dict[str, Any]:
    """Tell a node to stop; the result it printed."""
    tell(proc, "stop")
    out = read_rest(proc, timeout)
    line = next((ln for ln in out.splitlines() if ln.startswith(RESULT_MARK)), None)
    if line is None:
        raise RuntimeError(f"node {proc.pid} gave no result (exit {proc.returncode})")
    result: dict[str, Any] = json.loads(line[len(RESULT_MARK) :])
    return result


async def make_pool(store: Store, workflow: str, cls: type, count: int) -> None:
    """``count`` queued instances of ``workflow``, written straight to the store (no engine of
    this process runs them), 100 per commit."""
    version = version_of_classes([cls])
    params = codec.encode_payload({}, "params", Limits().payload_bytes)
    for first in range(0, count, 100):
        batch = [
            NewInstance(workflow, str(uuid.uuid4()), params, "api", version, time.time())
            for _ in range(min(100, count - first))
        ]
        await store.create_instances(batch, skip_existing=False)


async def finished(store: Store, workflow: str) -> int:
    counts = await store.count_statuses(workflow)
    return sum(counts.get(status, 0) for status in ("complete", "errored", "terminated"))


async def w2_scale(args: argparse.Namespace) -> dict[str, Any]:
    """W2 with ``--nodes`` processes claiming from one pool of queued instances: the pool is
    written first; then every node, started, warmed up and waiting, is told to go at once, and
    the time runs until this process counts every instance finished in the database (polled
    every 10 ms)."""
    store = store_for(args)
    await store.open()
    procs: list[subprocess.Popen[str]] = []
    try:
        await make_pool(store, "three", ThreeSteps, args.instances)
        procs = [node(args, "scale", f"bench-node-{i + 1}") for i in range(args.nodes)]
        for proc in procs:
            await asyncio.to_thread(wait_mark, proc, "ready", args.timeout)
        started = time.perf_counter()
        for proc in procs:
            tell(proc, "go")
        deadline = time.monotonic() + args.timeout
        while (done := await finished(store, "three")) < args.instances:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{done} of {args.instances} finished after {args.timeout} s")
            await asyncio.sleep(0.01)
        ended = time.perf_counter()
        results = [await asyncio.to_thread(node_result, p, args.timeout) for p in procs]
        counts = await store.count_statuses("three")
    finally:
        for proc in procs:
            reap(proc)
        await store.close()
    elapsed = ended - started
    per_node = [int(r["completed"]) for r in results]
    return {
        "nodes": args.nodes,
        "instances": args.instances,
        "seconds": elapsed,
        "instances_per_s": args.instances / elapsed,
        "completed_by_node": per_node,
        # Every instance completed once: the nodes' completed notices add up to the pool.
        "completed_notices": sum(per_node),
        "complete": counts.get("complete", 0),
        "errored": sum(int(r["errored"]) for r in results) + counts.get("errored", 0),
        "error_samples": [e for r in results for e in r["error_samples"]][:3],
    }


HOW = {"SIGKILL": signal.SIGKILL, "SIGSTOP": signal.SIGSTOP}


def takeover(args: argparse.Namespace) -> dict[str, Any]:
    """A node holding ``--instances`` running instances (each inside W3's gate step) is
    SIGKILLed (``--how``; its connections close, which the store sees) or SIGSTOPped (frozen:
    its connections stay open, so only its lease lapsing frees its claims); another node,
    running since before, with the same ``--lease``, takes them over: seconds from the signal
    until all complete."""
    holder = node(args, "hold", "bench-holder")
    taker: subprocess.Popen[str] | None = None
    try:
        wait_mark(holder, "ready", args.timeout)  # it holds them all, each inside the gate
        taker = node(args, "take", "bench-taker")
        wait_mark(taker, "started", args.timeout)
        (args.dir / "release").touch()  # the gate opens for whoever runs it next
        time.sleep(0.5)  # the taker's first claim rounds found nothing: it is idle and polling
        killed = time.perf_counter()
        os.killpg(holder.pid, HOW[args.how])
        first = wait_mark(taker, "first", args.timeout) - killed
        done = wait_mark(taker, "done", args.timeout) - killed
        inner = node_result(taker, args.timeout)
    finally:
        reap(holder)
        if taker is not None:
            reap(taker)
    return {
        "instances": args.instances,
        "how": args.how,
        "lease_seconds": args.lease,
        "seconds": done,
        "first_seconds": first,
        "poll_interval_seconds": EngineSettings().poll_interval,
        "complete": inner["completed"],
        "errored": inner["errored"],
        "error_samples": inner["error_samples"],
    }


async def line_from_stdin() -> str:
    line: str = await asyncio.to_thread(sys.stdin.readline)
    return line.strip()


async def node_main(args: argparse.Namespace) -> None:
    """A node of W2-scale or takeover (``--role``); see ``w2_scale`` and ``takeover``."""
    if args.role == "scale":
        spec = WorkflowSpec("three", ThreeSteps)
        warm = store_for(args)  # imports, the first connection and queries, out of the timing
        await warm.open()
        await warm.count_statuses("three")
        await warm.close()
        mark("ready")
        if await line_from_stdin() != "go":
            return
    else:
        spec = WorkflowSpec("gated", Gated)
        Gate.flag = str(args.dir / "release")
    done = Finished()
    settings = EngineSettings(lease=args.lease)
    engine = Engine(
        store_for(args),
        [spec],
        settings=settings,
        on_notice=done,
        owns_store=False,
        owner=args.owner,
    )
    await engine.start()
    try:
        if args.role == "hold":
            Gate.target = args.instances
            Gate.full = asyncio.Event()
            await create_many(engine, "gated", args.instances)
            await asyncio.wait_for(Gate.full.wait(), args.timeout)
            mark("ready")
            await asyncio.Event().wait()  # until SIGKILLed
        if args.role == "take":
            mark("started")
            await done.reach(1, args.timeout)
            mark("first")
            await done.reach(args.instances, args.timeout)
            mark("done")
        await line_from_stdin()  # "stop"
    finally:
        await engine.stop()
    emit_result({"completed": done.complete, "errored": done.errored, "error_samples": done.errors})


ASYNC_WORKLOADS = {"W1": w1, "W1-def": w1_def, "W2": w2, "W4": w4, "W2-scale": w2_scale}
WORKLOADS = [*ASYNC_WORKLOADS, "W2-http", "W3", "takeover"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.wf_side")
    parser.add_argument("workload", choices=[*WORKLOADS, "W3-child", "node"])
    parser.add_argument("--dir", type=Path, required=True, help="an empty folder for this run")
    parser.add_argument("--durability", choices=("fsync", "os"), default="fsync")
    parser.add_argument("--steps", type=int, default=1000, help="W1, W1-def")
    parser.add_argument("--instances", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=8, help="W2-http client threads")
    parser.add_argument("--phase", choices=("load", "recover", "import"), help="W3-child")
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--database", help="postgresql://... (an empty database): run on it")
    parser.add_argument("--nodes", type=int, default=1, help="W2-scale: node processes")
    parser.add_argument("--lease", type=float, default=30.0, help="W2-scale, takeover (s)")
    parser.add_argument("--role", choices=("scale", "hold", "take"), help="node")
    parser.add_argument("--owner", default="bench", help="node: its claim owner id")
    parser.add_argument("--how", choices=sorted(HOW), default="SIGKILL", help="takeover")
    parser.add_argument(
        "--metrics", action="store_true", help="W1, W2: count for /metrics (as wf dev/serve do)"
    )
    args = parser.parse_args(argv)
    if args.workload in ("W2-scale", "takeover", "node") and not args.database:
        parser.error(f"{args.workload} runs on PostgreSQL: give --database")
    if args.workload == "W3-child":
        mark("imported")
        if args.phase != "import":
            asyncio.run(w3_child(args))
        return
    stop_on_sigterm()
    if args.workload == "node":
        asyncio.run(node_main(args))
        return
    if args.workload == "W2-http":
        result = w2_http(args)
    elif args.workload == "W3":
        result = w3(args)
    elif args.workload == "takeover":
        result = takeover(args)
    else:
        result = asyncio.run(ASYNC_WORKLOADS[args.workload](args))
    store = "postgres" if args.database else "sqlite"
    emit_result(
        {
            "engine": "wf",
            "workload": args.workload,
            "durability": args.durability,
            "store": store,
            **result,
        }
    )


if __name__ == "__main__":
    main()
