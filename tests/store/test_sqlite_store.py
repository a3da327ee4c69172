"""SqliteStore on real files: journal and durability, refusing files it must not touch, the
process lock, group commit, fenced writes and instance creation."""

from __future__ import annotations

import asyncio
import os
import random
import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from wf.engine.model import AttemptRecord, NewInstance, Status, StepKind, StepRecord, StepState
from wf.engine.store import migrations, open_store
from wf.engine.store.sqlite import SqliteStore
from wf.errors import (
    InstanceAlreadyExists,
    StoreCorrupt,
    StoreError,
    StoreLocked,
    StoreTooNew,
    WfError,
)

WF = "wf"


def new(instance_id: str, params: str = "{}", workflow: str = WF) -> NewInstance:
    return NewInstance(workflow, instance_id, params, "api", "v1", 1000.0)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    s = SqliteStore(tmp_path / "wf.db", durability="os")
    await s.open()
    try:
        yield s
    finally:
        await s.close()


def sidecars(path: Path) -> set[str]:
    """The files SQLite may create next to a database (the wf lock file is not one)."""
    return {
        p.name
        for p in path.parent.iterdir()
        if p.name in (f"{path.name}-wal", f"{path.name}-shm", f"{path.name}-journal")
    }


def fingerprint(path: Path) -> tuple[bytes, int, int]:
    stat = path.stat()
    return path.read_bytes(), stat.st_mtime_ns, stat.st_size


def dump(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every wf table, read through a connection of our own."""
    with closing(sqlite3.connect(path)) as conn:
        return {
            table: conn.execute(f"SELECT * FROM {table} ORDER BY 1, 2, 3").fetchall()
            for table in ("instances", "steps", "attempts", "events")
        }


async def make_real_db(path: Path, instances: int = 300) -> None:
    """A wf database with data in it, closed cleanly (no -wal left)."""
    s = SqliteStore(path, durability="os")
    await s.open()
    try:
        await s.create_instances(
            [new(f"i{n}", params='{"pad":"' + "x" * 100 + '"}') for n in range(instances)],
            skip_existing=False,
        )
    finally:
        await s.close()
    assert sidecars(path) == set()


def bump_user_version(path: Path) -> None:
    with closing(sqlite3.connect(path)) as conn:
        conn.execute(f"PRAGMA user_version = {migrations.LATEST + 1}")
    assert sidecars(path) == set()


def make_foreign_db(path: Path, *, wal: bool) -> None:
    with closing(sqlite3.connect(path)) as conn:
        if wal:
            conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
        conn.executemany("INSERT INTO users (name) VALUES (?)", [("ann",), ("bob",)])
        conn.commit()
    assert sidecars(path) == set()


async def refused(path: Path, error: type[StoreError]) -> str:
    s = SqliteStore(path)
    with pytest.raises(error) as info:
        await s.open()
    await s.close()
    return str(info.value)


# ---- journal and durability --------------------------------------------------------------------


async def test_a_new_database_is_a_wf_database_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "wf.db"
    s = SqliteStore(path)
    await s.open()
    try:
        await s.create_instances([new("a")], skip_existing=False)
        assert f"{path.name}-wal" in sidecars(path)  # writes go to the write-ahead log
        header = path.read_bytes()[:100]
        assert header[18] == 2 and header[19] == 2  # file format versions 2: WAL
    finally:
        await s.close()
    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA application_id").fetchone()[0] == migrations.APPLICATION_ID
        assert conn.execute("PRAGMA user_version").fetchone()[0] == migrations.LATEST


@pytest.mark.parametrize(("durability", "level"), [("fsync", 2), ("os", 1)])
async def test_durability_sets_synchronous_on_the_writer_and_readers(
    tmp_path: Path, durability: str, level: int
) -> None:
    s = SqliteStore(tmp_path / "wf.db", durability=durability)
    await s.open()

    def pragmas(conn: sqlite3.Connection) -> tuple[int, str]:
        return (
            conn.execute("PRAGMA synchronous").fetchone()[0],
            conn.execute("PRAGMA journal_mode").fetchone()[0],
        )

    try:
        # The writer's own connection never syncs a commit itself (NORMAL): in fsync mode the
        # writer syncs the log after each durable commit (next test).
        assert await s._write(pragmas) == (1, "wal")
        assert await s._read(pragmas) == (level, "wal")
    finally:
        await s.close()


@pytest.mark.parametrize("durability", ["fsync", "os"])
async def test_a_durable_commit_is_followed_by_a_sync_of_the_log_and_a_lazy_one_is_not(
    tmp_path: Path, durability: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[str] = []
    real_fdatasync = os.fdatasync

    def recording_fdatasync(fd: int) -> None:  # the real call, noting which file it synced
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fdatasync(fd)

    monkeypatch.setattr(os, "fdatasync", recording_fdatasync)
    s = SqliteStore(tmp_path / "wf.db", durability=durability)
    await s.open()

    def touch(conn: sqlite3.Connection) -> None:
        conn.execute("PRAGMA user_version")

    try:
        await s._write(touch, durable=False)
        assert synced == []
        await s._write(touch)
        expected = [str(tmp_path / "wf.db-wal")] if durability == "fsync" else []
        assert synced == expected
    finally:
        await s.close()


@pytest.mark.parametrize("durability", ["paranoid", "FSYNC", "", "off"])
async def test_an_unknown_durability_is_refused_before_touching_anything(
    tmp_path: Path, durability: str
) -> None:
    path = tmp_path / "wf.db"
    s = SqliteStore(path, durability=durability)
    with pytest.raises(StoreError) as info:
        await s.open()
    assert repr(durability) in str(info.value)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(StoreError):
        await open_store(path, durability=durability).open()
    assert list(tmp_path.iterdir()) == []


async def test_a_database_reopens_with_its_data(tmp_path: Path) -> None:
    path = tmp_path / "wf.db"
    await make_real_db(path, instances=3)
    s = SqliteStore(path)
    await s.open()
    try:
        rows, total = await s.list_instances(
            WF, status=None, offset=0, limit=10, newest_first=False
        )
        assert total == 3
        assert sorted(r.id for r in rows) == ["i0", "i1", "i2"]
    finally:
        await s.close()


async def test_a_database_killed_during_a_checkpoint_reopens_with_its_data(
    tmp_path: Path,
) -> None:
    """A checkpoint copies the log's pages into the database file in page order; a SIGKILL part
    way leaves page 1 counting pages the file does not have yet, and the log holding them. SQLite
    reads the two together, so nothing is lost; the file alone looks damaged. (The crash test
    met this: the restarted process refused its own database as damaged, and every later one.)"""
    path = tmp_path / "wf.db"
    await make_real_db(path, instances=10)
    killed = tmp_path / "killed"
    killed.mkdir()
    s = SqliteStore(path, durability="os")
    await s.open()
    try:  # more instances, in the log only: the files as a SIGKILL now would leave them
        pad = '{"pad":"' + "y" * 100 + '"}'
        await s.create_instances([new(f"j{n}", pad) for n in range(300)], skip_existing=False)
        for name in ("wf.db", "wf.db-wal"):
            (killed / name).write_bytes((tmp_path / name).read_bytes())
    finally:
        await s.close()
    checkpointed = (tmp_path / "wf.db").read_bytes()  # closed: the log was copied in whole
    page_size = int.from_bytes(checkpointed[16:18], "big")
    with (killed / "wf.db").open("r+b") as db:  # the checkpoint's first page, then the kill
        db.write(checkpointed[:page_size])
    alone = f"file:{killed / 'wf.db'}?immutable=1"
    with (
        pytest.raises(sqlite3.DatabaseError, match="malformed"),
        closing(sqlite3.connect(alone, uri=True)) as conn,
    ):
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()

    s = SqliteStore(killed / "wf.db")
    await s.open()
    try:
        _, total = await s.list_instances(WF, status=None, offset=0, limit=1, newest_first=False)
        assert total == 310
    finally:
        await s.close()


# ---- files it must not touch -------------------------------------------------------------------


async def test_a_newer_schema_is_refused_and_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / "wf.db"
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("CREATE TABLE future (x)")
        conn.execute(f"PRAGMA application_id = {migrations.APPLICATION_ID}")
        conn.execute(f"PRAGMA user_version = {migrations.LATEST + 1}")
        conn.commit()
    before = fingerprint(path)
    message = await refused(path, StoreTooNew)
    assert str(path) in message
    assert f"schema version {migrations.LATEST + 1}" in message
    assert "upgrade wf" in message
    assert fingerprint(path) == before
    assert sidecars(path) == set()
    # The failed open released the lock: the same refusal again, not StoreLocked.
    await refused(path, StoreTooNew)
    assert fingerprint(path) == before


async def test_a_newer_wf_database_with_data_is_refused_and_left_untouched(
    tmp_path: Path,
) -> None:
    path = tmp_path / "wf.db"
    await make_real_db(path)
    bump_user_version(path)
    before = fingerprint(path)
    await refused(path, StoreTooNew)
    assert fingerprint(path) == before


async def test_random_bytes_are_refused_as_corrupt_and_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / "wf.db"
    path.write_bytes(random.Random(7).randbytes(16384))
    before = fingerprint(path)
    message = await refused(path, StoreCorrupt)
    assert str(path) in message
    assert fingerprint(path) == before
    assert sidecars(path) == set()


@pytest.mark.parametrize("keep", [0.5, 4096, 2000, 100])
async def test_a_truncated_database_is_refused_as_corrupt_and_left_untouched(
    tmp_path: Path, keep: float
) -> None:
    path = tmp_path / "wf.db"
    await make_real_db(path)
    data = path.read_bytes()
    cut = int(len(data) * keep) if keep < 1 else int(keep)
    assert cut < len(data)
    path.write_bytes(data[:cut])
    before = fingerprint(path)
    await refused(path, StoreCorrupt)
    assert fingerprint(path) == before


@pytest.mark.parametrize("wal", [False, True])
async def test_another_applications_database_is_refused_and_left_untouched(
    tmp_path: Path, wal: bool
) -> None:
    path = tmp_path / "app.db"
    make_foreign_db(path, wal=wal)
    before = fingerprint(path)
    message = await refused(path, StoreCorrupt)
    assert "not one of wf's" in message
    assert fingerprint(path) == before
    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute("SELECT name FROM users ORDER BY id").fetchall() == [("ann",), ("bob",)]
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 0


async def test_a_database_with_another_application_id_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("PRAGMA application_id = 1234")
        conn.execute("PRAGMA user_version = 1")
        conn.commit()
    before = fingerprint(path)
    await refused(path, StoreCorrupt)
    assert fingerprint(path) == before


def _too_new(path: Path) -> None:
    asyncio.run(make_real_db(path))
    bump_user_version(path)


def _truncated(path: Path) -> None:
    asyncio.run(make_real_db(path))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _foreign(path: Path) -> None:
    make_foreign_db(path, wal=True)


@pytest.mark.parametrize(
    ("make", "error"),
    [(_too_new, StoreTooNew), (_truncated, StoreCorrupt), (_foreign, StoreCorrupt)],
    ids=["too-new", "truncated", "foreign"],
)
def test_refusing_a_wal_mode_file_creates_no_wal_or_shm_file(
    tmp_path: Path, make: Callable[[Path], None], error: type[StoreError]
) -> None:
    # Left untouched means nothing new next to it either: a refused file should not gain
    # -wal/-shm files that its real owner never wrote.
    path = tmp_path / "db"
    make(path)
    assert sidecars(path) == set()
    s = SqliteStore(path)
    with pytest.raises(error):
        s.open_sync()
    s.close_sync()
    assert sidecars(path) == set()


# ---- the process lock --------------------------------------------------------------------------


async def test_a_second_store_on_the_same_file_is_locked_out_until_the_first_closes(
    tmp_path: Path,
) -> None:
    path = tmp_path / "wf.db"
    first = SqliteStore(path)
    second = SqliteStore(path)
    await first.open()
    try:
        with pytest.raises(StoreLocked) as info:
            await second.open()
        message = str(info.value)
        assert str(path) in message
        assert f"pid {os.getpid()}" in message
        # The refused store did not disturb the open one.
        await first.create_instances([new("a")], skip_existing=False)
        assert (await first.get_instance(WF, "a")) is not None
        with pytest.raises(StoreLocked):
            await SqliteStore(path, durability="os").open()
    finally:
        await first.close()
    await second.open()
    try:
        row = await second.get_instance(WF, "a")
        assert row is not None and row.id == "a"
    finally:
        await second.close()


async def test_the_lock_is_free_again_after_each_close(tmp_path: Path) -> None:
    path = tmp_path / "wf.db"
    for n in range(3):
        s = SqliteStore(path)
        await s.open()
        await s.create_instances([new(f"i{n}")], skip_existing=False)
        await s.close()
    assert len(dump(path)["instances"]) == 3


async def test_a_closed_store_refuses_reads_and_writes(tmp_path: Path) -> None:
    s = SqliteStore(tmp_path / "wf.db")
    await s.open()
    await s.close()
    await s.close()  # closing twice is harmless
    with pytest.raises(StoreError, match="closed"):
        await s.get_instance(WF, "a")
    with pytest.raises(StoreError, match="closed"):
        await s.create_instances([new("a")], skip_existing=False)


# ---- group commit ------------------------------------------------------------------------------


async def test_concurrent_writes_share_commits_and_are_all_durable(tmp_path: Path) -> None:
    path = tmp_path / "wf.db"
    s = SqliteStore(path, durability="fsync")
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
        assert len(dump(path)["instances"]) == 200
    finally:
        await s.close()
    assert len(dump(path)["instances"]) == 200


async def test_a_failing_write_does_not_spoil_the_others_in_its_commit(
    store: SqliteStore,
) -> None:
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


# ---- fenced writes -----------------------------------------------------------------------------


async def _claimed(store: SqliteStore) -> tuple[int, int]:
    [row] = await store.create_instances([new("a")], skip_existing=False)
    [claim] = (await store.claim_ready("me", 1000.0, 10, [WF], 30.0)).claims
    assert claim.row.pk == row.pk and claim.epoch == row.epoch + 1
    return row.pk, claim.epoch


async def _stale_writes(store: SqliteStore, pk: int, epoch: int) -> list[object]:
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
    store: SqliteStore,
) -> None:
    pk, epoch = await _claimed(store)
    # Some history for stale writes to try to change, written with the current epoch.
    step = StepRecord("s", 1, StepKind.DO, 1000.0)
    assert await store.start_step(pk, epoch, step) is True
    assert await store.start_attempt(pk, epoch, step, AttemptRecord(1, 1000.0)) is True
    await store.send_event(pk, "go", '{"n":1}', 1000.5)
    await store.pause(pk, 1000.6)  # claimed: becomes waitingForPause
    before = dump(store.path)
    assert before["instances"] and before["steps"] and before["attempts"] and before["events"]

    results = await _stale_writes(store, pk, epoch - 1)

    assert results == [False] * 11  # consume_event too: False means fenced, None no event
    assert dump(store.path) == before
    history = await store.load_history(pk)
    assert [(s.name, s.state, len(s.attempts)) for s in history.steps] == [
        ("s", StepState.RUNNING, 1)
    ]
    assert history.steps[0].attempts[0].ended is None


async def test_the_current_epoch_writes(store: SqliteStore) -> None:
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


async def test_a_terminated_instance_fences_out_its_old_runner(store: SqliteStore) -> None:
    pk, epoch = await _claimed(store)
    terminated = await store.terminate(pk, 1001.0, "api")
    assert terminated.epoch > epoch
    before = dump(store.path)
    assert await store.finish(pk, epoch, Status.COMPLETE, 1002.0, '"late"', None) is False
    assert await store.start_step(pk, epoch, StepRecord("s", 1, StepKind.DO, 1002.0)) is False
    assert dump(store.path) == before
    row = await store.get_instance(WF, "a")
    assert row is not None and row.status is Status.TERMINATED and row.output is None


# ---- claims after crashes and upgrades ---------------------------------------------------------


async def _a_suspect_running_again(store: SqliteStore) -> tuple[int, int, StepRecord]:
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
    store: SqliteStore,
) -> None:
    pk, _, _ = await _a_suspect_running_again(store)
    # What an upgrade used to leave: let go, running, a suspect, and no wake_at.
    with closing(sqlite3.connect(store.path)) as conn:
        conn.execute("UPDATE instances SET owner = NULL, lease_until = NULL WHERE pk = ?", (pk,))
        conn.commit()
    [claim] = (await store.claim_ready("recovery", 1200.0, 10, [WF], 30.0, suspects=1)).claims
    assert claim.row.pk == pk and claim.row.owner == "recovery"


async def test_an_upgrade_cuts_the_attempt_in_flight_short_uncounted_and_leaves_it_ready(
    store: SqliteStore,
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


async def test_an_upgrade_after_a_crash_leaves_the_crashed_attempt_counted(
    store: SqliteStore,
) -> None:
    pk, epoch = await _claimed(store)
    step = StepRecord("s", 1, StepKind.DO, 1000.0)
    assert await store.start_attempt(pk, epoch, step, AttemptRecord(1, 1000.0), first=True)
    await store.release_claims("me", crashed=True, now=1000.0)  # died; nobody holds it yet
    await store.upgrade(pk, "v2", 1001.0)
    [recorded] = (await store.load_history(pk)).steps
    assert recorded.attempts[0].ended is None  # the next life closes it as interrupted


async def test_a_claim_round_returns_what_it_errored_for_crashing_and_a_restart_forgives(
    store: SqliteStore,
) -> None:
    from wf.engine.store.sqlite_controls import MAX_CRASHES

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


# ---- retention per version (wf serve) ----------------------------------------------------------


async def _finished_under(store: SqliteStore, version: str, instance_id: str, ended: float) -> None:
    created = NewInstance(WF, instance_id, "{}", "api", version, 1000.0)
    await store.create_instances([created], skip_existing=False)
    [claim] = (await store.claim_ready("me", 1000.0, 10, [WF], 30.0, version)).claims
    assert await store.finish(claim.row.pk, claim.epoch, Status.COMPLETE, ended, "1", None)


async def test_each_version_purges_its_finished_instances_by_its_own_retention(
    store: SqliteStore,
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


# ---- creating instances ------------------------------------------------------------------------


async def test_a_duplicate_id_raises_and_writes_nothing(store: SqliteStore) -> None:
    await store.create_instances([new("a", '{"v":1}')], skip_existing=False)
    before = dump(store.path)
    with pytest.raises(InstanceAlreadyExists) as info:
        await store.create_instances([new("b"), new("a", '{"v":2}'), new("c")], skip_existing=False)
    assert isinstance(info.value, WfError)
    assert info.value.code == "instance.already_exists"
    assert '"a"' in str(info.value) and f'"{WF}"' in str(info.value)
    assert dump(store.path) == before
    assert await store.get_instance(WF, "b") is None
    assert await store.get_instance(WF, "c") is None


async def test_a_batch_repeating_an_id_raises_and_writes_nothing(store: SqliteStore) -> None:
    with pytest.raises(InstanceAlreadyExists):
        await store.create_instances([new("d"), new("e"), new("d")], skip_existing=False)
    assert dump(store.path)["instances"] == []


async def test_skip_existing_skips_and_keeps_the_existing_instance(store: SqliteStore) -> None:
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


async def test_the_same_id_in_another_workflow_is_another_instance(store: SqliteStore) -> None:
    await store.create_instances([new("a")], skip_existing=False)
    [other] = await store.create_instances([new("a", workflow="other")], skip_existing=False)
    assert other.workflow == "other"
    one = await store.get_instance(WF, "a")
    assert one is not None and one.pk != other.pk


# ---- query plans -------------------------------------------------------------------------------


def test_a_claim_round_reads_no_instance_it_does_not_claim(tmp_path: Path) -> None:
    """Every statement of a claim round is a search on an index, never a scan of the instances
    table or of every waiting instance: with 100,000 instances asleep, a round stays as cheap
    as with none."""
    from wf.engine.store import sqlite_controls
    from wf.engine.store.sqlite_file import connect

    path = tmp_path / "wf.db"
    with closing(connect(path, "os")) as conn:
        migrations.migrate(conn)
        conn.executemany(
            "INSERT INTO instances (workflow, id, status, params, trigger, version_id, created, "
            "queued, modified, wake_at) VALUES (?, ?, 'waiting', '{}', 'api', 'v', 1, 1, 1, ?)",
            [(WF, f"sleeper{n}", 1e12) for n in range(200)],
        )
        statements: list[str] = []
        conn.set_trace_callback(statements.append)
        conn.execute("BEGIN IMMEDIATE")
        sqlite_controls.claim_ready(conn, "me", 1000.0, 10, [WF], 30.0, suspects=1)
        conn.execute("ROLLBACK")
        conn.set_trace_callback(None)
        plans = {
            sql: [
                detail for _, _, _, detail in conn.execute(f"EXPLAIN QUERY PLAN {sql}").fetchall()
            ]
            for sql in statements
            if sql.lstrip().upper().startswith(("SELECT", "UPDATE"))
        }
    assert len(plans) >= 4
    for sql, plan in plans.items():
        assert not any(step.startswith("SCAN") for step in plan), (sql, plan)
    crash_checks = [plan for sql, plan in plans.items() if "crashes >= " in sql]
    assert crash_checks and all("instances_crashed" in " ".join(p) for p in crash_checks)


async def test_listing_by_status_and_the_retention_purge_read_only_what_they_return(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``wf instances list --status`` (and its count) and the hourly purge of old finished
    instances search an index on exactly what they look for, not every instance of the
    workflow or every finished one."""
    from wf.engine.store import sqlite_file

    statements: list[str] = []
    real_connect = sqlite_file.connect

    def tracing_connect(path: Path, durability: str) -> sqlite3.Connection:
        conn = real_connect(path, durability)
        conn.set_trace_callback(statements.append)
        return conn

    monkeypatch.setattr(sqlite_file, "connect", tracing_connect)
    store = SqliteStore(tmp_path / "wf.db", durability="os")
    await store.open()
    try:
        await store.create_instances([new(f"i{n}") for n in range(20)], skip_existing=False)
        statements.clear()
        await store.list_instances(WF, status=Status.QUEUED, offset=0, limit=5, newest_first=True)
        await store.purge_finished(1000.0)
        await store.activate_version("v1", 0.0, [], 1, 1, retention=86400.0)
        await store.purge_by_version_retention(1000.0, 86400.0)
    finally:
        await store.close()
    wanted = [s for s in statements if "status = 'queued'" in s or "ended < " in s]
    with closing(real_connect(tmp_path / "wf.db", "os")) as conn:
        plans = {
            sql: " / ".join(row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}"))
            for sql in wanted
        }
    assert len(plans) == 4, plans
    for sql, plan in plans.items():
        index = "instances_by_status"
        if "ended < " in sql:
            index = "instances_version_ended" if "version_id = " in sql else "instances_ended"
        assert f"INDEX {index} (" in plan and "TEMP B-TREE" not in plan, (sql, plan)
