"""WorkflowTestEnv as users use it: the contract of issue 11, time control, mocks, spies,
instance controls and crash injection, on a real engine over a real SQLite file."""

from __future__ import annotations

import asyncio
import shutil
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from wf import (
    NonDeterminismError,
    NonRetryableError,
    StepError,
    WorkflowEntrypoint,
    WorkflowEvent,
    WorkflowStep,
)
from wf.errors import ValidationError
from wf.testing import (
    InstanceFailed,
    StatusUnreachable,
    TestKitError,
    WaitTimedOut,
    WorkflowTestEnv,
)

ROOT = Path(__file__).resolve().parents[2]
BODIES: list[str] = []  # the step bodies that really ran, in order


@pytest.fixture(autouse=True)
def _forget_bodies() -> None:
    BODIES.clear()


def ran(name: str, value: Any = None) -> Any:
    BODIES.append(name)
    return value if value is not None else name


@pytest.fixture
def shop(tmp_path: Path) -> Path:
    """A copy of the example shop: its steps write files beside the module."""
    folder = tmp_path / "shop"
    shutil.copytree(ROOT / "examples" / "shop", folder)
    return folder


async def test_the_contract_of_the_issue(shop: Path) -> None:
    async with WorkflowTestEnv(project=shop) as env:
        env.mock_step("checkout", "charge card", result={"paymentId": "p1", "amountCents": 1})
        env.mock_step("checkout", "send receipt", error=ConnectionError("smtp down"), times=2)
        env.mock_event("checkout", "shipped", {"carrier": "DHL"})
        inst = await env.create("checkout", params={"cartId": "cart-1"})
        out = await inst.result(timeout=10)
        assert out["shipped"] is True
        assert await inst.step_result("charge card") == {"paymentId": "p1", "amountCents": 1}
        assert env.calls("checkout", "send receipt") == 3
        assert (await inst.status())["status"] == "complete"
    receipts = (shop / "outbox.jsonl").read_text().splitlines()
    assert len(receipts) == 1  # the real body ran once, after the two mocked failures


class Checkout(WorkflowEntrypoint):
    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        payment = await step.do("charge card", lambda: ran("charge card", {"paymentId": "real"}))
        await step.sleep("cool off", "3 days")
        try:
            shipped = await step.wait_for_event("shipped", type="shipped", timeout="7 days")
        except StepError:
            return {"shipped": False, "payment": payment}
        return {"shipped": True, "payment": payment, "carrier": shipped.payload["carrier"]}


async def test_auto_time_skips_a_three_day_sleep_and_a_week_long_wait() -> None:
    async with WorkflowTestEnv(workflows={"checkout": Checkout}) as env:
        start = env.now()
        inst = await env.create("checkout")
        # Within 10 real seconds: only a clock that skips can get there.
        assert await inst.result(timeout=10) == {"shipped": False, "payment": {"paymentId": "real"}}
        assert env.now() - start >= timedelta(days=10)
        assert BODIES == ["charge card"]


async def test_auto_time_does_not_move_while_the_test_is_not_waiting_on_the_env() -> None:
    async with WorkflowTestEnv(workflows={"checkout": Checkout}) as env:
        env.disable_sleeps("checkout")
        inst = await env.create("checkout")
        await inst.wait_for_status("waiting")
        before = env.now()
        await asyncio.sleep(0.3)  # the test does something else: the wait must not time out
        assert env.now() == before
        await inst.send_event("shipped", {"carrier": "UPS"})
        assert (await inst.result())["carrier"] == "UPS"


class Reminder(WorkflowEntrypoint):
    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        await step.sleep("first", "1 hour")
        await step.do("remind", lambda: ran("remind"))
        await step.sleep("second", "1 hour")
        paid = await step.wait_for_event("paid", type="paid", timeout="1 day")
        return paid.payload


async def test_manual_time_moves_only_on_advance_and_fires_timers_in_order() -> None:
    async with WorkflowTestEnv(workflows={"reminder": Reminder}, time="manual") as env:
        inst = await env.create("reminder")
        await env.settle()
        assert (await inst.status())["status"] == "waiting"
        assert BODIES == []
        await env.advance("3 hours")  # both sleeps end, each at its own time
        assert BODIES == ["remind"]
        details = await inst.details()
        remind = next(s for s in details["steps"] if s["name"] == "remind-1")
        second = next(s for s in details["steps"] if s["name"] == "second-1")
        created = details["created"]
        # The step began when the first sleep ended (1 h in), not when the advance ended.
        assert _hours_between(created, remind["start"]) == pytest.approx(1, abs=0.01)
        assert _hours_between(created, second["end"]) == pytest.approx(2, abs=0.01)
        await env.advance(timedelta(hours=20))
        assert (await inst.status())["status"] == "waiting"
        await inst.send_event("paid", {"amount": 3})
        assert await inst.result() == {"amount": 3}


async def test_manual_time_times_a_wait_out_when_advanced_past_it() -> None:
    async with WorkflowTestEnv(workflows={"reminder": Reminder}, time="manual") as env:
        env.disable_sleeps("reminder")
        inst = await env.create("reminder")
        await inst.wait_for_status("waiting")
        await env.advance("25 hours")
        status = await inst.status()
        assert status["status"] == "errored"
        assert status["error"]["name"] == "WorkflowTimeoutError"


async def test_real_time_runs_on_the_wall_clock() -> None:
    class Short(WorkflowEntrypoint):
        async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
            await step.sleep("nap", 0.2)
            return "rested"

    async with WorkflowTestEnv(workflows={"short": Short}, time="real") as env:
        inst = await env.create("short")
        assert await inst.result() == "rested"
        with pytest.raises(TestKitError, match="advance"):
            await env.advance("1 hour")


class Flaky(WorkflowEntrypoint):
    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        out = []
        for n in range(3):
            out.append(await step.do("fetch", lambda n=n: ran(f"fetch {n}", n)))
        out.append(
            await step.do("store", {"retries": {"limit": 2, "delay": "1 hour"}}, lambda: "kept")
        )
        return out


async def test_a_mock_can_pick_one_occurrence_of_a_repeated_name() -> None:
    async with WorkflowTestEnv(workflows={"flaky": Flaky}) as env:
        env.mock_step("flaky", "fetch", result=42, index=2)
        inst = await env.create("flaky")
        assert await inst.result() == [0, 42, 2, "kept"]
        assert BODIES == ["fetch 0", "fetch 2"]
        assert env.calls("flaky", "fetch") == 3
        assert env.calls("flaky", "fetch", index=2) == 1
        assert await inst.step_result("fetch", index=3) == 2


async def test_a_mock_can_be_limited_to_one_instance() -> None:
    async with WorkflowTestEnv(workflows={"flaky": Flaky}) as env:
        env.mock_step("flaky", "store", result="mocked", instance_id="b")
        a = await env.create("flaky", id="a")
        b = await env.create("flaky", id="b")
        assert (await a.result())[-1] == "kept"
        assert (await b.result())[-1] == "mocked"
        assert env.calls("flaky", "store", instance_id="a") == 1
        assert b.calls("store") == 1


async def test_errors_and_timeouts_answer_attempts_in_order_then_the_body_runs() -> None:
    async with WorkflowTestEnv(workflows={"flaky": Flaky}) as env:
        env.mock_step("flaky", "store", error=ConnectionError("db down"), times=1)
        env.force_step_timeout("flaky", "store", times=1)
        inst = await env.create("flaky")
        assert (await inst.result())[-1] == "kept"
        store = await inst.wait_for_step("store")
        errors = [a.error for a in store.attempts]
        assert errors[0] == {"name": "ConnectionError", "message": "db down"}
        assert errors[1] is not None and errors[1]["name"] == "WorkflowTimeoutError"
        assert errors[2] is None
        assert env.calls("flaky", "store") == 3


async def test_a_mocked_error_without_times_fails_every_attempt() -> None:
    async with WorkflowTestEnv(workflows={"flaky": Flaky}) as env:
        env.mock_step("flaky", "store", error=ConnectionError)
        inst = await env.create("flaky")
        with pytest.raises(InstanceFailed) as failed:
            await inst.result()
        assert failed.value.status == "errored"
        assert failed.value.name == "ConnectionError"
        assert 'do "store-1": failed after 3 attempts' in str(failed.value)
        assert env.calls("flaky", "store") == 3


async def test_a_non_retryable_mocked_error_fails_the_step_at_once() -> None:
    async with WorkflowTestEnv(workflows={"flaky": Flaky}) as env:
        env.mock_step("flaky", "store", error=NonRetryableError("card declined"))
        inst = await env.create("flaky")
        with pytest.raises(InstanceFailed, match="card declined"):
            await inst.result()
        assert env.calls("flaky", "store") == 1


async def test_retry_delays_can_be_disabled_without_moving_the_clock() -> None:
    async with WorkflowTestEnv(workflows={"flaky": Flaky}, time="manual") as env:
        env.disable_retry_delays("flaky")
        env.mock_step("flaky", "store", error=ConnectionError("db down"), times=2)
        inst = await env.create("flaky")
        before = env.now()
        assert (await inst.result())[-1] == "kept"
        assert env.now() == before
        assert env.calls("flaky", "store") == 3


async def test_mocked_results_go_through_the_real_codec_and_limits() -> None:
    async with WorkflowTestEnv(workflows={"flaky": Flaky}) as env:
        env.mock_step("flaky", "store", result={1, 2})  # a set: not JSON
        inst = await env.create("flaky")
        with pytest.raises(InstanceFailed, match="cannot be stored as JSON"):
            await inst.result()
    async with WorkflowTestEnv(workflows={"flaky": Flaky}) as env:
        env.mock_step("flaky", "store", result="x" * (1024 * 1024 + 1))
        inst = await env.create("flaky")
        with pytest.raises(InstanceFailed, match="the limit is 1,048,576 bytes"):
            await inst.result()
        assert env.calls("flaky", "store") == 3  # too large is retried, as a real one is


async def test_a_step_is_mocked_only_once() -> None:
    async with WorkflowTestEnv(workflows={"flaky": Flaky}) as env:
        env.mock_step("flaky", "store", result=1)
        with pytest.raises(TestKitError, match='step "store" of workflow "flaky" is mocked twice'):
            env.mock_step("flaky", "store", result=2)
        with pytest.raises(TestKitError, match="give result= or error="):
            env.mock_step("flaky", "fetch")
        with pytest.raises(TestKitError, match="times must be a whole number from 1"):
            env.mock_step("flaky", "fetch", result=1, times=0)
        with pytest.raises(TestKitError, match="index must be a whole number from 1"):
            env.mock_step("flaky", "fetch", result=1, index=0)
        with pytest.raises(Exception, match='workflow "nope" not found'):
            env.mock_step("nope", "fetch", result=1)
        # A class that cannot be made without arguments: said now, not as the step's error.
        with pytest.raises(TestKitError, match=r"error=UnicodeDecodeError cannot be made"):
            env.mock_step("flaky", "fetch", error=UnicodeDecodeError)
        with pytest.raises(TestKitError, match="index must be a whole number from 1"):
            await env.create("flaky", crash_after=("fetch", 0))
        with pytest.raises(TestKitError, match=r'crash_after takes a step name or \("name", n\)'):
            await env.create("flaky", crash_after=3)  # type: ignore[arg-type]


async def test_strict_mode_fails_a_step_without_a_mock_naming_it() -> None:
    async with WorkflowTestEnv(workflows={"flaky": Flaky}, strict=True) as env:
        env.mock_step("flaky", "fetch", result=0)
        inst = await env.create("flaky")
        with pytest.raises(
            InstanceFailed, match=r'step "store" .* has no mock, and the test env is strict'
        ):
            await inst.result()
        assert BODIES == []


class Approval(WorkflowEntrypoint):
    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        try:
            got = await step.wait_for_event("approval", type="approve", timeout="2 days")
        except StepError as exc:
            return {"approved": False, "why": exc.error_name}
        return {"approved": got.payload["ok"], "type": got.type}


async def test_a_mocked_event_arrives_when_the_wait_begins() -> None:
    async with WorkflowTestEnv(workflows={"approval": Approval}, time="manual") as env:
        env.mock_event("approval", "approve", {"ok": True})
        inst = await env.create("approval")
        assert await inst.result() == {"approved": True, "type": "approve"}
        assert await inst.step_result("approval") == {"ok": True}


async def test_a_mocked_event_that_could_not_be_sent_is_refused_at_once() -> None:
    async with WorkflowTestEnv(workflows={"approval": Approval}) as env:
        with pytest.raises(ValidationError, match="event payload cannot be stored as JSON"):
            env.mock_event("approval", "approve", {1, 2})
        with pytest.raises(ValidationError, match="event type"):
            env.mock_event("approval", "not a type!", {"ok": True})
        inst = await env.create("approval")  # no mocked event: the wait times out
        assert await inst.result() == {"approved": False, "why": "WorkflowTimeoutError"}


async def test_a_mocked_event_arrives_again_after_a_restart() -> None:
    async with WorkflowTestEnv(workflows={"approval": Approval}) as env:
        env.mock_event("approval", "approve", {"ok": True})
        inst = await env.create("approval")
        assert await inst.result() == {"approved": True, "type": "approve"}
        await inst.restart()  # the run starts over, and its consumed event is gone
        assert await inst.result() == {"approved": True, "type": "approve"}
        assert len(await inst.steps()) == 1


async def test_a_wait_can_be_made_to_time_out_at_once() -> None:
    async with WorkflowTestEnv(workflows={"approval": Approval}, time="manual") as env:
        env.mock_event_timeout("approval", "approval")
        env.mock_event("approval", "approve", {"ok": True})  # the timeout wins
        inst = await env.create("approval")
        assert await inst.result() == {"approved": False, "why": "WorkflowTimeoutError"}
        with pytest.raises(StepError, match="WorkflowTimeoutError"):
            await inst.step_result("approval")


async def test_wait_for_status_fails_at_once_when_the_status_cannot_come() -> None:
    async with WorkflowTestEnv(workflows={"flaky": Flaky}) as env:
        env.mock_step("flaky", "store", error=NonRetryableError("no"))
        inst = await env.create("flaky")
        with pytest.raises(StatusUnreachable, match='can no longer be "complete": it is "errored"'):
            await inst.wait_for_status("complete", timeout=60)
        with pytest.raises(TestKitError, match='unknown status "done"'):
            await inst.wait_for_status("done")


async def test_a_wait_that_runs_out_of_real_time_shows_the_timeline() -> None:
    async with WorkflowTestEnv(workflows={"approval": Approval}, time="manual") as env:
        inst = await env.create("approval")
        with pytest.raises(WaitTimedOut, match='wait "approval-1" for "approve": waiting'):
            await inst.result(timeout=0.5)


async def test_pause_resume_terminate_and_restart() -> None:
    async with WorkflowTestEnv(workflows={"approval": Approval}, time="manual") as env:
        inst = await env.create("approval")
        await inst.wait_for_status("waiting")
        await inst.pause()
        await inst.wait_for_status("paused")
        await inst.resume()
        await inst.wait_for_status("waiting")
        await inst.terminate()
        with pytest.raises(InstanceFailed) as failed:
            await inst.result()
        assert failed.value.status == "terminated"
        await inst.restart()
        await inst.wait_for_status("waiting")
        await inst.send_event("approve", {"ok": True})
        assert (await inst.result())["approved"] is True


class Parent(WorkflowEntrypoint):
    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        async def spawn() -> str:
            child = await self.env.CHILD.create(id=f"child-of-{event.instance_id}")
            return str(child.id)

        return await step.do("spawn", spawn)


class Child(WorkflowEntrypoint):
    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        return await step.do("work", lambda: ran("child work"))


async def test_instances_created_through_bindings_are_visible_and_mocked() -> None:
    async with WorkflowTestEnv(workflows={"parent": Parent, "child": Child}) as env:
        env.mock_step("child", "work", result="mocked child")
        parent = await env.create("parent", id="p1")
        assert await parent.result() == "child-of-p1"
        children = await env.instances("child")
        assert [c.id for c in children] == ["child-of-p1"]
        assert await children[0].result() == "mocked child"
        assert BODIES == []


class Notifier(WorkflowEntrypoint):
    """Looks its parent up through a binding in run(), outside a step: the same answer on every
    replay, so deterministic."""

    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        parent = await self.env.PARENT.get(event.payload["parent"])
        return await step.do("tell", lambda: f"told {parent.id}")


async def test_the_replay_at_the_end_can_use_bindings_as_run_does() -> None:
    async with WorkflowTestEnv(
        workflows={"parent": Parent, "child": Child, "notifier": Notifier}
    ) as env:
        parent = await env.create("parent", id="p1")
        await parent.result()
        notifier = await env.create("notifier", params={"parent": "p1"})
        assert await notifier.result() == "told p1"
    # Leaving the env replayed it, binding call included, with no error.


class Order(WorkflowEntrypoint):
    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        charge = await step.do("charge card", lambda: ran("charge card", "charged"))
        await step.sleep("settle", "1 day")
        ship = await step.do("ship", lambda: ran("ship", "shipped"))
        return [charge, ship]


async def test_a_crash_after_a_step_is_recovered_without_running_it_again() -> None:
    async with WorkflowTestEnv(workflows={"order": Order}) as env:
        inst = await env.create("order", crash_after="charge card")
        await env.settle()
        # Killed: no life runs it, and nothing was written after the step.
        assert (await inst.status())["status"] == "running"
        assert [s.name for s in await inst.steps()] == ["charge card"]
        await env.restart_engine()
        assert await inst.result() == ["charged", "shipped"]
        assert env.calls("order", "charge card") == 1
        assert BODIES == ["charge card", "ship"]


async def test_restarting_right_after_create_lets_the_crash_happen_first() -> None:
    # Without settling first, the restart stopped the life before its step; the new engine then
    # crashed it, and nothing recovered it: it stayed "running".
    async with WorkflowTestEnv(workflows={"order": Order}) as env:
        inst = await env.create("order", crash_after="charge card")
        await env.restart_engine()
        assert await inst.result(timeout=10) == ["charged", "shipped"]
        assert env.calls("order", "charge card") == 1


async def test_a_crash_after_a_sleep_is_recovered_too() -> None:
    async with WorkflowTestEnv(workflows={"order": Order}) as env:
        inst = await env.create("order", crash_after="settle")
        with pytest.raises(WaitTimedOut):
            await inst.result(timeout=0.5)
        await env.restart_engine()
        assert await inst.result() == ["charged", "shipped"]
        assert BODIES == ["charge card", "ship"]


async def test_bad_set_up_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(TestKitError, match="a project folder or workflows="):
        WorkflowTestEnv()
    with pytest.raises(TestKitError, match="time must be one of auto, manual, real"):
        WorkflowTestEnv(workflows={"flaky": Flaky}, time="fast")  # type: ignore[arg-type]
    with pytest.raises(TestKitError, match=r"no wf\.toml at"):
        await WorkflowTestEnv(project=tmp_path).start()
    (tmp_path / "wf.toml").write_text(
        'name = "broken"\nmain = "flows.py"\n[[workflows]]\nname = "w"\nbinding = "W"\n'
        'class_name = "W"\n'
    )
    (tmp_path / "flows.py").write_text("import wf\nraise RuntimeError('no database here')\n")
    with pytest.raises(TestKitError, match=r"flows.py:2: RuntimeError: no database here"):
        await WorkflowTestEnv(project=tmp_path).start()
    env = WorkflowTestEnv(workflows={"flaky": Flaky})
    with pytest.raises(TestKitError, match="not started"):
        await env.create("flaky")


def _hours_between(start: str, end: str) -> float:
    from datetime import datetime

    def parse(text: str) -> datetime:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))

    return (parse(end) - parse(start)).total_seconds() / 3600


async def test_the_env_runs_on_postgresql_too(pg_url: str) -> None:
    async with WorkflowTestEnv(
        workflows={"order": Order, "checkout": Checkout}, database=pg_url
    ) as env:
        env.mock_event("checkout", "shipped", {"carrier": "DHL"})
        checkout = await env.create("checkout")
        assert (await checkout.result())["carrier"] == "DHL"
        order = await env.create("order", crash_after="charge card")
        await env.settle()
        await env.restart_engine()
        assert await order.result() == ["charged", "shipped"]
        assert env.calls("order", "charge card") == 1


RUNS_OF_FICKLE: list[int] = []


class Fickle(WorkflowEntrypoint):
    """Takes another path on every run(): not deterministic."""

    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        RUNS_OF_FICKLE.append(1)
        name = "first path" if len(RUNS_OF_FICKLE) == 1 else "second path"
        return await step.do(name, lambda: "done")


async def test_closing_the_env_replays_what_finished_and_catches_non_determinism() -> None:
    RUNS_OF_FICKLE.clear()
    env = WorkflowTestEnv(workflows={"fickle": Fickle, "flaky": Flaky})
    with pytest.raises(NonDeterminismError) as mismatch:
        async with env:
            await (await env.create("flaky")).result()  # deterministic: replays fine
            inst = await env.create("fickle", id="f1")
            assert await inst.result() == "done"
    message = str(mismatch.value)
    assert message.startswith("replay of fickle/f1 at the end of the test:")
    assert '"second path"' in message and '"first path"' in message


async def test_replay_on_exit_can_be_turned_off_and_never_hides_the_test_s_own_failure() -> None:
    RUNS_OF_FICKLE.clear()
    async with WorkflowTestEnv(workflows={"fickle": Fickle}, replay_on_exit=False) as env:
        await (await env.create("fickle")).result()
    RUNS_OF_FICKLE.clear()
    with pytest.raises(KeyError, match="the test's own"):
        async with WorkflowTestEnv(workflows={"fickle": Fickle}) as env:
            await (await env.create("fickle")).result()
            raise KeyError("the test's own")
