"""Issue 12, items 1, 5, 6 and 8 through the engine, on both stores: restart from a step (with
new params), delete and delete_batch, retention per instance and per workflow, and create_batch's
object form."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from tests.conftest import Harness, wait_for, wait_status
from wf import WorkflowEntrypoint
from wf.engine import ManualClock, WorkflowSpec
from wf.engine.retention import Retention
from wf.errors import CannotRestart, InstanceAlreadyExists, InstanceNotFound, ValidationError


def spec(cls: type[WorkflowEntrypoint], **kw: Any) -> list[WorkflowSpec]:
    return [WorkflowSpec("wf", cls, "WF", **kw)]


def noting(ran: list[str], name: str, value: Any) -> Any:
    ran.append(name)
    return value


def counting_flow(ran: list[str]) -> type[WorkflowEntrypoint]:
    class Flow(WorkflowEntrypoint):
        async def run(self, event, step):
            a = await step.do("a", lambda: noting(ran, "a", "A"))
            b = await step.do("b", lambda: noting(ran, "b", event.payload.get("b", "B")))
            c = await step.do("c", lambda: noting(ran, "c", "C"))
            return [a, b, c]

    return Flow


async def test_restart_from_a_step_keeps_earlier_steps_and_runs_the_rest_again(
    harness: Harness,
) -> None:
    ran: list[str] = []
    engine = await harness.start(spec(counting_flow(ran)))
    inst = await engine.create("wf", "one", {"b": "first"})
    assert (await wait_status(engine, "wf", "one"))["output"] == ["A", "first", "C"]
    ran.clear()
    await inst.restart(from_step={"name": "b"})
    assert (await wait_status(engine, "wf", "one"))["output"] == ["A", "first", "C"]
    assert ran == ["b", "c"]  # "a" stayed cached
    details = await engine.details("wf", "one")
    assert [s["name"] for s in details["steps"]] == ["a-1", "b-1", "c-1"]
    assert details["restarted"]["from"] == {"name": "b", "count": 1, "type": "do"}
    assert details["restarted"]["new_params"] is False
    assert details["params"] == {"b": "first"}


async def test_restart_with_new_params_is_recorded_and_used(harness: Harness) -> None:
    ran: list[str] = []
    engine = await harness.start(spec(counting_flow(ran)))
    inst = await engine.create("wf", "one", {"b": "first"})
    await wait_status(engine, "wf", "one")
    await inst.restart(from_step={"name": "b", "count": 1, "type": "do"}, params={"b": "second"})
    assert (await wait_status(engine, "wf", "one"))["output"] == ["A", "second", "C"]
    details = await engine.details("wf", "one")
    assert details["params"] == {"b": "second"}
    assert details["restarted"]["new_params"] is True
    history = await engine.history("wf", "one")
    assert history["restarted"]["from"]["name"] == "b"
    # A plain restart with new params runs every step again.
    ran.clear()
    await inst.restart(params={"b": "third"})
    assert (await wait_status(engine, "wf", "one"))["output"] == ["A", "third", "C"]
    assert ran == ["a", "b", "c"]
    assert (await engine.details("wf", "one"))["restarted"]["from"] is None


async def test_restart_from_an_unknown_step_changes_nothing(harness: Harness) -> None:
    ran: list[str] = []
    engine = await harness.start(spec(counting_flow(ran)))
    inst = await engine.create("wf", "one")
    await wait_status(engine, "wf", "one")
    before = await engine.history("wf", "one")
    for wrong in ({"name": "x"}, {"name": "b", "count": 2}, {"name": "b", "type": "sleep"}):
        with pytest.raises(CannotRestart) as caught:
            await inst.restart(from_step=wrong)
        name = wrong["name"]
        assert str(caught.value) == (
            f'(instance.cannot_restart) Step "{name}" not found in execution history'
        )
    assert await engine.history("wf", "one") == before
    with pytest.raises(ValidationError, match="type must be one of do, sleep, waitForEvent"):
        await inst.restart(from_step={"name": "b", "type": "step"})
    with pytest.raises(ValidationError, match="count must be a whole number"):
        await inst.restart(from_step={"name": "b", "count": 0})


async def test_restart_from_the_nth_call_and_from_a_sleep(
    harness: Harness, clock: ManualClock
) -> None:
    ran: list[str] = []

    class Flow(WorkflowEntrypoint):
        async def run(self, event, step):
            out = []
            for i in range(3):
                out.append(await step.do("poll", lambda i=i: noting(ran, f"poll{i}", i)))
            await step.sleep("rest", "1 second")
            out.append(await step.do("after", lambda: noting(ran, "after", "done")))
            return out

    engine = await harness.start(spec(Flow), clock=clock)
    inst = await engine.create("wf", "n")
    await wait_status(engine, "wf", "n", "waiting")
    clock.advance(2)
    await wait_status(engine, "wf", "n")
    ran.clear()
    await inst.restart(from_step={"name": "poll", "count": 2})
    await wait_status(engine, "wf", "n", "waiting")  # the sleep started again
    assert ran == ["poll1", "poll2"]
    clock.advance(2)
    assert (await wait_status(engine, "wf", "n"))["output"] == [0, 1, 2, "done"]
    ran.clear()
    await inst.restart(from_step={"name": "rest", "type": "sleep"})
    await wait_status(engine, "wf", "n", "waiting")
    assert ran == []
    clock.advance(2)
    await wait_status(engine, "wf", "n")
    assert ran == ["after"]


async def test_restart_from_clears_buffered_events(harness: Harness) -> None:
    class Flow(WorkflowEntrypoint):
        async def run(self, event, step):
            await step.do("first", lambda: 1)
            got = await step.wait_for_event("approval", type="approve", timeout="1 hour")
            return got.payload

    engine = await harness.start(spec(Flow))
    inst = await engine.create("wf", "e")
    await wait_status(engine, "wf", "e", "waiting")
    await inst.send_event("approve", {"n": 1})
    assert (await wait_status(engine, "wf", "e"))["output"] == {"n": 1}
    await inst.restart(from_step={"name": "approval", "type": "waitForEvent"})
    await wait_status(engine, "wf", "e", "waiting")  # the consumed event went with its wait
    await inst.send_event("approve", {"n": 2})
    assert (await wait_status(engine, "wf", "e"))["output"] == {"n": 2}
    history = await engine.history("wf", "e")
    assert [e["payload"] for e in history["events"]] == [{"n": 2}]


async def test_delete_stops_a_running_instance_and_frees_its_id(harness: Harness) -> None:
    release = threading.Event()
    after: list[str] = []

    class Flow(WorkflowEntrypoint):
        async def run(self, event, step):
            await step.do("slow", lambda: release.wait(10))
            await step.do("after", lambda: after.append("after"))
            return "done"

    engine = await harness.start(spec(Flow))
    inst = await engine.create("wf", "d")
    await wait_status(engine, "wf", "d", "running")
    await wait_for(lambda: engine.scheduler.lives)
    await inst.delete()
    with pytest.raises(InstanceNotFound):
        await engine.status("wf", "d")
    await wait_for(lambda: not engine.scheduler.lives)
    release.set()
    assert after == []
    for table in ("instances", "steps", "attempts", "events"):
        column = "pk" if table == "instances" else "instance"
        assert harness.query(f"SELECT count(*) FROM {table} WHERE {column} > 0")[0][0] == 0
    again = await engine.create("wf", "d")  # the id is free again
    assert (await wait_status(engine, "wf", again.id))["status"] == "complete"
    assert after == ["after"]
    with pytest.raises(InstanceNotFound):
        await engine.delete("wf", "nope")


async def test_an_instance_deleting_itself_stops_there(harness: Harness) -> None:
    reached: list[str] = []

    class Flow(WorkflowEntrypoint):
        async def run(self, event, step):
            me = await self.env.WF.get(event.instance_id)
            await step.do("before", lambda: reached.append("before"))
            await me.delete()
            reached.append("after delete")
            await step.do("after", lambda: reached.append("after step"))

    engine = await harness.start(spec(Flow))
    await engine.create("wf", "self")
    await wait_for(lambda: harness.query("SELECT count(*) FROM instances")[0][0] == 0)
    await wait_for(lambda: not engine.scheduler.lives)
    assert "before" in reached and "after step" not in reached


async def test_delete_batch_answers_per_id(harness: Harness) -> None:
    class Flow(WorkflowEntrypoint):
        async def run(self, event, step):
            return 1

    engine = await harness.start(spec(Flow))
    binding = engine.env.WF
    for i in ("a", "b"):
        await binding.create(i)
    result = await binding.delete_batch(["a", "missing", "a", "b"])
    assert result["deleted"] == [{"id": "a"}, {"id": "a"}, {"id": "b"}]
    assert [(e["id"], e["code"]) for e in result["errors"]] == [("missing", 10400)]
    assert (await engine.list_instances("wf"))[1] == 0
    with pytest.raises(ValidationError, match="ids\\[1\\]"):
        await binding.delete_batch(["ok", "bad id"])
    with pytest.raises(ValidationError, match="from 1 to 100"):
        await binding.delete_batch([])


async def test_create_batch_object_forms(harness: Harness) -> None:
    class Flow(WorkflowEntrypoint):
        async def run(self, event, step):
            return event.payload

    engine = await harness.start(spec(Flow))
    binding = engine.env.WF
    result = await binding.create_batch({"count": 3, "params": {"x": 1}})
    assert len(result["created"]) == 3 and result["errors"] == []
    for created in result["created"]:
        assert (await wait_status(engine, "wf", created.id))["output"] == {"x": 1}
    await binding.create("taken")
    result = await binding.create_batch(
        {"instances": [{"id": "n1"}, {"id": "taken"}, {"id": "n1"}, {"id": "n2", "params": 2}]}
    )
    assert [i.id for i in result["created"]] == ["n1", "n2"]
    assert [(e["index"], e["id"], e["code"]) for e in result["errors"]] == [
        (1, "taken", 10405),
        (2, "n1", 10405),
    ]
    # The list form still skips existing ids silently.
    assert [i.id for i in await binding.create_batch([{"id": "n1"}, {"id": "n3"}])] == ["n3"]
    for bad, match in (
        ({"count": 0}, "from 1 to 100"),
        ({"count": 101}, "from 1 to 100"),
        ({"instances": [{"id": "bad id"}]}, "instances\\[0\\]"),
        ({"count": 1, "instances": []}, "instances goes alone"),
        ({"cnt": 1}, "must be"),
    ):
        with pytest.raises(ValidationError, match=match):
            await binding.create_batch(bad)


async def test_retention_per_instance_and_per_workflow_drives_the_purge(
    harness: Harness, clock: ManualClock
) -> None:
    class Flow(WorkflowEntrypoint):
        async def run(self, event, step):
            if event.payload == "fail":
                raise ValueError("no")
            return "ok"

    default = Retention(success=3600.0)  # the workflow keeps successes for an hour
    engine = await harness.start(spec(Flow, default_retention=default), clock=clock)
    binding = engine.env.WF
    await binding.create("own-short", retention={"success_retention": "1 minute"})
    await binding.create("wf-default")
    await binding.create("own-long", retention={"success_retention": "60 days"})
    await binding.create("failed", "fail", retention={"error_retention": "2 minutes"})
    await binding.create("failed-default", "fail")  # the engine's 7 days
    for i in ("own-short", "wf-default", "own-long", "failed", "failed-default"):
        await wait_status(engine, "wf", i)
    details = await engine.details("wf", "own-short")
    assert details["retention"] == {"success_retention": "1 minute", "error_retention": None}
    with pytest.raises(InstanceAlreadyExists):  # still within retention: the id is taken
        await binding.create("own-short")
    await harness.stop(engine)

    def ids() -> list[str]:
        return sorted(r[0] for r in harness.query("SELECT id FROM instances"))

    async def purged_after(seconds: float, left: list[str]) -> None:
        clock.advance(seconds)
        engine = await harness.start(spec(Flow, default_retention=default), clock=clock)
        try:  # the purge runs as the engine starts
            await wait_for(lambda: ids() == left)
        except AssertionError:
            raise AssertionError(f"after {seconds} s more, left {ids()}, not {left}") from None
        finally:
            await harness.stop(engine)

    await purged_after(90, ["failed", "failed-default", "own-long", "wf-default"])
    await purged_after(60, ["failed-default", "own-long", "wf-default"])
    await purged_after(3600, ["failed-default", "own-long"])
    await purged_after(7 * 86400, ["own-long"])
    await purged_after(60 * 86400, [])
    engine = await harness.start(spec(Flow), clock=clock)
    await engine.create("wf", "own-short")  # purged: the id can be used again
    with pytest.raises(ValidationError, match="success_retention"):
        await engine.create("wf", "x", retention={"success_retention": "soon"})
    with pytest.raises(ValidationError, match="unknown key"):
        await engine.create("wf", "x", retention={"keep": "1 day"})
