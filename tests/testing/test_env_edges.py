"""WorkflowTestEnv at its edges: auto time with bodies running, parallel sleeps, many instances,
instances that talk to each other, manual time on PostgreSQL, crashes after waits and failed
steps, replays of retried and terminated instances."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import pytest

from wf import StepError, WorkflowEntrypoint, WorkflowEvent, WorkflowStep
from wf.testing import InstanceFailed, WaitTimedOut, WorkflowTestEnv

SEEN: list[Any] = []


def seen(value: Any) -> Any:
    SEEN.append(value)
    return value


@pytest.fixture(autouse=True)
def _forget() -> None:
    SEEN.clear()


class BodyWatch(WorkflowEntrypoint):
    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        clock = self.env.CLOCK

        async def body() -> list[float]:
            before = clock()
            await asyncio.sleep(0.2)
            return [before, clock()]

        return await step.do("slow", body)


class Sleeper(WorkflowEntrypoint):
    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        await step.sleep("nap", "1 day")
        return "up"


async def test_clock_does_not_move_while_a_body_runs() -> None:
    envs: list[WorkflowTestEnv] = []
    env = WorkflowTestEnv(
        workflows={"watch": BodyWatch, "sleeper": Sleeper},
        vars={"CLOCK": lambda: envs[0].now().timestamp()},
    )
    envs.append(env)
    async with env:
        s = await env.create("sleeper")
        w = await env.create("watch")
        await asyncio.sleep(0.02)
        assert await s.result() == "up"
        before, after = await w.result()
        assert before == after


class RetryShort(WorkflowEntrypoint):
    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        def flaky() -> str:
            SEEN.append(event.timestamp)
            if len(SEEN) < 3:
                raise ConnectionError("down")
            return "ok"

        out = await step.do(
            "flaky", {"retries": {"limit": 5, "delay": "0.3 s", "backoff": "constant"}}, flaky
        )
        try:
            got = await step.wait_for_event("go", type="go", timeout="1 hour")
        except StepError:
            return [out, "timed out"]
        return [out, got.payload]


async def test_a_short_retry_delay_then_a_mocked_event() -> None:
    async with WorkflowTestEnv(workflows={"r": RetryShort}) as env:
        env.mock_event("r", "go", "went")
        inst = await env.create("r")
        assert await inst.result() == ["ok", "went"]
        assert len(SEEN) == 3


class Parallel(WorkflowEntrypoint):
    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        async def branch(name: str, secs: float) -> float:
            await step.sleep(name, secs)
            return float(await step.do(f"after {name}", lambda: seen(name) and secs))

        return await asyncio.gather(branch("a", 3600), branch("b", 7200), branch("c", 0.5))


async def test_parallel_sleeps_of_different_lengths() -> None:
    async with WorkflowTestEnv(workflows={"p": Parallel}) as env:
        start = env.now()
        inst = await env.create("p")
        assert await inst.result() == [3600.0, 7200.0, 0.5]
        assert SEEN == ["c", "a", "b"]
        assert (env.now() - start).total_seconds() == pytest.approx(7200, abs=5)
        details = await inst.details()
        after_a = next(s for s in details["steps"] if s["name"] == "after a-1")
        from datetime import datetime

        def t(x: str) -> float:
            return datetime.fromisoformat(x.replace("Z", "+00:00")).timestamp()

        assert t(after_a["start"]) - t(details["created"]) == pytest.approx(3600, abs=2)


class Many(WorkflowEntrypoint):
    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        n = event.payload["n"]
        await step.sleep("wait", f"{n} hours")
        return await step.do("done", lambda: n)


async def test_many_instances_at_once() -> None:
    async with WorkflowTestEnv(workflows={"many": Many}) as env:
        insts = [await env.create("many", params={"n": n}) for n in range(1, 26)]
        for n, inst in enumerate(insts, start=1):
            assert await inst.result() == n


async def test_many_instances_wait_in_reverse() -> None:
    async with WorkflowTestEnv(workflows={"many": Many}) as env:
        insts = [await env.create("many", params={"n": n}) for n in range(1, 26)]
        for n, inst in reversed(list(enumerate(insts, start=1))):
            assert await inst.result() == n


class Approval(WorkflowEntrypoint):
    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        try:
            got = await step.wait_for_event("approval", type="approve", timeout="2 days")
        except StepError:
            return "timeout"
        return got.payload


async def test_restart_engine_when_nothing_was_killed() -> None:
    async with WorkflowTestEnv(workflows={"sleeper": Sleeper}) as env:
        inst = await env.create("sleeper")
        await inst.wait_for_status("waiting")
        await env.restart_engine()
        assert await inst.result() == "up"


async def test_wait_for_waiting_on_a_sleep() -> None:
    async with WorkflowTestEnv(workflows={"sleeper": Sleeper}) as env:
        inst = await env.create("sleeper")
        await inst.wait_for_status("waiting")
        assert (await inst.status())["status"] == "waiting"
        assert await inst.result() == "up"


class ShortSleep(WorkflowEntrypoint):
    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        await step.sleep("nap", "0.5 s")
        return "up"


async def test_wait_for_waiting_on_a_short_sleep() -> None:
    async with WorkflowTestEnv(workflows={"s": ShortSleep}) as env:
        inst = await env.create("s")
        await inst.wait_for_status("waiting")
        assert await inst.result() == "up"


async def test_result_of_a_failing_instance() -> None:
    class Bad(WorkflowEntrypoint):
        async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
            raise ValueError("nope")

    async with WorkflowTestEnv(workflows={"bad": Bad}) as env:
        inst = await env.create("bad")
        with pytest.raises(InstanceFailed, match="nope"):
            await inst.result()


class Reminder(WorkflowEntrypoint):
    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        await step.sleep("first", "1 hour")
        await step.do("remind", lambda: seen("remind"))
        await step.sleep("second", "1 hour")
        paid = await step.wait_for_event("paid", type="paid", timeout="1 day")
        return paid.payload


async def test_manual_advance_on_postgresql(pg_url: str) -> None:
    async with WorkflowTestEnv(
        workflows={"reminder": Reminder}, time="manual", database=pg_url
    ) as env:
        inst = await env.create("reminder")
        await env.settle()
        assert (await inst.status())["status"] == "waiting"
        await env.advance("3 hours")
        assert SEEN == ["remind"]
        await env.advance("22 hours")  # the wait began 2 hours in; its day is up at 26
        assert (await inst.status())["status"] == "waiting"
        await env.advance("1 hour")
        assert (await inst.status())["status"] == "errored"


async def test_auto_on_postgresql_many(pg_url: str) -> None:
    async with WorkflowTestEnv(workflows={"many": Many, "p": Parallel}, database=pg_url) as env:
        insts = [await env.create("many", params={"n": n}) for n in range(1, 8)]
        p = await env.create("p")
        for n, inst in enumerate(insts, start=1):
            assert await inst.result() == n
        assert await p.result() == [3600.0, 7200.0, 0.5]


class WaitThenDo(WorkflowEntrypoint):
    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        got = await step.wait_for_event("approval", type="approve", timeout="1 hour")
        return await step.do("after", lambda: seen("after") and got.payload)


async def test_crash_after_a_wait() -> None:
    async with WorkflowTestEnv(workflows={"w": WaitThenDo}) as env:
        env.mock_event("w", "approve", "yes")
        inst = await env.create("w", crash_after="approval")
        await env.settle()
        assert SEEN == []
        assert (await inst.status())["status"] != "complete"
        await env.restart_engine()
        assert await inst.result() == "yes"
        assert SEEN == ["after"]


async def test_crash_after_a_wait_that_timed_out() -> None:
    async with WorkflowTestEnv(workflows={"w": WaitThenDo}) as env:
        inst = await env.create("w", crash_after="approval")
        with pytest.raises(WaitTimedOut):
            await inst.result(timeout=1)
        await env.restart_engine()
        with pytest.raises(InstanceFailed, match="WorkflowTimeoutError"):
            await inst.result()


class FailsForGood(WorkflowEntrypoint):
    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        def bad() -> None:
            SEEN.append("bad")
            raise ValueError("no")

        with contextlib.suppress(StepError):
            await step.do("bad", {"retries": {"limit": 1, "delay": "1 minute"}}, bad)
        return await step.do("after", lambda: "after")


async def test_crash_after_a_step_that_fails_for_good() -> None:
    async with WorkflowTestEnv(workflows={"f": FailsForGood}) as env:
        inst = await env.create("f", crash_after="bad")
        with pytest.raises(WaitTimedOut):
            await inst.result(timeout=0.5)
        assert SEEN == ["bad", "bad"]
        await env.restart_engine()
        assert await inst.result() == "after"
        assert SEEN == ["bad", "bad"]


class SleepUntil(WorkflowEntrypoint):
    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        from datetime import datetime, timezone

        later = datetime.fromtimestamp(event.timestamp.timestamp() + 300 * 86400, timezone.utc)
        await step.sleep_until("later", later)
        return "happy"


async def test_disable_sleeps_with_sleep_until() -> None:
    async with WorkflowTestEnv(workflows={"s": SleepUntil}, time="manual") as env:
        env.disable_sleeps("s")
        inst = await env.create("s")
        assert await inst.result() == "happy"


async def test_disable_some_sleeps_by_name() -> None:
    async with WorkflowTestEnv(workflows={"r": Reminder}, time="manual") as env:
        env.disable_sleeps("r", names=["first"])
        inst = await env.create("r")
        await env.settle()
        assert SEEN == ["remind"]
        assert (await inst.status())["status"] == "waiting"


class Twice(WorkflowEntrypoint):
    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        out = []
        for _ in range(2):
            try:
                got = await step.wait_for_event("approval", type="approve", timeout="1 hour")
                out.append(got.payload)
            except StepError:
                out.append("timeout")
        return out


async def test_mock_event_timeout_with_index() -> None:
    async with WorkflowTestEnv(workflows={"t": Twice}) as env:
        env.mock_event_timeout("t", "approval", index=1)
        env.mock_event("t", "approve", "yes")
        inst = await env.create("t")
        assert await inst.result() == ["timeout", "yes"]


class Boss(WorkflowEntrypoint):
    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        async def hire() -> str:
            w = await self.env.WORKER.create(params={"boss": event.instance_id})
            return str(w.id)

        await step.do("hire", hire)
        got = await step.wait_for_event("report", type="report", timeout="1 day")
        return got.payload


class Worker(WorkflowEntrypoint):
    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        await step.sleep("work", "1 hour")

        async def report() -> str:
            boss = await self.env.BOSS.get(event.payload["boss"])
            await boss.send_event("report", "done")
            return "sent"

        return await step.do("report", report)


async def test_a_child_reports_to_its_parent_before_the_parent_times_out() -> None:
    async with WorkflowTestEnv(workflows={"boss": Boss, "worker": Worker}) as env:
        boss = await env.create("boss")
        assert await boss.result() == "done"


async def test_a_child_reports_to_its_parent_on_postgresql(pg_url: str) -> None:
    async with WorkflowTestEnv(workflows={"boss": Boss, "worker": Worker}, database=pg_url) as env:
        boss = await env.create("boss")
        assert await boss.result() == "done"


class Blocking(WorkflowEntrypoint):
    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        async def body() -> str:
            SEEN.append("body")
            if len(SEEN) == 1:
                await asyncio.sleep(30)
            return "ok"

        first = await step.do("block", body)
        try:
            await step.do("fail", {"retries": {"limit": 2, "delay": "1 minute"}}, lambda: 1 / 0)
        except StepError as exc:
            return [first, exc.attempts]
        return [first]


async def test_uncounted_attempt_then_replay() -> None:
    from wf.testing import replay

    async with WorkflowTestEnv(workflows={"b": Blocking}) as env:
        inst = await env.create("b")
        while not SEEN:
            await asyncio.sleep(0.01)
        await env.restart_engine()
        assert await inst.result() == ["ok", 3]
        hist = await inst.history()
        block = hist.steps[0]
        assert [a.uncounted for a in block.attempts] == [True, False]
        result = await replay(Blocking, hist)
        assert result.complete and result.error is None and result.output == ["ok", 3]


class Waits(WorkflowEntrypoint):
    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        await step.do("one", lambda: 1)
        await step.wait_for_event("never", type="x", timeout="1 day")
        return "x"


async def test_terminated_replays() -> None:
    from wf.testing import replay

    async with WorkflowTestEnv(workflows={"w": Waits}, time="manual") as env:
        inst = await env.create("w")
        await inst.wait_for_status("waiting")
        await inst.terminate()
        with pytest.raises(InstanceFailed):
            await inst.result()
        result = await replay(Waits, await inst.history())
        assert not result.complete


async def test_more_instances_than_slots(tmp_path: Path) -> None:
    (tmp_path / "wf.toml").write_text(
        'name = "many"\nmain = "flows.py"\n[engine]\nconcurrency = 3\n'
        '[[workflows]]\nname = "many"\nbinding = "MANY"\nclass_name = "Many"\n'
    )
    (tmp_path / "flows.py").write_text(
        "from wf import WorkflowEntrypoint\n\n\nclass Many(WorkflowEntrypoint):\n"
        "    async def run(self, event, step):\n"
        "        await step.sleep('wait', f\"{event.payload['n']} hours\")\n"
        "        return await step.do('done', lambda: event.payload['n'])\n"
    )
    async with WorkflowTestEnv(project=tmp_path) as env:
        insts = [await env.create("many", params={"n": n % 5 + 1}) for n in range(20)]
        for n, inst in enumerate(insts):
            assert await inst.result() == n % 5 + 1


async def test_times_mocks_answer_a_restarted_instance_afresh() -> None:
    class Once(WorkflowEntrypoint):
        async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
            return await step.do("call", {"retries": {"limit": 0}}, lambda: "real")

    async with WorkflowTestEnv(workflows={"once": Once}) as env:
        env.mock_step("once", "call", error=ConnectionError("down"), times=1)
        inst = await env.create("once")
        with pytest.raises(InstanceFailed, match="down"):
            await inst.result()
        await inst.restart()
        with pytest.raises(InstanceFailed, match="down"):  # the new run's first attempt again
            await inst.result()
        assert env.calls("once", "call") == 2


async def test_restart_from_a_step_and_delete_through_the_handle() -> None:
    class Two(WorkflowEntrypoint):
        async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
            first = await step.do("first", lambda: event.payload["n"])
            second = await step.do("second", lambda: event.payload["n"] * 10)
            return [first, second]

    async with WorkflowTestEnv(workflows={"two": Two}) as env:
        inst = await env.create("two", {"n": 1})
        assert await inst.result() == [1, 10]
        await inst.restart(from_step={"name": "second"}, params={"n": 2})
        assert await inst.result() == [1, 20]  # "first" stayed cached
        assert env.calls("two", "first") == 1 and env.calls("two", "second") == 2
        await inst.delete()
        assert await env.instances("two") == []
