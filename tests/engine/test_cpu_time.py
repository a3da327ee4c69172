"""The CPU time of each attempt, recorded beside its wall time (both stores)."""

from __future__ import annotations

import asyncio
import contextlib
import time

from tests.conftest import Harness, wait_status
from wf import WorkflowEntrypoint
from wf.engine import WorkflowSpec
from wf.engine.cpu import CpuMeter, Metered

BUSY_SECONDS = 0.15


def busy(seconds: float) -> int:
    """Burn ``seconds`` of this thread's CPU time."""
    end = time.thread_time() + seconds
    n = 0
    while time.thread_time() < end:
        n += 1
    return n


async def test_cpu_time_of_sync_and_async_bodies_is_recorded(harness: Harness) -> None:
    def sync_busy() -> str:
        busy(BUSY_SECONDS)
        return "sync"

    async def async_busy_then_idle() -> str:
        busy(BUSY_SECONDS / 2)
        await asyncio.sleep(0.2)  # waiting is not CPU time
        busy(BUSY_SECONDS / 2)
        return "async"

    async def idle() -> str:
        await asyncio.sleep(0.2)
        return "idle"

    class Flow(WorkflowEntrypoint):
        async def run(self, event, step):
            return [
                await step.do("sync", sync_busy),
                await step.do("async", async_busy_then_idle),
                await step.do("idle", idle),
            ]

    engine = await harness.start([WorkflowSpec("flow", Flow)])
    instance = await engine.create("flow")
    assert (await wait_status(engine, "flow", instance.id))["output"] == ["sync", "async", "idle"]
    rows = harness.query("SELECT name, cpu, ended - started FROM attempts")
    took = {name: (cpu, wall) for name, cpu, wall in rows}
    for name in ("sync", "async"):
        cpu, wall = took[name]
        assert 0.8 * BUSY_SECONDS <= cpu <= wall, (name, cpu, wall)
    cpu, wall = took["idle"]
    assert cpu < 0.05 < wall  # asleep, not busy
    # The history (describe, the dashboard) carries it too.
    details = await engine.details("flow", instance.id)
    attempts = [s["attempts"][0] for s in details["steps"]]
    assert attempts[0]["cpu"] == took["sync"][0]


async def test_a_body_that_raises_or_is_cancelled_still_counts_its_time() -> None:
    async def raises() -> None:
        busy(0.02)
        raise ValueError("no")

    meter = CpuMeter()
    with contextlib.suppress(ValueError):
        await Metered(raises(), meter)
    assert meter.measured is not None and meter.measured >= 0.015

    async def sleeps() -> None:
        await asyncio.sleep(10)

    meter = CpuMeter()
    task = asyncio.ensure_future(Metered(sleeps(), meter))
    await asyncio.sleep(0.01)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert meter.ended and task.cancelled()
