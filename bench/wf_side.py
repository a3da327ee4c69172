"""The wf side of the benchmark. Each run is one subprocess: ``python -m bench.wf_side KIND ...``.

It prints one ``BENCH-RESULT {json}`` line for the parent (``python -m bench``) to collect.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import heapq
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import (
    emit_result,
    file_size_mib,
    fresh_db,
    latency_summary,
    peak_rss_mib,
    rss_mib,
)
from wf import WorkflowEntrypoint
from wf.engine import Engine, EngineSettings, ManualClock, Notice, WorkflowSpec
from wf.engine.store.sqlite import SqliteStore

# Step timings of the latency run, filled in by ``Timed.run`` (one life: no replay to skew them).
STEP_TIMES: list[float] = []


async def trivial(ctx: Any = None) -> int:
    return 1


class Steps(WorkflowEntrypoint):
    """``n`` sequential trivial steps (an async body: no worker thread involved)."""

    async def run(self, event: Any, step: Any) -> int:
        n = event.payload["n"]
        for i in range(n):
            await step.do(f"s{i}", trivial)
        return int(n)


class Timed(WorkflowEntrypoint):
    """Like ``Steps``, timing every ``step.do`` call from the workflow's point of view."""

    async def run(self, event: Any, step: Any) -> int:
        n = event.payload["n"]
        for i in range(n):
            started = time.perf_counter()
            await step.do(f"s{i}", trivial)
            STEP_TIMES.append(time.perf_counter() - started)
        return int(n)


class Nap(WorkflowEntrypoint):
    """Sleeps a day, then returns: hibernates as soon as the sleep starts."""

    async def run(self, event: Any, step: Any) -> int:
        await step.sleep("nap", "1 day")
        return 1


class Finished:
    """Counts notices of a kind (``completed``, ``hibernated``) and wakes a waiter at a target."""

    def __init__(self, kinds: tuple[str, ...]) -> None:
        self.kinds = kinds
        self.count = 0
        self.errors = 0
        self.target = 0
        self.event = asyncio.Event()

    def expect(self, target: int) -> None:
        self.count = 0
        self.target = target
        self.event.clear()

    def __call__(self, notice: Notice) -> None:
        if notice.kind == "errored":
            self.errors += 1
        if notice.kind in self.kinds:
            self.count += 1
            if self.count >= self.target:
                self.event.set()

    async def wait(self, timeout: float) -> None:
        await asyncio.wait_for(self.event.wait(), timeout)


def make_engine(
    db: Path,
    durability: str,
    spec: WorkflowSpec,
    observer: Finished,
    clock: ManualClock | None = None,
) -> tuple[Engine, SqliteStore]:
    fresh_db(db)
    store = SqliteStore(db, durability=durability)
    engine = Engine(store, [spec], clock=clock, settings=EngineSettings(), on_notice=observer)
    return engine, store


async def create_all(engine: Engine, workflow: str, count: int, params: dict[str, Any]) -> None:
    for start in range(0, count, 100):
        size = min(100, count - start)
        await engine.create_batch(workflow, [{"params": params} for _ in range(size)])


async def throughput(args: argparse.Namespace) -> dict[str, Any]:
    done = Finished(("completed", "errored"))
    engine, store = make_engine(args.db, args.durability, WorkflowSpec("steps", Steps), done)
    await engine.start()
    try:
        # Warm-up: a few instances, so imports and first-connection costs are not measured.
        done.expect(10)
        await create_all(engine, "steps", 10, {"n": args.steps})
        await done.wait(60)
        commits_before, jobs_before = store.commits, store.jobs
        done.expect(args.instances)
        started = time.perf_counter()
        await create_all(engine, "steps", args.instances, {"n": args.steps})
        await done.wait(args.timeout)
        elapsed = time.perf_counter() - started
        commits = store.commits - commits_before
        jobs = store.jobs - jobs_before
        counts = await engine.store.count_statuses("steps")
    finally:
        await engine.stop()
    steps = args.instances * args.steps
    return {
        "instances": args.instances,
        "steps_per_instance": args.steps,
        "durability": args.durability,
        "seconds": elapsed,
        "instances_per_s": args.instances / elapsed,
        "steps_per_s": steps / elapsed,
        "commits": commits,
        "commits_per_step": commits / steps,
        "writes_per_commit": jobs / commits if commits else 0.0,
        "complete": counts["complete"] - 10,
        "errored": counts["errored"],
    }


async def latency(args: argparse.Namespace) -> dict[str, Any]:
    done = Finished(("completed", "errored"))
    engine, store = make_engine(args.db, args.durability, WorkflowSpec("timed", Timed), done)
    await engine.start()
    try:
        done.expect(1)
        await engine.create("timed", params={"n": 10})  # warm-up
        await done.wait(60)
        STEP_TIMES.clear()
        commits_before = store.commits
        elapsed = []
        for _ in range(args.rounds):  # one instance at a time, never two at once
            done.expect(1)
            started = time.perf_counter()
            await engine.create("timed", params={"n": args.steps})
            await done.wait(args.timeout)
            elapsed.append(time.perf_counter() - started)
        commits = store.commits - commits_before
    finally:
        await engine.stop()
    return {
        "steps": args.steps,
        "rounds": args.rounds,
        "durability": args.durability,
        "instance_seconds": sorted(elapsed)[len(elapsed) // 2],
        "commits_per_step": commits / (args.steps * args.rounds),
        **latency_summary(STEP_TIMES),
        "samples": len(STEP_TIMES),
    }


async def hibernation(args: argparse.Namespace) -> dict[str, Any]:
    clock = ManualClock(start=time.time())
    done = Finished(("hibernated",))
    engine, _store = make_engine(args.db, args.durability, WorkflowSpec("nap", Nap), done, clock)
    await engine.start()
    gc.collect()
    rss_start, blocks_start = rss_mib(), sys.getallocatedblocks()
    lives_peak = 0
    try:
        done.expect(args.instances)
        started = time.perf_counter()
        await create_all(engine, "nap", args.instances, {})
        created = time.perf_counter() - started
        # Every instance hibernated, none left in memory, and the store agrees.
        deadline = time.monotonic() + args.timeout
        while True:
            lives_peak = max(lives_peak, len(engine.scheduler.lives))
            if done.count >= args.instances and not engine.scheduler.lives:
                counts = await engine.store.count_statuses("nap")
                if counts["waiting"] == args.instances:
                    break
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {done.count} of {args.instances} hibernated in time")
            await asyncio.sleep(0.05)
        hibernated = time.perf_counter() - started
        gc.collect()
        rss_waiting = rss_mib()
        peak_waiting = peak_rss_mib()
        # ManualClock keeps the sleeps that hibernating lives cancelled until the clock passes
        # them (a real clock's cancelled timers go away): drop them, and measure again.
        lingering_sleepers = len(clock._sleepers)
        with clock._lock:
            clock._sleepers = [s for s in clock._sleepers if not s[3].done()]
            heapq.heapify(clock._sleepers)
        gc.collect()
        rss_tidy = rss_mib()
        blocks_waiting = sys.getallocatedblocks()
        db_mib = file_size_mib(args.db)

        # A day passes: every instance wakes, replays its sleep and completes.
        done.kinds = ("completed", "errored")
        done.expect(args.instances)
        woke = time.perf_counter()
        clock.advance(24 * 3600 + 1)
        await done.wait(args.timeout)
        wake_seconds = time.perf_counter() - woke
        counts = await engine.store.count_statuses("nap")
        rss_after = rss_mib()
    finally:
        await engine.stop()
    return {
        "instances": args.instances,
        "durability": args.durability,
        "create_seconds": created,
        "hibernate_seconds": hibernated,
        "hibernated_per_s": args.instances / hibernated,
        "rss_start_mib": rss_start,
        "rss_waiting_mib": rss_waiting,
        "rss_peak_mib": peak_waiting,
        "per_waiting_instance_kib": (rss_waiting - rss_start) * 1024 / args.instances,
        "rss_waiting_without_clock_leftovers_mib": rss_tidy,
        # Python objects (pymalloc blocks) the engine holds per waiting instance: ~0 if
        # hibernation really leaves nothing behind.
        "python_blocks_per_waiting_instance": (blocks_waiting - blocks_start) / args.instances,
        "lives_peak": lives_peak,
        "manualclock_lingering_sleepers": lingering_sleepers,
        "db_mib": db_mib,
        "wake_seconds": wake_seconds,
        "woken_per_s": args.instances / wake_seconds,
        "complete": counts["complete"],
        "errored": counts["errored"],
        "rss_after_wake_mib": rss_after,
        "rss_peak_total_mib": peak_rss_mib(),
    }


KINDS = {"throughput": throughput, "latency": latency, "hibernation": hibernation}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.wf_side")
    parser.add_argument("kind", choices=sorted(KINDS))
    parser.add_argument("--db", type=Path, required=True)
    parser.add_argument("--durability", choices=("fsync", "os"), default="fsync")
    parser.add_argument("--instances", type=int, default=200)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=5, help="latency: instances, one by one")
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--profile", type=Path, help="write a cProfile of the run here")
    args = parser.parse_args(argv)
    run = KINDS[args.kind]
    if args.profile is not None:
        import cProfile

        profiler = cProfile.Profile()
        result = profiler.runcall(asyncio.run, run(args))
        profiler.dump_stats(args.profile)
    else:
        result = asyncio.run(run(args))
    emit_result({"engine": "wf", "kind": args.kind, **result})


if __name__ == "__main__":
    main()
