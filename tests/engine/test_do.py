"""step.do: results, retries, timeouts, NonRetryableError, caught failures, loops and gather."""

from __future__ import annotations

import asyncio
import itertools
import threading
from typing import Any

import pytest

from tests.conftest import Harness, wait_for, wait_status
from wf import NonRetryableError, StepConfig, StepContext, StepError, WorkflowEntrypoint
from wf.engine import ManualClock, WorkflowSpec


def spec(cls: type[WorkflowEntrypoint], name: str = "wf") -> list[WorkflowSpec]:
    return [WorkflowSpec(name, cls, "WF")]


async def test_returns_the_decoded_stored_form(harness: Harness) -> None:
    seen: list[Any] = []

    class Flow(WorkflowEntrypoint):
        async def run(self, event, step):
            value = await step.do("tuple", lambda: {"pair": (1, 2), 3: "int key"})
            seen.append(value)
            return value

    engine = await harness.start(spec(Flow))
    inst = await engine.create("wf")
    status = await wait_status(engine, "wf", inst.id)
    assert status == {
        "status": "complete",
        "error": None,
        "output": {"pair": [1, 2], "3": "int key"},
        "rollback": None,
    }
    assert seen == [{"pair": [1, 2], "3": "int key"}]


async def test_retries_count_attempts_and_pass_context(harness: Harness) -> None:
    contexts: list[StepContext] = []

    class Flow(WorkflowEntrypoint):
        async def run(self, event, step):
            def flaky(ctx: StepContext) -> int:
                contexts.append(ctx)
                if ctx.attempt < 3:
                    raise ConnectionError(f"down {ctx.attempt}")
                return ctx.attempt

            return await step.do("flaky", {"retries": {"limit": 4, "delay": 0.01}}, flaky)

    engine = await harness.start(spec(Flow))
    inst = await engine.create("wf")
    assert (await wait_status(engine, "wf", inst.id))["output"] == 3
    assert [c.attempt for c in contexts] == [1, 2, 3]
    assert {(c.step_name, c.count) for c in contexts} == {("flaky", 1)}
    assert contexts[0].config.retries is not None
    details = await engine.details("wf", inst.id)
    attempts = details["steps"][0]["attempts"]
    assert [a["success"] for a in attempts] == [False, False, True]
    assert attempts[0]["error"] == {"name": "ConnectionError", "message": "down 1"}
    assert details["steps"][0]["config"]["retries"] == {
        "limit": 4,
        "delay": "10 milliseconds",
        "backoff": "exponential",
    }


async def test_exhausted_retries_error_the_instance(harness: Harness) -> None:
    calls = 0

    class Flow(WorkflowEntrypoint):
        async def run(self, event, step):
            def always() -> None:
                nonlocal calls
                calls += 1
                raise RuntimeError("nope")

            await step.do(
                "doomed", {"retries": {"limit": 2, "delay": 0, "backoff": "constant"}}, always
            )

    engine = await harness.start(spec(Flow))
    inst = await engine.create("wf")
    status = await wait_status(engine, "wf", inst.id)
    assert status["status"] == "errored"
    assert status["error"] == {"name": "RuntimeError", "message": "nope"}
    assert calls == 3  # limit 2 retries = 3 attempts


async def test_non_retryable_error_skips_remaining_attempts(harness: Harness) -> None:
    calls = 0

    class Flow(WorkflowEntrypoint):
        async def run(self, event, step):
            async def refuse() -> None:
                nonlocal calls
                calls += 1
                raise NonRetryableError("card declined", "PaymentError")

            await step.do("charge", refuse)

    engine = await harness.start(spec(Flow))
    inst = await engine.create("wf")
    status = await wait_status(engine, "wf", inst.id)
    assert status["error"] == {"name": "PaymentError", "message": "card declined"}
    assert calls == 1


async def test_caught_step_error_lets_the_run_continue(harness: Harness) -> None:
    class Flow(WorkflowEntrypoint):
        async def run(self, event, step):
            try:
                await step.do("bad", {"retries": {"limit": 0, "delay": 0}}, lambda: 1 / 0)
            except StepError as exc:
                caught = [exc.step_name, exc.error_name, exc.message, exc.attempts]
            after = await step.do("after", lambda: "ok")
            return {"caught": caught, "after": after}

    engine = await harness.start(spec(Flow))
    inst = await engine.create("wf")
    status = await wait_status(engine, "wf", inst.id)
    assert status["output"] == {
        "caught": ["bad", "ZeroDivisionError", "division by zero", 1],
        "after": "ok",
    }


async def test_same_name_in_a_loop_gets_counted_identities(harness: Harness) -> None:
    class Flow(WorkflowEntrypoint):
        async def run(self, event, step):
            total = 0
            for i in range(5):
                total += await step.do("add", lambda i=i: i)
            return total

    engine = await harness.start(spec(Flow))
    inst = await engine.create("wf")
    assert (await wait_status(engine, "wf", inst.id))["output"] == 10
    names = [s["name"] for s in (await engine.details("wf", inst.id))["steps"]]
    assert names == ["add-1", "add-2", "add-3", "add-4", "add-5"]


async def test_parallel_steps_under_gather(harness: Harness) -> None:
    running = 0
    peak = 0
    four = asyncio.Event()  # each body holds on until all four run at once

    class Flow(WorkflowEntrypoint):
        async def run(self, event, step):
            async def body(i: int) -> int:
                nonlocal running, peak
                running += 1
                peak = max(peak, running)
                if running == 4:
                    four.set()
                await asyncio.wait_for(four.wait(), 10)
                running -= 1
                return i * i

            return await asyncio.gather(
                *(step.do(f"square {i}", lambda i=i: body(i)) for i in range(4))
            )

    engine = await harness.start(spec(Flow))
    inst = await engine.create("wf")
    assert (await wait_status(engine, "wf", inst.id))["output"] == [0, 1, 4, 9]
    assert peak == 4


async def test_async_callback_is_cancelled_on_timeout(harness: Harness) -> None:
    cancelled = threading.Event()

    class Flow(WorkflowEntrypoint):
        async def run(self, event, step):
            async def slow(ctx: StepContext) -> str:
                if ctx.attempt == 1:
                    try:
                        await asyncio.sleep(30)
                    except asyncio.CancelledError:
                        cancelled.set()
                        raise
                return "second attempt"

            return await step.do(
                "slow", {"timeout": 0.1, "retries": {"limit": 1, "delay": 0}}, slow
            )

    engine = await harness.start(spec(Flow))
    inst = await engine.create("wf")
    status = await wait_status(engine, "wf", inst.id)
    assert status["output"] == "second attempt"
    assert cancelled.is_set()
    attempt = (await engine.details("wf", inst.id))["steps"][0]["attempts"][0]
    assert attempt["success"] is False
    assert attempt["error"]["name"] == "WorkflowTimeoutError"


async def test_sync_callback_is_abandoned_on_timeout(harness: Harness) -> None:
    release = threading.Event()
    finished = threading.Event()

    class Flow(WorkflowEntrypoint):
        async def run(self, event, step):
            def stuck() -> str:
                release.wait(60)
                finished.set()
                return "late"

            await step.do("stuck", StepConfig(retries={"limit": 0, "delay": 0}, timeout=0.1), stuck)

    engine = await harness.start(spec(Flow))
    inst = await engine.create("wf")
    status = await wait_status(engine, "wf", inst.id)
    assert status["error"]["name"] == "WorkflowTimeoutError"
    assert not finished.is_set()  # the thread is still stuck: abandoned, not awaited
    release.set()


async def test_unserialisable_result_fails_naming_step_and_type(harness: Harness) -> None:
    class Flow(WorkflowEntrypoint):
        async def run(self, event, step):
            await step.do("make set", lambda: {"tags": {1, 2}})

    engine = await harness.start(spec(Flow))
    inst = await engine.create("wf")
    status = await wait_status(engine, "wf", inst.id)
    assert status["error"] == {
        "name": "StepOutputError",
        "message": 'step "make set-1" returned a value that cannot be stored as JSON: '
        'a value of type set at result["tags"]',
    }
    (step,) = (await engine.details("wf", inst.id))["steps"]
    assert len(step["attempts"]) == 1  # the same body returns the same thing: not retried


@pytest.mark.parametrize(
    ("value", "where"),
    [
        ({"a": [0, 1, float("nan")]}, 'NaN at result["a"][2]'),
        ([float("-inf")], "-Infinity at result[0]"),
        ({"pairs": {(1, 2): "x"}}, 'a dict key of type tuple at result["pairs"]'),
        ({"text": "a\udfffb"}, 'a lone surrogate (\\udfff) in a string at result["text"]'),
    ],
)
async def test_unstorable_result_says_what_and_where(
    harness: Harness, value: Any, where: str
) -> None:
    class Flow(WorkflowEntrypoint):
        async def run(self, event, step):
            await step.do("x", lambda: value)

    engine = await harness.start(spec(Flow))
    inst = await engine.create("wf")
    status = await wait_status(engine, "wf", inst.id)
    assert status["error"] == {
        "name": "StepOutputError",
        "message": f'step "x-1" returned a value that cannot be stored as JSON: {where}',
    }


async def test_a_circular_result_names_where_the_cycle_closes(harness: Harness) -> None:
    class Flow(WorkflowEntrypoint):
        async def run(self, event, step):
            def body() -> Any:
                node: dict[str, Any] = {"children": []}
                node["children"].append({"parent": node})
                return node

            if event.payload["from"] == "step":
                await step.do("tree", body)
            return body()

    engine = await harness.start(spec(Flow))
    in_step = await engine.create("wf", params={"from": "step"})
    in_run = await engine.create("wf", params={"from": "run"})
    assert (await wait_status(engine, "wf", in_step.id))["error"]["message"] == (
        'step "tree-1" returned a value that cannot be stored as JSON: a circular reference '
        'at result["children"][0]["parent"]'
    )
    assert (await wait_status(engine, "wf", in_run.id))["error"] == {
        "name": "TypeError",
        "message": "run() returned a value that cannot be stored as JSON: a circular reference "
        'at output["children"][0]["parent"]',
    }


async def test_an_oversized_result_is_a_failed_attempt_and_retried(harness: Harness) -> None:
    class Flow(WorkflowEntrypoint):
        async def run(self, event, step):
            def body(ctx: StepContext) -> str:
                return "x" * (1024 * 1024) if ctx.attempt < 3 else "small"

            limit = event.payload["retries"]
            return await step.do("big", {"retries": {"limit": limit, "delay": 0}}, body)

    engine = await harness.start(spec(Flow))
    recovers = await engine.create("wf", params={"retries": 2})
    gives_up = await engine.create("wf", params={"retries": 1})
    assert (await wait_status(engine, "wf", recovers.id))["output"] == "small"
    (step,) = (await engine.details("wf", recovers.id))["steps"]
    assert [a["success"] for a in step["attempts"]] == [False, False, True]
    too_large = {
        "name": "StepOutputError",
        "message": 'step "big-1" returned 1,048,578 bytes of JSON; the limit is 1,048,576 bytes',
    }
    assert step["attempts"][0]["error"] == too_large
    status = await wait_status(engine, "wf", gives_up.id)
    assert status["error"] == too_large
    (step,) = (await engine.details("wf", gives_up.id))["steps"]
    assert len(step["attempts"]) == 2


async def test_retry_delays_follow_backoff_on_a_manual_clock(
    harness: Harness, clock: ManualClock
) -> None:
    attempts_at: list[float] = []

    class Flow(WorkflowEntrypoint):
        async def run(self, event, step):
            def flaky(ctx: StepContext) -> int:
                attempts_at.append(clock.now())
                if ctx.attempt < 4:
                    raise ValueError("again")
                return ctx.attempt

            return await step.do("flaky", flaky)  # defaults: 10 s, exponential

    engine = await harness.start(spec(Flow), clock=clock)
    inst = await engine.create("wf")

    async def complete() -> bool:
        if (await engine.status("wf", inst.id))["status"] == "complete":
            return True
        wake = clock.next_wake
        # A retry's delay (10, 20, 40 s) is moved to its end; the timeout of an attempt still
        # running (10 minutes) never is, or the next attempt would come 10 minutes late.
        if wake is not None and wake - clock.now() <= 60:
            clock.set(wake)
        return False

    await wait_for(complete)
    gaps = [round(b - a, 3) for a, b in itertools.pairwise(attempts_at)]
    assert gaps == [10.0, 20.0, 40.0]
