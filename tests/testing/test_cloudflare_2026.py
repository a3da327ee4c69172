"""wf.testing with the 2026 step features: a delay function's wait goes through the test clock
(and disable_retry_delays still asks it), a sensitive step's output is there for the test while
an exported history has it redacted, and replay of such an export stops at the redacted step."""

from __future__ import annotations

from typing import Any

from wf import WorkflowEntrypoint
from wf.testing import History, WorkflowTestEnv, replay

ASKED: list[int] = []


def hour_per_attempt(ctx: Any, error: Any) -> str:
    ASKED.append(ctx.attempt)
    return f"{ctx.attempt} hours"


class Flaky(WorkflowEntrypoint):
    async def run(self, event, step):
        def flaky(ctx):
            if ctx.attempt < 3:
                raise ConnectionError("down")
            return ctx.attempt

        config = {"retries": {"limit": 3, "delay": hour_per_attempt, "backoff": "constant"}}
        return await step.do("flaky", config, flaky)


async def test_a_delay_functions_wait_goes_through_the_test_clock() -> None:
    ASKED.clear()
    async with WorkflowTestEnv(workflows={"flaky": Flaky}) as env:
        before = env.now()
        inst = await env.create("flaky")
        assert await inst.result(timeout=10) == 3
        assert (env.now() - before).total_seconds() >= 3 * 3600  # 1 hour, then 2, virtual
    assert ASKED == [1, 2]


async def test_disabled_retry_delays_still_ask_the_function() -> None:
    ASKED.clear()
    async with WorkflowTestEnv(workflows={"flaky": Flaky}, time="manual") as env:
        env.disable_retry_delays("flaky")
        inst = await env.create("flaky")
        assert await inst.result(timeout=10) == 3
    assert ASKED == [1, 2]


class Token(WorkflowEntrypoint):
    async def run(self, event, step):
        token = await step.do("issue", {"sensitive": "output"}, lambda: {"token": "s3cr3t"})
        return await step.do("use", lambda: token["token"][:2])


async def test_sensitive_outputs_in_tests_and_exports() -> None:
    async with WorkflowTestEnv(workflows={"token": Token}) as env:
        inst = await env.create("token")
        assert await inst.result() == "s3"
        assert await inst.step_result("issue") == {"token": "s3cr3t"}  # the test sees it
        details = await inst.details()
        assert details["steps"][0]["output"] == "[REDACTED]"
        exported = await env.engine.history("token", inst.id)  # what wf instances export writes
        assert exported["steps"][0]["output"] == "[REDACTED]"
        assert "s3cr3t" not in str(exported) and "s3cr3t" not in str(details)
    result = await replay(Token, History.from_json(exported))
    assert (result.complete, result.replayed) == (False, 0)
    assert result.stopped == (
        'do "issue" (1st) has its output redacted in the history (sensitive="output"): '
        "replay cannot supply it"
    )
