"""Cloudflare's Python Workflows API on a real engine (SQLite and PostgreSQL): Cloudflare's own
examples with only their imports changed (tests/cloudflare/cloudflare_workflow.py), the decorator
form's injection by name, memoized dependencies, concurrent=True, and dict-readable
event/ctx/received, beside wf's own API."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.cloudflare import cloudflare_workflow
from tests.conftest import Harness, wait_status
from wf import NonRetryableError, StepError, WorkflowEntrypoint
from wf.engine import WorkflowSpec
from wf.engine.entrypoint import ExecutionContext
from wf.errors import ValidationError

Examples = cloudflare_workflow.TestWorkflow  # not collected by pytest under this name


def spec(cls: type[WorkflowEntrypoint], name: str = "wf") -> list[WorkflowSpec]:
    return [WorkflowSpec(name, cls, "WF")]


async def run_mode(harness: Harness, mode: str) -> tuple[dict[str, Any], dict[str, Any]]:
    engine = await harness.start(spec(Examples, "cf-examples"))
    inst = await engine.create("cf-examples", f"run-{mode}", {"mode": mode})
    status = await wait_status(engine, "cf-examples", inst.id)
    return status, await engine.details("cf-examples", inst.id)


async def test_cloudflares_concurrent_example(harness: Harness) -> None:
    status, details = await run_mode(harness, "concurrent")
    assert status == {
        "status": "complete",
        "error": None,
        "output": {"combined": 6},
        "rollback": None,
    }
    named = {s["name"]: s["output"] for s in details["steps"]}
    assert named == {"left-1": 2, "right-1": 3, "combined-1": 6}  # each dependency ran once


async def test_cloudflares_retry_example(harness: Harness) -> None:
    status, details = await run_mode(harness, "retry")
    assert status["output"] == {"succeeded_on_attempt": 2}
    [step] = details["steps"]
    assert step["name"] == "retry-step-1"
    assert [a["error"] for a in step["attempts"]] == [
        {"name": "ValueError", "message": "transient failure"},
        None,
    ]
    assert step["config"]["retries"] == {
        "limit": 1,
        "delay": "0 milliseconds",
        "backoff": "constant",
    }


async def test_cloudflares_wait_for_event_example(harness: Harness) -> None:
    engine = await harness.start(spec(Examples, "cf-examples"))
    inst = await engine.create("cf-examples", "approval", {"mode": "wait_for_event"})
    await inst.send_event("approval", {"approved": True})
    status = await wait_status(engine, "cf-examples", inst.id)
    assert status["output"] == {"event_payload": {"approved": True}}


async def test_event_and_ctx_read_as_cloudflares_dicts(harness: Harness) -> None:
    status, _ = await run_mode(harness, "metadata")
    output = status["output"]
    assert output["payload"] == {"mode": "metadata"}
    assert (output["instance_id"], output["workflow_name"]) == ("run-metadata", "cf-examples")
    assert output["timestamp"].endswith("+00:00") and output["has_ctx"] is True
    assert output["ctx"] == {
        "name": "read-ctx",
        "count": 1,
        "attempt": 1,
        "config": {
            "retries": {"limit": 5, "delay": "10 seconds", "backoff": "exponential"},
            "timeout": "10 minutes",
        },
    }


async def test_a_non_retryable_error_is_caught_by_its_type(harness: Harness) -> None:
    status, details = await run_mode(harness, "non_retryable")
    assert status["output"] == {"caught": "NonRetryableError", "message": "do not retry"}
    assert len(details["steps"][0]["attempts"]) == 1


async def test_type_and_value_errors_are_raised_as_those_types(harness: Harness) -> None:
    class Flow(WorkflowEntrypoint):
        async def run(self, event, step):
            @step.do(config={"retries": {"limit": 0}})
            async def bad_value():
                raise ValueError("not a number")

            @step.do(config={"retries": {"limit": 0}})
            async def other():
                raise KeyError("k")

            caught = []
            for call in (bad_value, other):
                try:
                    await call()
                except ValueError as exc:  # Cloudflare re-creates ValueError by type
                    caught.append(["ValueError", str(exc), isinstance(exc, StepError)])
                except Exception as exc:  # and not KeyError: that one is a plain StepError
                    caught.append([type(exc).__name__, exc.error_name])  # type: ignore[attr-defined]
            return caught

    engine = await harness.start(spec(Flow))
    inst = await engine.create("wf")
    assert (await wait_status(engine, "wf", inst.id))["output"] == [
        ["ValueError", "not a number", True],
        ["StepError", "KeyError"],
    ]


async def test_dependencies_are_injected_by_name_and_memoized(harness: Harness) -> None:
    runs: list[str] = []

    class Flow(WorkflowEntrypoint):
        async def run(self, event, step):
            @step.do()
            async def base():
                runs.append("base")
                return 10

            @step.do("plus five")  # a custom name: injected by that name only
            async def plus(base, ctx):
                runs.append("plus")
                return base + 5 + ctx["step"]["count"] - 1

            @step.do()
            def doubled(base):  # a plain def runs in a worker thread, as wf's bodies do
                runs.append("doubled")
                return base * 2

            first = await doubled()
            again = await doubled()  # called directly again: a second step (count 2)
            return [await plus(), first, again]

    engine = await harness.start(spec(Flow))
    inst = await engine.create("wf")
    assert (await wait_status(engine, "wf", inst.id))["output"] == [15, 20, 20]
    assert runs == ["base", "doubled", "doubled", "plus"]  # base ran once, then memoized
    details = await engine.details("wf", inst.id)
    assert [s["name"] for s in details["steps"]] == [
        "base-1",
        "doubled-1",
        "doubled-2",
        "plus five-1",
    ]


async def test_an_unknown_parameter_is_a_type_error(harness: Harness) -> None:
    class Flow(WorkflowEntrypoint):
        async def run(self, event, step):
            @step.do()
            async def needs(nothing_named_so):
                return 1

            return await needs()

    engine = await harness.start(spec(Flow))
    inst = await engine.create("wf")
    status = await wait_status(engine, "wf", inst.id)
    assert status["error"] == {
        "name": "TypeError",
        "message": "Received unexpected parameter nothing_named_so",
    }
    assert (await engine.details("wf", inst.id))["steps"] == []  # refused before any step


async def test_concurrent_resolves_dependencies_together(harness: Harness) -> None:
    """Each dependency waits for the other to have begun: only asyncio.gather finishes it; the
    same code in order times out the first dependency."""

    def flow(concurrent: bool) -> type[WorkflowEntrypoint]:
        class Flow(WorkflowEntrypoint):
            async def run(self, event, step):
                began = {"a": asyncio.Event(), "b": asyncio.Event()}
                quick = {"retries": {"limit": 0}, "timeout": "2 seconds"}

                @step.do(config=quick)
                async def a():
                    began["a"].set()
                    await began["b"].wait()
                    return "a"

                @step.do(config=quick)
                async def b():
                    began["b"].set()
                    await began["a"].wait()
                    return "b"

                @step.do(concurrent=concurrent)
                async def both(a, b):
                    return a + b

                return await both()

        return Flow

    engine = await harness.start(
        [WorkflowSpec("together", flow(True)), WorkflowSpec("apart", flow(False))]
    )
    # One after the other: an instance finishing while another runs an attempt can have the
    # other claimed twice (a scheduler bug this test is not about; see the report of issue 12).
    together = await engine.create("together")
    assert (await wait_status(engine, "together", together.id))["output"] == "ab"
    apart = await engine.create("apart")
    status = await wait_status(engine, "apart", apart.id)
    assert status["status"] == "errored"
    assert status["error"]["name"] == "WorkflowTimeoutError"


async def test_wf_api_beside_it_unchanged(harness: Harness) -> None:
    seen: list[Any] = []

    class Flow(WorkflowEntrypoint):
        async def run(self, event, step):
            seen.append(isinstance(self.ctx, ExecutionContext))
            value = await step.do("classic", lambda: 1)
            with_config = await step.do("keyword config", lambda: 2, config={"timeout": 5})
            received = await step.wait_for_event("wait", type="go", timeout="1 hour")
            seen.append((received.payload, received["payload"], received["type"]))
            return [value, with_config, event.payload, event["payload"]]

    engine = await harness.start(spec(Flow))
    inst = await engine.create("wf", params={"p": 1})
    await inst.send_event("go", "now")
    assert (await wait_status(engine, "wf", inst.id))["output"] == [1, 2, {"p": 1}, {"p": 1}]
    assert seen[0] is True and seen[-1] == ("now", "now", "go")  # run() may replay after a wait


async def test_misuse_is_one_clear_error(harness: Harness) -> None:
    problems: list[str] = []

    class Flow(WorkflowEntrypoint):
        async def run(self, event, step):
            calls: list[Any] = [
                lambda: step.do("x"),  # awaited without a callback, as before
                lambda: step.do("x", lambda: 1, concurrent=True),
                lambda: step.do("x", {}, lambda: 1, config={}),
                lambda: step.wait_for_event("w", "a", type="b"),
            ]
            for call in calls:
                try:
                    await call()
                except ValidationError as exc:
                    problems.append(exc.message)
            return len(problems)

    engine = await harness.start(spec(Flow))
    inst = await engine.create("wf")
    assert (await wait_status(engine, "wf", inst.id))["output"] == 4
    assert 'step.do("x", ...) takes a callback' in problems[0]
    assert "concurrent=True is for the decorator form" in problems[1]
    assert "got a config twice" in problems[2]
    assert "got the event type twice" in problems[3]


@pytest.mark.parametrize("mode", ["concurrent", "retry"])
async def test_the_examples_replay_from_their_export(harness: Harness, mode: str) -> None:
    from wf.testing import History, replay

    engine = await harness.start(spec(Examples, "cf-examples"))
    inst = await engine.create("cf-examples", params={"mode": mode})
    await wait_status(engine, "cf-examples", inst.id)
    exported = History.from_json(await engine.history("cf-examples", inst.id))
    result = await replay(Examples, exported)
    assert result.complete and result.output == (await inst.status())["output"]


def test_non_retryable_error_is_wfs() -> None:
    import wf

    assert wf.NonRetryableError is NonRetryableError
