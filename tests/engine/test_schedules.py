"""Cron schedules through the engine, on SQLite and PostgreSQL: each firing creates one instance
(trigger cron, id "<cron>-<ms>", event.schedule), never twice across restarts or engines sharing
a database, and firings missed while nothing ran are made up once."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from typing import Any

import pytest

from tests.conftest import Harness, wait_for, wait_status
from wf import WorkflowEntrypoint, WorkflowEvent, WorkflowStep
from wf.engine import Engine, ManualClock, WorkflowSpec
from wf.engine.retention import Retention
from wf.errors import ValidationError

QUARTER = "*/15 * * * *"
START = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC: the next quarter is 22:15:00
FIRST_TICK = 1_700_000_100.0


class Report(WorkflowEntrypoint):
    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        schedule = event.schedule
        assert schedule is not None
        return await step.do(
            "report",
            lambda: {
                "cron": schedule.cron,
                "scheduled_time": schedule.scheduled_time.isoformat(),
                "scheduledTime": schedule["scheduledTime"],
                "payload": event.payload,
            },
        )


def spec(*schedules: str) -> WorkflowSpec:
    return WorkflowSpec("report", Report, "REPORT", schedules=schedules)


async def ids(engine: Engine) -> list[str]:
    rows, _ = await engine.list_instances("report", per_page=1000, newest_first=False)
    return [row.id for row in rows]


async def settle(engine: Engine) -> None:
    """Let the firing loop finish what the clock just woke."""
    firings = engine.firings
    assert firings is not None
    for _ in range(500):
        await asyncio.sleep(0.005)
        if firings.idle:
            await asyncio.sleep(0.01)  # and still so a moment later: not between two rounds
            if firings.idle:
                return
    raise AssertionError("the firing loop stayed busy")


async def advance_to(clock: ManualClock, engine: Engine, when: float) -> None:
    """Move the clock timer by timer up to ``when``, as the test kit does."""
    while True:
        await settle(engine)
        wake = clock.next_wake
        if wake is None or wake > when:
            break
        clock.set(wake)
    clock.set(when)
    await settle(engine)


async def test_each_firing_creates_one_instance_with_its_schedule(harness: Harness) -> None:
    clock = ManualClock(START)
    engine = await harness.start([spec(QUARTER)], clock=clock)
    await settle(engine)
    assert await ids(engine) == []  # a new schedule fires from now on, not for the past
    await advance_to(clock, engine, START + 3600)
    expected = [f"{QUARTER}-{round((FIRST_TICK + 900 * n) * 1000)}" for n in range(4)]
    assert await ids(engine) == expected
    status = await wait_status(engine, "report", expected[0])
    assert status["output"] == {
        "cron": QUARTER,
        "scheduled_time": "2023-11-14T22:15:00+00:00",
        "scheduledTime": 1_700_000_100_000,
        "payload": {},
    }
    row = await engine.row("report", expected[0])
    assert row.trigger == "cron"
    assert row.created == FIRST_TICK  # created when it fired, on the engine's clock
    queued = [n for n in harness.notices if n.kind == "queued"]
    assert [n.detail["next"] for n in queued[:2]] == [FIRST_TICK + 900, FIRST_TICK + 1800]
    assert {n.detail["trigger"] for n in queued} == {"cron"}


async def test_an_instance_not_created_by_a_schedule_has_no_schedule(harness: Harness) -> None:
    class Plain(WorkflowEntrypoint):
        async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
            return {"schedule": event.schedule}

    engine = await harness.start([WorkflowSpec("plain", Plain)])
    assert engine.firings is None  # nothing scheduled: no loop
    await engine.create("plain", "p1")
    status = await wait_status(engine, "plain", "p1")
    assert status["output"] == {"schedule": None}


async def test_a_restart_neither_doubles_nor_loses_a_firing(harness: Harness) -> None:
    clock = ManualClock(START)
    engine = await harness.start([spec(QUARTER)], clock=clock)
    await advance_to(clock, engine, FIRST_TICK)
    assert len(await ids(engine)) == 1
    for _ in range(3):  # a reload of wf dev, again and again, between two firings
        await harness.stop(engine)
        engine = await harness.start([spec(QUARTER)], clock=clock)
        await settle(engine)
    assert len(await ids(engine)) == 1
    await advance_to(clock, engine, FIRST_TICK + 900)
    assert len(await ids(engine)) == 2


async def test_missed_firings_are_made_up_once_as_the_latest(harness: Harness) -> None:
    clock = ManualClock(START)
    engine = await harness.start([spec(QUARTER)], clock=clock)
    await advance_to(clock, engine, FIRST_TICK)
    await harness.stop(engine)
    clock.set(FIRST_TICK + 3 * 3600 + 60)  # nothing ran for three hours: 12 firings missed
    engine = await harness.start([spec(QUARTER)], clock=clock)
    await settle(engine)
    made_up = f"{QUARTER}-{round((FIRST_TICK + 3 * 3600) * 1000)}"
    assert await ids(engine) == [f"{QUARTER}-{round(FIRST_TICK * 1000)}", made_up]
    status = await wait_status(engine, "report", made_up)
    assert status["output"]["scheduled_time"] == "2023-11-15T01:15:00+00:00"
    await advance_to(clock, engine, FIRST_TICK + 3 * 3600 + 900)
    assert len(await ids(engine)) == 3  # and then on time again


@pytest.mark.parametrize("harness", ["postgres"], indirect=True)  # SQLite: one process a file
async def test_two_engines_on_one_database_fire_once(harness: Harness) -> None:
    clock = ManualClock(START)
    one = await harness.start([spec(QUARTER, "0 * * * *")], clock=clock)
    two = await harness.start([spec(QUARTER, "0 * * * *")], clock=clock)
    for step in range(8):
        clock.set(FIRST_TICK + 900 * step)
        await settle(one)
        await settle(two)
    fired = await ids(one)
    assert len(fired) == len(set(fired)) == 8 + 2  # 8 quarters, 2 full hours
    assert sum(1 for n in harness.notices if n.kind == "queued") == 10


async def test_firing_times_are_utc_and_names_work(harness: Harness) -> None:
    # Friday 2023-11-17 08:59:00 UTC: "0 9 * * MON-FRI" fires a minute later, then on Monday.
    friday = datetime(2023, 11, 17, 8, 59, tzinfo=timezone.utc).timestamp()
    clock = ManualClock(friday)
    engine = await harness.start([spec("0 9 * * MON-FRI")], clock=clock)
    await advance_to(clock, engine, friday + 4 * 86400)
    times = [int(i.rsplit("-", 1)[1]) / 1000 for i in await ids(engine)]
    assert [datetime.fromtimestamp(t, timezone.utc).strftime("%a %H:%M") for t in times] == [
        "Fri 09:00",
        "Mon 09:00",
    ]


async def test_the_firing_record_is_in_the_store(harness: Harness) -> None:
    clock = ManualClock(START)
    engine = await harness.start([spec(QUARTER)], clock=clock)
    await settle(engine)
    assert await engine.store.last_firing("report", QUARTER) == START
    await advance_to(clock, engine, FIRST_TICK + 1)
    assert await engine.store.last_firing("report", QUARTER) == FIRST_TICK
    await engine.store.record_firing("report", QUARTER, START)  # a lagging node: no going back
    assert await engine.store.last_firing("report", QUARTER) == FIRST_TICK
    first = f"{QUARTER}-{round(FIRST_TICK * 1000)}"
    await wait_for(lambda: harness.kinds(first)[-1:] == ["completed"])


async def test_a_fired_instance_keeps_its_workflows_default_retention(harness: Harness) -> None:
    clock = ManualClock(START)
    kept = Retention(success=3600.0, error=7200.0)
    engine = await harness.start(
        [WorkflowSpec("report", Report, "REPORT", schedules=(QUARTER,), default_retention=kept)],
        clock=clock,
    )
    await advance_to(clock, engine, FIRST_TICK)
    first = f"{QUARTER}-{round(FIRST_TICK * 1000)}"
    await wait_status(engine, "report", first)
    details = await engine.details("report", first)
    assert details["retention"] == {"success_retention": "1 hour", "error_retention": "2 hours"}


async def test_fired_instances_are_deleted_by_their_ids_one_by_one_and_in_batches(
    harness: Harness,
) -> None:
    clock = ManualClock(START)
    engine = await harness.start([spec(QUARTER)], clock=clock)
    await advance_to(clock, engine, FIRST_TICK + 1800)
    first, second, third = await ids(engine)
    for instance_id in (first, second, third):
        await wait_status(engine, "report", instance_id)
    binding = engine.env.REPORT
    result = await binding.delete_batch([first, second, "nothing-here"])
    assert result["deleted"] == [{"id": first}, {"id": second}]
    assert [e["id"] for e in result["errors"]] == ["nothing-here"]
    await (await binding.get(third)).delete()
    assert await ids(engine) == []
    with pytest.raises(ValidationError, match="may only contain"):  # still refused: not an id
        await binding.delete_batch(["a b"])
