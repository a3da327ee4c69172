"""wf.testing.replay: run() against recorded histories, hand-written and exported from
instances a real engine ran; NonDeterminismError at the first call that differs."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Harness, wait_status
from tests.testing.histories import do, document, export, sleep, wait
from wf import (
    Env,
    NonDeterminismError,
    StepError,
    WorkflowEntrypoint,
    WorkflowEvent,
    WorkflowStep,
    WorkflowStepEvent,
)
from wf.engine import ManualClock, WorkflowSpec
from wf.errors import EngineSignal, ValidationError
from wf.testing.history import History
from wf.testing.replay import ReplayResult, ReplayStep, replay

ORDER = document(
    do("reserve stock", {"reserved": 2}),
    do("charge card", {"paymentId": "p1"}),
    sleep("cool off"),
    wait("shipped", "shipped", {"carrier": "DHL"}),
    output={"paymentId": "p1", "carrier": "DHL"},
)


def never(*args: Any) -> Any:
    raise AssertionError("replay ran a step body")


async def never_async(*args: Any) -> Any:
    raise AssertionError("replay ran a step body")


class Checkout(WorkflowEntrypoint):
    """The code ORDER was recorded from."""

    async def run(self, event: WorkflowEvent, step: Any) -> Any:
        await step.do("reserve stock", never)
        payment = await step.do("charge card", {"retries": {"limit": 2}}, never_async)
        await step.sleep("cool off", "3 days")
        shipped = await step.wait_for_event("shipped", type="shipped", timeout="1 day")
        return {**payment, **shipped.payload}


async def mismatch(cls: type[WorkflowEntrypoint], doc: dict[str, Any]) -> NonDeterminismError:
    with pytest.raises(NonDeterminismError) as caught:
        await replay(cls, History.from_json(doc))
    assert "\n" not in str(caught.value)
    return caught.value


# --- hand-written histories ---------------------------------------------------------------


async def test_identical_code_replays_every_outcome_and_runs_no_body() -> None:
    result = await replay(Checkout, History.from_json(ORDER))
    assert result == ReplayResult(
        replayed=4, new_steps=0, complete=True, output={"paymentId": "p1", "carrier": "DHL"}
    )


async def test_run_gets_the_recorded_event_env_and_outcomes() -> None:
    seen: dict[str, Any] = {}

    class Look(WorkflowEntrypoint):
        async def run(self, event, step):
            seen["event"], seen["env"] = event, self.env
            seen["reserved"] = await step.do("reserve stock", never)
            seen["reserved"]["reserved"] = 99  # the caller's copy: the history keeps its own
            await step.do("charge card", never)
            seen["slept"] = await step.sleep_until("cool off", datetime.now(timezone.utc))
            seen["shipped"] = await step.wait_for_event("shipped", type="shipped")

    history = History.from_json(ORDER)
    await replay(Look, history, env={"API_KEY": "k"})
    assert seen["event"] == WorkflowEvent(
        payload={"cartId": "cart-1"},
        timestamp=datetime(2026, 12, 3, 10, tzinfo=timezone.utc),
        instance_id="cart-1",
        workflow_name="checkout",
    )
    assert isinstance(seen["env"], Env) and seen["env"].API_KEY == "k"
    assert seen["slept"] is None
    assert seen["shipped"] == WorkflowStepEvent(
        "shipped", {"carrier": "DHL"}, datetime(2026, 12, 3, 10, 0, 3, tzinfo=timezone.utc)
    )
    assert history.steps[0].output == {"reserved": 2}


async def test_a_renamed_step_fails_naming_it() -> None:
    class Renamed(Checkout):
        async def run(self, event, step):
            await step.do("reserve stock", never)
            await step.do("charge", never)

    error = await mismatch(Renamed, ORDER)
    assert str(error) == (
        "history of checkout/cart-1 does not match the code: call 2 is do "
        '"charge" (1st) but the history has do "charge card" (1st) there'
    )
    assert (error.index, error.expected, error.got) == (
        1,
        'do "charge card" (1st)',
        'do "charge" (1st)',
    )


async def test_a_do_changed_to_a_sleep_fails() -> None:
    class Slept(Checkout):
        async def run(self, event, step):
            await step.do("reserve stock", never)
            await step.sleep("charge card", 1)

    error = await mismatch(Slept, ORDER)
    assert 'call 2 is sleep "charge card" (1st) but the history has do "charge card"' in str(error)


async def test_a_wait_for_another_event_type_fails() -> None:
    class Delivered(Checkout):
        async def run(self, event, step):
            await step.do("reserve stock", never)
            await step.do("charge card", never)
            await step.sleep("cool off", 1)
            await step.wait_for_event("shipped", type="delivered")

    error = await mismatch(Delivered, ORDER)
    assert str(error).endswith(
        'call 4 is wait "shipped" (1st) for an event of type "delivered" but the history has '
        'wait "shipped" (1st) for an event of type "shipped" there'
    )
    assert error.index == 3


async def test_an_added_final_step_passes_and_replay_stops_there() -> None:
    class Added(Checkout):
        async def run(self, event, step):
            await Checkout.run(self, event, step)
            await step.do("send survey", never)
            raise AssertionError("replay went on past the new step")

    result = await replay(Added, History.from_json(ORDER))
    assert (result.replayed, result.new_steps, result.complete) == (4, 1, False)
    assert result.output is None and result.error is None
    assert result.stopped == 'call 5, do "send survey" (1st), is a step after the recorded ones'


async def test_a_removed_step_fails_naming_it() -> None:
    class Removed(Checkout):
        async def run(self, event, step):
            await step.do("reserve stock", never)
            await step.sleep("cool off", 1)
            await step.wait_for_event("shipped", type="shipped")
            return "done"

    error = await mismatch(Removed, ORDER)
    assert str(error) == (
        "history of checkout/cart-1 does not match the code: run() returned after 3 step "
        'calls, but the history has do "charge card" (1st) (step 2 of 4), which no call reached'
    )
    assert (error.index, error.expected, error.got) == (None, 'do "charge card" (1st)', None)


async def test_a_removed_step_in_the_middle_fails_at_the_next_new_call() -> None:
    class Replaced(Checkout):
        async def run(self, event, step):
            await step.do("reserve stock", never)
            await step.do("charge card v2", never)

    error = await mismatch(Replaced, ORDER)
    assert 'call 2 is do "charge card v2" (1st) but the history has do "charge card"' in str(error)


async def test_run_raising_before_recorded_steps_fails_and_says_what_it_raised() -> None:
    class Broken(Checkout):
        async def run(self, event, step):
            await step.do("reserve stock", never)
            raise KeyError("cart")

    error = await mismatch(Broken, ORDER)
    assert "run() raised KeyError (\"'cart'\") after 1 step calls" in str(error)
    assert isinstance(error.__cause__, KeyError)


FAILED = document(
    do("charge card", state="failed", error={"name": "CardDeclined", "message": "no"}, attempts=3),
    wait("shipped", "shipped", state="failed", error=None),
    do("refund", {"ok": True}),
    status="errored",
)


async def test_a_recorded_step_error_is_raised_into_run_and_can_be_caught() -> None:
    caught: list[StepError] = []

    class Caught(WorkflowEntrypoint):
        async def run(self, event, step):
            calls: dict[str, Any] = {
                "charge card": lambda: step.do("charge card", never),
                "shipped": lambda: step.wait_for_event("shipped", type="shipped"),
            }
            for name, call in calls.items():
                try:
                    await call()
                except StepError as exc:
                    assert exc.step_name == name
                    caught.append(exc)
            return await step.do("refund", never)

    result = await replay(Caught, History.from_json(FAILED))
    assert result == ReplayResult(replayed=3, new_steps=0, complete=True, output={"ok": True})
    card, timeout = caught
    assert (card.error_name, card.message, card.attempts) == ("CardDeclined", "no", 3)
    assert (timeout.error_name, timeout.attempts) == ("WorkflowTimeoutError", 1)
    assert timeout.message == 'waited 1 day for an event of type "shipped"'


async def test_a_step_error_run_does_not_catch_ends_the_replay_as_an_error() -> None:
    class Uncaught(WorkflowEntrypoint):
        async def run(self, event, step):
            await step.do("charge card", never)

    history = document(FAILED["steps"][0], status="errored")
    result = await replay(Uncaught, History.from_json(history))
    assert result.complete and result.replayed == 1
    assert isinstance(result.error, StepError) and result.error.error_name == "CardDeclined"
    # ...but with steps recorded after it, the old code caught it and went on: a mismatch.
    error = await mismatch(Uncaught, FAILED)
    assert "run() raised CardDeclined" in str(error) and 'wait "shipped" (1st)' in str(error)


async def test_a_step_still_running_in_the_history_ends_the_replay_there() -> None:
    unfinished = document(
        do("reserve stock", {"reserved": 2}),
        do("charge card", state="running", attempts=1),
        status="running",
    )
    result = await replay(Checkout, History.from_json(unfinished))
    assert (result.replayed, result.new_steps, result.complete) == (1, 0, False)
    assert result.stopped == 'call 2, do "charge card" (1st), is still running in the history'


async def test_user_code_cannot_swallow_a_mismatch_or_the_stop() -> None:
    swallowed: list[BaseException] = []

    class Swallows(WorkflowEntrypoint):
        async def run(self, event, step):
            with contextlib.suppress(Exception):  # not an Exception: this does not catch it
                await step.do("renamed", never)
            raise AssertionError("run() went on")

    error = await mismatch(Swallows, ORDER)
    assert error.got == 'do "renamed" (1st)'

    class SwallowsAll(WorkflowEntrypoint):
        async def run(self, event, step):
            for name in ("renamed", "reserve stock", "also new"):
                try:
                    await step.do(name, never)
                except BaseException as exc:  # what a careless user writes
                    swallowed.append(exc)
            return "finished anyway"

    error = await mismatch(SwallowsAll, ORDER)
    assert error.got == 'do "renamed" (1st)'
    assert swallowed == [error, error, error]  # every later call raises it again

    class SwallowsStop(Checkout):
        async def run(self, event, step):
            await Checkout.run(self, event, step)
            with contextlib.suppress(BaseException):
                await step.do("new", never)
            return "finished anyway"

    result = await replay(SwallowsStop, History.from_json(ORDER))
    assert (result.complete, result.output, result.new_steps) == (False, None, 1)


async def test_parallel_steps_replay() -> None:
    parallel = document(
        do("fetch", "a", count=1),
        do("fetch", "b", count=2),
        sleep("fetch"),  # a sleep named like a step neither shifts its count nor meets it
        do("price", 3),
        do("fetch", "c", count=3),
    )

    class Parallel(WorkflowEntrypoint):
        async def run(self, event, step):
            a, b, _ = await asyncio.gather(
                step.do("fetch", never), step.do("fetch", never), step.sleep("fetch", 1)
            )
            price, c = await asyncio.gather(step.do("price", never), step.do("fetch", never))
            return [a, b, c, price]

    result = await replay(Parallel, History.from_json(parallel))
    assert (result.output, result.replayed) == (["a", "b", "c", 3], 5)


async def test_the_engines_argument_checks_apply() -> None:
    async def run_with(call: Any) -> BaseException | None:
        class Flow(WorkflowEntrypoint):
            async def run(self, event, step):
                await call(step)

        return (await replay(Flow, History.from_json(document()))).error

    cases: list[tuple[Any, str]] = [
        (lambda s: s.do("x"), 'step.do\\("x", ...\\) takes a callback'),
        (lambda s: s.do("x", 3), "the callback must be callable, got int"),
        (lambda s: s.do("x", {"retries": {"limit": -1}}, never), "retries.limit of step"),
        (lambda s: s.do("x", never, timeout="soon"), 'timeout of step "x" "soon" is not a'),
        (lambda s: s.do("", never), "step name must not be empty"),
        (
            lambda s: s.sleep("x", "2 years"),
            'sleep "x" is 730 days and 12 hours long; the limit is 365 days',
        ),
        (lambda s: s.sleep_until("x", datetime(2030, 1, 1)), "needs an aware datetime"),
        (lambda s: s.wait_for_event("x", type="a b"), 'event type "a b" may only contain'),
        (lambda s: s.wait_for_event("x", type="t", timeout=0.5), 'timeout of wait "x" must be'),
    ]
    for call, problem in cases:
        error = await run_with(call)
        assert isinstance(error, ValidationError), problem
        assert re.search(problem, error.message), (problem, error.message)


async def test_replay_refuses_what_is_not_a_workflow_class(tmp_path: Path) -> None:
    history = History.from_json(ORDER)
    with pytest.raises(TypeError, match="pass the class itself, not an instance of it"):
        await replay(Checkout(), history)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="takes a WorkflowEntrypoint subclass, got function"):
        await replay(never, history)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"subclass of wf\.WorkflowEntrypoint; dict is not one"):
        await replay(dict, history)  # type: ignore[arg-type]

    class Sync(WorkflowEntrypoint):
        def run(self, event, step):
            return None

    with pytest.raises(TypeError, match=r'Sync\.run must be "async def run'):
        await replay(Sync, history)
    with pytest.raises(TypeError, match="takes a History"):
        await replay(Checkout, 42)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"env= takes a wf\.Env or a dict, got list"):
        await replay(Checkout, history, env=[])  # type: ignore[arg-type]


async def test_replay_takes_a_path_or_a_dict(tmp_path: Path) -> None:
    path = tmp_path / "cart-1.json"
    History.from_json(ORDER).dump(path)
    assert (await replay(Checkout, path)).complete
    assert (await replay(Checkout, str(path))).complete
    assert (await replay(Checkout, ORDER)).complete


async def test_an_engine_signal_of_the_users_own_is_just_an_error() -> None:
    class Raises(WorkflowEntrypoint):
        async def run(self, event, step):
            raise EngineSignal("mine")

    result = await replay(Raises, History.from_json(document()))
    assert result.complete and isinstance(result.error, EngineSignal)


# --- histories a real engine recorded ---------------------------------------------------


def spec(cls: type[WorkflowEntrypoint]) -> list[WorkflowSpec]:
    return [WorkflowSpec("checkout", cls, "CHECKOUT")]


class Shop(WorkflowEntrypoint):
    """A workflow with every kind of step, a caught failure and parallel steps."""

    async def run(self, event: WorkflowEvent, step: Any) -> Any:
        cart = event.payload["cartId"]
        prices = await asyncio.gather(
            step.do("price", lambda: 3), step.do("price", lambda: 4), step.do("tax", lambda: 1)
        )

        def decline() -> None:
            raise ValueError("card declined")

        try:
            await step.do("charge card", {"retries": {"limit": 0}}, decline)
        except StepError:
            await step.do("charge backup card", lambda: {"paymentId": f"p-{cart}"})
        await step.sleep("cool off", 0.01)
        shipped = await step.wait_for_event("shipped", type="shipped", timeout="1 hour")
        return {"total": sum(prices), "carrier": shipped.payload["carrier"]}


async def run_shop(harness: Harness, cls: type[WorkflowEntrypoint] = Shop) -> dict[str, Any]:
    engine = await harness.start(spec(cls))
    inst = await engine.create("checkout", "cart-1", {"cartId": "cart-1"})
    await wait_status(engine, "checkout", "cart-1", "waiting")
    await engine.send_event("checkout", "cart-1", "shipped", {"carrier": "DHL"})
    status = await wait_status(engine, "checkout", inst.id)
    assert status["output"] == {"total": 8, "carrier": "DHL"}, status
    return await export(engine, "checkout", "cart-1")


async def test_a_recorded_run_replays_against_the_same_code(
    harness: Harness, tmp_path: Path
) -> None:
    doc = await run_shop(harness)
    assert [s["name"] for s in doc["steps"]][:3] == ["price", "price", "tax"]
    path = tmp_path / "cart-1.json"
    History.from_json(doc).dump(path)
    result = await replay(Shop, History.load(path))
    assert result == ReplayResult(
        replayed=7, new_steps=0, complete=True, output={"total": 8, "carrier": "DHL"}
    )


async def test_a_recorded_run_against_changed_code(harness: Harness) -> None:
    history = History.from_json(await run_shop(harness))

    class Renamed(Shop):
        async def run(self, event, step):
            await asyncio.gather(step.do("price", never), step.do("price", never))
            await step.do("sales tax", never)

    error = await mismatch(Renamed, history.raw)
    assert error.expected == 'do "tax" (1st)' and error.got == 'do "sales tax" (1st)'

    class Added(Shop):
        async def run(self, event, step):
            out = await Shop.run(self, event, step)
            await step.do("send survey", never)
            return out

    result = await replay(Added, history)
    assert (result.replayed, result.new_steps) == (7, 1)

    class NoBackup(Shop):  # lets the recorded StepError end run(): the backup is never reached
        async def run(self, event, step):
            await asyncio.gather(step.do("price", never), step.do("price", never))
            await step.do("tax", never)
            await step.do("charge card", never)

    error = await mismatch(NoBackup, history.raw)
    assert "run() raised ValueError" in str(error)
    assert error.expected == 'do "charge backup card" (1st)'


async def test_an_unfinished_instance_replays_up_to_where_it_is(
    harness: Harness, clock: ManualClock
) -> None:
    class Slow(WorkflowEntrypoint):
        async def run(self, event, step):
            await step.do("reserve stock", lambda: 2)
            await step.sleep("cool off", "3 days")
            await step.do("charge card", lambda: 1)

    engine = await harness.start(spec(Slow), clock=clock)
    await engine.create("checkout", "cart-1")
    await wait_status(engine, "checkout", "cart-1", "waiting")
    doc = await export(engine, "checkout", "cart-1")
    assert [(s["name"], s["state"]) for s in doc["steps"]] == [
        ("reserve stock", "succeeded"),
        ("cool off", "running"),
    ]
    result = await replay(Slow, History.from_json(doc))
    assert (result.replayed, result.complete) == (1, False)
    assert result.stopped is not None and "still running" in result.stopped


async def test_a_stop_inside_gather_leaves_no_branch_behind() -> None:
    unfinished = document(
        do("a", state="running"),
        do("b", 2),
        do("c", 3),
        status="running",
    )

    class Parallel(WorkflowEntrypoint):
        async def run(self, event, step):
            async def branch(name: str, later: int) -> Any:
                for _ in range(later):  # branches that get going a little later
                    await asyncio.sleep(0)
                return await step.do(name, never)

            return await asyncio.gather(branch("a", 0), branch("b", 3), branch("c", 5))

    before = asyncio.all_tasks()
    result = await replay(Parallel, History.from_json(unfinished))
    assert not result.complete and result.stopped is not None
    assert "still running" in result.stopped
    assert asyncio.all_tasks() == before  # every branch ended before replay() returned


def test_the_replay_step_has_the_workflow_steps_methods_and_signatures() -> None:
    def public(cls: type) -> dict[str, inspect.Signature]:
        names = [n for n in vars(cls) if not n.startswith("_")]
        return {n: inspect.signature(getattr(cls, n)) for n in names}

    assert public(ReplayStep) == public(WorkflowStep)
