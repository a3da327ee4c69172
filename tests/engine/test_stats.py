"""``Controller.stats`` (what ``wf stats`` shows) over a known workload, on both stores."""

from __future__ import annotations

import asyncio

import pytest

from tests.conftest import Harness, wait_status
from wf import NonRetryableError, StepContext, WorkflowEntrypoint
from wf.engine import ManualClock, WorkflowSpec
from wf.engine.stats import percentile
from wf.errors import ValidationError, WorkflowNotFound


class Shop(WorkflowEntrypoint):
    async def run(self, event, step):
        kind = event.payload.get("kind")
        await step.do("fast", lambda: 1)

        async def slow() -> int:
            await asyncio.sleep(0.05)
            return 2

        await step.do("slow", slow)
        if kind == "flaky":

            def flaky(ctx: StepContext) -> int:
                if ctx.attempt < 3:
                    raise ConnectionError(f"down {ctx.attempt}")
                return 3

            await step.do("flaky", {"retries": {"limit": 3, "delay": 0.01}}, flaky)
        if kind == "doomed":

            def doomed() -> None:
                raise NonRetryableError("card declined")

            await step.do("charge", doomed)
        if kind == "sleepy":
            await step.sleep("a day", "1 day")
        return kind


SPECS = [WorkflowSpec("shop", Shop, "SHOP"), WorkflowSpec("idle", Shop, "IDLE")]


async def test_a_known_workload(harness: Harness) -> None:
    engine = await harness.start(SPECS)
    kinds = ["plain", "plain", "flaky", "doomed", "sleepy"]
    for index, kind in enumerate(kinds):
        await engine.create("shop", f"i{index}", {"kind": kind})
    for index in range(4):
        await wait_status(engine, "shop", f"i{index}")
    await wait_status(engine, "shop", "i4", "waiting")

    stats = await engine.stats(None, 3600)
    assert stats["window_seconds"] == 3600
    assert [w["workflow"] for w in stats["workflows"]] == ["shop", "idle"]
    shop, idle = stats["workflows"]
    assert shop["counts"] == {
        "queued": 0,
        "running": 0,
        "paused": 0,
        "waiting": 1,
        "waitingForPause": 0,
        "errored": 1,
        "terminated": 0,
        "complete": 3,
    }
    assert shop["finished"] == {"total": 4, "complete": 3, "errored": 1, "terminated": 0}
    assert shop["throughput_per_minute"] == round(4 / 60, 3)
    durations = shop["duration_ms"]
    assert durations["count"] == 4
    assert 50 <= durations["p50_ms"] <= durations["p95_ms"] <= durations["p99_ms"]
    # 5 instances x (fast, slow) + 3 flaky + 1 charge
    assert shop["attempts"]["total"] == 14
    assert shop["attempts"]["failed"] == 3
    # Each attempt's CPU time is measured (a few lambdas: little, and never more than wall).
    assert shop["attempts"]["cpu_ms"] is not None
    assert 0 <= shop["attempts"]["cpu_ms"] <= shop["attempts"]["wall_ms"]
    slowest = shop["slowest_steps"]
    assert slowest[0]["step"] == "slow" and slowest[0]["attempts"] == 5
    assert slowest[0]["p95_ms"] >= 50 and slowest[0]["max_ms"] >= slowest[0]["p95_ms"]
    assert {s["step"] for s in slowest} == {"slow", "fast", "flaky", "charge"}
    assert [
        (s["step"], s["failures"], s["attempts"], s["last_error"]) for s in shop["failing_steps"]
    ] == [
        ("flaky", 2, 3, {"name": "ConnectionError", "message": "down 2"}),
        ("charge", 1, 1, {"name": "NonRetryableError", "message": "card declined"}),
    ]
    assert idle["counts"] == dict.fromkeys(shop["counts"], 0)
    assert idle["finished"]["total"] == 0 and idle["throughput_per_minute"] == 0
    assert idle["duration_ms"] == {"count": 0, "p50_ms": None, "p95_ms": None, "p99_ms": None}
    assert idle["slowest_steps"] == [] and idle["failing_steps"] == []

    only = await engine.stats("shop", 3600)
    assert [w["workflow"] for w in only["workflows"]] == ["shop"]
    with pytest.raises(WorkflowNotFound):
        await engine.stats("nope", 3600)
    with pytest.raises(ValidationError):
        await engine.stats("shop", 0)


async def test_the_window_leaves_out_what_ended_before_it(harness: Harness) -> None:
    clock = ManualClock()
    engine = await harness.start(SPECS, clock=clock)
    await engine.create("shop", "old", {"kind": "plain"})
    await engine.create("shop", "asleep", {"kind": "sleepy"})
    await wait_status(engine, "shop", "old")
    await wait_status(engine, "shop", "asleep", "waiting")
    clock.advance(7200)
    await engine.create("shop", "new", {"kind": "doomed"})
    await wait_status(engine, "shop", "new")

    [shop] = (await engine.stats("shop", 3600))["workflows"]
    # The unfinished one counts whenever it began; the old finished one does not.
    assert shop["counts"]["waiting"] == 1 and shop["counts"]["errored"] == 1
    assert shop["counts"]["complete"] == 0
    assert shop["finished"]["total"] == 1
    assert {s["step"] for s in shop["slowest_steps"]} == {"fast", "slow", "charge"}
    [whole] = (await engine.stats("shop", 3 * 3600))["workflows"]
    assert whole["counts"]["complete"] == 1 and whole["finished"]["total"] == 2


def test_percentiles_are_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50
    assert percentile(values, 95) == 95
    assert percentile(values, 99) == 99
    assert percentile([7.0], 99) == 7
    assert percentile([], 50) is None
    assert percentile([1.0, 2.0], 50) == 1 and percentile([1.0, 2.0], 51) == 2
