"""Creating and finding instances: ids, params, batches, bindings, env, status shapes."""

from __future__ import annotations

import asyncio
import threading

import pytest

from tests.conftest import Harness, wait_status
from wf import WorkflowEntrypoint
from wf.engine import WorkflowSpec
from wf.errors import InstanceAlreadyExists, InstanceNotFound, ValidationError, WorkflowNotFound


class Echo(WorkflowEntrypoint):
    async def run(self, event, step):
        return {
            "payload": event.payload,
            "id": event.instance_id,
            "workflow": event.workflow_name,
            "aware": event.timestamp.tzinfo is not None,
        }


SPECS = [WorkflowSpec("echo", Echo, "ECHO")]


async def test_create_with_and_without_id(harness: Harness) -> None:
    engine = await harness.start(SPECS)
    fresh = await engine.create("echo", params={"a": 1})
    assert len(fresh.id) == 36  # a uuid4
    named = await engine.create("echo", "order-42")
    assert named.id == "order-42"
    out = (await wait_status(engine, "echo", "order-42"))["output"]
    assert out == {"payload": {}, "id": "order-42", "workflow": "echo", "aware": True}
    assert (await wait_status(engine, "echo", fresh.id))["output"]["payload"] == {"a": 1}


async def test_a_fresh_instance_is_queued(harness: Harness) -> None:
    engine = await harness.start(SPECS, concurrency=1)
    engine.slots.reserve(1)  # hold the only slot: nothing can start
    inst = await engine.create("echo")
    assert await inst.status() == {
        "status": "queued",
        "error": None,
        "output": None,
        "rollback": None,
    }
    engine.slots.release()
    await wait_status(engine, "echo", inst.id)


async def test_duplicate_id_is_refused(harness: Harness) -> None:
    engine = await harness.start(SPECS)
    await engine.create("echo", "dup")
    with pytest.raises(InstanceAlreadyExists, match='"dup" already exists'):
        await engine.create("echo", "dup")


@pytest.mark.parametrize(
    "bad_id", ["", "-leading-dash", "has space", "dots.are.out", "x" * 101, "slash/no"]
)
async def test_bad_ids_are_refused(harness: Harness, bad_id: str) -> None:
    engine = await harness.start(SPECS)
    with pytest.raises(ValidationError, match="instance id"):
        await engine.create("echo", bad_id)
    _rows, total = await engine.list_instances("echo")
    assert total == 0


async def test_bad_params_are_refused_and_nothing_is_written(harness: Harness) -> None:
    engine = await harness.start(SPECS)
    with pytest.raises(ValidationError, match="params"):
        await engine.create("echo", params={"s": {1, 2}})
    with pytest.raises(ValidationError, match="the limit is 1048576 bytes"):
        await engine.create("echo", params="x" * (1024 * 1024))
    assert (await engine.list_instances("echo"))[1] == 0


async def test_unknown_workflow_names_the_known_ones(harness: Harness) -> None:
    engine = await harness.start(SPECS)
    with pytest.raises(WorkflowNotFound, match="known workflows: echo"):
        await engine.create("ehco")


async def test_get_unknown_instance(harness: Harness) -> None:
    engine = await harness.start(SPECS)
    with pytest.raises(InstanceNotFound, match='"nope" not found in workflow "echo"'):
        await engine.get("echo", "nope")


async def test_batch_skips_existing_ids_and_validates_everything_first(harness: Harness) -> None:
    engine = await harness.start(SPECS)
    await engine.create("echo", "a")
    created = await engine.create_batch(
        "echo", [{"id": "a"}, {"id": "b", "params": 2}, {"id": "b"}, {"params": 3}]
    )
    assert [i.id for i in created][:1] == ["b"] and len(created) == 2
    with pytest.raises(ValidationError, match=r"batch\[1\]"):
        await engine.create_batch("echo", [{"id": "c"}, {"id": "bad id"}])
    with pytest.raises(ValidationError, match="at most 100"):
        await engine.create_batch("echo", [{} for _ in range(101)])
    with pytest.raises(ValidationError, match="at least one"):
        await engine.create_batch("echo", [])
    assert (await engine.list_instances("echo"))[1] == 3  # a, b and one generated id; no c


async def test_bindings_work_inside_run_and_record_their_trigger(harness: Harness) -> None:
    class Parent(WorkflowEntrypoint):
        async def run(self, event, step):
            child_id = await step.do(
                "start child",
                lambda: self._start_child(event.instance_id),
            )
            return {"child": child_id, "greeting": self.env.GREETING}

        async def _start_child(self, parent_id: str) -> str:
            child = await self.env.ECHO.create(id=f"child-of-{parent_id}", params={"p": 1})
            return str(child.id)

    engine = await harness.start(
        [*SPECS, WorkflowSpec("parent", Parent, "PARENT")], vars={"GREETING": "hi"}
    )
    parent = await engine.env.PARENT.create(id="p1")
    out = (await wait_status(engine, "parent", "p1"))["output"]
    assert out == {"child": "child-of-p1", "greeting": "hi"}
    await wait_status(engine, "echo", "child-of-p1")
    child = await engine.details("echo", "child-of-p1")
    assert child["trigger"] == {"source": "binding"}
    assert (await engine.details("parent", parent.id))["trigger"] == {"source": "binding"}
    api = await engine.create("echo", "from-api")
    assert (await engine.details("echo", api.id))["trigger"] == {"source": "api"}
    with pytest.raises(AttributeError, match="has ECHO, GREETING, PARENT"):
        _ = engine.env.NOPE


async def test_instances_record_the_version_they_were_created_under(harness: Harness) -> None:
    engine = await harness.start(SPECS)
    inst = await engine.create("echo")
    details = await engine.details("echo", inst.id)
    assert details["versionId"] == engine.version_id
    assert len(engine.version_id) == 36


async def test_listing_is_newest_first_and_filters_by_status(harness: Harness) -> None:
    engine = await harness.start(SPECS)
    for i in range(5):
        await engine.create("echo", f"i{i}")
    for i in range(5):
        await wait_status(engine, "echo", f"i{i}")
    rows, total = await engine.list_instances("echo", per_page=2)
    assert total == 5 and [r.id for r in rows] == ["i4", "i3"]
    rows, _ = await engine.list_instances("echo", per_page=2, page=3)
    assert [r.id for r in rows] == ["i0"]
    rows, _ = await engine.list_instances("echo", newest_first=False, per_page=2)
    assert [r.id for r in rows] == ["i0", "i1"]
    assert (await engine.list_instances("echo", status="complete"))[1] == 5
    assert (await engine.list_instances("echo", status="errored"))[1] == 0
    with pytest.raises(ValidationError, match="unknown status"):
        await engine.list_instances("echo", status="done")


async def test_run_returning_an_unserialisable_value_errors(harness: Harness) -> None:
    class Bad(WorkflowEntrypoint):
        async def run(self, event, step):
            return object()

    engine = await harness.start([WorkflowSpec("bad", Bad)])
    inst = await engine.create("bad")
    status = await wait_status(engine, "bad", inst.id)
    assert status["status"] == "errored"
    assert "object" in status["error"]["message"]


async def test_an_exception_in_run_errors_the_instance(harness: Harness) -> None:
    class Boom(WorkflowEntrypoint):
        async def run(self, event, step):
            raise KeyError("cartId")

    engine = await harness.start([WorkflowSpec("boom", Boom)])
    inst = await engine.create("boom")
    status = await wait_status(engine, "boom", inst.id)
    assert status == {
        "status": "errored",
        "error": {"name": "KeyError", "message": "'cartId'"},
        "output": None,
        "rollback": None,
    }


async def test_bindings_work_from_another_thread_and_event_loop(harness: Harness) -> None:
    engine = await harness.start(SPECS)
    results: list[object] = []

    def other_program() -> None:
        async def use_binding() -> None:
            inst = await engine.env.ECHO.create(id="from-thread", params={"t": 1})
            results.append(inst.id)

        asyncio.run(use_binding())

    thread = threading.Thread(target=other_program)
    thread.start()
    await asyncio.to_thread(thread.join, 10)
    assert results == ["from-thread"]
    assert (await wait_status(engine, "echo", "from-thread"))["output"]["payload"] == {"t": 1}


async def test_an_engine_can_start_again_after_stopping(harness: Harness) -> None:
    engine = await harness.start(SPECS)
    await engine.create("echo", "before")
    await engine.stop()
    await engine.start()
    await engine.create("echo", "after")
    assert (await wait_status(engine, "echo", "after"))["status"] == "complete"


async def test_absurd_pages_are_refused(harness: Harness) -> None:
    engine = await harness.start(SPECS)
    with pytest.raises(ValidationError, match="page must be"):
        await engine.list_instances("echo", page=10**24)
