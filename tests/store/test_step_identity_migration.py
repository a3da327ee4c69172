"""The step renumbering migration: steps recorded by a wf that counted one name across kinds
(do "poll", sleep "poll", do "poll" were poll-1, poll-2, poll-3) are renumbered per kind (poll-1,
poll-1, poll-2), with their attempts and consumed events, and replay under the new counting.

The old database is built as the old wf built it: its migrations (the list is append-only, so
the ones before the renumbering are what it ran) and rows written with its numbering."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

from tests.conftest import Harness, wait_status
from wf import StepContext, WorkflowEntrypoint
from wf.engine import WorkflowSpec
from wf.engine.store import migrations

# The schema just before the renumbering: counts were shared across kinds up to it. Found, not
# hard-coded, so that migrations merged in before this one keep the test honest.
OLD_SCHEMA = next(n for n, m in enumerate(migrations.MIGRATIONS) if "step_renumbering" in m)
FAILED = json.dumps({"name": "ConnectionError", "message": "down"})


def old_database(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    for script in migrations.MIGRATIONS[:OLD_SCHEMA]:
        conn.executescript(script)
    conn.execute(f"PRAGMA application_id = {migrations.APPLICATION_ID}")
    conn.execute(f"PRAGMA user_version = {OLD_SCHEMA}")
    return conn


def add_instance(conn: sqlite3.Connection, instance_id: str) -> int:
    """A hibernated instance whose timer is due: the next engine claims and replays it."""
    cursor = conn.execute(
        "INSERT INTO instances (workflow, id, status, params, trigger, version_id, created, "
        "queued, modified, started, wake_at) "
        "VALUES ('poller', ?, 'waiting', '{}', 'api', 'v', 1, 1, 1, 1, 0)",
        (instance_id,),
    )
    assert cursor.lastrowid is not None
    return cursor.lastrowid


def add_step(
    conn: sqlite3.Connection, pk: int, name: str, count: int, kind: str, **columns: Any
) -> None:
    values = {"state": "succeeded", "started": 1.0, "ended": 2.0, **columns}
    conn.execute(
        f"INSERT INTO steps (instance, name, count, kind, {', '.join(values)}) "
        f"VALUES (?, ?, ?, ?, {', '.join('?' * len(values))})",
        (pk, name, count, kind, *values.values()),
    )


def add_attempt(
    conn: sqlite3.Connection, pk: int, name: str, count: int, number: int, success: bool
) -> None:
    conn.execute(
        "INSERT INTO attempts (instance, name, count, number, started, ended, success, error) "
        "VALUES (?, ?, ?, ?, 1, 2, ?, ?)",
        (pk, name, count, number, int(success), None if success else FAILED),
    )


def record_old_history(conn: sqlite3.Connection, pk: int) -> None:
    """What the old wf recorded for ``Poller`` below, up to the third do's failed attempt."""
    add_step(conn, pk, "poll", 1, "do", output='"first"')
    add_attempt(conn, pk, "poll", 1, 1, success=True)
    add_step(conn, pk, "poll", 2, "sleep", duration=0.0, wake_at=None)
    add_step(conn, pk, "poll", 3, "do", output='"second"')
    add_attempt(conn, pk, "poll", 3, 1, success=False)
    add_attempt(conn, pk, "poll", 3, 2, success=True)
    add_step(conn, pk, "poll", 4, "wait", output='{"n":1}', event_type="go", event_time=1.5)
    conn.execute(
        "INSERT INTO events (instance, type, payload, received, consumed_name, consumed_count) "
        "VALUES (?, 'go', '{\"n\":1}', 1.5, 'poll', 4)",
        (pk,),
    )
    add_step(conn, pk, "poll", 5, "do", state="running", ended=None, wake_at=0.0)
    add_attempt(conn, pk, "poll", 5, 1, success=False)


def test_the_migration_renumbers_steps_attempts_and_events_per_kind(tmp_path: Path) -> None:
    path = tmp_path / "wf.db"
    with closing(old_database(path)) as conn:
        first = add_instance(conn, "a")
        record_old_history(conn, first)
        other = add_instance(conn, "b")  # counted on its own, and nothing to renumber
        add_step(conn, other, "poll", 1, "do", output="1")
        add_attempt(conn, other, "poll", 1, 1, success=True)
        add_step(conn, other, "nap", 1, "sleep", duration=0.0)
        migrations.migrate(conn)
        assert conn.execute("PRAGMA user_version").fetchone()[0] == migrations.LATEST
        steps = conn.execute(
            "SELECT instance, kind, name, count, output FROM steps ORDER BY rowid"
        ).fetchall()
        attempts = conn.execute(
            "SELECT instance, name, count, number, success FROM attempts "
            "ORDER BY instance, count, number"
        ).fetchall()
        events = conn.execute("SELECT consumed_name, consumed_count FROM events").fetchall()
        # The same identity under two kinds is now legal, the same one under one kind is not.
        add_step(conn, other, "nap", 1, "do")
        try:
            add_step(conn, other, "nap", 1, "do")
            raise AssertionError("a duplicate (kind, name, count) was accepted")
        except sqlite3.IntegrityError:
            pass
    assert steps == [
        (first, "do", "poll", 1, '"first"'),
        (first, "sleep", "poll", 1, None),
        (first, "do", "poll", 2, '"second"'),
        (first, "wait", "poll", 1, '{"n":1}'),
        (first, "do", "poll", 3, None),
        (other, "do", "poll", 1, "1"),
        (other, "sleep", "nap", 1, None),
    ]
    assert attempts == [
        (first, "poll", 1, 1, 1),
        (first, "poll", 2, 1, 0),
        (first, "poll", 2, 2, 1),
        (first, "poll", 3, 1, 0),
        (other, "poll", 1, 1, 1),
    ]
    assert events == [("poll", 1)]


async def test_an_instance_recorded_by_the_old_numbering_replays_under_the_new(
    harness: Harness,
) -> None:
    ran: list[str] = []
    contexts: list[StepContext] = []

    def body(tag: str) -> str:
        ran.append(tag)
        return f"{tag} again"

    class Poller(WorkflowEntrypoint):
        async def run(self, event, step):
            first = await step.do("poll", lambda: body("first"))
            await step.sleep("poll", 0)
            second = await step.do("poll", lambda: body("second"))
            got = await step.wait_for_event("poll", type="go", timeout="1 hour")

            def third(ctx: StepContext) -> str:
                contexts.append(ctx)
                return "third"

            last = await step.do("poll", {"retries": {"limit": 3, "delay": 0}}, third)
            return [first, second, got.payload, last]

    with closing(old_database(harness.path)) as conn:
        record_old_history(conn, add_instance(conn, "old"))
    engine = await harness.start([WorkflowSpec("poller", Poller)])
    status = await wait_status(engine, "poller", "old")
    assert status == {
        "status": "complete",
        "error": None,
        "output": ["first", "second", {"n": 1}, "third"],
        "rollback": None,
    }
    assert ran == []  # the recorded steps were replayed, not run again
    assert [(c.step_name, c.count, c.attempt) for c in contexts] == [("poll", 3, 2)]
    steps = (await engine.details("poller", "old"))["steps"]
    assert [(s["type"], s["name"]) for s in steps] == [
        ("step", "poll-1"),
        ("sleep", "poll-1"),
        ("step", "poll-2"),
        ("waitForEvent", "poll-1"),
        ("step", "poll-3"),
    ]
    assert [len(s.get("attempts", [])) for s in steps] == [1, 0, 2, 0, 2]
    assert [a["success"] for a in steps[4]["attempts"]] == [False, True]
