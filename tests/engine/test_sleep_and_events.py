"""step.sleep, step.sleep_until and step.wait_for_event, on a manual clock and a real one."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from tests.conftest import Harness, wait_for, wait_status
from wf import StepError, WorkflowEntrypoint
from wf.engine import ManualClock, WorkflowSpec


def spec(cls: type[WorkflowEntrypoint]) -> list[WorkflowSpec]:
    return [WorkflowSpec("wf", cls, "WF")]


async def test_long_sleep_hibernates_and_wakes_on_time(
    harness: Harness, clock: ManualClock
) -> None:
    class Flow(WorkflowEntrypoint):
        async def run(self, event, step):
            await step.sleep("three days", "3 days")
            return "awake"

    engine = await harness.start(spec(Flow), clock=clock)
    inst = await engine.create("wf")
    await wait_status(engine, "wf", inst.id, "waiting")
    await wait_for(lambda: not engine.scheduler.lives)  # out of memory entirely
    clock.advance(3 * 86400 - 1)
    await asyncio.sleep(0.1)
    assert (await inst.status())["status"] == "waiting"
    clock.advance(1)
    assert (await wait_status(engine, "wf", inst.id))["output"] == "awake"
    sleep = (await engine.details("wf", inst.id))["steps"][0]
    assert sleep["type"] == "sleep" and sleep["name"] == "three days-1" and sleep["finished"]
    assert "hibernated" in harness.kinds(inst.id)


async def test_short_sleep_stays_in_memory_and_shows_waiting(harness: Harness) -> None:
    class Flow(WorkflowEntrypoint):
        async def run(self, event, step):
            await step.sleep("short", 0.4)
            return 1

    engine = await harness.start(spec(Flow), hibernate_after=5)
    inst = await engine.create("wf")
    await wait_status(engine, "wf", inst.id, "waiting")
    lives = list(engine.scheduler.lives.values())
    assert lives  # still in memory
    assert not any(life.holds_slot for life in lives)  # but it holds no concurrency slot
    assert (await wait_status(engine, "wf", inst.id))["output"] == 1
    assert "hibernated" not in harness.kinds(inst.id)


async def test_sleep_until_in_the_past_returns_at_once(
    harness: Harness, clock: ManualClock
) -> None:
    class Flow(WorkflowEntrypoint):
        async def run(self, event, step):
            await step.sleep_until("long ago", datetime(2000, 1, 1, tzinfo=timezone.utc))
            target = datetime.fromtimestamp(clock.now(), timezone.utc) + timedelta(hours=2)
            await step.sleep_until("later", target)
            return "done"

    engine = await harness.start(spec(Flow), clock=clock)
    inst = await engine.create("wf")
    await wait_status(engine, "wf", inst.id, "waiting")
    steps = (await engine.details("wf", inst.id))["steps"]
    assert [s["finished"] for s in steps] == [True, False]
    clock.advance(7200)
    assert (await wait_status(engine, "wf", inst.id))["output"] == "done"


async def test_sleep_until_refuses_a_naive_datetime(harness: Harness) -> None:
    class Flow(WorkflowEntrypoint):
        async def run(self, event, step):
            await step.sleep_until("naive", datetime(2030, 1, 1))

    engine = await harness.start(spec(Flow))
    inst = await engine.create("wf")
    status = await wait_status(engine, "wf", inst.id)
    assert status["error"]["name"] == "ValidationError"
    assert "aware datetime" in status["error"]["message"]


@pytest.mark.parametrize(
    ("duration", "shown"),
    [
        ("366 days", "366 days"),
        (365 * 86400 + 1, "365 days and 1 second"),
        (timedelta(days=365, milliseconds=1), "365 days and 0.001 seconds"),
        ("1 year", "365 days and 6 hours"),
        (1e308, "1e+308 seconds"),
    ],
)
async def test_sleep_over_365_days_is_refused_saying_by_how_much(
    harness: Harness, duration: Any, shown: str
) -> None:
    # Rounded, 365 days and 1 second read "365 days long; the limit is 365 days".
    class Flow(WorkflowEntrypoint):
        async def run(self, event, step):
            await step.sleep("too long", duration)

    engine = await harness.start(spec(Flow))
    inst = await engine.create("wf")
    status = await wait_status(engine, "wf", inst.id)
    assert status["error"] == {
        "name": "ValidationError",
        "message": f'sleep "too long" is {shown} long; the limit is 365 days',
    }


async def test_sleep_until_over_365_days_away_is_refused(
    harness: Harness, clock: ManualClock
) -> None:
    class Flow(WorkflowEntrypoint):
        async def run(self, event, step):
            await step.sleep_until("far", clock.now() + 366 * 86400 + 0.5)

    engine = await harness.start(spec(Flow), clock=clock)
    inst = await engine.create("wf")
    status = await wait_status(engine, "wf", inst.id)
    assert status["error"]["message"] == (
        'sleep "far" is 366 days and 0.5 seconds long; the limit is 365 days'
    )


async def test_event_sent_before_the_wait_is_buffered_fifo(harness: Harness) -> None:
    class Flow(WorkflowEntrypoint):
        async def run(self, event, step):
            await step.do("gate", lambda: None)
            await step.sleep("let events pile up", 0.3)
            first = await step.wait_for_event("first", type="vote")
            second = await step.wait_for_event("second", type="vote")
            return [first.payload, second.payload, first.type, first.timestamp.tzinfo is not None]

    engine = await harness.start(spec(Flow), hibernate_after=5)
    inst = await engine.create("wf")
    await inst.send_event("vote", {"n": 1})
    await inst.send_event("vote", {"n": 2})
    status = await wait_status(engine, "wf", inst.id)
    assert status["output"] == [{"n": 1}, {"n": 2}, "vote", True]


async def test_event_wakes_a_hibernating_instance(harness: Harness) -> None:
    class Flow(WorkflowEntrypoint):
        async def run(self, event, step):
            approval = await step.wait_for_event("approval", type="approve", timeout="1 hour")
            return approval.payload

    engine = await harness.start(spec(Flow))
    inst = await engine.create("wf")
    await wait_status(engine, "wf", inst.id, "waiting")
    await wait_for(lambda: not engine.scheduler.lives)
    await inst.send_event("approve", {"by": "ada"})
    assert (await wait_status(engine, "wf", inst.id))["output"] == {"by": "ada"}
    wait = (await engine.details("wf", inst.id))["steps"][0]
    assert wait["type"] == "waitForEvent" and wait["event_type"] == "approve"
    assert wait["output"] == {"by": "ada"} and wait["finished"] is True


async def test_event_of_another_type_does_not_satisfy_the_wait(
    harness: Harness, clock: ManualClock
) -> None:
    class Flow(WorkflowEntrypoint):
        async def run(self, event, step):
            got = await step.wait_for_event("approval", type="approve", timeout="10 minutes")
            return got.payload

    engine = await harness.start(spec(Flow), clock=clock)
    inst = await engine.create("wf")
    await wait_status(engine, "wf", inst.id, "waiting")
    await inst.send_event("reject", {"no": True})
    await asyncio.sleep(0.2)
    assert (await inst.status())["status"] == "waiting"
    await inst.send_event("approve", "yes")
    assert (await wait_status(engine, "wf", inst.id))["output"] == "yes"


async def test_wait_timeout_raises_and_can_be_caught(harness: Harness, clock: ManualClock) -> None:
    class Flow(WorkflowEntrypoint):
        async def run(self, event, step):
            try:
                await step.wait_for_event("approval", type="approve", timeout="1 minute")
            except StepError as exc:
                return [exc.error_name, exc.step_name]
            return "got it"

    engine = await harness.start(spec(Flow), clock=clock)
    inst = await engine.create("wf")
    await wait_status(engine, "wf", inst.id, "waiting")
    clock.advance(60)
    status = await wait_status(engine, "wf", inst.id)
    assert status["output"] == ["WorkflowTimeoutError", "approval"]
    wait = (await engine.details("wf", inst.id))["steps"][0]
    assert wait["finished"] is True and wait["error"]["name"] == "WorkflowTimeoutError"


async def test_uncaught_wait_timeout_errors_the_instance(
    harness: Harness, clock: ManualClock
) -> None:
    class Flow(WorkflowEntrypoint):
        async def run(self, event, step):
            await step.wait_for_event("approval", type="approve", timeout="2 seconds")

    engine = await harness.start(spec(Flow), clock=clock)
    inst = await engine.create("wf")
    await wait_status(engine, "wf", inst.id, "waiting")
    clock.advance(2)
    status = await wait_status(engine, "wf", inst.id)
    assert status["status"] == "errored"
    assert status["error"]["name"] == "WorkflowTimeoutError"
    assert '"approve"' in status["error"]["message"]


@pytest.mark.parametrize(
    ("timeout", "shown"),
    [(0.5, "500 milliseconds"), (0.9999, "999.9 milliseconds"), ("366 days", "366 days")],
)
async def test_wait_timeout_is_validated(harness: Harness, timeout: Any, shown: str) -> None:
    class Flow(WorkflowEntrypoint):
        async def run(self, event, step):
            await step.wait_for_event("quick", type="x", timeout=timeout)

    engine = await harness.start(spec(Flow))
    inst = await engine.create("wf")
    status = await wait_status(engine, "wf", inst.id)
    assert status["error"]["message"] == (
        f'timeout of wait "quick" must be from 1 second to 365 days, got {shown}'
    )


async def test_events_after_a_timed_out_wait_still_arrive(
    harness: Harness, clock: ManualClock
) -> None:
    # Cloudflare's emulator swallowed the next event after a timeout (workers-sdk#11740).
    class Flow(WorkflowEntrypoint):
        async def run(self, event, step):
            with contextlib.suppress(StepError):
                await step.wait_for_event("first", type="ping", timeout="1 minute")
            second = await step.wait_for_event("second", type="ping", timeout="1 hour")
            return second.payload

    engine = await harness.start(spec(Flow), clock=clock)
    inst = await engine.create("wf")
    await wait_status(engine, "wf", inst.id, "waiting")
    clock.advance(61)
    await wait_for(
        lambda: _wait_started(engine, inst.id, "second-1"),
    )
    await inst.send_event("ping", 2)
    assert (await wait_status(engine, "wf", inst.id))["output"] == 2


async def _wait_started(engine, instance_id: str, name: str) -> bool:
    steps = (await engine.details("wf", instance_id))["steps"]
    return any(s["name"] == name for s in steps)


async def test_edited_sleep_duration_starts_again(harness: Harness, clock: ManualClock) -> None:
    durations = ["1 hour"]

    class Flow(WorkflowEntrypoint):
        async def run(self, event, step):
            await step.sleep("nap", durations[0])
            return "done"

    engine = await harness.start(spec(Flow), clock=clock)
    inst = await engine.create("wf")
    await wait_status(engine, "wf", inst.id, "waiting")
    await inst.pause()
    await wait_status(engine, "wf", inst.id, "paused")
    durations[0] = "10 seconds"  # the user edited the code; the next life replays it
    await inst.resume()
    await wait_for(lambda: clock.next_wake is not None and clock.next_wake <= clock.now() + 10)
    clock.advance(10)
    assert (await wait_status(engine, "wf", inst.id))["output"] == "done"
