"""SqliteStore opened ``read_only`` on real files: it reads beside the owner without its lock,
writes nothing, reads a database not created yet as empty, and refuses what it cannot read."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, closing
from pathlib import Path

import pytest

from tests.store.test_sqlite_store import (
    WF,
    bump_user_version,
    dump,
    make_foreign_db,
    make_real_db,
    new,
)
from wf.engine.model import Status
from wf.engine.store.sqlite import SqliteStore
from wf.errors import StoreCorrupt, StoreError, StoreTooNew


@asynccontextmanager
async def opened(store: SqliteStore) -> AsyncIterator[SqliteStore]:
    await store.open()
    try:
        yield store
    finally:
        await store.close()


async def test_it_reads_what_the_owner_commits_while_the_owner_holds_the_lock(
    tmp_path: Path,
) -> None:
    path = tmp_path / "wf.db"
    async with opened(SqliteStore(path, durability="os")) as owner:
        await owner.create_instances([new("a"), new("b", workflow="other")], skip_existing=False)
        async with opened(SqliteStore(path, read_only=True)) as reader:
            rows, total = await reader.list_instances(
                WF, status=None, offset=0, limit=10, newest_first=True
            )
            assert [r.id for r in rows] == ["a"] and total == 1
            await owner.create_instances([new("c")], skip_existing=False)  # the owner goes on
            row = await reader.get_instance(WF, "c")
            assert row is not None and row.status is Status.QUEUED
            assert await reader.workflows_with_instances() == ["other", WF]


async def test_the_owner_opens_while_a_reader_is_open_and_the_reader_keeps_reading(
    tmp_path: Path,
) -> None:
    """The reader takes no lock: a child whose module is broken never holds up the next child
    that runs the engine, even while it is still serving."""
    path = tmp_path / "wf.db"
    await make_real_db(path, instances=3)
    async with opened(SqliteStore(path, read_only=True)) as reader:
        async with opened(SqliteStore(path, durability="os")) as owner:
            await owner.create_instances([new("later")], skip_existing=False)
        assert await reader.get_instance(WF, "later") is not None
        assert (await reader.count_statuses(WF))["queued"] == 4


async def test_it_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "wf.db"
    await make_real_db(path, instances=2)
    before = dump(path)
    async with opened(SqliteStore(path, read_only=True)) as reader:
        with pytest.raises(StoreError, match="read-only"):
            await reader.create_instances([new("x")], skip_existing=False)
        row = await reader.get_instance(WF, "i0")
        assert row is not None
        with pytest.raises(StoreError, match="read-only"):
            await reader.terminate(row.pk, 2000.0, "api")
    assert dump(path) == before


async def test_a_database_not_created_yet_reads_as_empty_and_is_not_created(
    tmp_path: Path,
) -> None:
    path = tmp_path / "state" / "wf.db"
    async with opened(SqliteStore(path, read_only=True)) as reader:
        assert await reader.list_instances(
            WF, status=None, offset=0, limit=10, newest_first=True
        ) == ([], 0)
        assert await reader.get_instance(WF, "a") is None
        assert await reader.workflows_with_instances() == []
        assert (await reader.count_statuses(WF))["complete"] == 0
    assert not (tmp_path / "state").exists()


async def test_what_it_cannot_read_is_refused_in_one_line(tmp_path: Path) -> None:
    foreign = tmp_path / "foreign.db"
    make_foreign_db(foreign, wal=True)
    too_new = tmp_path / "new.db"
    await make_real_db(too_new, instances=1)
    bump_user_version(too_new)
    older = tmp_path / "old.db"
    await make_real_db(older, instances=1)
    with closing(sqlite3.connect(older)) as conn:
        conn.execute("PRAGMA user_version = 1")
    cases: list[tuple[Path, type[StoreError], str]] = [
        (foreign, StoreCorrupt, "not one of wf's"),
        (too_new, StoreTooNew, "upgrade wf"),
        (older, StoreError, "has schema 1"),
    ]
    for path, error, words in cases:
        reader = SqliteStore(path, read_only=True)
        with pytest.raises(error) as info:
            await reader.open()
        await reader.close()
        message = str(info.value)
        assert words in message and str(path) in message and "\n" not in message, message


def test_a_store_is_not_both_shared_and_read_only(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        SqliteStore(tmp_path / "wf.db", shared=True, read_only=True)
