"""SqliteStore on real files: journal and durability, refusing files it must not touch, the
process lock, and the query plans of its hot statements. What both stores do is in
test_store_contract.py."""

from __future__ import annotations

import asyncio
import os
import random
import sqlite3
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from wf.engine.model import NewInstance, Status
from wf.engine.store import migrations, open_store
from wf.engine.store.sqlite import SqliteStore
from wf.errors import (
    StoreCorrupt,
    StoreError,
    StoreLocked,
    StoreTooNew,
)

WF = "wf"


def new(instance_id: str, params: str = "{}", workflow: str = WF) -> NewInstance:
    return NewInstance(workflow, instance_id, params, "api", "v1", 1000.0)


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
