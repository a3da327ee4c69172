"""pause, resume, terminate, restart: Cloudflare's transitions, with wf's real waiting state."""

from __future__ import annotations

import asyncio
import threading
from datetime import datetime, timezone

import pytest

from tests.conftest import Harness, wait_for, wait_status
from wf import WorkflowEntrypoint
from wf.engine import ManualClock, WorkflowSpec
from wf.errors import InvalidTransition


def spec(cls: type[WorkflowEntrypoint]) -> list[WorkflowSpec]:
    return [WorkflowSpec("wf", cls, "WF")]


async def test_pause_waits_for_the_running_attempt_then_pauses(harness: Harness) -> None:
    release = threading.Event()
    ran: list[str] = []

    class Flow(WorkflowEntrypoint):
        async def run(self, event, step):
            def slow() -> None:
                release.wait(10)
                ran.append("slow")

            await step.do("slow", slow)
            await step.do("next", lambda: ran.append("next"))
            return ran

    engine = await harness.start(spec(Flow))
    inst = await engine.create("wf")
    await wait_status(engine, "wf", inst.id, "running")
    await wait_for(lambda: engine.scheduler.lives and _running_ops(engine) == 1)
    await inst.pause()
    assert (await inst.status())["status"] == "waitingForPause"
    release.set()
    await wait_status(engine, "wf", inst.id, "paused")
    assert ran == ["slow"]  # the attempt in flight finished; no new step started
    await inst.resume()
    assert (await wait_status(engine, "wf", inst.id))["output"] == ["slow", "next"]


def _running_ops(engine) -> int:
    return sum(life.running_ops for life in engine.scheduler.lives.values())


async def test_pause_interrupts_a_sleep_and_resume_keeps_the_remaining_time(
    harness: Harness, clock: ManualClock
) -> None:
    class Flow(WorkflowEntrypoint):
        async def run(self, event, step):
            await step.sleep("an hour", "1 hour")
            return "rested"

    engine = await harness.start(spec(Flow), clock=clock)
    inst = await engine.create("wf")
    await wait_status(engine, "wf", inst.id, "waiting")
    clock.advance(1200)  # 20 minutes in
    await inst.pause()
    await wait_status(engine, "wf", inst.id, "paused")
    clock.advance(5 * 3600)  # paused for five hours: the sleep must not have ended
    await asyncio.sleep(0.1)
    assert (await inst.status())["status"] == "paused"
    await inst.resume()
    await wait_status(engine, "wf", inst.id, "waiting")
    clock.advance(2400 - 1)
    await asyncio.sleep(0.1)
    assert (await inst.status())["status"] == "waiting"
    clock.advance(1)
    assert (await wait_status(engine, "wf", inst.id))["output"] == "rested"


async def test_pause_of_an_in_memory_wait_is_immediate(
    harness: Harness, clock: ManualClock
) -> None:
    class Flow(WorkflowEntrypoint):
        async def run(self, event, step):
            await step.sleep("short", 5)
            return "ok"

    engine = await harness.start(spec(Flow), clock=clock, hibernate_after=10)
    inst = await engine.create("wf")
    await wait_status(engine, "wf", inst.id, "waiting")
    assert len(engine.scheduler.lives) == 1  # a short wait stays in memory
    await inst.pause()
    # The clock stands still: the sleep never ends, so it cannot be what the pause waited for.
    await wait_status(engine, "wf", inst.id, "paused")
    await inst.resume()
    await wait_status(engine, "wf", inst.id, "waiting")
    clock.advance(5)
    assert (await wait_status(engine, "wf", inst.id))["output"] == "ok"


# What run() does once its step in flight ends: each must wait for the resume, even one that
# could complete at once.
NEXT_STEPS = {
    "wait_for_event whose event is buffered": lambda step: step.wait_for_event("go", type="go"),
    "sleep_until a past time": lambda step: step.sleep_until(
        "past", datetime(2001, 1, 1, tzinfo=timezone.utc)
    ),
    "sleep of zero seconds": lambda step: step.sleep("zero", 0),
    "do": lambda step: step.do("next", lambda: "done"),
}


@pytest.mark.parametrize("next_step", list(NEXT_STEPS))
async def test_an_acknowledged_pause_holds_every_kind_of_next_step(
    harness: Harness, next_step: str
) -> None:
    release = threading.Event()

    class Flow(WorkflowEntrypoint):
        async def run(self, event, step):
            await step.do("slow", lambda: release.wait(10))
            await NEXT_STEPS[next_step](step)
            return "finished"

    engine = await harness.start(spec(Flow))
    inst = await engine.create("wf")
    await wait_for(lambda: _running_ops(engine) == 1)
    await inst.send_event("go", {"early": True})  # buffered before the wait begins
    await inst.pause()
    assert (await inst.status())["status"] == "waitingForPause"
    release.set()
    await wait_status(engine, "wf", inst.id, "paused")
    row = await engine.row("wf", inst.id)
    history = await engine.store.load_history(row.pk)
    assert [s.display_name for s in history.steps] == ["slow-1"]  # nothing began after it
    await inst.resume()
    assert (await wait_status(engine, "wf", inst.id))["output"] == "finished"


async def test_a_pause_the_database_acknowledged_holds_a_buffered_event_before_word_arrives(
    harness: Harness,
) -> None:
    """A wf serve worker hears of a pause through its server, a moment after the database
    acknowledged it: the event its next wait finds buffered must still wait for the resume."""
    release = threading.Event()

    class Flow(WorkflowEntrypoint):
        async def run(self, event, step):
            await step.do("slow", lambda: release.wait(10))
            received = await step.wait_for_event("go", type="go")
            return received.payload

    engine = await harness.start(spec(Flow))
    inst = await engine.create("wf")
    await wait_for(lambda: _running_ops(engine) == 1)
    await inst.send_event("go", {"early": True})
    row = await engine.row("wf", inst.id)
    paused = await engine.store.pause(row.pk, engine.clock.now())  # no word to the life
    assert paused.status.value == "waitingForPause"
    release.set()
    await wait_status(engine, "wf", inst.id, "paused")
    history = await engine.store.load_history(row.pk)
    assert [(s.display_name, s.state.value) for s in history.steps] == [
        ("slow-1", "succeeded"),
        ("go-1", "running"),  # begun, but the event is still buffered
    ]
    await inst.resume()
    assert (await wait_status(engine, "wf", inst.id))["output"] == {"early": True}


async def test_an_acknowledged_pause_holds_a_retry_due_at_once(harness: Harness) -> None:
    release = threading.Event()
    attempts: list[int] = []

    class Flow(WorkflowEntrypoint):
        async def run(self, event, step):
            def flaky() -> str:
                attempts.append(1)
                if len(attempts) == 1:
                    release.wait(10)
                    raise RuntimeError("first attempt fails")
                return "second"

            return await step.do("flaky", {"retries": {"limit": 2, "delay": 0}}, flaky)

    engine = await harness.start(spec(Flow))
    inst = await engine.create("wf")
    await wait_for(lambda: _running_ops(engine) == 1)
    await inst.pause()
    release.set()
    await wait_status(engine, "wf", inst.id, "paused")
    assert len(attempts) == 1
    await inst.resume()
    assert (await wait_status(engine, "wf", inst.id))["output"] == "second"


async def test_resume_during_waiting_for_pause_cancels_the_pause(harness: Harness) -> None:
    release = threading.Event()

    class Flow(WorkflowEntrypoint):
        async def run(self, event, step):
            await step.do("slow", lambda: release.wait(10))
            return await step.do("after", lambda: "went on")

    engine = await harness.start(spec(Flow))
    inst = await engine.create("wf")
    await wait_for(lambda: _running_ops(engine) == 1)
    await inst.pause()
    assert (await inst.status())["status"] == "waitingForPause"
    await inst.resume()
    assert (await inst.status())["status"] == "running"
    release.set()
    assert (await wait_status(engine, "wf", inst.id))["output"] == "went on"


async def test_pause_and_resume_of_a_queued_instance(harness: Harness) -> None:
    gate = threading.Event()

    class Flow(WorkflowEntrypoint):
        async def run(self, event, step):
            return await step.do("work", lambda: gate.wait(10) and event.instance_id)

    engine = await harness.start(spec(Flow), concurrency=1)
    first = await engine.create("wf", "first")
    second = await engine.create("wf", "second")
    await wait_status(engine, "wf", "first", "running")
    assert (await second.status())["status"] == "queued"
    await second.pause()
    assert (await second.status())["status"] == "paused"
    gate.set()
    await wait_status(engine, "wf", "first")
    await asyncio.sleep(0.1)
    assert (await second.status())["status"] == "paused"
    await second.resume()
    assert (await wait_status(engine, "wf", "second"))["output"] == "second"
    assert (await first.status())["output"] == "first"


async def test_terminate_stops_a_running_instance_for_good(harness: Harness) -> None:
    release = threading.Event()
    after: list[str] = []

    class Flow(WorkflowEntrypoint):
        async def run(self, event, step):
            await step.do("slow", lambda: release.wait(10))
            await step.do("never", lambda: after.append("ran"))

    engine = await harness.start(spec(Flow))
    inst = await engine.create("wf")
    await wait_for(lambda: _running_ops(engine) == 1)
    await inst.terminate()
    status = await inst.status()
    assert status["status"] == "terminated"
    release.set()
    await asyncio.sleep(0.2)
    assert after == []
    assert (await inst.status())["status"] == "terminated"
    details = await engine.details("wf", inst.id)
    assert details["steps"][-1] == {"type": "termination", "trigger": {"source": "binding"}}
    assert details["success"] is False


async def test_terminate_a_hibernating_instance(harness: Harness) -> None:
    class Flow(WorkflowEntrypoint):
        async def run(self, event, step):
            await step.sleep("long", "1 day")

    engine = await harness.start(spec(Flow))
    inst = await engine.create("wf")
    await wait_status(engine, "wf", inst.id, "waiting")
    await engine.terminate("wf", inst.id)
    assert (await inst.status())["status"] == "terminated"


async def test_terminate_a_finished_instance_is_an_error(harness: Harness) -> None:
    class Flow(WorkflowEntrypoint):
        async def run(self, event, step):
            return 1

    engine = await harness.start(spec(Flow))
    inst = await engine.create("wf")
    await wait_status(engine, "wf", inst.id)
    with pytest.raises(InvalidTransition, match="already complete"):
        await inst.terminate()
    with pytest.raises(InvalidTransition):
        await inst.pause()
    with pytest.raises(InvalidTransition):
        await inst.send_event("late", {})


async def test_restart_wipes_the_step_cache_and_keeps_the_params(harness: Harness) -> None:
    calls: list[int] = []

    class Flow(WorkflowEntrypoint):
        async def run(self, event, step):
            def count() -> int:
                calls.append(1)
                return len(calls)

            n = await step.do("count", count)
            return {"n": n, "params": event.payload}

    engine = await harness.start(spec(Flow))
    inst = await engine.create("wf", params={"cart": 7})
    assert (await wait_status(engine, "wf", inst.id))["output"] == {"n": 1, "params": {"cart": 7}}
    await inst.restart()
    await wait_for(lambda: len(calls) == 2)
    assert (await wait_status(engine, "wf", inst.id))["output"] == {"n": 2, "params": {"cart": 7}}


async def test_restart_of_a_running_instance_cancels_its_life(harness: Harness) -> None:
    release = threading.Event()
    starts: list[int] = []

    class Flow(WorkflowEntrypoint):
        async def run(self, event, step):
            async def body() -> int:
                starts.append(1)
                if len(starts) == 1:
                    await asyncio.sleep(30)
                return len(starts)

            return await step.do("body", body)

    engine = await harness.start(spec(Flow))
    inst = await engine.create("wf")
    await wait_for(lambda: starts)
    await inst.restart()
    assert (await wait_status(engine, "wf", inst.id))["output"] == 2
    details = await engine.details("wf", inst.id)
    assert len(details["steps"]) == 1 and len(details["steps"][0]["attempts"]) == 1
    release.set()
