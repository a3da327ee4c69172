"""What the cluster chaos suite reads from the PostgreSQL database the nodes share: the same
``Snapshot`` the SQLite suite reads from its file (so the same checks apply), and what only a
shared database can get wrong: a step or an attempt recorded twice, an instance finished twice.

An instance's finish leaves no history of its own in wf's tables (the row is updated in place),
so ``install_finish_audit`` puts a trigger of the test's own (in a schema ``chaos``) on
``wf.instances``: every write of a finished status, output or end time is logged, and a second
one for an instance would show.
"""

from __future__ import annotations

import json
from typing import Any

import psycopg

from tests.chaos.checks import Snapshot

FINISHED = ("complete", "errored", "terminated")

AUDIT = (
    "CREATE SCHEMA chaos",
    """
    CREATE TABLE chaos.finishes (
        instance bigint NOT NULL,
        id text NOT NULL,
        old_status text NOT NULL,
        status text NOT NULL,
        output text,
        ended double precision,
        at timestamptz NOT NULL DEFAULT clock_timestamp(),
        backend integer NOT NULL DEFAULT pg_backend_pid()
    )
    """,
    """
    CREATE FUNCTION chaos.record_finish() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO chaos.finishes (instance, id, old_status, status, output, ended)
        VALUES (NEW.pk, NEW.id, OLD.status, NEW.status, NEW.output, NEW.ended);
        RETURN NULL;
    END
    $$
    """,
    """
    CREATE TRIGGER chaos_finish AFTER UPDATE ON wf.instances FOR EACH ROW
        WHEN (NEW.status IN ('complete', 'errored', 'terminated') AND (
            OLD.status IS DISTINCT FROM NEW.status OR OLD.output IS DISTINCT FROM NEW.output
            OR OLD.ended IS DISTINCT FROM NEW.ended))
        EXECUTE FUNCTION chaos.record_finish()
    """,
)


def _connect(url: str) -> psycopg.Connection[tuple[Any, ...]]:
    return psycopg.connect(url, autocommit=True, connect_timeout=10)


def install_finish_audit(url: str) -> None:
    """Log every finish written to ``wf.instances`` (its schema must exist: a node started)."""
    with _connect(url) as conn, conn.transaction():
        for statement in AUDIT:
            conn.execute(statement)


def snapshot(url: str) -> Snapshot:
    """The instances, steps and attempts as one transaction sees them (nodes may be writing)."""
    snap = Snapshot()
    with _connect(url) as conn:
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        try:
            for instance, status, output, error in conn.execute(
                "SELECT id, status, output, error FROM wf.instances"
            ):
                snap.statuses[instance] = status
                snap.outputs[instance] = None if output is None else json.loads(output)
                snap.errors[instance] = None if error is None else json.loads(error)
            names = ("kind", "state", "output", "started", "ended", "duration")
            for row in conn.execute(
                "SELECT i.id, s.name || '-' || s.count, s.kind, s.state, s.output, s.started, "
                "s.ended, s.duration FROM wf.steps s JOIN wf.instances i ON i.pk = s.instance"
            ):
                snap.steps[(row[0], row[1])] = dict(zip(names, row[2:], strict=True))
            for row in conn.execute(
                "SELECT i.id, a.name || '-' || a.count, a.number, a.ended, a.success, a.error "
                "FROM wf.attempts a JOIN wf.instances i ON i.pk = a.instance ORDER BY a.number"
            ):
                snap.attempts.setdefault((row[0], row[1]), []).append(
                    {
                        "number": row[2],
                        "ended": row[3],
                        "success": None if row[4] is None else int(row[4]),
                        "error": None if row[5] is None else json.loads(row[5]),
                    }
                )
        finally:
            conn.execute("COMMIT")
    return snap


def status_counts(url: str) -> dict[str, int]:
    """Instances per status."""
    with _connect(url) as conn:
        rows = conn.execute("SELECT status, count(*) FROM wf.instances GROUP BY status")
        return {str(status): int(count) for status, count in rows}


def recorded_twice(url: str) -> list[str]:
    """Steps with more than one row (of any kind) and attempts with more than one row: each
    should be impossible."""
    with _connect(url) as conn:
        steps = conn.execute(
            "SELECT i.id, s.name, s.count, count(*) FROM wf.steps s "
            "JOIN wf.instances i ON i.pk = s.instance "
            "GROUP BY i.id, s.name, s.count HAVING count(*) > 1 ORDER BY 1, 2, 3"
        ).fetchall()
        attempts = conn.execute(
            "SELECT i.id, a.name, a.count, a.number, count(*) FROM wf.attempts a "
            "JOIN wf.instances i ON i.pk = a.instance "
            "GROUP BY i.id, a.name, a.count, a.number HAVING count(*) > 1 ORDER BY 1, 2, 3, 4"
        ).fetchall()
        successes = conn.execute(
            "SELECT i.id, a.name, a.count, count(*) FROM wf.attempts a "
            "JOIN wf.instances i ON i.pk = a.instance WHERE a.success "
            "GROUP BY i.id, a.name, a.count HAVING count(*) > 1 ORDER BY 1, 2, 3"
        ).fetchall()
    return [
        *(f"step {i} {name}-{count} recorded {n} times" for i, name, count, n in steps),
        *(f"attempt {i} {name}-{c} #{num} recorded {n} times" for i, name, c, num, n in attempts),
        *(
            f"step {i} {name}-{count} has {n} successful attempts"
            for i, name, count, n in successes
        ),
    ]


def finishes(url: str) -> dict[str, list[tuple[str, str, str | None]]]:
    """Instance id -> every finish written for it: (old status, new status, output)."""
    found: dict[str, list[tuple[str, str, str | None]]] = {}
    with _connect(url) as conn:
        for instance, old, new, output in conn.execute(
            "SELECT id, old_status, status, output FROM chaos.finishes ORDER BY at"
        ):
            found.setdefault(instance, []).append((old, new, output))
    return found


def held(url: str) -> list[tuple[str, str, str]]:
    """Finished instances that still name an owner (a claim nobody gave back)."""
    with _connect(url) as conn:
        rows = conn.execute(
            "SELECT id, status, owner FROM wf.instances WHERE owner IS NOT NULL "
            "AND status = ANY(%s) ORDER BY id",
            (list(FINISHED),),
        ).fetchall()
    return [(str(i), str(s), str(o)) for i, s, o in rows]


def claims(url: str, node_ids: list[str]) -> dict[str, tuple[int, int]]:
    """Node id -> (instances its workers hold, attempts of them running now). A worker's owner
    name starts with its node's id."""
    found = dict.fromkeys(node_ids, (0, 0))
    with _connect(url) as conn:
        for node, held_now, running in conn.execute(
            "SELECT split_part(i.owner, '/', 1), count(DISTINCT i.pk), count(a.number) "
            "FROM wf.instances i LEFT JOIN wf.attempts a ON a.instance = i.pk AND a.ended IS NULL "
            "WHERE i.owner IS NOT NULL GROUP BY 1"
        ):
            if node in found:
                found[node] = (int(held_now), int(running))
    return found
