"""A lease renewal answered while a claim round is under way already holds what the round
claimed, with no life for it yet: it must not give that claim back (it did, and a second life
then found the first one's attempt "interrupted")."""

from __future__ import annotations

from typing import Any

from tests.conftest import Harness, wait_status
from wf import WorkflowEntrypoint, WorkflowEvent, WorkflowStep
from wf.engine import WorkflowSpec


class Slow(WorkflowEntrypoint):
    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        return await step.do("work", lambda: "done")


async def test_a_renewal_during_a_claim_round_gives_nothing_back(harness: Harness) -> None:
    engine = await harness.start([WorkflowSpec("slow", Slow)])
    store: Any = engine.store
    scheduler = engine.scheduler
    claim_ready, release = store.claim_ready, store.release
    released: list[int] = []
    renewed_inside: list[bool] = []

    async def claim_then_renew(*args: Any, **kwargs: Any) -> Any:
        claimed = await claim_ready(*args, **kwargs)
        if claimed.claims:  # committed, but no life yet: a renewal lands right now
            await scheduler._renew()
            renewed_inside.append(True)
        return claimed

    def recording_release(pk: int, epoch: int) -> Any:
        released.append(pk)
        return release(pk, epoch)

    store.claim_ready, store.release = claim_then_renew, recording_release
    instance = await engine.create("slow")
    status = await wait_status(engine, "slow", instance.id)
    assert renewed_inside
    assert status["status"] == "complete", status
    assert released == []
    assert harness.query("SELECT count(*) FROM attempts")[0][0] == 1  # ran once, not twice
