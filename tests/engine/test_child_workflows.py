"""step.run_workflow: children created once, parents waiting out of memory, on both stores."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.conftest import Harness, wait_for, wait_status
from wf import NonRetryableError, StepError, WorkflowEntrypoint
from wf.engine import WorkflowSpec
from wf.engine.child_step import default_child_id

GATE: dict[str, asyncio.Event] = {}


class Child(WorkflowEntrypoint):
    async def run(self, event, step):
        if event.payload.get("gate"):
            await GATE[event.payload["gate"]].wait()
        if event.payload.get("fail"):

            def boom() -> None:
                raise NonRetryableError("the child gave up", "ChildProblem")

            await step.do("fail", boom)
        if event.payload.get("sleep"):
            await step.sleep("nap", event.payload["sleep"])
        return {"doubled": event.payload["n"] * 2}


class Parent(WorkflowEntrypoint):
    async def run(self, event, step):
        options: dict[str, Any] = {}
        if "child_id" in event.payload:
            options["id"] = event.payload["child_id"]
        params = event.payload["child"]
        if "pad" in event.payload:  # params past the limit, made here (the parent's fit)
            params = {**params, "pad": "x" * event.payload["pad"]}
        if event.payload.get("unstorable"):
            params = {"n": {1, 2}}
        try:
            got = await step.run_workflow(event.payload.get("workflow", "child"), params, **options)
        except StepError as exc:
            return {"error": [exc.error_name, exc.message]}
        after = await step.do("after", lambda: "after")
        return {"child": got, "after": after}


def specs() -> list[WorkflowSpec]:
    return [WorkflowSpec("parent", Parent, "PARENT"), WorkflowSpec("child", Child, "CHILD")]


async def only_child(engine: Any, parent_id: str) -> dict[str, Any]:
    """The parent's child step's link: {workflow, id}."""
    details = await engine.details("parent", parent_id)
    (step,) = [s for s in details["steps"] if s["type"] == "runWorkflow"]
    return step["child"]  # type: ignore[no-any-return]


async def test_child_output_is_returned_and_linked(harness: Harness) -> None:
    engine = await harness.start(specs())
    parent = await engine.create("parent", "p1", {"child": {"n": 21}})
    status = await wait_status(engine, "parent", "p1")
    assert status["output"] == {"child": {"doubled": 42}, "after": "after"}
    link = await only_child(engine, parent.id)
    assert link["workflow"] == "child" and link["id"].startswith("p1-child-1-")
    child = await engine.details("child", link["id"])
    assert child["status"] == "complete"
    assert child["parent"] == {"workflow": "parent", "id": "p1", "step": "child-1"}
    assert child["trigger"] == {"source": "binding", "via": "parent"}
    step = (await engine.details("parent", "p1"))["steps"][0]
    assert step["name"] == "child-1" and step["success"] is True
    assert step["output"] == {"doubled": 42}


async def test_child_error_is_raised_as_step_error(harness: Harness) -> None:
    engine = await harness.start(specs())
    await engine.create("parent", "p1", {"child": {"n": 1, "fail": True}})
    status = await wait_status(engine, "parent", "p1")
    assert status["output"] == {"error": ["ChildProblem", "the child gave up"]}
    step = (await engine.details("parent", "p1"))["steps"][0]
    assert step["success"] is False
    assert step["error"] == {"name": "ChildProblem", "message": "the child gave up"}


async def test_parent_hibernates_while_the_child_runs(harness: Harness) -> None:
    engine = await harness.start(specs())
    parent = await engine.create("parent", "p1", {"child": {"n": 2, "sleep": 0.6}})
    link = await _link_when_created(engine, "p1")
    child_pk = (await engine.store.get_instance("child", link["id"])).pk  # type: ignore[union-attr]
    parent_pk = (await engine.store.get_instance("parent", "p1")).pk  # type: ignore[union-attr]
    # The parent leaves memory while its child is still running (or sleeping).
    await wait_for(lambda: parent_pk not in engine.scheduler.lives)
    assert (await engine.status("child", link["id"]))["status"] != "complete"
    assert (await parent.status())["status"] == "waiting"
    assert child_pk is not None
    status = await wait_status(engine, "parent", "p1")
    assert status["output"]["child"] == {"doubled": 4}
    assert "hibernated" in harness.kinds("p1")


async def test_terminating_a_parent_terminates_its_children(harness: Harness) -> None:
    class Middle(WorkflowEntrypoint):
        async def run(self, event, step):
            return await step.run_workflow("child", {"n": 1, "sleep": 3600}, id="grandchild")

    class Top(WorkflowEntrypoint):
        async def run(self, event, step):
            return await step.run_workflow("middle", {}, id="middle-1")

    engine = await harness.start(
        [
            WorkflowSpec("top", Top),
            WorkflowSpec("middle", Middle),
            WorkflowSpec("child", Child),
        ]
    )
    top = await engine.create("top", "top-1")
    await wait_for(lambda: engine.store.get_instance("child", "grandchild"))
    await wait_status(engine, "child", "grandchild", "waiting")
    await top.terminate()
    assert (await wait_status(engine, "middle", "middle-1", "terminated"))["status"]
    assert (await wait_status(engine, "child", "grandchild", "terminated"))["status"]
    details = await engine.details("child", "grandchild")
    assert details["steps"][-1] == {
        "type": "termination",
        "trigger": {"source": "binding", "via": "parent"},
    }


async def test_terminated_child_raises_in_its_parent(harness: Harness) -> None:
    engine = await harness.start(specs())
    await engine.create("parent", "p1", {"child": {"n": 1, "sleep": 3600}, "child_id": "kid"})
    await wait_for(lambda: engine.store.get_instance("child", "kid"))
    await wait_status(engine, "child", "kid", "waiting")
    await wait_status(engine, "parent", "p1", "waiting")
    await engine.terminate("child", "kid")
    status = await wait_status(engine, "parent", "p1")
    name, message = status["output"]["error"]
    assert name == "WorkflowTerminated" and '"kid"' in message


async def test_unknown_child_workflow_fails_the_step_for_good(harness: Harness) -> None:
    engine = await harness.start(specs())
    await engine.create("parent", "p1", {"workflow": "nope", "child": {}})
    status = await wait_status(engine, "parent", "p1")
    name, message = status["output"]["error"]
    assert name == "WorkflowNotFound"
    assert "'nope'" in message and "child, parent" in message
    step = (await engine.details("parent", "p1"))["steps"][0]
    assert step["type"] == "runWorkflow" and step["success"] is False


async def test_bad_params_and_taken_ids_fail_the_step(harness: Harness) -> None:
    engine = await harness.start(specs(), limits=_small_payloads())
    await engine.create("parent", "p1", {"child": {"n": 1}, "pad": 2000})
    name, message = (await wait_status(engine, "parent", "p1"))["output"]["error"]
    assert name == "ValidationError" and "the limit is 1024 bytes" in message
    await engine.create("parent", "p3", {"child": {}, "unstorable": True})
    name, message = (await wait_status(engine, "parent", "p3"))["output"]["error"]
    assert name == "ValidationError" and "cannot be stored as JSON" in message
    await engine.create("child", "taken", {"n": 1})
    await engine.create("parent", "p2", {"child": {"n": 1}, "child_id": "taken"})
    name, message = (await wait_status(engine, "parent", "p2"))["output"]["error"]
    assert name == "InstanceAlreadyExists" and '"taken"' in message


def _small_payloads() -> Any:
    from wf.engine.limits import Limits

    return Limits(payload_bytes=1024)


async def test_replay_after_a_restart_of_the_engine_creates_no_second_child(
    harness: Harness,
) -> None:
    GATE["replay"] = asyncio.Event()
    engine = await harness.start(specs())
    await engine.create("parent", "p1", {"child": {"n": 5, "gate": "replay"}})
    link = await _link_when_created(engine, "p1")
    await harness.stop(engine)  # the child never got past its gate; the parent replays next
    GATE["replay"].set()
    engine = await harness.start(specs())
    status = await wait_status(engine, "parent", "p1")
    assert status["output"]["child"] == {"doubled": 10}
    children, total = await engine.list_instances("child")
    assert total == 1 and children[0].id == link["id"]


async def test_a_restarted_parent_creates_a_new_child(harness: Harness) -> None:
    engine = await harness.start(specs())
    await engine.create("parent", "p1", {"child": {"n": 3}})
    await wait_status(engine, "parent", "p1")
    first = await only_child(engine, "p1")
    await engine.restart("parent", "p1")
    assert (await wait_status(engine, "parent", "p1"))["output"]["child"] == {"doubled": 6}
    second = await only_child(engine, "p1")
    assert second["id"] != first["id"]
    assert (await engine.status("child", first["id"]))["status"] == "complete"  # left alone


def test_default_child_ids_fit_the_id_rules() -> None:
    made = default_child_id("order-42", "charge card", 2, 100)
    assert (
        made.startswith("order-42-charge-card-2-")
        and len(made) == len("order-42-charge-card-2-") + 8
    )
    long = default_child_id("p" * 100, "x" * 300, 12, 100)
    assert len(long) == 100 and long.endswith(long[-8:]) and "-12-" in long
    assert default_child_id("a", "—", 1, 100).startswith("a-1-")


async def _link_when_created(engine: Any, parent_id: str) -> dict[str, Any]:
    async def linked() -> dict[str, Any] | None:
        details = await engine.details("parent", parent_id)
        steps = [s for s in details["steps"] if s["type"] == "runWorkflow"]
        return steps[0]["child"] if steps else None

    for _ in range(500):
        found = await linked()
        if found is not None:
            return found
        await asyncio.sleep(0.01)
    pytest.fail("the child was never created")


async def test_the_test_kit_replays_a_parent_from_its_history(harness: Harness) -> None:
    from wf.testing import History, replay

    engine = await harness.start(specs())
    await engine.create("parent", "p1", {"child": {"n": 4}})
    await wait_status(engine, "parent", "p1")
    exported = await engine.history("parent", "p1")
    (child_step,) = [s for s in exported["steps"] if s["kind"] == "child"]
    assert child_step["config"]["workflow"] == "child"
    result = await replay(Parent, History.from_json(exported))
    assert result.complete and result.output == {"child": {"doubled": 8}, "after": "after"}


async def test_a_child_is_announced_as_queued_by_its_parent(harness: Harness) -> None:
    # The queued notice is what /metrics counts as wf_instances_created and what wf dev prints:
    # without it a child workflow's instances ended without ever being created.
    engine = await harness.start(specs())
    await engine.create("parent", "p1", {"child": {"n": 1}})
    await wait_status(engine, "parent", "p1")
    child_id = (await only_child(engine, "p1"))["id"]
    queued = [n for n in harness.notices if n.instance_id == child_id and n.kind == "queued"]
    assert [(n.workflow, n.detail) for n in queued] == [("child", {"trigger": "parent"})]
    assert harness.kinds(child_id).index("queued") < harness.kinds(child_id).index("completed")


async def test_a_child_takes_its_parents_priority(harness: Harness) -> None:
    # Waiting on its child, the parent has the same claim to go first as the child has.
    engine = await harness.start(specs())
    await engine.create("parent", "p1", {"child": {"n": 1}}, priority=7)
    await wait_status(engine, "parent", "p1")
    link = await only_child(engine, "p1")
    rows = harness.query(f"SELECT id, priority FROM instances WHERE id IN ('p1', '{link['id']}')")
    assert sorted(rows) == [("p1", 7), (link["id"], 7)]
