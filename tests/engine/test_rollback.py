"""Rollbacks (sagas): handlers run newest step first when an instance fails for good, or when a
terminate asks for them; each as a durable step of its own, at most once; the instance keeps its
original error. On SQLite and PostgreSQL (the engine's harness runs every test on both)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import Any

import pytest

from tests.conftest import Harness, wait_for, wait_status
from wf import (
    InstanceError,
    NonRetryableError,
    RollbackContext,
    StepError,
    WorkflowEntrypoint,
)
from wf.engine import ManualClock, WorkflowSpec
from wf.errors import InvalidTransition

FAST = {"retries": {"limit": 0, "delay": 0.01, "backoff": "constant"}}


def spec(cls: type[WorkflowEntrypoint]) -> list[WorkflowSpec]:
    return [WorkflowSpec("wf", cls, "WF")]


def steps_of(details: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [s for s in details["steps"] if s["type"] == kind]


async def test_handlers_run_newest_first_with_ctx_output_and_the_original_error(
    harness: Harness,
) -> None:
    seen: list[tuple[str, int, int, Any, str, str]] = []

    def undo(context: RollbackContext) -> None:  # a def: runs in a worker thread
        seen.append(
            (
                context.ctx.step_name,
                context.ctx.count,
                context.ctx.attempt,
                context.output,
                context.error.name,
                context["error"].message,
            )
        )

    async def undo_async(context: RollbackContext) -> None:
        await asyncio.sleep(0)
        undo(context)

    class Flow(WorkflowEntrypoint):
        async def run(self, event, step):
            await step.do("reserve", lambda: {"room": 7}, rollback=undo_async)
            await step.do("no handler", lambda: 1)
            for n in range(2):
                await step.do("charge", lambda n=n: n * 10, rollback=undo)

            def decline() -> None:
                raise NonRetryableError("card declined", "CardError")

            await step.do("ship", FAST, decline, rollback=undo)

    engine = await harness.start(spec(Flow))
    inst = await engine.create("wf")
    status = await wait_status(engine, "wf", inst.id)
    assert status["status"] == "errored"
    assert status["error"] == {
        "name": "CardError",
        "message": "card declined",
    }
    assert status["rollback"] == {"outcome": "complete", "error": None}
    assert seen == [
        ("ship", 1, 1, None, "CardError", "card declined"),  # failed step: output None
        ("charge", 2, 1, 10, "CardError", "card declined"),
        ("charge", 1, 1, 0, "CardError", "card declined"),
        ("reserve", 1, 1, {"room": 7}, "CardError", "card declined"),
    ]
    details = await engine.details("wf", inst.id)
    rollbacks = steps_of(details, "rollback")
    assert [r["name"] for r in rollbacks] == ["ship-1", "charge-2", "charge-1", "reserve-1"]
    assert all(r["success"] is True and len(r["attempts"]) == 1 for r in rollbacks)
    assert details["rollback"] == {"outcome": "complete", "error": None}
    kinds = harness.kinds(inst.id)
    assert kinds[-2:] == ["rolled_back", "errored"]
    assert kinds[kinds.index("rollback_started") - 1] == "step_failed"  # ship, then the chain


async def test_no_rollback_when_run_completes_or_catches_the_failure(harness: Harness) -> None:
    ran: list[str] = []

    class Flow(WorkflowEntrypoint):
        async def run(self, event, step):
            await step.do("a", lambda: 1, rollback=lambda c: ran.append("a"))
            with contextlib.suppress(StepError):
                await step.do("b", FAST, _fail, rollback=lambda c: ran.append("b"))
            return "ok"

    engine = await harness.start(spec(Flow))
    inst = await engine.create("wf")
    status = await wait_status(engine, "wf", inst.id)
    assert status == {"status": "complete", "error": None, "output": "ok", "rollback": None}
    assert ran == []


def _fail() -> None:
    raise RuntimeError("boom")


async def test_a_failing_handler_is_retried_then_halts_the_chain(harness: Harness) -> None:
    ran: list[str] = []
    tries = {"n": 0}

    def flaky_undo(context: RollbackContext) -> None:
        tries["n"] += 1
        ran.append(f"b try {tries['n']}")
        raise RuntimeError(f"refund refused {tries['n']}")

    class Flow(WorkflowEntrypoint):
        async def run(self, event, step):
            await step.do("a", lambda: 1, rollback=lambda c: ran.append("a"))
            await step.do(
                "b",
                lambda: 2,
                rollback=flaky_undo,
                rollback_config={"retries": {"limit": 2, "delay": 0.01, "backoff": "constant"}},
            )
            await step.do("c", lambda: 3, rollback=lambda c: ran.append("c"))
            raise ValueError("run failed")

    engine = await harness.start(spec(Flow))
    inst = await engine.create("wf")
    status = await wait_status(engine, "wf", inst.id)
    assert status["status"] == "errored"
    assert status["error"] == {"name": "ValueError", "message": "run failed"}
    assert status["rollback"] == {
        "outcome": "failed",
        "error": {"name": "RuntimeError", "message": "refund refused 3"},
    }
    assert ran == ["c", "b try 1", "b try 2", "b try 3"]  # "a" never ran: the chain halted
    details = await engine.details("wf", inst.id)
    (b,) = [r for r in steps_of(details, "rollback") if r["name"] == "b-1"]
    assert b["success"] is False and len(b["attempts"]) == 3
    assert b["config"]["retries"]["limit"] == 2


async def test_a_handler_times_out_per_its_rollback_config(harness: Harness) -> None:
    async def hang(context: RollbackContext) -> None:
        await asyncio.sleep(30)

    class Flow(WorkflowEntrypoint):
        async def run(self, event, step):
            await step.do(
                "a",
                lambda: 1,
                rollback=hang,
                rollback_config={"retries": {"limit": 0}, "timeout": 0.05},
            )
            raise ValueError("x")

    engine = await harness.start(spec(Flow))
    inst = await engine.create("wf")
    status = await wait_status(engine, "wf", inst.id)
    assert status["rollback"]["outcome"] == "failed"
    assert status["rollback"]["error"]["name"] == "WorkflowTimeoutError"
    assert status["error"] == {"name": "ValueError", "message": "x"}


async def test_steps_inside_a_handler_are_refused(harness: Harness) -> None:
    class Flow(WorkflowEntrypoint):
        async def run(self, event, step):
            async def undo(context: RollbackContext) -> None:
                await step.do("compensate", lambda: 1)

            await step.do("a", lambda: 1, rollback=undo)
            raise ValueError("x")

    engine = await harness.start(spec(Flow))
    inst = await engine.create("wf")
    status = await wait_status(engine, "wf", inst.id)
    assert status["rollback"] == {
        "outcome": "failed",
        "error": {
            "name": "WorkflowFatalError",
            "message": "Cannot execute steps during rollback phase",
        },
    }
    details = await engine.details("wf", inst.id)
    (undo,) = steps_of(details, "rollback")
    assert len(undo["attempts"]) == 1  # fatal: not retried


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rollback": "refund"}, 'Rollback for "a" must be a function'),
        ({"rollback_config": {"timeout": 5}}, 'Rollback for "a" must be a function'),
        (
            {"rollback": print, "rollback_config": {"retries": {"limit": -1}}},
            'Rollback config for "a" is invalid: retries.limit of step "a" must be an integer',
        ),
        (
            {"rollback": print, "rollback_config": {"backoff": "linear"}},
            'Rollback config for "a" is invalid: config of step "a" has unknown key "backoff"',
        ),
    ],
)
async def test_bad_rollback_options_fail_the_call(
    harness: Harness, kwargs: dict[str, Any], message: str
) -> None:
    class Flow(WorkflowEntrypoint):
        async def run(self, event, step):
            await step.do("a", lambda: 1, **kwargs)

    engine = await harness.start(spec(Flow))
    inst = await engine.create("wf")
    status = await wait_status(engine, "wf", inst.id)
    assert status["error"]["name"] == "ValidationError"
    assert status["error"]["message"].startswith(message)
    assert steps_of(await engine.details("wf", inst.id), "step") == []


async def test_terminate_with_rollback_runs_handlers_then_ends_terminated(
    harness: Harness,
) -> None:
    release = threading.Event()
    seen: list[tuple[str, Any, str]] = []

    def undo(context: RollbackContext) -> None:
        seen.append((context.ctx.step_name, context.output, context.error.message))

    class Flow(WorkflowEntrypoint):
        async def run(self, event, step):
            await step.do("a", lambda: "A", rollback=undo)
            await step.sleep("nap", 0.01)
            await step.do("b", lambda: release.wait(10), rollback=undo)
            await step.do("never", lambda: seen.append(("never", None, "")), rollback=undo)

    engine = await harness.start(spec(Flow))
    inst = await engine.create("wf")
    await wait_for(lambda: harness.query("SELECT 1 FROM steps WHERE name = 'b'"))
    await inst.terminate(rollback=True)
    release.set()
    status = await wait_status(engine, "wf", inst.id)
    assert status["status"] == "terminated"
    assert status["error"] is None
    assert status["rollback"] == {"outcome": "complete", "error": None}
    # b was running when terminated: it started, so it is rolled back (without an output)
    assert seen == [
        ("b", None, "Instance terminated during rollback"),
        ("a", "A", "Instance terminated during rollback"),
    ]
    details = await engine.details("wf", inst.id)
    assert details["steps"][-1]["type"] == "termination"
    assert details["steps"][-1]["trigger"] == {"source": "binding"}
    with pytest.raises(InvalidTransition):
        await inst.terminate(rollback=True)


async def test_terminate_with_rollback_of_an_instance_without_handlers(
    harness: Harness, clock: ManualClock
) -> None:
    class Flow(WorkflowEntrypoint):
        async def run(self, event, step):
            await step.do("a", lambda: 1)
            await step.sleep("long", "1 hour")

    engine = await harness.start(spec(Flow), clock=clock)
    inst = await engine.create("wf")
    await wait_status(engine, "wf", inst.id, "waiting")
    await inst.terminate(rollback=True)
    status = await wait_status(engine, "wf", inst.id)
    assert status["status"] == "terminated" and status["rollback"] is None


async def test_plain_terminate_runs_no_handler(harness: Harness) -> None:
    release = threading.Event()
    ran: list[str] = []

    class Flow(WorkflowEntrypoint):
        async def run(self, event, step):
            await step.do("a", lambda: 1, rollback=lambda c: ran.append("a"))
            await step.do("b", lambda: release.wait(10))

    engine = await harness.start(spec(Flow))
    inst = await engine.create("wf")
    await wait_for(lambda: harness.query("SELECT 1 FROM steps WHERE name = 'b'"))
    await inst.terminate()
    release.set()
    status = await wait_status(engine, "wf", inst.id)
    assert status["status"] == "terminated" and status["rollback"] is None
    await asyncio.sleep(0.1)
    assert ran == []


async def test_a_restarted_engine_replays_run_to_finish_the_chain(harness: Harness) -> None:
    """The chain stops mid-way (the engine stops during a handler); the next engine replays
    run() only to register the handlers again, runs nothing forward, and never runs a handler
    that committed."""
    ran: list[str] = []
    forward: list[str] = []
    entered = threading.Event()
    release = threading.Event()

    def slow_undo(context: RollbackContext) -> None:
        ran.append("b")
        entered.set()
        release.wait(10)

    class Flow(WorkflowEntrypoint):
        async def run(self, event, step):
            await step.do("a", lambda: forward.append("a"), rollback=lambda c: ran.append("a"))
            await step.do("b", lambda: forward.append("b"), rollback=slow_undo)
            await step.do("c", lambda: forward.append("c"), rollback=lambda c: ran.append("c"))
            await step.do("fail", FAST, _fail)

    engine = await harness.start(spec(Flow))
    inst = await engine.create("wf")
    await wait_for(entered.is_set)
    stopping = asyncio.ensure_future(harness.stop(engine))
    await asyncio.sleep(0.05)
    release.set()
    await stopping
    assert ran == ["c", "b"]
    (phase,) = harness.query("SELECT status, rollback FROM instances")
    assert phase[0] != "errored" and '"outcome": null' in phase[1]
    entered.clear()
    release.set()
    engine = await harness.start(spec(Flow))
    status = await wait_status(engine, "wf", inst.id)
    assert status["error"] == {"name": "RuntimeError", "message": "boom"}
    assert status["rollback"] == {"outcome": "complete", "error": None}
    assert forward == ["a", "b", "c"]  # the replay ran no step body
    # "c" committed before the stop and never ran again; "b" was cut short, so it ran again
    assert ran == ["c", "b", "b", "a"]


async def test_error_passed_is_an_instance_error(harness: Harness) -> None:
    errors: list[BaseException] = []

    class Flow(WorkflowEntrypoint):
        async def run(self, event, step):
            await step.do("a", lambda: 1, rollback=lambda c: errors.append(c.error))
            raise KeyError("k")

    engine = await harness.start(spec(Flow))
    inst = await engine.create("wf")
    await wait_status(engine, "wf", inst.id)
    (error,) = errors
    assert isinstance(error, InstanceError)
    assert (error.name, error.message) == ("KeyError", "'k'")


async def test_a_history_with_rollback_steps_replays(harness: Harness) -> None:
    from wf.testing import replay

    class Flow(WorkflowEntrypoint):
        async def run(self, event, step):
            await step.do("a", lambda: 1, rollback=lambda c: None)
            await step.do("b", FAST, _fail, rollback=lambda c: None, rollback_config=FAST)

    engine = await harness.start(spec(Flow))
    inst = await engine.create("wf")
    await wait_status(engine, "wf", inst.id)
    history = await engine.history("wf", inst.id)
    assert [s["kind"] for s in history["steps"]] == ["do", "do", "rollback", "rollback"]
    assert history["rollback"] == {"outcome": "complete", "error": None}
    result = await replay(Flow, history)
    assert result.complete and result.replayed == 2
    assert isinstance(result.error, StepError)


async def test_restart_from_a_step_after_a_rollback_runs_the_chain_afresh(
    harness: Harness,
) -> None:
    """A rolled-back instance restarted from its second step: the first stays cached, the
    rollback records and their attempts are wiped with the later steps, and a second failure
    runs every handler again (the first step's too: its rollback started after the target)."""
    undone: list[tuple[str, Any]] = []
    ran: list[str] = []

    def undo(context: RollbackContext) -> None:
        undone.append((context.ctx.step_name, context.output))

    def body(name: str, value: Any) -> Any:
        ran.append(name)
        return value

    class Flow(WorkflowEntrypoint):
        async def run(self, event, step):
            await step.do("reserve", lambda: body("reserve", "room"), rollback=undo)
            await step.do("charge", lambda: body("charge", event.payload), rollback=undo)
            if event.payload == "bad":
                raise ValueError("out of stock")
            return "ok"

    engine = await harness.start(spec(Flow))
    await engine.create("wf", "r", "bad")
    status = await wait_status(engine, "wf", "r")
    assert status["rollback"] == {"outcome": "complete", "error": None}
    assert undone == [("charge", "bad"), ("reserve", "room")]
    await engine.restart("wf", "r", {"name": "charge"})
    status = await wait_status(engine, "wf", "r")
    assert (status["status"], status["rollback"]) == (
        "errored",
        {"outcome": "complete", "error": None},
    )
    assert ran == ["reserve", "charge", "charge"]
    assert undone == [("charge", "bad"), ("reserve", "room")] * 2
    details = await engine.details("wf", "r")
    assert [(s["type"], s["name"]) for s in details["steps"]] == [
        ("step", "reserve-1"),
        ("step", "charge-1"),
        ("rollback", "charge-1"),
        ("rollback", "reserve-1"),
    ]
    assert [len(s["attempts"]) for s in details["steps"]] == [1, 1, 1, 1]
    await engine.restart("wf", "r", {"name": "charge"}, params="fine")
    status = await wait_status(engine, "wf", "r")
    assert status == {"status": "complete", "error": None, "output": "ok", "rollback": None}
    assert len(undone) == 4
    kinds = harness.query("SELECT kind, name FROM attempts ORDER BY kind, name")
    assert kinds == [("do", "charge"), ("do", "reserve")]


async def test_a_delete_during_the_chain_stops_it_and_leaves_nothing_behind(
    harness: Harness,
) -> None:
    started, release = threading.Event(), threading.Event()
    undone: list[str] = []

    def slow_undo(context: RollbackContext) -> None:
        started.set()
        release.wait(10)
        undone.append(context.ctx.step_name)

    class Flow(WorkflowEntrypoint):
        async def run(self, event, step):
            await step.do("a", lambda: 1, rollback=lambda c: undone.append("a"))
            await step.do("b", lambda: 2, rollback=slow_undo)
            raise ValueError("no")

    engine = await harness.start(spec(Flow))
    inst = await engine.create("wf", "doomed")
    await wait_for(started.is_set)
    await inst.delete()
    release.set()
    await wait_for(lambda: undone == ["b"])  # the running handler ends; no older one begins
    await asyncio.sleep(0.2)
    assert undone == ["b"]
    for table in ("instances", "steps", "attempts"):
        assert harness.query(f"SELECT count(*) FROM {table}") == [(0,)], table
    await engine.create("wf", "doomed")  # its id is free again, and it runs afresh
    release.set()
    status = await wait_status(engine, "wf", "doomed")
    assert status["rollback"] == {"outcome": "complete", "error": None}


async def test_a_second_terminate_with_rollback_leaves_the_running_handler_alone(
    harness: Harness,
) -> None:
    started, release = threading.Event(), threading.Event()
    undone: list[str] = []

    def slow_undo(context: RollbackContext) -> None:
        started.set()
        release.wait(10)
        undone.append(context.ctx.step_name)

    class Flow(WorkflowEntrypoint):
        async def run(self, event, step):
            await step.do("a", lambda: 1, rollback=lambda c: undone.append("a"))
            await step.do("b", lambda: 2, rollback=slow_undo, rollback_config=FAST)
            await step.sleep("long", "1 hour")

    engine = await harness.start(spec(Flow))
    inst = await engine.create("wf", "twice")
    await wait_status(engine, "wf", "twice", "waiting")
    await inst.terminate(rollback=True)
    await wait_for(started.is_set)
    await inst.terminate(rollback=True)  # asked again while b's handler runs
    release.set()
    status = await wait_status(engine, "wf", "twice")
    assert status["status"] == "terminated"
    assert status["rollback"] == {"outcome": "complete", "error": None}
    assert undone == ["b", "a"]


async def test_terminate_with_rollback_during_a_failures_rollback_changes_nothing(
    harness: Harness,
) -> None:
    started, release = threading.Event(), threading.Event()
    undone: list[str] = []

    def slow_undo(context: RollbackContext) -> None:
        started.set()
        release.wait(10)
        undone.append(context.ctx.step_name)

    class Flow(WorkflowEntrypoint):
        async def run(self, event, step):
            await step.do("a", lambda: 1, rollback=lambda c: undone.append("a"))
            await step.do("b", lambda: 2, rollback=slow_undo, rollback_config=FAST)
            raise ValueError("out of stock")

    engine = await harness.start(spec(Flow))
    inst = await engine.create("wf", "failing")
    await wait_for(started.is_set)
    row = await engine.terminate("wf", "failing", rollback=True)
    assert row.status.value == "running"
    release.set()
    status = await wait_status(engine, "wf", "failing")
    assert status["status"] == "errored"
    assert status["error"] == {"name": "ValueError", "message": "out of stock"}
    assert status["rollback"] == {"outcome": "complete", "error": None}
    assert undone == ["b", "a"]
    assert inst.id == "failing"
