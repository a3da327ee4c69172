"""The store contract, run on both stores (``backend``: SQLite and PostgreSQL): creating
instances, duplicates, claims, fencing, leases and takeover, controls, events, hibernation,
purges, versions, secrets, bundles, settings and messages between processes.

What only one store has lives in ``test_sqlite_store.py`` and ``test_postgres_store.py``.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from wf.engine.model import (
    AttemptRecord,
    NewInstance,
    RestartFrom,
    Status,
    StepKind,
    StepRecord,
    StepState,
)
from wf.engine.store.sqlite import SqliteStore
from wf.engine.store.sqlite_controls import MAX_CRASHES
from wf.errors import (
    CannotRestart,
    InstanceAlreadyExists,
    InvalidTransition,
    StoreError,
    WfError,
)

WF = "wf"
TABLES = ("instances", "steps", "attempts", "events")


def new(instance_id: str, params: str = "{}", workflow: str = WF) -> NewInstance:
    return NewInstance(workflow, instance_id, params, "api", "v1", 1000.0)


class Backend:
    """Makes stores on one database, and reads or changes it behind their back."""

    def __init__(self, name: str, path: Path, url: str | None) -> None:
        self.name = name
        self.path = path
        self.url = url

    def make(self, durability: str = "os") -> Any:
        if self.url is not None:
            from wf.engine.store.postgres import PostgresStore

            store = PostgresStore(self.url, durability=durability)
            store.takeover_every = 0.0  # look for lapsed owners on every claim round
            return store
        return SqliteStore(self.path, durability=durability)

    def query(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Rows of raw SQL (``%s`` placeholders) through a connection of our own."""
        if self.url is not None:
            import psycopg

            with psycopg.connect(self.url, options="-c search_path=wf") as conn:
                cur = conn.execute(sql, args)
                return cur.fetchall() if cur.description else []
        with closing(sqlite3.connect(self.path)) as conn:
            rows = conn.execute(sql.replace("%s", "?"), args).fetchall()
            conn.commit()
            return rows

    def dump(self) -> dict[str, list[tuple[Any, ...]]]:
        """Every row of every table of instances and their histories."""
        return {t: self.query(f"SELECT * FROM {t} ORDER BY 1, 2, 3") for t in TABLES}


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    url = request.getfixturevalue("pg_url") if request.param == "postgres" else None
    return Backend(request.param, tmp_path / "wf.db", url)


@pytest.fixture
async def store(backend: Backend) -> AsyncIterator[Any]:
    s = backend.make()
    await s.open()
    try:
        yield s
    finally:
        await s.close()


# ---- opening, closing, group commit ------------------------------------------------------------


async def test_a_database_reopens_with_its_data(backend: Backend) -> None:
    first = backend.make()
    await first.open()
    await first.create_instances([new(f"i{n}") for n in range(3)], skip_existing=False)
    await first.close()
    again = backend.make(durability="fsync")
    await again.open()
    try:
        rows, total = await again.list_instances(
            WF, status=None, offset=0, limit=10, newest_first=False
        )
        assert total == 3 and sorted(r.id for r in rows) == ["i0", "i1", "i2"]
    finally:
        await again.close()


async def test_a_closed_store_refuses_reads_and_writes(backend: Backend) -> None:
    s = backend.make()
    await s.open()
    await s.close()
    await s.close()  # closing twice is harmless
    with pytest.raises(StoreError, match="closed"):
        await s.get_instance(WF, "a")
    with pytest.raises(StoreError, match="closed"):
        await s.create_instances([new("a")], skip_existing=False)


async def test_an_unknown_durability_is_refused(backend: Backend) -> None:
    s = backend.make(durability="paranoid")
    with pytest.raises(StoreError, match="'paranoid'"):
        await s.open()
    await s.close()


async def test_concurrent_writes_share_commits_and_are_all_durable(backend: Backend) -> None:
    s = backend.make(durability="fsync")
    await s.open()
    try:
        before = s.commits
        results = await asyncio.gather(
            *(s.create_instances([new(f"i{n}")], skip_existing=False) for n in range(200))
        )
        commits = s.commits - before
        assert [[r.id for r in rows] for rows in results] == [[f"i{n}"] for n in range(200)]
        assert len({rows[0].pk for rows in results}) == 200
        assert 1 <= commits <= 40, commits  # far fewer commits than writes
        # Every awaited write is committed: another connection sees all of them now.
        assert len(backend.dump()["instances"]) == 200
    finally:
        await s.close()
    assert len(backend.dump()["instances"]) == 200


async def test_a_failing_write_does_not_spoil_the_others_in_its_commit(store: Any) -> None:
    await store.create_instances([new("taken")], skip_existing=False)
    ids = [f"i{n}" for n in range(50)]
    ids.insert(25, "taken")
    results = await asyncio.gather(
        *(store.create_instances([new(i)], skip_existing=False) for i in ids),
        return_exceptions=True,
    )
    failures = [r for r in results if isinstance(r, BaseException)]
    assert len(failures) == 1 and isinstance(failures[0], InstanceAlreadyExists)
    rows, total = await store.list_instances(
        WF, status=None, offset=0, limit=100, newest_first=False
    )
    assert total == 51
    assert {r.id for r in rows} == {"taken", *(f"i{n}" for n in range(50))}


# ---- creating instances ------------------------------------------------------------------------


async def test_a_duplicate_id_raises_and_writes_nothing(store: Any, backend: Backend) -> None:
    await store.create_instances([new("a", '{"v":1}')], skip_existing=False)
    before = backend.dump()
    with pytest.raises(InstanceAlreadyExists) as info:
        await store.create_instances([new("b"), new("a", '{"v":2}'), new("c")], skip_existing=False)
    assert isinstance(info.value, WfError)
    assert info.value.code == "instance.already_exists"
    assert '"a"' in str(info.value) and f'"{WF}"' in str(info.value)
    assert backend.dump() == before
    assert await store.get_instance(WF, "b") is None
    assert await store.get_instance(WF, "c") is None


async def test_a_batch_repeating_an_id_raises_and_writes_nothing(
    store: Any, backend: Backend
) -> None:
    with pytest.raises(InstanceAlreadyExists):
        await store.create_instances([new("d"), new("e"), new("d")], skip_existing=False)
    assert backend.dump()["instances"] == []


async def test_skip_existing_skips_and_keeps_the_existing_instance(store: Any) -> None:
    [first] = await store.create_instances([new("a", '{"v":1}')], skip_existing=False)
    created = await store.create_instances(
        [new("a", '{"v":2}'), new("b"), new("b", '{"v":3}'), new("c")], skip_existing=True
    )
    assert [r.id for r in created] == ["b", "c"]
    assert all(r.status is Status.QUEUED for r in created)
    a = await store.get_instance(WF, "a")
    assert a == first
    b = await store.get_instance(WF, "b")
    assert b is not None and b.params == "{}"
    assert await store.create_instances([new("a"), new("b")], skip_existing=True) == []


async def test_the_same_id_in_another_workflow_is_another_instance(store: Any) -> None:
    await store.create_instances([new("a")], skip_existing=False)
    [other] = await store.create_instances([new("a", workflow="other")], skip_existing=False)
    assert other.workflow == "other"
    one = await store.get_instance(WF, "a")
    assert one is not None and one.pk != other.pk


async def test_listing_counting_and_the_latest_instance(store: Any) -> None:
    items = [NewInstance(WF, f"i{n}", "{}", "api", "v1", 1000.0 + n) for n in range(5)]
    await store.create_instances(items, skip_existing=False)
    rows, total = await store.list_instances(WF, status=None, offset=1, limit=2, newest_first=True)
    assert total == 5 and [r.id for r in rows] == ["i3", "i2"]
    rows, total = await store.list_instances(
        WF, status=Status.QUEUED, offset=0, limit=10, newest_first=False
    )
    assert total == 5 and rows[0].id == "i0"
    assert (await store.count_statuses(WF))["queued"] == 5
    latest = await store.latest_instance(WF)
    assert latest is not None and latest.id == "i4"
    await store.pause(latest.pk, 2000.0)  # a change after the newest creation
    assert await store.workflow_times(WF) == (1000.0, 1004.0, 2000.0)
    assert await store.count_unfinished_by_version(WF) == {"v1": 5}
    assert await store.workflows_with_instances() == [WF]


async def test_list_after_walks_the_statuses_asked_for_in_pk_order(store: Any) -> None:
    assert await store.newest_pk(WF) == 0
    items = [NewInstance(WF, f"i{n}", "{}", "api", "v1", 1000.0 + n) for n in range(5)]
    await store.create_instances(items, skip_existing=False)
    upto = await store.newest_pk(WF)
    first = await store.list_after(WF, [Status.QUEUED], 0, upto, 2)
    assert [r.id for r in first] == ["i0", "i1"]
    rest = await store.list_after(WF, [Status.PAUSED, Status.QUEUED], first[-1].pk, upto, 10)
    assert [r.id for r in rest] == ["i2", "i3", "i4"] and rest[-1].pk == upto
    assert await store.list_after(WF, [Status.QUEUED], rest[-1].pk, upto, 10) == []
    bounded = await store.list_after(WF, [Status.QUEUED], 0, rest[1].pk, 10)
    assert [r.id for r in bounded] == ["i0", "i1", "i2", "i3"]
    assert await store.list_after(WF, [Status.RUNNING], 0, upto, 10) == []
    assert await store.list_after("other", [Status.QUEUED], 0, upto, 10) == []


# ---- claims ------------------------------------------------------------------------------------


async def _claimed(store: Any, owner: str = "me") -> tuple[int, int]:
    [row] = await store.create_instances([new("a")], skip_existing=False)
    [claim] = (await store.claim_ready(owner, 1000.0, 10, [WF], 30.0)).claims
    assert claim.row.pk == row.pk and claim.epoch == row.epoch + 1
    assert claim.fresh and claim.row.owner == owner and claim.row.status is Status.RUNNING
    return row.pk, claim.epoch


async def test_claims_take_queued_instances_oldest_first_up_to_the_limit(store: Any) -> None:
    items = [NewInstance(WF, f"i{n}", "{}", "api", "v1", 1000.0 + n) for n in range(5)]
    items.append(NewInstance("other", "x", "{}", "api", "v1", 900.0))
    await store.create_instances(items, skip_existing=False)
    first = (await store.claim_ready("me", 2000.0, 3, [WF], 30.0)).claims
    assert sorted(c.row.id for c in first) == ["i0", "i1", "i2"]
    second = (await store.claim_ready("me", 2000.0, 10, [WF], 30.0)).claims
    assert sorted(c.row.id for c in second) == ["i3", "i4"]  # not "other": not ours
    assert (await store.claim_ready("me", 2000.0, 10, [WF], 30.0)).claims == []


async def test_a_pinned_claim_takes_only_its_versions_instances(store: Any) -> None:
    await store.create_instances(
        [
            NewInstance(WF, "old", "{}", "api", "v1", 1.0),
            NewInstance(WF, "new", "{}", "api", "v2", 2.0),
        ],
        skip_existing=False,
    )
    [claim] = (await store.claim_ready("w2", 10.0, 10, [WF], 30.0, "v2")).claims
    assert claim.row.id == "new"


async def test_a_sleeping_instance_is_claimed_when_its_timer_is_due(store: Any) -> None:
    pk, epoch = await _claimed(store)
    assert await store.hibernate(pk, epoch, 1500.0, 1001.0) is True
    row = await store.get_instance(WF, "a")
    assert (row.status, row.owner, row.wake_at) == (Status.WAITING, None, 1500.0)
    assert await store.next_wake_at([WF]) == 1500.0
    assert (await store.claim_ready("me", 1499.0, 10, [WF], 30.0)).claims == []
    [claim] = (await store.claim_ready("me", 1500.0, 10, [WF], 30.0)).claims
    assert claim.row.pk == pk and claim.epoch == epoch + 1 and not claim.fresh
    assert await store.next_wake_at([WF]) is None


async def test_a_released_instance_is_claimed_again_at_once(store: Any) -> None:
    pk, epoch = await _claimed(store)
    assert await store.release(pk, epoch) is True
    [claim] = (await store.claim_ready("other", 1000.0, 10, [WF], 30.0)).claims
    assert claim.row.pk == pk and claim.row.owner == "other"


async def test_renewing_tells_what_an_owner_holds(store: Any) -> None:
    pk, epoch = await _claimed(store)
    assert await store.renew_leases("me", 30.0) == {pk: (Status.RUNNING, epoch)}
    assert await store.renew_leases("nobody", 30.0) == {}
    await store.pause(pk, 1001.0)
    assert await store.renew_leases("me", 30.0) == {pk: (Status.WAITING_FOR_PAUSE, epoch)}


async def test_a_lapsed_lease_is_taken_over_and_fences_out_its_old_holder(store: Any) -> None:
    pk, epoch = await _claimed(store, owner="frozen")
    # Short leases keep the owner alive while it renews; this one stops renewing.
    await store.renew_leases("frozen", 0.2)
    assert (await store.claim_ready("other", 1000.0, 10, [WF], 30.0)).claims == []
    await asyncio.sleep(0.4)
    [claim] = (await store.claim_ready("other", 1000.0, 10, [WF], 30.0)).claims
    assert claim.row.pk == pk and claim.epoch > epoch and claim.row.owner == "other"
    step = StepRecord("s", 1, StepKind.DO, 1000.0)
    assert await store.start_attempt(pk, epoch, step, AttemptRecord(1, 1000.0), first=True) is False
    assert await store.finish(pk, epoch, Status.COMPLETE, 1001.0, '"late"', None) is False
    assert await store.renew_leases("frozen", 30.0) == {}  # it learns it lost the instance
    assert await store.finish(pk, claim.epoch, Status.COMPLETE, 1001.0, '"ok"', None) is True


async def test_a_dead_owners_claims_are_released_as_suspects(store: Any) -> None:
    pk, _ = await _claimed(store)
    assert await store.release_claims("me", crashed=True, now=1000.0) == 1
    row = await store.get_instance(WF, "a")
    assert (row.owner, row.crashes, row.wake_at) == (None, 1, 1002.0)
    assert (await store.claim_ready("next", 1001.0, 10, [WF], 30.0, suspects=1)).claims == []
    [claim] = (await store.claim_ready("next", 1002.0, 10, [WF], 30.0, suspects=1)).claims
    assert claim.row.pk == pk


# ---- fencing -----------------------------------------------------------------------------------


async def _stale_writes(store: Any, pk: int, epoch: int) -> list[object]:
    step = StepRecord("s", 1, StepKind.DO, 1001.0, wake_at=5000.0, duration=1.0)
    attempt = AttemptRecord(1, 1001.0, 1002.0, False, {"name": "E", "message": "m"})
    fresh = StepRecord("t", 1, StepKind.WAIT, 1001.0, event_type="go")
    done = StepRecord("s", 1, StepKind.DO, 1001.0, state=StepState.SUCCEEDED, output='"x"')
    done.ended = 1003.0
    return [
        await store.set_status(pk, epoch, Status.WAITING, 1001.0, wake_at=9999.0),
        await store.start_step(pk, epoch, fresh),
        await store.update_step_timer(pk, epoch, step, started=1001.5),
        await store.start_attempt(pk, epoch, step, AttemptRecord(2, 1001.0)),
        await store.end_attempt(pk, epoch, step, attempt, StepState.FAILED),
        await store.end_step(pk, epoch, done, StepState.SUCCEEDED),
        await store.consume_event(pk, epoch, fresh, 1004.0),
        await store.hibernate(pk, epoch, 9999.0, 1005.0, ["go"]),
        await store.reach_pause(pk, epoch, 1006.0),
        await store.release(pk, epoch),
        await store.finish(pk, epoch, Status.COMPLETE, 1008.0, '"out"', None),
    ]


async def test_writes_with_a_stale_epoch_return_false_and_change_nothing(
    store: Any, backend: Backend
) -> None:
    pk, epoch = await _claimed(store)
    # Some history for stale writes to try to change, written with the current epoch.
    step = StepRecord("s", 1, StepKind.DO, 1000.0)
    assert await store.start_step(pk, epoch, step) is True
    assert await store.start_attempt(pk, epoch, step, AttemptRecord(1, 1000.0)) is True
    await store.send_event(pk, "go", '{"n":1}', 1000.5)
    await store.pause(pk, 1000.6)  # claimed: becomes waitingForPause
    before = backend.dump()
    assert all(before[t] for t in TABLES)

    results = await _stale_writes(store, pk, epoch - 1)

    assert results == [False] * 11  # consume_event too: False means fenced, None no event
    assert backend.dump() == before
    history = await store.load_history(pk)
    assert [(s.name, s.state, len(s.attempts)) for s in history.steps] == [
        ("s", StepState.RUNNING, 1)
    ]
    assert history.steps[0].attempts[0].ended is None


async def test_the_current_epoch_writes(store: Any) -> None:
    pk, epoch = await _claimed(store)
    step = StepRecord("s", 1, StepKind.DO, 1000.0)
    assert await store.start_step(pk, epoch, step) is True
    assert await store.start_attempt(pk, epoch, step, AttemptRecord(1, 1000.0)) is True
    step.state, step.output, step.ended = StepState.SUCCEEDED, '"ok"', 1001.0
    attempt = AttemptRecord(1, 1000.0, 1001.0, True)
    assert await store.end_attempt(pk, epoch, step, attempt, StepState.SUCCEEDED) is True
    assert await store.finish(pk, epoch, Status.COMPLETE, 1002.0, '"done"', None) is True
    row = await store.get_instance(WF, "a")
    assert row is not None
    assert (row.status, row.output, row.owner) == (Status.COMPLETE, '"done"', None)
    [recorded] = (await store.load_history(pk)).steps
    assert (recorded.state, recorded.output) == (StepState.SUCCEEDED, '"ok"')
    assert recorded.attempts == [attempt]


async def test_a_history_keeps_its_order_and_every_field(store: Any) -> None:
    pk, epoch = await _claimed(store)
    config = {"retries": {"limit": 2, "delay": 1.0, "backoff": "constant"}, "timeout": 5.0}
    first = StepRecord("b", 1, StepKind.DO, 1000.0, config=config)
    nap = StepRecord("a", 1, StepKind.SLEEP, 1001.0, wake_at=1061.0, duration=60.0)
    assert await store.start_attempt(pk, epoch, first, AttemptRecord(1, 1000.0), first=True)
    failed = AttemptRecord(1, 1000.0, 1000.5, False, {"name": "E", "message": "m"})
    first.wake_at, first.non_retryable = 1002.0, False
    assert await store.end_attempt(pk, epoch, first, failed)  # a retry is due at 1002
    assert await store.start_step(pk, epoch, nap)
    nap.wake_at, nap.duration = 1100.0, 99.0
    assert await store.update_step_timer(pk, epoch, nap, started=1001.0)
    steps = (await store.load_history(pk)).steps
    assert [(s.kind, s.name) for s in steps] == [(StepKind.DO, "b"), (StepKind.SLEEP, "a")]
    assert steps[0].config == config and steps[0].wake_at == 1002.0
    assert steps[0].attempts == [failed]
    assert (steps[1].wake_at, steps[1].duration) == (1100.0, 99.0)


async def test_a_terminated_instance_fences_out_its_old_runner(
    store: Any, backend: Backend
) -> None:
    pk, epoch = await _claimed(store)
    terminated = await store.terminate(pk, 1001.0, "api")
    assert terminated.epoch > epoch and terminated.termination == "api"
    before = backend.dump()
    assert await store.finish(pk, epoch, Status.COMPLETE, 1002.0, '"late"', None) is False
    assert await store.start_step(pk, epoch, StepRecord("s", 1, StepKind.DO, 1002.0)) is False
    assert backend.dump() == before
    row = await store.get_instance(WF, "a")
    assert row is not None and row.status is Status.TERMINATED and row.output is None
    with pytest.raises(InvalidTransition, match="already terminated"):
        await store.pause(pk, 1003.0)


# ---- controls and events -----------------------------------------------------------------------


async def test_pause_and_resume_of_a_running_and_of_an_idle_instance(store: Any) -> None:
    pk, epoch = await _claimed(store)
    assert (await store.pause(pk, 1001.0)).status is Status.WAITING_FOR_PAUSE
    assert (await store.resume(pk, 1002.0)).status is Status.RUNNING
    await store.pause(pk, 1003.0)
    assert await store.reach_pause(pk, epoch, 1004.0) is True
    paused = await store.get_instance(WF, "a")
    assert (paused.status, paused.owner, paused.paused_at) == (Status.PAUSED, None, 1004.0)
    assert (await store.claim_ready("me", 2000.0, 10, [WF], 30.0)).claims == []
    resumed = await store.resume(pk, 1010.0)
    assert (resumed.status, resumed.queued, resumed.paused_at) == (Status.QUEUED, 1010.0, None)
    [claim] = (await store.claim_ready("me", 2000.0, 10, [WF], 30.0)).claims
    assert claim.row.pk == pk


async def test_a_sleep_keeps_its_time_left_across_a_pause(store: Any) -> None:
    pk, epoch = await _claimed(store)
    nap = StepRecord("nap", 1, StepKind.SLEEP, 1000.0, wake_at=1100.0, duration=100.0)
    assert await store.start_step(pk, epoch, nap)
    assert await store.hibernate(pk, epoch, 1100.0, 1000.0)
    await store.pause(pk, 1040.0)
    await store.resume(pk, 1060.0)
    [step] = (await store.load_history(pk)).steps
    assert step.wake_at == 1120.0  # 60 s were left when the pause began


async def test_a_restart_starts_over_and_keeps_the_events_not_yet_consumed(store: Any) -> None:
    pk, epoch = await _claimed(store)
    wait = StepRecord("w", 1, StepKind.WAIT, 1000.0, event_type="go", wake_at=2000.0)
    assert await store.start_step(pk, epoch, wait)
    await store.send_event(pk, "go", '"first"', 1001.0)
    await store.send_event(pk, "go", '"second"', 1002.0)
    taken = await store.consume_event(pk, epoch, wait, 1003.0)
    assert taken.payload == '"first"' and taken.consumed_by == ("w", 1)
    restarted = await store.restart(pk, 1004.0)
    assert (restarted.status, restarted.owner, restarted.started) == (Status.QUEUED, None, None)
    assert restarted.epoch > epoch
    assert (await store.load_history(pk)).steps == []
    [claim] = (await store.claim_ready("me", 2000.0, 10, [WF], 30.0)).claims
    again = StepRecord("w", 1, StepKind.WAIT, 2000.0, event_type="go", wake_at=3000.0)
    assert await store.start_step(pk, claim.epoch, again)
    left = await store.consume_event(pk, claim.epoch, again, 2001.0)
    assert left.payload == '"second"'
    assert await store.consume_event(pk, claim.epoch, again, 2002.0) is None


async def test_the_events_of_an_instance_consumed_or_not_oldest_first(store: Any) -> None:
    pk, epoch = await _claimed(store)
    [other] = await store.create_instances([new("b")], skip_existing=False)
    assert await store.load_events(pk) == []
    wait = StepRecord("w", 2, StepKind.WAIT, 1000.0, event_type="go", wake_at=2000.0)
    assert await store.start_step(pk, epoch, wait)
    await store.send_event(pk, "other", '{"k": [1, 2]}', 1001.0)
    await store.send_event(other.pk, "go", '"not mine"', 1001.5)
    await store.send_event(pk, "go", '"first"', 1002.0)
    await store.send_event(pk, "go", '"second"', 1003.0)
    await store.consume_event(pk, epoch, wait, 1004.0)
    events = await store.load_events(pk)
    assert [(e.type, e.payload, e.received, e.consumed_by) for e in events] == [
        ("other", '{"k": [1, 2]}', 1001.0, None),
        ("go", '"first"', 1002.0, ("w", 2)),
        ("go", '"second"', 1003.0, None),
    ]
    assert events[0].seq < events[1].seq < events[2].seq
    assert [e.payload for e in await store.load_events(other.pk)] == ['"not mine"']
    await store.restart(pk, 1005.0)  # a new run: the consumed event went with the old one
    assert [e.payload for e in await store.load_events(pk)] == ['{"k": [1, 2]}', '"second"']


async def test_an_event_wakes_a_hibernating_instance_waiting_for_its_type_only(
    store: Any,
) -> None:
    pk, epoch = await _claimed(store)
    assert await store.hibernate(pk, epoch, 5000.0, 1000.0, ["go"]) is True
    row, event = await store.send_event(pk, "other", "1", 1001.0)
    assert row.wake_at == 5000.0 and event.type == "other"
    row, _ = await store.send_event(pk, "go", "2", 1002.0)
    assert row.wake_at == 1002.0
    [claim] = (await store.claim_ready("me", 1002.0, 10, [WF], 30.0)).claims
    assert claim.row.pk == pk


async def test_hibernating_with_an_awaited_event_already_buffered_wakes_at_once(
    store: Any,
) -> None:
    pk, epoch = await _claimed(store)
    await store.send_event(pk, "go", "1", 1001.0)
    assert await store.hibernate(pk, epoch, 5000.0, 1002.0, ["go"]) is True
    row = await store.get_instance(WF, "a")
    assert (row.status, row.wake_at) == (Status.WAITING, 1002.0)


async def test_consuming_while_a_pause_is_acknowledged_consumes_nothing(store: Any) -> None:
    pk, epoch = await _claimed(store)
    wait = StepRecord("w", 1, StepKind.WAIT, 1000.0, event_type="go", wake_at=2000.0)
    assert await store.start_step(pk, epoch, wait)
    await store.send_event(pk, "go", "1", 1001.0)
    await store.pause(pk, 1002.0)
    assert await store.consume_event(pk, epoch, wait, 1003.0) == "pausing"
    await store.resume(pk, 1004.0)
    taken = await store.consume_event(pk, epoch, wait, 1005.0)
    assert taken is not None and taken.payload == "1"
    [step] = (await store.load_history(pk)).steps
    assert (step.state, step.output, step.event_time) == (StepState.SUCCEEDED, "1", 1001.0)


async def test_no_event_for_a_finished_instance(store: Any) -> None:
    pk, epoch = await _claimed(store)
    assert await store.finish(
        pk, epoch, Status.ERRORED, 1001.0, None, {"name": "E", "message": "m"}
    )
    row = await store.get_instance(WF, "a")
    assert row.error == {"name": "E", "message": "m"}
    with pytest.raises(InvalidTransition, match="already errored"):
        await store.send_event(pk, "go", "1", 1002.0)


# ---- crashes and upgrades ----------------------------------------------------------------------


async def _a_suspect_running_again(store: Any) -> tuple[int, int, StepRecord]:
    """An instance whose process died during attempt 1, claimed again and running attempt 2."""
    pk, epoch = await _claimed(store)
    step = StepRecord("s", 1, StepKind.DO, 1000.0)
    assert await store.start_attempt(pk, epoch, step, AttemptRecord(1, 1000.0), first=True)
    await store.release_claims("me", crashed=True, now=1000.0)  # the process died
    [claim] = (await store.claim_ready("next", 1100.0, 10, [WF], 30.0, suspects=1)).claims
    assert claim.row.pk == pk and claim.row.crashes == 1
    attempt = AttemptRecord(1, 1000.0, 1100.0, False, {"name": "E", "message": "crash"})
    assert await store.end_attempt(pk, claim.epoch, step, attempt, None)
    assert await store.start_attempt(pk, claim.epoch, step, AttemptRecord(2, 1100.0))
    return pk, claim.epoch, step


async def test_a_running_instance_without_an_owner_is_claimed_whatever_its_crashes(
    store: Any, backend: Backend
) -> None:
    pk, _, _ = await _a_suspect_running_again(store)
    # What an upgrade used to leave: let go, running, a suspect, and no wake_at.
    backend.query("UPDATE instances SET owner = NULL, lease_until = NULL WHERE pk = %s", (pk,))
    [claim] = (await store.claim_ready("recovery", 1200.0, 10, [WF], 30.0, suspects=1)).claims
    assert claim.row.pk == pk and claim.row.owner == "recovery"


async def test_an_upgrade_cuts_the_attempt_in_flight_short_uncounted_and_leaves_it_ready(
    store: Any,
) -> None:
    pk, _, _ = await _a_suspect_running_again(store)
    moved = await store.upgrade(pk, "v2", 1150.0)
    assert (moved.status, moved.owner, moved.version_id) == (Status.RUNNING, None, "v2")
    [claim] = (
        await store.claim_ready("v2 worker", 1150.0, 10, [WF], 30.0, "v2", suspects=1)
    ).claims
    assert claim.row.pk == pk
    [step] = (await store.load_history(pk)).steps
    crashed, upgraded = step.attempts
    assert (crashed.uncounted, upgraded.uncounted) == (False, True)
    assert upgraded.ended == 1150.0 and upgraded.success is False
    assert upgraded.error is not None and "upgraded" in upgraded.error["message"]
    assert step.wake_at == 1150.0  # retried at once


async def test_an_upgrade_after_a_crash_leaves_the_crashed_attempt_counted(store: Any) -> None:
    pk, epoch = await _claimed(store)
    step = StepRecord("s", 1, StepKind.DO, 1000.0)
    assert await store.start_attempt(pk, epoch, step, AttemptRecord(1, 1000.0), first=True)
    await store.release_claims("me", crashed=True, now=1000.0)  # died; nobody holds it yet
    await store.upgrade(pk, "v2", 1001.0)
    [recorded] = (await store.load_history(pk)).steps
    assert recorded.attempts[0].ended is None  # the next life closes it as interrupted


async def test_a_claim_round_returns_what_it_errored_for_crashing_and_a_restart_forgives(
    store: Any,
) -> None:
    [row] = await store.create_instances([new("killer")], skip_existing=False)
    now = 1000.0
    for life in range(MAX_CRASHES):
        [claim] = (await store.claim_ready(f"p{life}", now, 10, [WF], 30.0, suspects=1)).claims
        assert claim.row.crashes == life
        await store.release_claims(f"p{life}", crashed=True, now=now)  # it killed its process
        now += 100.0
    errored = await store.claim_ready("next", now, 10, [WF], 30.0, suspects=1)
    assert errored.claims == []
    [crashed] = errored.crashed
    assert (crashed.id, crashed.status, crashed.crashes) == ("killer", Status.ERRORED, MAX_CRASHES)
    assert crashed.error is not None and "died 5 times in a row" in crashed.error["message"]
    assert (await store.claim_ready("next", now, 10, [WF], 30.0, suspects=1)).crashed == []

    # "restart it once the code is fixed": the restarted instance runs again.
    restarted = await store.restart(row.pk, now)
    assert (restarted.status, restarted.crashes) == (Status.QUEUED, 0)
    again = await store.claim_ready("fixed", now, 10, [WF], 30.0, suspects=1)
    assert [c.row.id for c in again.claims] == ["killer"] and again.crashed == []


# ---- retention ---------------------------------------------------------------------------------


async def _finished_under(store: Any, version: str, instance_id: str, ended: float) -> None:
    created = NewInstance(WF, instance_id, "{}", "api", version, 1000.0)
    await store.create_instances([created], skip_existing=False)
    [claim] = (await store.claim_ready("me", 1000.0, 10, [WF], 30.0, version)).claims
    assert await store.finish(claim.row.pk, claim.epoch, Status.COMPLETE, ended, "1", None)


async def test_purging_finished_instances_deletes_them_with_their_history(
    store: Any, backend: Backend
) -> None:
    pk, epoch = await _claimed(store)
    step = StepRecord("s", 1, StepKind.DO, 1000.0)
    assert await store.start_attempt(pk, epoch, step, AttemptRecord(1, 1000.0), first=True)
    await store.send_event(pk, "go", "1", 1000.0)
    assert await store.finish(pk, epoch, Status.COMPLETE, 1001.0, "1", None)
    await store.create_instances([new("unfinished")], skip_existing=False)
    assert await store.purge_finished(1001.0) == 0  # ended at 1001: not before it
    assert await store.purge_finished(1002.0) == 1
    dump = backend.dump()
    assert [r for t in ("steps", "attempts", "events") for r in dump[t]] == []
    assert [
        r.id
        for r in (
            await store.list_instances(WF, status=None, offset=0, limit=9, newest_first=False)
        )[0]
    ] == ["unfinished"]
    assert await store.delete_workflow(WF) == 1
    assert backend.dump()["instances"] == []


async def test_each_version_purges_its_finished_instances_by_its_own_retention(
    store: Any,
) -> None:
    day = 86400.0
    await store.activate_version("short", 0.0, [], 1, 1, retention=1 * day)
    await store.activate_version("long", 0.0, [], 1, 1, retention=90 * day)
    await store.activate_version("older", 0.0, [], 1, 1)  # deployed before versions kept one
    now = 1000.0 + 60 * day
    for version in ("short", "long", "older"):
        await _finished_under(store, version, f"{version}-old", now - 45 * day)
        await _finished_under(store, version, f"{version}-new", now - 0.5 * day)
    unfinished = NewInstance(WF, "unfinished", "{}", "api", "short", 0.0)
    await store.create_instances([unfinished], skip_existing=False)

    assert await store.purge_by_version_retention(now, default=30 * day) == 2
    left, _ = await store.list_instances(WF, status=None, offset=0, limit=10, newest_first=False)
    assert sorted(r.id for r in left) == [
        "long-new",
        "long-old",
        "older-new",
        "short-new",
        "unfinished",
    ]
    assert {v.id: v.retention for v in await store.list_versions()} == {
        "short": 1 * day,
        "long": 90 * day,
        "older": None,
    }


# ---- what wf serve keeps -----------------------------------------------------------------------


async def test_one_version_is_active_and_an_unneeded_inactive_one_unloads(store: Any) -> None:
    await store.activate_version("v1", 1.0, [{"name": WF}], 3, 100)
    await store.activate_version("v2", 2.0, [{"name": WF}], 4, 200)
    versions = await store.list_versions()
    assert [(v.id, v.active, v.files) for v in versions] == [("v2", True, 4), ("v1", False, 3)]
    assert versions[1].workflows == [{"name": WF}]
    await store.create_instances([new("a")], skip_existing=False)  # of v1, unfinished
    assert await store.try_unload("v2", 10.0) is False  # active
    assert await store.try_unload("v1", 10.0) is False  # an instance needs it
    await store.terminate((await store.get_instance(WF, "a")).pk, 11.0, "api")
    assert await store.try_unload("v1", 12.0) is True
    assert [v.unloaded for v in await store.list_versions()] == [None, 12.0]
    again = await store.activate_version("v1", 13.0, [], 3, 100)  # a reload
    assert (again.active, again.unloaded, again.created) == (True, None, 13.0)


async def test_a_restart_of_an_unloaded_versions_instance_moves_or_is_refused(
    store: Any,
) -> None:
    await store.activate_version("v1", 1.0, [], 1, 1)
    pk, epoch = await _claimed(store)
    assert await store.finish(pk, epoch, Status.COMPLETE, 1001.0, "1", None)
    await store.activate_version("v2", 2.0, [], 1, 1)
    assert await store.try_unload("v1", 3.0) is True
    with pytest.raises(InvalidTransition, match="no longer deployed"):
        await store.restart(pk, 4.0)
    assert (await store.restart(pk, 4.0, rehome="v2")).version_id == "v2"


async def test_secrets_are_stored_listed_and_deleted(store: Any) -> None:
    await store.put_secret("B", "two", 1.0)
    await store.put_secret("A", "one", 2.0)
    await store.put_secret("B", "deux", 3.0)
    assert await store.list_secrets() == [("A", 2.0), ("B", 3.0)]
    assert await store.secret_values() == {"A": "one", "B": "deux"}
    assert await store.delete_secret("A") is True
    assert await store.delete_secret("A") is False
    assert await store.secret_values() == {"B": "deux"}


async def test_bundles_and_settings(store: Any) -> None:
    data = bytes(range(256)) * 100
    assert await store.get_bundle("v1") is None
    await store.put_bundle("v1", data)
    assert await store.get_bundle("v1") == data
    await store.activate_version("v1", 1.0, [], 1, 1)
    await store.activate_version("v2", 2.0, [], 1, 1)
    assert await store.try_unload("v1", 3.0) is True
    assert await store.get_bundle("v1") is None  # forgotten with its version
    assert await store.get_setting("api_token_sha256") is None
    assert await store.put_setting("api_token_sha256", "a", only_if_missing=True) is True
    assert await store.put_setting("api_token_sha256", "b", only_if_missing=True) is False
    assert await store.get_setting("api_token_sha256") == "a"
    assert await store.put_setting("api_token_sha256", "c") is True
    assert await store.get_setting("api_token_sha256") == "c"


async def test_published_messages_reach_every_listening_process(backend: Backend) -> None:
    first, second = backend.make(), backend.make()
    await first.open()
    heard: list[tuple[str, dict[str, Any]]] = []
    try:
        if backend.name == "sqlite":  # one process tree owns the file: nobody to tell
            first.listen(lambda topic, payload: heard.append((topic, payload)))
            first.publish("versions", {})
            await asyncio.sleep(0.1)
            assert heard == []
            return
        await second.open()
        second.listen(lambda topic, payload: heard.append((topic, payload)))
        await second.listening()
        first.publish("created", {"version": "v1"})
        first.publish("created", {"version": "v1"})  # coalesced with the one before
        first.publish("change", {"pk": 7, "change": "paused"})
        await first.create_instances([new("a")], skip_existing=False)
        deadline = time.monotonic() + 5
        while len(heard) < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
        assert heard == [("created", {"version": "v1"}), ("change", {"pk": 7, "change": "paused"})]
    finally:
        await first.close()
        await second.close()


async def test_live_owners_are_those_with_a_live_lease(store: Any) -> None:
    await store.create_instances([new("a")], skip_existing=False)
    claimed = await store.claim_ready("node-1/worker-a", 1000.0, 10, [WF], 30.0)
    assert [claim.row.id for claim in claimed.claims] == ["a"]
    assert await store.live_owners() == ["node-1/worker-a"]


# ---- restart from a step, delete, retention (issue 12) -----------------------------------------


async def _history_of_four(store: Any) -> tuple[int, int]:
    """An instance that ran do a, sleep nap, wait w (which consumed an event), do b, with one
    event still buffered, and is still claimed."""
    pk, epoch = await _claimed(store)
    a = StepRecord("a", 1, StepKind.DO, 1000.0)
    assert await store.start_attempt(pk, epoch, a, AttemptRecord(1, 1000.0), first=True)
    a.output, a.ended = '"A"', 1001.0
    assert await store.end_attempt(
        pk, epoch, a, AttemptRecord(1, 1000.0, 1001.0, True), StepState.SUCCEEDED
    )
    nap = StepRecord("nap", 1, StepKind.SLEEP, 1002.0, wake_at=1003.0, duration=1.0)
    assert await store.start_step(pk, epoch, nap)
    wait = StepRecord("w", 1, StepKind.WAIT, 1004.0, event_type="go", wake_at=2000.0)
    assert await store.start_step(pk, epoch, wait)
    await store.send_event(pk, "go", '"used"', 1005.0)
    assert (await store.consume_event(pk, epoch, wait, 1006.0)).payload == '"used"'
    await store.send_event(pk, "go", '"buffered"', 1007.0)
    b = StepRecord("b", 1, StepKind.DO, 1008.0)
    assert await store.start_attempt(pk, epoch, b, AttemptRecord(1, 1008.0), first=True)
    return pk, epoch


async def test_a_restart_from_a_step_wipes_it_and_everything_started_later(
    store: Any, backend: Backend
) -> None:
    pk, epoch = await _history_of_four(store)
    row = await store.restart(
        pk,
        1010.0,
        from_step=RestartFrom("w", 1, StepKind.WAIT),
        params='{"new": 1}',
        record='{"at": 1010.0}',
    )
    assert (row.status, row.owner, row.params, row.restarted) == (
        Status.QUEUED,
        None,
        '{"new": 1}',
        '{"at": 1010.0}',
    )
    assert row.started is not None and row.epoch > epoch  # its runner is fenced; not fresh
    assert [s.key for s in (await store.load_history(pk)).steps] == [
        (StepKind.DO, "a", 1),
        (StepKind.SLEEP, "nap", 1),
    ]
    assert await store.load_events(pk) == []  # the consumed one and the buffered one
    assert backend.query("SELECT name FROM attempts WHERE instance = %s", (pk,)) == [("a",)]
    [claim] = (await store.claim_ready("me", 1011.0, 10, [WF], 30.0)).claims
    assert not claim.fresh


async def test_a_restart_from_an_unknown_step_changes_nothing(store: Any, backend: Backend) -> None:
    pk, _ = await _history_of_four(store)
    before = backend.dump()
    for wrong in (RestartFrom("zzz"), RestartFrom("a", 2), RestartFrom("a", 1, StepKind.SLEEP)):
        with pytest.raises(CannotRestart, match=f'Step "{wrong.name}" not found'):
            await store.restart(pk, 1010.0, from_step=wrong, params='"x"', record="{}")
    assert backend.dump() == before


async def test_deleting_instances_removes_them_with_everything_they_own(
    store: Any, backend: Backend
) -> None:
    pk, epoch = await _history_of_four(store)
    [other] = await store.create_instances([new("other")], skip_existing=False)
    assert await store.delete_instances([pk, 999_999, pk]) == [pk]
    assert {t: [r for r in rows if pk in r[:2]] for t, rows in backend.dump().items()} == {
        t: [] for t in TABLES
    }
    assert await store.get_instance(WF, "other") == other
    step = StepRecord("late", 1, StepKind.DO, 1020.0)  # its old runner's writes are fenced
    assert await store.start_attempt(pk, epoch, step, AttemptRecord(1, 1020.0), first=True) is False
    assert backend.query("SELECT count(*) FROM steps")[0][0] == 0
    await store.create_instances([new("a")], skip_existing=False)  # the id is free again


async def test_an_instances_own_retention_decides_its_purge(store: Any) -> None:
    day = 86400.0
    await store.activate_version("v", 0.0, [], 1, 1, retention=10 * day)
    plan = {  # id: (success retention, error retention, how it ends)
        "short-ok": (1 * day, None, Status.COMPLETE),
        "long-ok": (60 * day, None, Status.COMPLETE),
        "plain-ok": (None, None, Status.COMPLETE),
        "short-err": (None, 2 * day, Status.ERRORED),
        "err-by-default": (5 * day, None, Status.ERRORED),  # set only for success
    }
    for instance_id, (ok, err, status) in plan.items():
        created = NewInstance(WF, instance_id, "{}", "api", "v", 1000.0, ok, err)
        [row] = await store.create_instances([created], skip_existing=False)
        assert (row.success_retention, row.error_retention) == (ok, err)
        [claim] = (await store.claim_ready("me", 1000.0, 10, [WF], 30.0)).claims
        error = None if status is Status.COMPLETE else {"name": "E", "message": "m"}
        assert await store.finish(claim.row.pk, claim.epoch, status, 1000.0, "1", error)

    async def left() -> list[str]:
        rows, _ = await store.list_instances(WF, status=None, offset=0, limit=10, newest_first=1)
        return sorted(r.id for r in rows)

    assert await store.purge_by_own_retention(1000.0 + 1.5 * day) == 1
    assert await left() == ["err-by-default", "long-ok", "plain-ok", "short-err"]
    assert await store.purge_by_own_retention(1000.0 + 3 * day) == 1
    # The version's (and the engine's) retention leaves alone what set its own.
    assert await store.purge_by_version_retention(1000.0 + 11 * day, 30 * day) == 2
    assert await store.purge_finished(1000.0 + 11 * day) == 0
    assert await left() == ["long-ok"]
    assert await store.purge_by_own_retention(1000.0 + 61 * day) == 1
    assert await left() == []
