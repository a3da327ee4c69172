"""retries.delay as a function (Cloudflare 2026-07-09): called once per failed attempt that
retries, its value fed into the backoff, 5 s to answer; a failing one fails the step for good
with NonRetryableDelayError. Real engines on SQLite and PostgreSQL, on a manual clock."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest

from tests.conftest import Harness, wait_for, wait_status
from wf import NonRetryableError, WorkflowEntrypoint
from wf.engine import ManualClock, WorkflowSpec, retry_delays


def spec(cls: type[WorkflowEntrypoint]) -> list[WorkflowSpec]:
    return [WorkflowSpec("wf", cls, "WF")]


def delays(harness: Harness, instance_id: str) -> list[float]:
    """The waits the engine chose before each retry (its attempt_failed notices)."""
    return [
        n.detail["delay"]
        for n in harness.notices
        if n.instance_id == instance_id and n.kind == "attempt_failed"
    ]


async def run_until_finished(
    engine: Any, clock: ManualClock, instance_id: str, step: float = 1.0
) -> dict[str, Any]:
    async def finished() -> bool:
        status = await engine.status("wf", instance_id)
        if status["status"] in ("complete", "errored"):
            return True
        clock.advance(step)
        return False

    await wait_for(finished, timeout=30)
    status: dict[str, Any] = await engine.status("wf", instance_id)
    return status


async def test_called_once_per_retried_attempt_and_fed_into_the_backoff(
    harness: Harness, clock: ManualClock
) -> None:
    calls: list[tuple[int, str, str]] = []

    def delay(ctx, error):
        calls.append((ctx.attempt, ctx["step"]["name"], str(error)))
        return 10  # seconds; exponential backoff makes it 10, 20

    class Flow(WorkflowEntrypoint):
        async def run(self, event, step):
            def always(ctx):
                raise ConnectionError(f"down {ctx.attempt}")

            await step.do("call", {"retries": {"limit": 2, "delay": delay}}, always)

    engine = await harness.start(spec(Flow), clock=clock)
    inst = await engine.create("wf")
    status = await run_until_finished(engine, clock, inst.id)
    assert status["error"] == {"name": "ConnectionError", "message": "down 3"}
    assert calls == [(1, "call", "down 1"), (2, "call", "down 2")]  # not after the last
    details = await engine.details("wf", inst.id)
    assert delays(harness, inst.id) == [10.0, 20.0]
    assert details["steps"][0]["config"]["retries"]["delay"] == "[dynamic]"


async def test_cloudflares_one_argument_form_async_and_strings(
    harness: Harness, clock: ManualClock
) -> None:
    async def delay(input):  # Cloudflare's ({ctx, error}) form, and async
        await asyncio.sleep(0)
        if "rate limit" in str(input.error):
            return f"{input['ctx'].attempt * 30} seconds"
        return timedelta(seconds=5)

    class Flow(WorkflowEntrypoint):
        async def run(self, event, step):
            async def flaky(ctx):
                if ctx.attempt == 1:
                    raise RuntimeError("rate limit hit")
                if ctx.attempt == 2:
                    raise RuntimeError("other")
                return ctx.attempt

            config = {"retries": {"limit": 3, "delay": delay, "backoff": "constant"}}
            return await step.do("flaky", config, flaky)

    engine = await harness.start(spec(Flow), clock=clock)
    inst = await engine.create("wf")
    assert (await run_until_finished(engine, clock, inst.id))["output"] == 3
    assert delays(harness, inst.id) == [30.0, 5.0]


async def test_not_called_for_a_non_retryable_error(harness: Harness) -> None:
    calls = []

    class Flow(WorkflowEntrypoint):
        async def run(self, event, step):
            def refuse():
                raise NonRetryableError("no")

            def delay(ctx, error):
                calls.append(1)
                return 0

            config = {"retries": {"limit": 3, "delay": delay}}
            await step.do("refuse", config, refuse)

    engine = await harness.start(spec(Flow))
    inst = await engine.create("wf")
    assert (await wait_status(engine, "wf", inst.id))["error"]["name"] == "NonRetryableError"
    assert calls == []


def raises(ctx, error):
    raise ValueError("bad maths")


async def slow(ctx, error):
    await asyncio.sleep(30)
    return 1


@pytest.mark.parametrize(
    ("delay", "message"),
    [
        (raises, 'The delay function for step "s-1" threw an error: bad maths'),
        (slow, 'The delay function for step "s-1" did not return within 0.2 seconds'),
        (
            lambda c, e: "soon",
            "The delay function for step \"s-1\" returned an invalid delay value ('soon')",
        ),
        (lambda c, e: -1, 'The delay function for step "s-1" returned an invalid delay value (-1)'),
        (
            lambda c, e: None,
            'The delay function for step "s-1" returned an invalid delay value (None)',
        ),
    ],
)
async def test_a_failing_function_fails_the_step_for_good(
    harness: Harness, monkeypatch: pytest.MonkeyPatch, delay: Any, message: str
) -> None:
    monkeypatch.setattr(retry_delays, "TIMEOUT", 0.2)

    class Flow(WorkflowEntrypoint):
        async def run(self, event, step):
            def flaky():
                raise ConnectionError("down")

            await step.do("s", {"retries": {"limit": 5, "delay": delay}}, flaky)

    engine = await harness.start(spec(Flow))
    inst = await engine.create("wf")
    status = await wait_status(engine, "wf", inst.id)
    assert status["error"] == {"name": "NonRetryableDelayError", "message": message}
    [step] = (await engine.details("wf", inst.id))["steps"]
    assert step["error"]["name"] == "NonRetryableDelayError"
    assert [a["error"]["name"] for a in step["attempts"]] == ["ConnectionError"]  # its own


async def test_a_restart_reads_the_function_from_the_code_again(
    harness: Harness, clock: ManualClock
) -> None:
    calls: list[int] = []

    class Flow(WorkflowEntrypoint):
        async def run(self, event, step):
            def flaky(ctx):
                if ctx.attempt < 3:
                    raise ConnectionError("down")
                return ctx.attempt

            def delay(ctx, error):
                calls.append(ctx.attempt)
                return "1 hour"

            config = {"retries": {"limit": 5, "delay": delay, "backoff": "constant"}}
            return await step.do("s", config, flaky)

    engine = await harness.start(spec(Flow), clock=clock)
    inst = await engine.create("wf")
    await wait_for(lambda: calls == [1])
    await harness.stop(engine)  # waiting for its retry: the wait is stored, not the function
    engine = await harness.start(spec(Flow), clock=clock)
    assert (await run_until_finished(engine, clock, inst.id, step=600))["output"] == 3
    assert calls == [1, 2]
