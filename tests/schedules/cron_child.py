"""A child process for the cron crash test: an engine firing ``* * * * *`` on a fast clock.

    python tests/schedules/cron_child.py DATABASE T0 MARKER KILL_AT [--until SIM_EPOCH]

The clock runs ``SPEED`` times faster than the wall clock from ``T0`` (a wall-clock epoch the
test gives every life, so simulated time goes on across kills), a minute every few seconds.
``KILL_AT`` says where the process SIGKILLs itself at its first firing: ``before_create`` (the
firing decided, nothing written), ``after_create`` (the instance committed, the firing not yet
recorded), ``after_record`` (both written), or ``never``. Before killing itself it appends
``kill <where> <instance id>`` to MARKER (fsynced). ``--until``: run until the simulated clock
passes SIM_EPOCH and every instance is finished, then print ``done`` and exit 0. It prints
``started`` once the engine runs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from wf import WorkflowEntrypoint, WorkflowEvent, WorkflowStep
from wf.engine import Engine, EngineSettings, WorkflowSpec
from wf.engine.model import NewInstance
from wf.engine.store import open_store

SPEED = 15.0  # a simulated minute every 4 real seconds
BASE = 1_783_069_170.0  # 2026-07-03 08:59:30 UTC: the first firing is 30 simulated s later
CRON = "* * * * *"


class FastClock:
    def __init__(self, t0: float) -> None:
        self.t0 = t0

    def now(self) -> float:
        return BASE + (time.time() - self.t0) * SPEED

    async def sleep_until(self, when: float) -> None:
        while (remaining := when - self.now()) > 0:
            await asyncio.sleep(remaining / SPEED)


class Tick(WorkflowEntrypoint):
    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        schedule = event.schedule
        assert schedule is not None
        return await step.do("tick", lambda: schedule["scheduledTime"])


def mark(path: Path, line: str) -> None:
    with path.open("a") as out:
        out.write(line + "\n")
        out.flush()
        os.fsync(out.fileno())


def arm(engine: Engine, kill_at: str, marker: Path) -> None:
    """Make the process SIGKILL itself at ``kill_at`` of its first firing."""
    store: Any = engine.store
    create, record = store.create_instances, store.record_firing

    def die(where: str, what: str) -> None:
        mark(marker, f"kill {where} {what}")
        os.kill(os.getpid(), signal.SIGKILL)

    async def create_instances(items: list[NewInstance], skip_existing: bool) -> Any:
        fired = [i.id for i in items if i.trigger == "cron"]
        if fired and kill_at == "before_create":
            die(kill_at, fired[0])
        rows = await create(items, skip_existing=skip_existing)
        if fired and kill_at == "after_create":
            die(kill_at, fired[0])
        return rows

    async def record_firing(workflow: str, cron: str, fired: float) -> None:
        await record(workflow, cron, fired)
        if kill_at == "after_record":
            die(kill_at, f"{cron}-{round(fired * 1000)}")

    store.create_instances = create_instances
    store.record_firing = record_firing


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("database")
    parser.add_argument("t0", type=float)
    parser.add_argument("marker", type=Path)
    parser.add_argument("kill_at")
    parser.add_argument("--until", type=float)
    args = parser.parse_args()
    clock = FastClock(args.t0)
    engine = Engine(
        open_store(args.database, durability="fsync"),
        [WorkflowSpec("ticks", Tick, "TICKS", schedules=(CRON,))],
        clock=clock,
        settings=EngineSettings(poll_interval=0.05, lease=2.0),
    )
    if args.kill_at != "never":
        arm(engine, args.kill_at, args.marker)
    await engine.start(after_crash=True)
    print("started", flush=True)
    try:
        while True:
            await asyncio.sleep(0.05)
            if args.until is None or clock.now() < args.until:
                continue
            rows, _ = await engine.list_instances("ticks", per_page=1000)
            if all(row.status.finished for row in rows):
                break
    finally:
        await engine.stop()
    print("done", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
