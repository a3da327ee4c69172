"""A write the runner does not await (a sleep's end, an attempt's start) can be lost: on
PostgreSQL a connection dying mid-commit leaves its outcome unknown. The life must not go on to
write its finish (or any later step) as if it had landed: CI once found an instance complete
with its sleep still ``running``."""

from __future__ import annotations

from typing import Any

from tests.conftest import Harness, wait_status
from wf import WorkflowEntrypoint
from wf.engine import WorkflowSpec
from wf.engine.model import StepKind
from wf.engine.store.writer import Pending
from wf.errors import StoreUnavailable


class NapThenFinish(WorkflowEntrypoint):
    async def run(self, event: Any, step: Any) -> Any:
        await step.sleep("nap", 0.05)
        return "rested"


class NapThenWork(WorkflowEntrypoint):
    async def run(self, event: Any, step: Any) -> Any:
        await step.sleep("nap", 0.05)
        return await step.do("work", lambda: "worked")


def lose_the_first_sleep_end(store: Any) -> list[str]:
    """The store's first sleep end is never applied, and its outcome is unknown."""
    end_step = store.end_step
    lost: list[str] = []

    def end_step_losing_one(pk: int, epoch: int, record: Any, state: Any) -> Any:
        if record.kind is StepKind.SLEEP and not lost:
            lost.append(record.name)
            return Pending.failed(StoreUnavailable("the connection closed during a commit"))
        return end_step(pk, epoch, record, state)

    store.end_step = end_step_losing_one
    return lost


def nap_row(harness: Harness, instance_id: str) -> tuple[Any, ...]:
    return harness.query(
        "SELECT s.state, s.ended IS NOT NULL FROM steps s JOIN instances i ON i.pk = s.instance "
        f"WHERE i.id = '{instance_id}' AND s.name = 'nap'"
    )[0]


async def test_a_lost_sleep_end_is_written_again_before_the_finish(harness: Harness) -> None:
    engine = await harness.start([WorkflowSpec("nap", NapThenFinish)])
    lost = lose_the_first_sleep_end(engine.store)
    instance = await engine.create("nap")
    status = await wait_status(engine, "nap", instance.id, timeout=30)
    assert lost == ["nap"]
    assert status["status"] == "complete" and status["output"] == "rested", status
    assert nap_row(harness, instance.id) == ("succeeded", True)


async def test_a_lost_sleep_end_ends_the_life_at_the_next_commit(harness: Harness) -> None:
    engine = await harness.start([WorkflowSpec("nap", NapThenWork)], lease=1.0)
    lost = lose_the_first_sleep_end(engine.store)
    instance = await engine.create("nap")
    status = await wait_status(engine, "nap", instance.id, timeout=30)
    assert lost == ["nap"]
    assert status["status"] == "complete" and status["output"] == "worked", status
    assert nap_row(harness, instance.id) == ("succeeded", True)
