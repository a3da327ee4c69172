"""The SQLite schema as numbered, append-only migrations. ``PRAGMA user_version`` is the number."""

from __future__ import annotations

import sqlite3

from wf.errors import StoreTooNew

# "wf\0\1": tells a wf database from any other SQLite file.
APPLICATION_ID = 0x77660001

MIGRATIONS: list[str] = [
    # 1: instances, their steps and attempts, and buffered events.
    """
    CREATE TABLE instances (
        pk INTEGER PRIMARY KEY,
        workflow TEXT NOT NULL,
        id TEXT NOT NULL,
        status TEXT NOT NULL,
        params TEXT NOT NULL,
        trigger TEXT NOT NULL,
        version_id TEXT NOT NULL,
        created REAL NOT NULL,
        queued REAL NOT NULL,
        modified REAL NOT NULL,
        started REAL,
        ended REAL,
        output TEXT,
        error TEXT,
        termination TEXT,
        wake_at REAL,
        paused_at REAL,
        owner TEXT,
        lease_until REAL,
        epoch INTEGER NOT NULL DEFAULT 0,
        UNIQUE (workflow, id)
    );
    CREATE INDEX instances_ready ON instances (status, wake_at);
    CREATE INDEX instances_queue ON instances (status, queued);
    CREATE INDEX instances_listing ON instances (workflow, created);
    CREATE INDEX instances_ended ON instances (ended) WHERE ended IS NOT NULL;
    CREATE INDEX instances_owner ON instances (owner) WHERE owner IS NOT NULL;

    CREATE TABLE steps (
        instance INTEGER NOT NULL,
        name TEXT NOT NULL,
        count INTEGER NOT NULL,
        kind TEXT NOT NULL,
        state TEXT NOT NULL,
        started REAL NOT NULL,
        ended REAL,
        output TEXT,
        error TEXT,
        config TEXT,
        wake_at REAL,
        duration REAL,
        event_type TEXT,
        event_time REAL,
        non_retryable INTEGER NOT NULL DEFAULT 0,
        UNIQUE (instance, name, count)
    );

    CREATE TABLE attempts (
        instance INTEGER NOT NULL,
        name TEXT NOT NULL,
        count INTEGER NOT NULL,
        number INTEGER NOT NULL,
        started REAL NOT NULL,
        ended REAL,
        success INTEGER,
        error TEXT,
        PRIMARY KEY (instance, name, count, number)
    ) WITHOUT ROWID;

    CREATE TABLE events (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        instance INTEGER NOT NULL,
        type TEXT NOT NULL,
        payload TEXT NOT NULL,
        received REAL NOT NULL,
        consumed_name TEXT,
        consumed_count INTEGER
    );
    CREATE INDEX events_by_instance ON events (instance, type, seq);
    """,
    # 2: attempts cut short by a graceful stop (not counted toward the retry limit), and the
    # event types a hibernating instance waits for (an event of another type does not wake it).
    """
    ALTER TABLE attempts ADD COLUMN uncounted INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE instances ADD COLUMN waiting_for TEXT;
    """,
    # 3: what `wf serve` keeps: deployed versions and secrets.
    """
    CREATE TABLE versions (
        id TEXT PRIMARY KEY,
        created REAL NOT NULL,
        active INTEGER NOT NULL DEFAULT 0,
        workflows TEXT NOT NULL,
        files INTEGER NOT NULL,
        size INTEGER NOT NULL,
        unloaded REAL
    );
    CREATE TABLE secrets (
        name TEXT PRIMARY KEY,
        value TEXT NOT NULL,
        updated REAL NOT NULL
    );
    """,
    # 4: how many times in a row the process running an instance died (not a graceful stop).
    """
    ALTER TABLE instances ADD COLUMN crashes INTEGER NOT NULL DEFAULT 0;
    """,
    # 5: the few instances whose process died under them, found without reading every waiting
    # one (each claim round looks for those that crashed too often); instances of one status
    # listed and counted without reading the workflow's others.
    """
    CREATE INDEX instances_crashed ON instances (crashes) WHERE crashes > 0;
    CREATE INDEX instances_by_status ON instances (workflow, status, created);
    """,
    # 6: each deployed version's [engine] retention in seconds (NULL: the server's default), and
    # the finished instances of one version found by when they ended, for its own purge.
    """
    ALTER TABLE versions ADD COLUMN retention REAL;
    CREATE INDEX instances_version_ended ON instances (version_id, ended) WHERE ended IS NOT NULL;
    """,
    # 7: a step's identity is (kind, name, count), counted per kind as Cloudflare does: wf used
    # to count one name across kinds (do "poll", sleep "poll", do "poll" were poll-1, -2, -3;
    # they are poll-1, poll-1, poll-2). Recorded steps are renumbered so that they replay under
    # the new counting, with their attempts (do steps) and consumed events (waits). Rows keep
    # their rowids: a history is read in rowid order.
    """
    CREATE TABLE step_renumbering (
        instance INTEGER NOT NULL,
        kind TEXT NOT NULL,
        name TEXT NOT NULL,
        old INTEGER NOT NULL,
        new INTEGER NOT NULL,
        PRIMARY KEY (instance, kind, name, old)
    ) WITHOUT ROWID;
    INSERT INTO step_renumbering (instance, kind, name, old, new)
        SELECT instance, kind, name, count,
               row_number() OVER (PARTITION BY instance, kind, name ORDER BY count)
        FROM steps;

    CREATE TABLE steps_by_kind (
        instance INTEGER NOT NULL,
        name TEXT NOT NULL,
        count INTEGER NOT NULL,
        kind TEXT NOT NULL,
        state TEXT NOT NULL,
        started REAL NOT NULL,
        ended REAL,
        output TEXT,
        error TEXT,
        config TEXT,
        wake_at REAL,
        duration REAL,
        event_type TEXT,
        event_time REAL,
        non_retryable INTEGER NOT NULL DEFAULT 0,
        UNIQUE (instance, kind, name, count)
    );
    INSERT INTO steps_by_kind (rowid, instance, name, count, kind, state, started, ended, output,
                               error, config, wake_at, duration, event_type, event_time,
                               non_retryable)
        SELECT s.rowid, s.instance, s.name, r.new, s.kind, s.state, s.started, s.ended, s.output,
               s.error, s.config, s.wake_at, s.duration, s.event_type, s.event_time,
               s.non_retryable
        FROM steps s JOIN step_renumbering r
          ON r.instance = s.instance AND r.kind = s.kind AND r.name = s.name AND r.old = s.count;
    DROP TABLE steps;
    ALTER TABLE steps_by_kind RENAME TO steps;

    UPDATE attempts SET count = -(
            SELECT r.new FROM step_renumbering r
            WHERE r.instance = attempts.instance AND r.kind = 'do' AND r.name = attempts.name
              AND r.old = attempts.count)
        WHERE EXISTS (
            SELECT 1 FROM step_renumbering r
            WHERE r.instance = attempts.instance AND r.kind = 'do' AND r.name = attempts.name
              AND r.old = attempts.count AND r.new <> r.old);
    UPDATE attempts SET count = -count WHERE count < 0;

    UPDATE events SET consumed_count = (
            SELECT r.new FROM step_renumbering r
            WHERE r.instance = events.instance AND r.kind = 'wait'
              AND r.name = events.consumed_name AND r.old = events.consumed_count)
        WHERE EXISTS (
            SELECT 1 FROM step_renumbering r
            WHERE r.instance = events.instance AND r.kind = 'wait'
              AND r.name = events.consumed_name AND r.old = events.consumed_count);
    DROP TABLE step_renumbering;
    """,
    # 8: what a cluster of `wf serve` nodes shares through the database: each loaded version's
    # bundle (a node lacking one fetches it from here) and settings (the API token's hash).
    """
    CREATE TABLE bundles (
        version_id TEXT PRIMARY KEY,
        data BLOB NOT NULL
    );
    CREATE TABLE settings (
        name TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    """,
    # Per-instance retention (seconds kept once complete / once errored or terminated; NULL:
    # the default), found by the purge without reading the others; and each instance's latest
    # restart (JSON), which describe shows.
    """
    ALTER TABLE instances ADD COLUMN success_retention REAL;
    ALTER TABLE instances ADD COLUMN error_retention REAL;
    ALTER TABLE instances ADD COLUMN restarted TEXT;
    CREATE INDEX instances_own_retention ON instances (ended)
        WHERE ended IS NOT NULL AND (success_retention IS NOT NULL OR error_retention IS NOT NULL);
    """,
    # Rollbacks (sagas): the instance's rollback phase as JSON (its trigger error, then its
    # outcome); a rollback handler runs as a step of kind 'rollback' under its do step's name
    # and count, so an attempt is known by its step's kind too.
    """
    ALTER TABLE instances ADD COLUMN rollback TEXT;
    CREATE TABLE attempts_by_kind (
        instance INTEGER NOT NULL,
        kind TEXT NOT NULL DEFAULT 'do',
        name TEXT NOT NULL,
        count INTEGER NOT NULL,
        number INTEGER NOT NULL,
        started REAL NOT NULL,
        ended REAL,
        success INTEGER,
        error TEXT,
        uncounted INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (instance, kind, name, count, number)
    ) WITHOUT ROWID;
    INSERT INTO attempts_by_kind (instance, kind, name, count, number, started, ended, success,
                                  error, uncounted)
        SELECT instance, 'do', name, count, number, started, ended, success, error, uncounted
        FROM attempts;
    DROP TABLE attempts;
    ALTER TABLE attempts_by_kind RENAME TO attempts;
    """,
    # cron schedules: up to when each (workflow, cron) has fired, so a restart makes up a
    # firing it missed, once, and never fires one twice.
    """
    CREATE TABLE schedule_firings (
        workflow TEXT NOT NULL,
        cron TEXT NOT NULL,
        fired REAL NOT NULL,
        PRIMARY KEY (workflow, cron)
    ) WITHOUT ROWID;
    """,
    # Flow control (issue 14): each instance's priority (higher is claimed first; the queue
    # index follows it), and its concurrency and rate-limit keys, read from its params when it
    # was created (NULL: no key configured, or the path led nowhere). Starts are counted per
    # workflow by when they happened, for rate limits.
    """
    ALTER TABLE instances ADD COLUMN priority INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE instances ADD COLUMN concurrency_key TEXT;
    ALTER TABLE instances ADD COLUMN rate_key TEXT;
    DROP INDEX instances_queue;
    CREATE INDEX instances_queue ON instances (status, priority DESC, queued);
    CREATE INDEX instances_started ON instances (workflow, started) WHERE started IS NOT NULL;
    """,
    # Tracing: the W3C trace context (traceparent) of the request that created an instance, so
    # the spans of its lives join that request's trace.
    """
    ALTER TABLE instances ADD COLUMN traceparent TEXT;
    """,
    # Child workflows (step.run_workflow): each child names its parent (pk, workflow, id, and
    # the parent's step waiting for it); a parent's children are found by their own index. A
    # child that ends (finished, terminated, errored by its crashes) or is deleted unfinished
    # wakes its hibernated parent in the same transaction, whichever write ended it.
    """
    ALTER TABLE instances ADD COLUMN parent_pk INTEGER;
    ALTER TABLE instances ADD COLUMN parent_workflow TEXT;
    ALTER TABLE instances ADD COLUMN parent_id TEXT;
    ALTER TABLE instances ADD COLUMN parent_step TEXT;
    CREATE INDEX instances_children ON instances (parent_pk) WHERE parent_pk IS NOT NULL;
    CREATE TRIGGER instances_child_ended AFTER UPDATE OF status ON instances
        WHEN NEW.parent_pk IS NOT NULL
         AND NEW.status IN ('complete', 'errored', 'terminated')
         AND OLD.status NOT IN ('complete', 'errored', 'terminated')
    BEGIN
        UPDATE instances SET wake_at = min(coalesce(wake_at, NEW.modified), NEW.modified)
        WHERE pk = NEW.parent_pk AND status = 'waiting' AND owner IS NULL;
    END;
    CREATE TRIGGER instances_child_deleted AFTER DELETE ON instances
        WHEN OLD.parent_pk IS NOT NULL
         AND OLD.status NOT IN ('complete', 'errored', 'terminated')
    BEGIN
        UPDATE instances SET wake_at = min(coalesce(wake_at, OLD.modified), OLD.modified)
        WHERE pk = OLD.parent_pk AND status = 'waiting' AND owner IS NULL;
    END;
    """,
    # The CPU time each attempt's body used (seconds; NULL when not measured), beside its wall
    # time: describe, the dashboard and the metrics show both.
    """
    ALTER TABLE attempts ADD COLUMN cpu REAL;
    """,
]

LATEST = len(MIGRATIONS)


def migrate(conn: sqlite3.Connection) -> None:
    """Bring a database (new or older) to ``LATEST`` in one transaction."""
    current = conn.execute("PRAGMA user_version").fetchone()[0]
    if current > LATEST:
        raise StoreTooNew(
            f"the database has schema version {current}, newer than this wf understands "
            f"({LATEST}); upgrade wf"
        )
    if current == LATEST:
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        current = conn.execute("PRAGMA user_version").fetchone()[0]
        for number in range(current, LATEST):
            for statement in _statements(MIGRATIONS[number]):
                conn.execute(statement)
        conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        conn.execute(f"PRAGMA user_version = {LATEST}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _statements(script: str) -> list[str]:
    """The statements of a script; a trigger's body (``BEGIN ...; END``) stays whole."""
    statements: list[str] = []
    current = ""
    for piece in script.split(";"):
        current += piece + ";"
        if sqlite3.complete_statement(current):
            if current.strip(" \n;"):
                statements.append(current.strip())
            current = ""
    return statements
