"""``def`` step bodies: run in a worker thread, off the event loop; a quick one is waited for in
place, a slow one handed back to the step's own task (no task, future chain or ``asyncio.wait``
of their own)."""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Coroutine, Generator
from typing import Any

import pytest

from tests.conftest import Harness, wait_for, wait_status
from wf import NonRetryableError, StepContext, StepError, WorkflowEntrypoint
from wf.engine import WorkflowSpec, rollback
from wf.engine import step as step_module

STEPS = 30


async def test_a_blocking_def_body_leaves_the_event_loop_to_the_others(harness: Harness) -> None:
    release = threading.Event()
    entered = threading.Event()

    def blocking() -> str:
        entered.set()
        release.wait(10)
        return "released"

    async def quick() -> int:
        return 1

    class Blocked(WorkflowEntrypoint):
        async def run(self, event, step):
            return await step.do("block", blocking)

    class Free(WorkflowEntrypoint):
        async def run(self, event, step):
            return [await step.do(f"s{i}", quick) for i in range(3)]

    engine = await harness.start([WorkflowSpec("blocked", Blocked), WorkflowSpec("free", Free)])
    try:
        blocked = await engine.create("blocked")
        await wait_for(entered.is_set)
        free = await engine.create("free")
        assert (await wait_status(engine, "free", free.id))["output"] == [1, 1, 1]
        assert (await blocked.status())["status"] == "running"  # still inside its body
    finally:
        release.set()
    assert (await wait_status(engine, "blocked", blocked.id))["output"] == "released"


async def test_a_def_body_runs_in_the_context_of_run(harness: Harness) -> None:
    tenant: contextvars.ContextVar[str] = contextvars.ContextVar("tenant", default="none")

    class Flow(WorkflowEntrypoint):
        async def run(self, event, step):
            tenant.set(event.payload["tenant"])
            return await step.do("who", tenant.get)

    engine = await harness.start([WorkflowSpec("flow", Flow)])
    inst = await engine.create("flow", params={"tenant": "acme"})
    assert (await wait_status(engine, "flow", inst.id))["output"] == "acme"


async def test_an_awaitable_returned_by_a_def_body_is_awaited(harness: Harness) -> None:
    async def fetch() -> str:
        await asyncio.sleep(0)
        return "fetched"

    class Flow(WorkflowEntrypoint):
        async def run(self, event, step):
            return await step.do("fetch", lambda: fetch())

    engine = await harness.start([WorkflowSpec("flow", Flow)])
    inst = await engine.create("flow")
    assert (await wait_status(engine, "flow", inst.id))["output"] == "fetched"


async def test_def_bodies_cost_no_task_of_their_own(harness: Harness) -> None:
    """The outcome comes back to the step's task itself: a task per step (and the loop turns
    it costs) made a ``def`` body far dearer than an ``async def`` one."""
    threads: set[int] = set()

    def body() -> int:
        threads.add(threading.get_ident())
        return 1

    class Flow(WorkflowEntrypoint):
        async def run(self, event, step):
            for i in range(STEPS):
                await step.do(f"s{i}", body)
            return STEPS

    loop = asyncio.get_running_loop()
    step_tasks: list[str] = []  # the step module's coroutines that got a task

    def counting(
        loop: asyncio.AbstractEventLoop, coro: Generator[Any, None, Any] | Coroutine[Any, Any, Any]
    ) -> asyncio.Task[Any]:
        code = getattr(coro, "cr_code", None)
        if code is not None and code.co_filename in (step_module.__file__, rollback.__file__):
            step_tasks.append(code.co_name)
        return asyncio.Task(coro, loop=loop)

    engine = await harness.start([WorkflowSpec("flow", Flow)])
    loop.set_task_factory(counting)
    try:
        inst = await engine.create("flow")
        assert (await wait_status(engine, "flow", inst.id))["output"] == STEPS
    finally:
        loop.set_task_factory(None)
    # The life's own task, running run() (then its rollbacks, were any due): nothing per step.
    assert step_tasks == ["run_then_roll_back"]
    # The worker is idle again before it hands a result back, so the next step finds it.
    assert len(threads) == 1


@pytest.mark.parametrize("wait", [0.0, 5.0], ids=["handed-back", "waited-for"])
async def test_outcomes_are_the_same_waited_for_or_handed_back(
    harness: Harness, monkeypatch: pytest.MonkeyPatch, wait: float
) -> None:
    """The loop's thread waits in place for a quick body, else the worker hands the outcome
    back: results, errors and retries come out the same either way."""
    monkeypatch.setattr(step_module, "WAIT_IN_PLACE", wait)
    attempts: list[int] = []

    def flaky(ctx: StepContext) -> int:
        attempts.append(ctx.attempt)
        if ctx.attempt == 1:
            raise ConnectionError("down")
        return ctx.attempt

    def broken() -> None:
        raise NonRetryableError("no such cart")

    class Flow(WorkflowEntrypoint):
        async def run(self, event, step):
            got = await step.do("flaky", {"retries": {"limit": 2, "delay": 0}}, flaky)
            try:
                await step.do("broken", broken)
            except StepError as exc:
                return [got, exc.error_name, exc.message]

    engine = await harness.start([WorkflowSpec("flow", Flow)])
    inst = await engine.create("flow")
    status = await wait_status(engine, "flow", inst.id)
    assert status["output"] == [2, "NonRetryableError", "no such cart"]
    assert attempts == [1, 2]


async def test_a_quick_body_waited_for_costs_the_loop_no_wake_up(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Waited for in place (here with all the time it needs), a body's outcome never goes
    through the loop's self-pipe (``call_soon_threadsafe``)."""
    monkeypatch.setattr(step_module, "WAIT_IN_PLACE", 5.0)
    loop = asyncio.get_running_loop()
    woken = 0
    call_soon_threadsafe = loop.call_soon_threadsafe

    def counting(callback: Any, *args: Any, context: Any = None) -> asyncio.Handle:
        nonlocal woken
        if callback is step_module._set_done:  # a step's thread telling its outcome
            woken += 1
        return call_soon_threadsafe(callback, *args, context=context)

    class Flow(WorkflowEntrypoint):
        async def run(self, event, step):
            for i in range(STEPS):
                await step.do(f"s{i}", quick_def)
            return STEPS

    engine = await harness.start([WorkflowSpec("flow", Flow)])
    monkeypatch.setattr(loop, "call_soon_threadsafe", counting)
    inst = await engine.create("flow")
    assert (await wait_status(engine, "flow", inst.id))["output"] == STEPS
    # Not waited for only when something else was ready to run on the loop just then.
    assert woken < STEPS // 2


async def test_a_body_that_outlasted_the_wait_is_not_waited_for_until_quick_again(
    harness: Harness,
) -> None:
    slow = [True]

    def sometimes_slow() -> int:
        if slow[0]:
            threading.Event().wait(step_module.WAIT_IN_PLACE * 4)
        return 1

    class Flow(WorkflowEntrypoint):
        async def run(self, event, step):
            return await step.do("maybe slow", sometimes_slow)

    key = sometimes_slow.__code__
    engine = await harness.start([WorkflowSpec("flow", Flow)])
    inst = await engine.create("flow")
    await wait_status(engine, "flow", inst.id)
    assert key in step_module._SLOW
    slow[0] = False
    inst = await engine.create("flow")
    await wait_status(engine, "flow", inst.id)
    assert key not in step_module._SLOW


def quick_def() -> int:
    return 1
