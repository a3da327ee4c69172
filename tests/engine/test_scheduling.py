"""Concurrency limit, hibernation at scale, recovery on start, retention, step identities on
replay."""

from __future__ import annotations

import asyncio
import threading

from tests.conftest import Harness, wait_for, wait_status
from wf import WorkflowEntrypoint
from wf.engine import ManualClock, WorkflowSpec


async def test_queued_while_the_concurrency_limit_is_full(harness: Harness) -> None:
    gate = threading.Event()

    class Busy(WorkflowEntrypoint):
        async def run(self, event, step):
            return await step.do("work", lambda: gate.wait(10))

    engine = await harness.start([WorkflowSpec("busy", Busy)], concurrency=2)
    ids = [(await engine.create("busy")).id for _ in range(3)]
    await wait_status(engine, "busy", ids[0], "running")
    await wait_status(engine, "busy", ids[1], "running")
    await asyncio.sleep(0.1)
    assert (await engine.status("busy", ids[2]))["status"] == "queued"
    gate.set()
    for instance_id in ids:
        assert (await wait_status(engine, "busy", instance_id))["output"] is True


async def test_waiting_instances_take_no_slot(harness: Harness, clock: ManualClock) -> None:
    class Sleeper(WorkflowEntrypoint):
        async def run(self, event, step):
            await step.sleep("nap", "1 hour")
            return "woke"

    class Quick(WorkflowEntrypoint):
        async def run(self, event, step):
            return await step.do("q", lambda: "quick")

    engine = await harness.start(
        [WorkflowSpec("sleeper", Sleeper), WorkflowSpec("quick", Quick)], clock=clock, concurrency=1
    )
    sleepers = [(await engine.create("sleeper")).id for _ in range(3)]
    for instance_id in sleepers:
        await wait_status(engine, "sleeper", instance_id, "waiting")
    quick = await engine.create("quick")
    assert (await wait_status(engine, "quick", quick.id))["output"] == "quick"
    clock.advance(3600)
    for instance_id in sleepers:
        assert (await wait_status(engine, "sleeper", instance_id))["output"] == "woke"


async def test_thousands_of_waiting_instances_leave_memory(
    harness: Harness, clock: ManualClock
) -> None:
    class Sleeper(WorkflowEntrypoint):
        async def run(self, event, step):
            await step.sleep("nap", "1 day")
            return event.payload

    engine = await harness.start([WorkflowSpec("sleeper", Sleeper)], clock=clock)
    for start in range(0, 2000, 100):
        await engine.create_batch("sleeper", [{"params": i} for i in range(start, start + 100)])

    async def all_waiting() -> bool:
        return (await engine.store.count_statuses("sleeper"))["waiting"] == 2000

    await wait_for(all_waiting, timeout=60)
    await wait_for(lambda: not engine.scheduler.lives)
    clock.advance(86400)

    async def all_done() -> bool:
        return (await engine.store.count_statuses("sleeper"))["complete"] == 2000

    await wait_for(all_done, timeout=60)


async def test_recovery_on_start_continues_every_kind_of_instance(
    harness: Harness, clock: ManualClock
) -> None:
    gate = threading.Event()
    calls: list[str] = []

    class Flow(WorkflowEntrypoint):
        async def run(self, event, step):
            kind = event.payload["kind"]
            if kind == "running":

                def blocked() -> bool:
                    calls.append("attempt")
                    return gate.wait(10)

                await step.do("blocked", blocked)
            if kind == "waiting":
                await step.sleep("nap", "10 minutes")
            return kind

    engine = await harness.start([WorkflowSpec("flow", Flow)], clock=clock, concurrency=2)
    await engine.create("flow", "running", {"kind": "running"})
    await engine.create("flow", "waiting", {"kind": "waiting"})
    await wait_status(engine, "flow", "waiting", "waiting")
    await wait_for(lambda: calls)
    engine.slots.reserve(engine.slots.limit)  # hold every slot so the next one stays queued
    await engine.create("flow", "queued", {"kind": "queued"})
    assert (await engine.status("flow", "queued"))["status"] == "queued"
    await harness.stop(engine)  # like a reload: lives are released, not finished

    clock.advance(3600)  # the sleep became due while no process ran
    gate.set()
    engine = await harness.start([WorkflowSpec("flow", Flow)], clock=clock)
    for kind in ("running", "waiting", "queued"):
        assert (await wait_status(engine, "flow", kind))["output"] == kind
    attempts = (await engine.details("flow", "running"))["steps"][0]["attempts"]
    assert [a["error"]["name"] if a["error"] else None for a in attempts] == [
        "WorkflowInternalError",
        None,
    ]


async def test_steps_are_counted_per_kind_as_on_cloudflare(harness: Harness) -> None:
    counts: list[int] = []

    class Flow(WorkflowEntrypoint):
        async def run(self, event, step):
            await step.do("poll", lambda ctx: counts.append(ctx.count))
            await step.sleep("poll", 0)
            await step.wait_for_event("poll", type="go", timeout="1 hour")
            await step.do("poll", lambda ctx: counts.append(ctx.count))

    engine = await harness.start([WorkflowSpec("flow", Flow)])
    inst = await engine.create("flow")
    await inst.send_event("go", {})
    await wait_status(engine, "flow", inst.id, "complete")
    assert counts == [1, 2]
    steps = (await engine.details("flow", inst.id))["steps"]
    assert [(s["type"], s["name"]) for s in steps] == [
        ("step", "poll-1"),
        ("sleep", "poll-1"),
        ("waitForEvent", "poll-1"),
        ("step", "poll-2"),
    ]


async def test_a_same_named_sleep_added_by_an_edit_does_not_shift_later_steps(
    harness: Harness,
) -> None:
    # wf used to count a name across kinds: the new sleep took the second step's identity.
    version = ["v1"]
    ran: list[int] = []

    def body(n: int) -> int:
        ran.append(n)
        return n

    class Flow(WorkflowEntrypoint):
        async def run(self, event, step):
            first = await step.do("poll", lambda: body(1))
            if version[0] == "v2":
                await step.sleep("poll", 0)
            second = await step.do("poll", lambda: body(2))
            await step.sleep("wait", "1 day")
            return [first, second]

    engine = await harness.start([WorkflowSpec("flow", Flow)])
    inst = await engine.create("flow")
    await wait_status(engine, "flow", inst.id, "waiting")
    await wait_for(lambda: not engine.scheduler.lives)  # hibernated: the next life replays
    version[0] = "v2"
    await inst.pause()
    await inst.resume()
    await wait_for(lambda: harness.kinds(inst.id).count("hibernated") == 2)
    # The notice comes as the write is submitted; on PostgreSQL its commit is a round trip away.
    await wait_status(engine, "flow", inst.id, "waiting")
    assert ran == [1, 2]  # both steps replayed from their records, neither ran again
    steps = (await engine.details("flow", inst.id))["steps"]
    assert [(s["type"], s["name"]) for s in steps] == [
        ("step", "poll-1"),
        ("step", "poll-2"),
        ("sleep", "wait-1"),
        ("sleep", "poll-1"),
    ]


async def test_a_step_replaced_by_a_same_named_sleep_never_meets_its_record(
    harness: Harness,
) -> None:
    version = ["v1"]

    class Flow(WorkflowEntrypoint):
        async def run(self, event, step):
            if version[0] == "v1":
                await step.do("charge", lambda: "charged")
            else:
                await step.sleep("charge", 0)
            await step.sleep("wait", "1 day")
            return "done"

    engine = await harness.start([WorkflowSpec("flow", Flow)])
    inst = await engine.create("flow")
    await wait_status(engine, "flow", inst.id, "waiting")
    await wait_for(lambda: not engine.scheduler.lives)
    version[0] = "v2"
    await inst.pause()
    await inst.resume()
    await wait_for(lambda: harness.kinds(inst.id).count("hibernated") == 2)
    steps = (await engine.details("flow", inst.id))["steps"]
    assert [(s["type"], s["name"], s.get("output")) for s in steps] == [
        ("step", "charge-1", "charged"),
        ("sleep", "wait-1", None),
        ("sleep", "charge-1", None),
    ]


async def test_step_limit_errors_the_instance_and_sleeps_do_not_count(harness: Harness) -> None:
    class Flow(WorkflowEntrypoint):
        async def run(self, event, step):
            for i in range(3):
                await step.sleep(f"s{i}", 0)
                await step.do("step", lambda: None)
            await step.do("one too many", lambda: None)

    engine = await harness.start([WorkflowSpec("flow", Flow, step_limit=3)])
    inst = await engine.create("flow")
    status = await wait_status(engine, "flow", inst.id)
    assert status["error"] == {
        "name": "WorkflowFatalError",
        "message": "The limit of 3 steps has been reached. This limit can be changed in your "
        "wf.toml (limits.steps).",
    }


async def test_finished_instances_are_purged_after_retention(
    harness: Harness, clock: ManualClock
) -> None:
    class Quick(WorkflowEntrypoint):
        async def run(self, event, step):
            return 1

    specs = [WorkflowSpec("quick", Quick)]
    engine = await harness.start(specs, clock=clock, retention="2 days")
    old = await engine.create("quick", "old")
    await wait_status(engine, "quick", old.id)
    clock.advance(86400)
    new = await engine.create("quick", "new")
    await wait_status(engine, "quick", new.id)
    await harness.stop(engine)
    clock.advance(86400 + 1)  # "old" is past retention, "new" is not
    engine = await harness.start(specs, clock=clock, retention="2 days")

    async def purged() -> bool:
        return (await engine.store.get_instance("quick", "old")) is None

    await wait_for(purged)
    assert (await engine.status("quick", "new"))["status"] == "complete"


async def test_stop_with_grace_lets_running_attempts_finish(harness: Harness) -> None:
    ran: list[str] = []

    class Flow(WorkflowEntrypoint):
        async def run(self, event, step):
            async def slow() -> str:
                await asyncio.sleep(0.3)
                ran.append("slow")
                return "slow done"

            await step.do("slow", slow)
            await step.do("next", lambda: ran.append("next"))
            return "finished"

    specs = [WorkflowSpec("flow", Flow)]
    engine = await harness.start(specs)
    inst = await engine.create("flow")
    await wait_for(lambda: any(life.running_ops for life in engine.scheduler.lives.values()))
    harness.engines.remove(engine)
    await engine.stop(grace=5)
    assert ran == ["slow"]  # the running attempt finished; the next step did not start
    engine = await harness.start(specs)
    assert (await wait_status(engine, "flow", inst.id))["output"] == "finished"
    assert ran == ["slow", "next"]
    attempts = (await engine.details("flow", inst.id))["steps"][0]["attempts"]
    assert len(attempts) == 1 and attempts[0]["success"] is True
