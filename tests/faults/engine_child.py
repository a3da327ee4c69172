"""A process running one engine on a database, for tests that need the process to die.

    python tests/faults/engine_child.py DB ORIGIN [--after-crash] ID:WORKFLOW[:PARAMS_JSON] ...

Starts an engine on DB (recovering whatever a previous process left; ``--after-crash``: the
previous one died on its own, as a supervisor tells its new child), creates each listed instance
unless it exists already, waits until all of them have finished, prints one JSON line
``{"id": status, ...}`` and exits 0. User code that calls ``os._exit(1)`` ends it sooner.

The engine's clock runs ``SPEED`` times faster than real time from ``ORIGIN`` (epoch seconds,
the same for every life), so the pauses the engine puts between crashed lives pass quickly.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from wf import WorkflowEntrypoint, WorkflowEvent, WorkflowStep  # noqa: E402
from wf.engine import Engine, EngineSettings, WorkflowSpec  # noqa: E402
from wf.engine.store.sqlite import SqliteStore  # noqa: E402
from wf.errors import InstanceAlreadyExists  # noqa: E402

FINISHED = ("complete", "errored", "terminated")


class Crasher(WorkflowEntrypoint):
    """Kills the process after its first step, every time: in ``run()`` itself, or in a second
    step whose retry limit is ``payload["retries"]``."""

    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        await step.do("before", lambda: "fine")

        def die() -> None:
            os._exit(1)

        if event.payload["where"] == "run":
            die()
        await step.do("die", {"retries": {"limit": event.payload["retries"], "delay": 0}}, die)
        return "unreachable"


class Good(WorkflowEntrypoint):
    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        one = await step.do("one", lambda: 1)
        await step.sleep("breathe", 0.1)
        return await step.do("two", lambda: one + 1)


SPECS = [WorkflowSpec("crasher", Crasher, "CRASHER"), WorkflowSpec("good", Good, "GOOD")]
SPEED = 20.0


class FastClock:
    """Wall-clock time that runs ``speed`` times faster from ``origin`` on: monotonic across
    processes that share the origin."""

    def __init__(self, origin: float, speed: float) -> None:
        self.origin = origin
        self.speed = speed

    def now(self) -> float:
        return self.origin + (time.time() - self.origin) * self.speed

    async def sleep_until(self, when: float) -> None:
        while True:
            remaining = (when - self.now()) / self.speed
            if remaining <= 0:
                return
            await asyncio.sleep(min(remaining, 1.0))


async def main(db: str, origin: float, wanted: list[str]) -> int:
    after_crash = "--after-crash" in wanted
    wanted = [item for item in wanted if item != "--after-crash"]
    engine = Engine(
        SqliteStore(db, durability="os"),
        SPECS,
        clock=FastClock(origin, SPEED),
        settings=EngineSettings(poll_interval=0.1),
    )
    await engine.start(after_crash)
    try:
        ids: list[tuple[str, str]] = []
        for item in wanted:
            instance_id, workflow, *rest = item.split(":", 2)
            params = json.loads(rest[0]) if rest else None
            with contextlib.suppress(InstanceAlreadyExists):
                await engine.create(workflow, instance_id, params)
            ids.append((workflow, instance_id))
        statuses: dict[str, Any] = {}
        while True:
            for workflow, instance_id in ids:
                statuses[instance_id] = await engine.status(workflow, instance_id)
            if all(s["status"] in FINISHED for s in statuses.values()):
                break
            await asyncio.sleep(0.05)
        print(json.dumps(statuses), flush=True)
    finally:
        await engine.stop()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1], float(sys.argv[2]), sys.argv[3:])))
