"""``def`` step bodies: run in a worker thread, off the event loop, and handed back to the step's
own task (no task, future chain or ``asyncio.wait`` of their own)."""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Coroutine, Generator
from typing import Any

from tests.conftest import Harness, wait_for, wait_status
from wf import WorkflowEntrypoint
from wf.engine import WorkflowSpec
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
        if code is not None and code.co_filename == step_module.__file__:
            step_tasks.append(code.co_name)
        return asyncio.Task(coro, loop=loop)

    engine = await harness.start([WorkflowSpec("flow", Flow)])
    loop.set_task_factory(counting)
    try:
        inst = await engine.create("flow")
        assert (await wait_status(engine, "flow", inst.id))["output"] == STEPS
    finally:
        loop.set_task_factory(None)
    assert step_tasks == ["contain"]  # the life's own task, running run(): nothing per step
    # The worker is idle again before it hands a result back, so the next step finds it.
    assert len(threads) == 1
