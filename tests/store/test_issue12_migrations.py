"""A database made by the release before issue 12 (SQLite schema 8, PostgreSQL schema 1) takes
issue 12's migrations (retention and restart columns, the rollback column and attempts keyed by
kind, schedule firings) and its instances then restart from a step, roll back and are deleted.

The old database is built as the old wf built it: its migrations (the lists are append-only, so
the ones before issue 12's are what it ran) and rows written as it wrote them (attempts without a
kind)."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Harness, wait_status
from wf import RollbackContext, WorkflowEntrypoint
from wf.engine import WorkflowSpec
from wf.engine.store import migrations, pg_schema

# The schemas of the release before issue 12 (b0a2725): found, not hard-coded.
OLD_SQLITE = next(n for n, m in enumerate(migrations.MIGRATIONS) if "success_retention" in m)
OLD_POSTGRES = next(
    n
    for n, statements in enumerate(pg_schema.MIGRATIONS)
    if any("success_retention" in s for s in statements)
)
# One instance as the old wf left it: step "a" done in its second attempt, then hibernated in
# a sleep whose timer is due.
INSTANCE = (
    "INSERT INTO {p}instances (workflow, id, status, params, trigger, version_id, created, "
    "queued, modified, started, wake_at) "
    "VALUES ('wf', 'old', 'waiting', '{{\"fail\": true}}', 'api', 'v', 1, 1, 1, 1, 0)"
)
STEPS = [
    "INSERT INTO {p}steps (instance, kind, name, count, state, started, ended, output, config) "
    "VALUES ({pk}, 'do', 'a', 1, 'succeeded', 1, 2, '\"A\"', NULL)",
    "INSERT INTO {p}steps (instance, kind, name, count, state, started, ended, duration) "
    "VALUES ({pk}, 'sleep', 'nap', 1, 'succeeded', 2, 3, 1)",
    "INSERT INTO {p}attempts (instance, name, count, number, started, ended, success, error) "
    'VALUES ({pk}, \'a\', 1, 1, 1, 1.5, {false}, \'{{"name": "E", "message": "busy"}}\')',
    "INSERT INTO {p}attempts (instance, name, count, number, started, ended, success) "
    "VALUES ({pk}, 'a', 1, 2, 1.5, 2, {true})",
]


def old_sqlite(path: Path) -> None:
    with closing(sqlite3.connect(path, isolation_level=None)) as conn:
        for script in migrations.MIGRATIONS[:OLD_SQLITE]:
            conn.executescript(script)
        conn.execute(f"PRAGMA application_id = {migrations.APPLICATION_ID}")
        conn.execute(f"PRAGMA user_version = {OLD_SQLITE}")
        pk = conn.execute(INSTANCE.format(p="")).lastrowid
        for statement in STEPS:
            conn.execute(statement.format(p="", pk=pk, true=1, false=0))


def old_postgres(url: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA wf")
        conn.execute(
            "CREATE TABLE wf.migrations (number integer PRIMARY KEY, applied "
            "timestamptz NOT NULL DEFAULT now())"
        )
        for number, statements in enumerate(pg_schema.MIGRATIONS[:OLD_POSTGRES]):
            for statement in statements:
                conn.execute(statement)
            conn.execute("INSERT INTO wf.migrations (number) VALUES (%s)", (number + 1,))
        found = conn.execute(INSTANCE.format(p="wf.") + " RETURNING pk").fetchone()
        assert found is not None
        for statement in STEPS:
            conn.execute(statement.format(p="wf.", pk=found[0], true="true", false="false"))


@pytest.fixture(params=["sqlite", "postgres"])
async def old_database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Harness]:
    url = None
    build: Callable[[], None]
    if request.param == "postgres":
        url = request.getfixturevalue("pg_url")
        build = lambda: old_postgres(url)  # noqa: E731
    else:
        build = lambda: old_sqlite(tmp_path / "wf.db")  # noqa: E731
    build()
    harness = Harness(tmp_path / "wf.db", url)
    try:
        yield harness
    finally:
        await harness.close()


async def test_an_old_database_migrates_and_its_instance_rolls_back_restarts_and_is_deleted(
    old_database: Harness,
) -> None:
    undone: list[tuple[str, Any]] = []

    def undo(context: RollbackContext) -> None:
        undone.append((context.ctx.step_name, context.output))

    class Flow(WorkflowEntrypoint):
        async def run(self, event, step):
            a = await step.do("a", lambda: "again", rollback=undo)
            await step.sleep("nap", 1)
            if event.payload.get("fail"):
                raise ValueError("out of stock")
            return a

    harness = old_database
    engine = await harness.start([WorkflowSpec("wf", Flow, "WF")])
    status = await wait_status(engine, "wf", "old")
    assert status["error"] == {"name": "ValueError", "message": "out of stock"}
    assert status["rollback"] == {"outcome": "complete", "error": None}
    assert undone == [("a", "A")]  # the old step's output, replayed, not run again
    details = await engine.details("wf", "old")
    assert [(s["type"], s["name"], len(s.get("attempts", []))) for s in details["steps"]] == [
        ("step", "a-1", 2),
        ("sleep", "nap-1", 0),
        ("rollback", "a-1", 1),
    ]
    await engine.restart("wf", "old", {"name": "a"}, params={"fail": False})
    status = await wait_status(engine, "wf", "old")
    assert status == {"status": "complete", "error": None, "output": "again", "rollback": None}
    kinds = harness.query("SELECT kind, count(*) FROM attempts GROUP BY kind")
    assert kinds == [("do", 1)]
    await engine.create("wf", "kept", {}, retention={"success_retention": "1 day"})
    assert (await engine.details("wf", "kept"))["retention"]["success_retention"] == "1 day"
    await (await engine.env.WF.get("old")).delete()
    assert harness.query("SELECT id FROM instances") == [("kept",)]
