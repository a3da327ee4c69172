"""Regression tests for races and failures found in review: each one hung, lost a wake-up or
ran something twice before it was fixed."""

from __future__ import annotations

import asyncio
import gc
import sqlite3
import sys
import threading
from datetime import datetime
from typing import Any

import pytest

from tests.conftest import Harness, wait_for, wait_status
from wf import StepContext, StepError, WorkflowEntrypoint
from wf.engine import Engine, EngineSettings, Notice, WorkflowSpec
from wf.engine.runner import StopCause
from wf.engine.store.sqlite import SqliteStore
from wf.errors import StoreError


async def test_lives_waking_from_short_waits_never_deadlock_on_slots(harness: Harness) -> None:
    class Ticker(WorkflowEntrypoint):
        async def run(self, event, step):
            for i in range(20):
                await step.sleep("tick", 0.01)
                await step.do("work", lambda i=i: i)
            return "done"

    engine = await harness.start([WorkflowSpec("ticker", Ticker)], concurrency=2)
    ids = [(await engine.create("ticker")).id for _ in range(8)]
    for instance_id in ids:
        assert (await wait_status(engine, "ticker", instance_id, timeout=30))["output"] == "done"
    # A life gives its slot back after its last write, and a claim round counts the slots it
    # reserves while it asks the store: all come back, but not at the instant of the status.
    await wait_for(lambda: engine.slots.used == 0)


async def test_a_branch_busy_with_an_event_is_not_cut_short_by_a_long_sibling_sleep(
    harness: Harness,
) -> None:
    shipped = threading.Event()

    class Flow(WorkflowEntrypoint):
        async def run(self, event, step):
            async def approve_then_ship() -> None:
                await step.wait_for_event("approval", type="approval", timeout="1 hour")
                await step.do("ship", shipped.set)

            await asyncio.gather(approve_then_ship(), step.sleep("remind later", "1 day"))

    engine = await harness.start([WorkflowSpec("flow", Flow)])
    inst = await engine.create("flow")
    await wait_status(engine, "flow", inst.id, "waiting")
    await wait_for(lambda: not engine.scheduler.lives)
    await inst.send_event("approval", {})
    await asyncio.to_thread(shipped.wait, 5)
    assert shipped.is_set()


async def test_a_branch_waiting_for_a_slot_is_not_cut_short(harness: Harness) -> None:
    hold = threading.Event()
    ran = threading.Event()

    class Hog(WorkflowEntrypoint):
        async def run(self, event, step):
            await step.do("hog", lambda: hold.wait(10))

    class Flow(WorkflowEntrypoint):
        async def run(self, event, step):
            async def short_then_work() -> None:
                await step.sleep("short", 0.2)
                await step.do("work", ran.set)

            async def long_wait() -> None:
                await step.wait_for_event("approval", type="approval", timeout="1 hour")

            await asyncio.gather(short_then_work(), long_wait())

    engine = await harness.start(
        [WorkflowSpec("hog", Hog), WorkflowSpec("flow", Flow)], concurrency=1, hibernate_after=0.5
    )
    await engine.create("flow")
    await asyncio.sleep(0.05)
    await engine.create("hog")  # takes the only slot while flow sleeps
    await asyncio.sleep(0.4)
    hold.set()
    await asyncio.to_thread(ran.wait, 5)
    assert ran.is_set()


async def test_a_resume_racing_the_pause_boundary_never_strands_the_instance(
    harness: Harness,
) -> None:
    gates: dict[str, asyncio.Event] = {}

    class Flow(WorkflowEntrypoint):
        async def run(self, event, step):
            async def first() -> int:
                await gates[event.instance_id].wait()
                return 1

            await step.do("a", first)
            await step.do("b", lambda: 2)
            return "ok"

    engine = await harness.start([WorkflowSpec("flow", Flow)])
    for i in range(10):
        instance_id = f"i{i}"
        gates[instance_id] = asyncio.Event()
        await engine.create("flow", instance_id)
        await wait_for(lambda: any(life.running_ops for life in engine.scheduler.lives.values()))
        await engine.pause("flow", instance_id)
        gates[instance_id].set()
        await engine.resume("flow", instance_id)
        assert (await wait_status(engine, "flow", instance_id, timeout=5))["output"] == "ok"


async def test_a_reload_does_not_use_up_retries(harness: Harness) -> None:
    attempts: list[int] = []

    class Flow(WorkflowEntrypoint):
        async def run(self, event, step):
            async def slow(ctx: StepContext) -> int:
                attempts.append(ctx.attempt)
                if ctx.attempt == 1:
                    await asyncio.sleep(30)
                return ctx.attempt

            return await step.do("slow", {"retries": {"limit": 0, "delay": 0}}, slow)

    specs = [WorkflowSpec("flow", Flow)]
    engine = await harness.start(specs)
    inst = await engine.create("flow")
    await wait_for(lambda: attempts)
    harness.engines.remove(engine)
    await engine.stop(grace=0.1)  # a reload: the running attempt is cut short
    engine = await harness.start(specs)
    status = await wait_status(engine, "flow", inst.id)
    assert status == {"status": "complete", "error": None, "output": 2, "rollback": None}
    recorded = (await engine.details("flow", inst.id))["steps"][0]["attempts"]
    assert [a["success"] for a in recorded] == [False, True]
    assert "does not count toward the retry limit" in recorded[0]["error"]["message"]


@pytest.mark.parametrize(
    ("cause", "said"),
    [
        ("reload", "because the server reloaded"),
        ("shutdown", "because the server shut down"),
        ("restart", "because the server restarted the process running it"),
        (None, "because the server stopped"),
    ],
)
async def test_an_attempt_cut_short_by_a_stop_says_why(
    harness: Harness, cause: StopCause | None, said: str
) -> None:
    """A SIGTERM or Ctrl-C is a shutdown, not a reload: the attempt's error (what describe
    shows) says which stop it was, or no more than it knows."""
    started = asyncio.Event()

    class Flow(WorkflowEntrypoint):
        async def run(self, event, step):
            async def slow(ctx: StepContext) -> int:
                if ctx.attempt == 1:
                    started.set()
                    await asyncio.sleep(30)
                return ctx.attempt

            return await step.do("slow", slow)

    specs = [WorkflowSpec("flow", Flow)]
    engine = await harness.start(specs)
    inst = await engine.create("flow")
    await started.wait()
    harness.engines.remove(engine)
    if cause is None:
        await engine.stop(grace=0.05)
    else:
        await engine.stop(grace=0.05, cause=cause)
    engine = await harness.start(specs)
    await wait_status(engine, "flow", inst.id)
    first = (await engine.details("flow", inst.id))["steps"][0]["attempts"][0]
    message = first["error"]["message"]
    assert message == f"the attempt was cut short {said}; it does not count toward the retry limit"
    assert ("reload" in message) == (cause == "reload")


async def test_a_step_done_after_a_stop_tells_its_attempt_apart_from_the_downtime(
    harness: Harness,
) -> None:
    """The terminal's "done in" is the attempt that succeeded, as describe's attempts table
    shows it; the time since the step's first attempt (server down between them) comes apart,
    as describe's step Duration."""
    started = asyncio.Event()

    class Flow(WorkflowEntrypoint):
        async def run(self, event, step):
            async def slow(ctx: StepContext) -> int:
                if ctx.attempt == 1:
                    started.set()
                    await asyncio.sleep(30)
                return ctx.attempt

            return await step.do("slow", slow)

    specs = [WorkflowSpec("flow", Flow)]
    engine = await harness.start(specs)
    inst = await engine.create("flow")
    await started.wait()
    harness.engines.remove(engine)
    await engine.stop(grace=0.05, cause="shutdown")
    engine = await harness.start(specs)
    await wait_status(engine, "flow", inst.id)
    step = (await engine.details("flow", inst.id))["steps"][0]
    (done,) = [n for n in harness.notices if n.kind == "step_done"]
    assert done.detail["attempt"] == 2
    second = step["attempts"][1]
    assert abs(done.detail["ms"] - _ms_between(second["start"], second["end"])) <= 2
    assert abs(done.detail["total_ms"] - _ms_between(step["start"], step["end"])) <= 2
    assert done.detail["total_ms"] > done.detail["ms"]


def _ms_between(start: str, end: str) -> float:
    parse = datetime.fromisoformat
    return (
        parse(end.replace("Z", "+00:00")) - parse(start.replace("Z", "+00:00"))
    ).total_seconds() * 1000


async def test_waiting_for_a_thread_does_not_count_toward_the_timeout(harness: Harness) -> None:
    release = threading.Event()
    holding: list[int] = []

    class Holder(WorkflowEntrypoint):
        async def run(self, event, step):
            def hold() -> bool:
                holding.append(1)
                return release.wait(60)

            return await step.do("hold", hold)

    class Flow(WorkflowEntrypoint):
        async def run(self, event, step):
            return await step.do(
                "quick", {"timeout": 1, "retries": {"limit": 0, "delay": 0}}, lambda: "done"
            )

    engine = await harness.start([WorkflowSpec("holder", Holder), WorkflowSpec("flow", Flow)])
    engine.threads.max_workers = 2
    for _ in range(2):
        await engine.create("holder")
    await wait_for(lambda: len(holding) == 2)  # every thread is taken
    ids = [(await engine.create("flow")).id for _ in range(3)]
    for instance_id in ids:
        await wait_status(engine, "flow", instance_id, "running")
    await asyncio.sleep(1.2)  # their steps wait for a thread longer than their timeout
    release.set()
    for instance_id in ids:
        assert (await wait_status(engine, "flow", instance_id))["output"] == "done"


async def test_an_event_of_another_type_does_not_wake_a_hibernating_instance(
    harness: Harness,
) -> None:
    lives = 0

    class Flow(WorkflowEntrypoint):
        async def run(self, event, step):
            nonlocal lives
            lives += 1
            got = await step.wait_for_event("approval", type="approval", timeout="1 hour")
            return got.payload

    engine = await harness.start([WorkflowSpec("flow", Flow)])
    inst = await engine.create("flow")
    await wait_status(engine, "flow", inst.id, "waiting")
    await wait_for(lambda: not engine.scheduler.lives)
    await inst.send_event("unrelated", {})
    await asyncio.sleep(0.3)
    assert lives == 1  # not replayed for nothing
    await inst.send_event("approval", "yes")
    assert (await wait_status(engine, "flow", inst.id))["output"] == "yes"
    assert lives == 2


async def test_the_writer_survives_a_full_disk(tmp_path) -> None:
    store = SqliteStore(tmp_path / "wf.db", durability="os")
    await store.open()
    try:
        pages = await store._write(lambda c: c.execute("PRAGMA page_count").fetchone()[0])
        await store._write(lambda c: c.execute(f"PRAGMA max_page_count = {pages + 2}").fetchone())

        def too_big(conn: sqlite3.Connection) -> None:
            conn.execute("CREATE TABLE IF NOT EXISTS junk (x)")
            conn.execute("INSERT INTO junk VALUES (?)", ("x" * 200_000,))

        try:
            await asyncio.wait_for(store._write(too_big), 5)
        except StoreError as exc:
            assert "full" in str(exc)
        else:
            raise AssertionError("the write should have failed")
        assert await asyncio.wait_for(store._write(lambda c: 42), 5) == 42
    finally:
        await store.close()


async def test_a_step_error_after_a_crash_limit_is_reported_not_hung(harness: Harness) -> None:
    class Flow(WorkflowEntrypoint):
        async def run(self, event, step):
            try:
                await step.do("bad", {"retries": {"limit": 1, "delay": 0}}, lambda: 1 / 0)
            except StepError as exc:
                return exc.attempts

    engine = await harness.start([WorkflowSpec("flow", Flow)])
    inst = await engine.create("flow")
    assert (await wait_status(engine, "flow", inst.id))["output"] == 2


async def test_a_life_stopped_before_run_begins_leaves_no_unawaited_coroutine(tmp_path) -> None:
    """A life cancelled between creating run()'s task and that task's first step: run() is
    never started, and its coroutine must be closed, not left to warn "never awaited" (under
    ``-W error``, a failure in whichever test the garbage collector happens to run in)."""
    unraisable: list[str] = []
    started: list[str] = []

    class Quick(WorkflowEntrypoint):
        async def run(self, event, step):
            return 1

    def on_notice(notice: Notice) -> None:
        if notice.kind == "started":
            started.append(notice.instance_id)
            # Emitted just before run()'s task is created: a callback queued now runs before
            # that task's first step, and ends the life as a stopping engine does.
            asyncio.get_running_loop().call_soon(stop_lives)

    def stop_lives() -> None:
        for life in list(engine.scheduler.lives.values()):
            life.end("stop")

    engine = Engine(
        SqliteStore(tmp_path / "db.sqlite"), [WorkflowSpec("quick", Quick)], on_notice=on_notice
    )
    previous = sys.unraisablehook
    sys.unraisablehook = lambda hook: unraisable.append(str(hook.exc_value))
    try:
        await engine.start()
        await engine.create("quick")
        await wait_for(lambda: bool(started) and not engine.scheduler.lives)
        gc.collect()
    finally:
        sys.unraisablehook = previous
        await engine.stop()
    assert unraisable == []


class _Freezable:
    """A process's store that freezes (as SIGSTOP would) just as the commit of an attempt's
    start returns: the commit landed, but nothing of the process runs on (no renewal, no claim)
    until ``thawed`` is set."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.freeze_at_attempt = False
        self.thawed = asyncio.Event()
        self.thawed.set()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def start_attempt(self, *args: Any, **kwargs: Any) -> Any:
        pending = self._inner.start_attempt(*args, **kwargs)
        if not self.freeze_at_attempt:
            return pending
        self.freeze_at_attempt = False
        self.thawed.clear()

        async def answered_on_waking() -> Any:
            result = await pending
            await self.thawed.wait()
            return result

        return answered_on_waking()

    async def renew_leases(self, *args: Any, **kwargs: Any) -> Any:
        await self.thawed.wait()
        return await self._inner.renew_leases(*args, **kwargs)

    async def claim_ready(self, *args: Any, **kwargs: Any) -> Any:
        await self.thawed.wait()
        return await self._inner.claim_ready(*args, **kwargs)


async def test_a_process_frozen_past_its_lease_runs_no_body_of_a_step_taken_over(
    harness: Harness,
) -> None:
    """The cluster chaos suite found it: a node frozen just as an attempt's start committed woke
    up after another node had taken the instance over and finished that step, and ran the body
    again (its write was refused, but the body's side effects happened twice)."""
    runs: list[str] = []

    def effect() -> int:
        runs.append("ran")
        return len(runs)

    class Once(WorkflowEntrypoint):
        async def run(self, event, step):
            return await step.do("effect", effect)

    def store() -> Any:  # one per process, as a cluster's nodes (or wf serve's workers) have
        if harness.url is None:
            return SqliteStore(harness.path, durability="os", shared=True)
        return harness.store()

    if harness.url is None:  # the server makes the file its workers share
        server = harness.store()
        await server.open()
        await server.close()
    frozen = _Freezable(store())
    first = Engine(
        frozen,
        [WorkflowSpec("once", Once)],
        settings=EngineSettings(lease=1.0, poll_interval=0.05),
        owns_store=False,
    )
    await first.start()
    harness.engines.append(first)
    frozen.freeze_at_attempt = True
    created = await first.create("once")
    await wait_for(lambda: not frozen.thawed.is_set())  # its attempt's start is committed
    other = Engine(
        store(),
        [WorkflowSpec("once", Once)],
        settings=EngineSettings(lease=1.0, poll_interval=0.05),
        owns_store=False,
    )
    await other.start()
    harness.engines.append(other)
    # The lease lapses; the other process takes the instance over and finishes it.
    assert (await wait_status(other, "once", created.id, timeout=20))["output"] == 1
    assert runs == ["ran"]
    frozen.thawed.set()  # it wakes up, believing the attempt it started is still its own
    await asyncio.sleep(0.5)
    assert runs == ["ran"]
    assert (await other.status("once", created.id))["output"] == 1


async def test_a_body_that_waited_for_a_thread_while_frozen_does_not_begin_once_taken_over(
    harness: Harness,
) -> None:
    """The same, when the body waited for a free worker thread: a thread takes it as soon as one
    is free, without the loop's say, so the thread checks the lease itself."""
    gate = threading.Event()
    runs: list[str] = []
    blocked: list[bool] = []

    def block() -> str:
        if not blocked:  # only the first process's run holds the only thread
            blocked.append(True)
            gate.wait(30)
        return "blocked"

    def effect() -> int:
        runs.append("ran")
        return len(runs)

    class Blocker(WorkflowEntrypoint):
        async def run(self, event, step):
            return await step.do("block", block)

    class Once(WorkflowEntrypoint):
        async def run(self, event, step):
            return await step.do("effect", effect)

    specs = [WorkflowSpec("blocker", Blocker), WorkflowSpec("once", Once)]

    def store() -> Any:
        if harness.url is None:
            return SqliteStore(harness.path, durability="os", shared=True)
        return harness.store()

    if harness.url is None:
        server = harness.store()
        await server.open()
        await server.close()
    frozen = _Freezable(store())
    first = Engine(
        frozen, specs, settings=EngineSettings(lease=1.0, poll_interval=0.05), owns_store=False
    )
    first.threads.max_workers = 1
    await first.start()
    harness.engines.append(first)
    blocker = await first.create("blocker")
    await wait_for(lambda: blocked)
    created = await first.create("once")
    await wait_status(first, "once", created.id, "running")
    await asyncio.sleep(0.2)  # its attempt's start is committed; its body waits for the thread
    frozen.thawed.clear()  # no renewal from now on: the lease lapses
    other = Engine(
        store(), specs, settings=EngineSettings(lease=1.0, poll_interval=0.05), owns_store=False
    )
    await other.start()
    harness.engines.append(other)
    assert (await wait_status(other, "once", created.id, timeout=20))["output"] == 1
    assert (await wait_status(other, "blocker", blocker.id, timeout=20))["output"] == "blocked"
    gate.set()  # the thread is free: the body that waited for it must not begin
    await asyncio.sleep(0.3)
    frozen.thawed.set()
    await asyncio.sleep(0.5)
    assert runs == ["ran"]
