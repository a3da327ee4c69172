"""Writes on whole instances in PostgreSQL: creating them, claiming them (leases per owner, on
the database's clock, with takeover of lapsed owners), and the controls. Each function builds a
writer job (see ``pg_writer``); the semantics are SqliteStore's (``sqlite_controls``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

from wf.engine.flow import FlowControl
from wf.engine.model import (
    FINISHED,
    Claim,
    ClaimRound,
    EventRecord,
    InstanceRow,
    NewInstance,
    RestartFrom,
    Status,
    StepRecord,
)
from wf.engine.store.flow_sql import FLOW_LOCK, choose_sql
from wf.engine.store.pg_connect import Conn
from wf.engine.store.pg_rows import FINISHED_SQL, INSTANCE_COLUMNS, row_to_instance, select_instance
from wf.engine.store.pg_writer import DBNOW, Apply, Finish
from wf.engine.store.sqlite_controls import (
    CRASHED_ERROR,
    MAX_CRASHES,
    RESTARTED_ATTEMPT,
    UPGRADED_ATTEMPT,
    step_not_found,
)
from wf.engine.store.sqlite_rows import HAS_OWN_RETENTION_SQL, OWN_RETENTION_SQL
from wf.engine.store.sqlite_runs import config_text
from wf.errors import InstanceAlreadyExists, InvalidTransition

PURGE_BATCH = 1000  # instances deleted per transaction: short transactions, no long locks
_I_COLUMNS = ", ".join(f"i.{c.strip()}" for c in INSTANCE_COLUMNS.split(","))


def _done(value: Any) -> Finish[Any]:
    async def finish() -> Any:
        return value

    return finish


async def _row_after(
    conn: Conn, cur_sql: str, args: Sequence[Any] | Mapping[str, Any]
) -> Finish[InstanceRow]:
    """Queue a statement returning one instance's columns; read it after the commit."""
    cur = await conn.execute(cur_sql, args)

    async def finish() -> InstanceRow:
        row = await cur.fetchone()
        assert row is not None
        return row_to_instance(row)

    return finish


async def _reselect(conn: Conn, pk: int) -> Finish[InstanceRow]:
    return await _row_after(
        conn, f"SELECT {INSTANCE_COLUMNS} FROM wf.instances WHERE pk = %s", (pk,)
    )


# ---- creating ----------------------------------------------------------------------------------
def create_instances(new: Sequence[NewInstance], skip_existing: bool) -> Apply[list[InstanceRow]]:
    items = list(new)
    args = {
        "w": [n.workflow for n in items],
        "i": [n.id for n in items],
        "p": [n.params for n in items],
        "t": [n.trigger for n in items],
        "v": [n.version_id for n in items],
        "c": [n.created for n in items],
        "sr": [n.success_retention for n in items],
        "er": [n.error_retention for n in items],
        "pr": [n.priority for n in items],
        "ck": [n.concurrency_key for n in items],
        "rk": [n.rate_key for n in items],
        "tp": [n.traceparent for n in items],
    }
    rows = (
        "n AS (SELECT * FROM unnest(%(w)s::text[], %(i)s::text[], %(p)s::text[], %(t)s::text[], "
        "%(v)s::text[], %(c)s::float8[], %(sr)s::float8[], %(er)s::float8[], %(pr)s::int[], "
        "%(ck)s::text[], %(rk)s::text[], %(tp)s::text[]) WITH ORDINALITY "
        "AS n(workflow, id, params, trigger, version_id, created, sr, er, pr, ck, rk, tp, ord))"
    )
    insert = (
        "INSERT INTO wf.instances (workflow, id, status, params, trigger, version_id, created, "
        "queued, modified, success_retention, error_retention, priority, concurrency_key, "
        "rate_key, traceparent) "
        "SELECT workflow, id, 'queued', params, trigger, version_id, created, created, created, "
        "sr, er, pr, ck, rk, tp FROM n"
    )  # a child (with a parent) is created by start_child, alone
    if skip_existing:
        sql = (
            f"WITH {rows} {insert} ORDER BY ord ON CONFLICT (workflow, id) DO NOTHING "
            "RETURNING pk, workflow, id, false"
        )
    else:
        # Nothing is written if any id is taken; the first taken one is named. (One inserted
        # meanwhile by another process fails the unique index: the batch runs again, alone.)
        sql = (
            f"WITH {rows}, taken AS (SELECT n.workflow, n.id FROM n JOIN wf.instances i "
            "ON i.workflow = n.workflow AND i.id = n.id ORDER BY n.ord LIMIT 1), "
            f"ins AS ({insert} WHERE NOT EXISTS (SELECT 1 FROM taken) ORDER BY ord "
            "RETURNING pk, workflow, id) "
            "SELECT pk, workflow, id, false FROM ins UNION ALL SELECT NULL, workflow, id, true "
            "FROM taken"
        )

    async def apply(conn: Conn) -> Finish[list[InstanceRow]]:
        if not skip_existing:
            seen: set[tuple[str, str]] = set()
            for item in items:
                if (item.workflow, item.id) in seen:
                    raise _exists(item.workflow, item.id)
                seen.add((item.workflow, item.id))
        cur = await conn.execute(sql, args)

        async def finish() -> list[InstanceRow]:
            pks: dict[tuple[str, str], int] = {}
            for pk, workflow, instance_id, taken in await cur.fetchall():
                if taken:
                    raise _exists(workflow, instance_id)
                pks[(workflow, instance_id)] = pk
            created = []
            for item in items:
                pk = pks.pop((item.workflow, item.id), None)
                if pk is not None:
                    created.append(
                        InstanceRow(
                            pk=pk,
                            workflow=item.workflow,
                            id=item.id,
                            status=Status.QUEUED,
                            params=item.params,
                            trigger=item.trigger,
                            version_id=item.version_id,
                            created=item.created,
                            modified=item.created,
                            queued=item.created,
                            success_retention=item.success_retention,
                            error_retention=item.error_retention,
                            traceparent=item.traceparent,
                        )
                    )
            return created

        return finish

    return apply


_START_CHILD = (
    "WITH f AS (SELECT pk, priority FROM wf.instances WHERE pk = %(pk)s AND epoch = %(epoch)s "
    "FOR NO KEY UPDATE), "
    "c AS (INSERT INTO wf.instances (workflow, id, status, params, trigger, version_id, created, "
    "queued, modified, success_retention, error_retention, priority, concurrency_key, rate_key, "
    "traceparent, parent_pk, parent_workflow, parent_id, parent_step) SELECT %(workflow)s, "
    "%(id)s, 'queued', %(params)s, %(trigger)s, %(version)s, %(created)s, %(created)s, "
    "%(created)s, %(sr)s, %(er)s, f.priority, %(ck)s, %(rk)s, %(tp)s, f.pk, "
    "%(parent_workflow)s, %(parent_id)s, %(parent_step)s FROM f "
    "ON CONFLICT (workflow, id) DO NOTHING RETURNING pk), "
    "s AS (INSERT INTO wf.steps (instance, name, count, kind, state, started, config) "
    "SELECT f.pk, %(name)s, %(count)s, %(kind)s, %(state)s, %(started)s, %(config)s "
    "FROM f, c RETURNING 1) "
    "SELECT (SELECT count(*) FROM f), (SELECT pk FROM c)"
)


def start_child(
    pk: int, epoch: int, step: StepRecord, child: NewInstance
) -> Apply[InstanceRow | Literal[False] | None]:
    """See ``sqlite_controls.start_child``: one statement, fenced by the parent's row (whose
    priority the child takes)."""
    assert child.parent is not None
    args = {
        "pk": pk,
        "epoch": epoch,
        "workflow": child.workflow,
        "id": child.id,
        "params": child.params,
        "trigger": child.trigger,
        "version": child.version_id,
        "created": child.created,
        "sr": child.success_retention,
        "er": child.error_retention,
        "ck": child.concurrency_key,
        "rk": child.rate_key,
        "tp": child.traceparent,
        "parent_workflow": child.parent.workflow,
        "parent_id": child.parent.id,
        "parent_step": child.parent.step,
        "name": step.name,
        "count": step.count,
        "kind": step.kind.value,
        "state": step.state.value,
        "started": step.started,
        "config": config_text(step.config),
    }

    async def apply(conn: Conn) -> Finish[InstanceRow | Literal[False] | None]:
        cur = await conn.execute(_START_CHILD, args)

        async def finish() -> InstanceRow | Literal[False] | None:
            row = await cur.fetchone()
            if row is None or row[0] != 1:
                return False
            if row[1] is None:
                return None
            return InstanceRow(
                pk=int(row[1]),
                workflow=child.workflow,
                id=child.id,
                status=Status.QUEUED,
                params=child.params,
                trigger=child.trigger,
                version_id=child.version_id,
                created=child.created,
                modified=child.created,
                queued=child.created,
                success_retention=child.success_retention,
                error_retention=child.error_retention,
                parent=child.parent,
            )

        return finish

    return apply


def _exists(workflow: str, instance_id: str) -> InstanceAlreadyExists:
    return InstanceAlreadyExists(
        f'an instance with id "{instance_id}" already exists in workflow "{workflow}"'
    )


# ---- owners and leases -------------------------------------------------------------------------
# An owner is dead when its lease lapsed (by the database's clock), or when the connection that
# wrote its heartbeat is gone while the server kept running (its process died: no need to wait
# for the lease). After a restart of the server every connection is new: only leases count.
_DEAD = (
    f"(o.lease_until < {DBNOW} OR (o.backend_start > pg_postmaster_start_time() "
    "AND NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.pid = o.pid "
    "AND (a.backend_start IS NULL OR a.backend_start = o.backend_start))))"
)
_HEARTBEAT = (
    "INSERT INTO wf.owners (owner, node, lease_until, pid, backend_start) "
    f"SELECT %(owner)s, %(node)s, {DBNOW} + %(lease)s, pg_backend_pid(), "
    "(SELECT backend_start FROM pg_stat_activity WHERE pid = pg_backend_pid()) "
    "ON CONFLICT (owner) DO UPDATE SET lease_until = excluded.lease_until, pid = excluded.pid, "
    "backend_start = excluded.backend_start"
)
_SUSPECT_PAUSE = "CASE crashes WHEN 0 THEN 2 WHEN 1 THEN 4 WHEN 2 THEN 8 ELSE 16 END"


def _release_sql(which: str, crashed: bool, bump: bool) -> str:
    """Free the instances ``which`` selects (a query of pks), in pk order."""
    sets = "owner = NULL, lease_until = NULL"
    if bump:
        sets += ", epoch = i.epoch + 1"
    if crashed:
        sets += f", wake_at = %(now)s + {_SUSPECT_PAUSE}, crashes = i.crashes + 1"
    return (
        f"WITH t AS MATERIALIZED ({which} ORDER BY pk FOR NO KEY UPDATE SKIP LOCKED) "
        f"UPDATE wf.instances i SET {sets} FROM t WHERE i.pk = t.pk"
    )


_TAKEOVER = _release_sql(
    "SELECT pk FROM wf.instances WHERE owner IN "
    f"(SELECT owner FROM wf.owners o WHERE o.owner <> %(owner)s AND {_DEAD})",
    crashed=False,
    bump=True,
)
_FORGET_DEAD_OWNERS = (
    f"DELETE FROM wf.owners o WHERE o.owner <> %(owner)s AND {_DEAD} "
    "AND NOT EXISTS (SELECT 1 FROM wf.instances i WHERE i.owner = o.owner)"
)


def claim_ready(
    owner: str,
    node: str,
    now: float,
    limit: int,
    workflows: Sequence[str],
    lease: float,
    version: str | None,
    suspects: int,
    takeover: bool,
    flows: Mapping[str, FlowControl] | None = None,
) -> Apply[ClaimRound]:
    """See ``sqlite_controls.claim_ready``. Here the owner's heartbeat is renewed, instances of
    dead owners are taken over (their epoch goes up: the old holder's writes are refused), and
    the claim itself is one statement of ``FOR UPDATE SKIP LOCKED`` selections.

    A flow-controlled workflow is claimed first, by a statement of its own, under its advisory
    transaction lock (``pg_try_advisory_xact_lock``, taken by a statement before it, so that
    the claim's snapshot sees what the previous holder committed). If another process holds
    the lock, the workflow is skipped this round and the round says so (``contended``): never
    waiting for the lock keeps the writer's batch from stalling or deadlocking on it."""
    limited = {n: f for n, f in (flows or {}).items() if f.active and n in workflows}
    workflows = [n for n in workflows if n not in limited]
    args: dict[str, Any] = {
        "owner": owner,
        "node": node,
        "lease": lease,
        "now": now,
        "n": limit,
        "names": list(workflows),
        "version": version,
        "suspects": suspects,
        "max": MAX_CRASHES,
        "crashed_error": CRASHED_ERROR,
    }
    args["names"] = list(workflows)
    args["all_names"] = [*workflows, *limited]
    pin = "(%(version)s::text IS NULL OR version_id = %(version)s)"
    mine = f"workflow = ANY(%(names)s) AND {pin}"
    lock = "FOR NO KEY UPDATE SKIP LOCKED"
    fresh = "pk, started IS NULL AS fresh"
    # With flow-controlled workflows claimed first in this transaction, what is left to claim.
    n = "%(n)s"
    if limited:
        n = f"greatest(0, %(n)s - {_CLAIMED_HERE})"
    claim = (
        f"WITH a AS MATERIALIZED (SELECT {fresh} FROM wf.instances WHERE owner IS NULL "
        f"AND status = 'running' AND crashes = 0 AND {mine} ORDER BY pk LIMIT {n} {lock}), "
        f"b AS MATERIALIZED (SELECT {fresh} FROM wf.instances WHERE owner IS NULL "
        f"AND status = 'waiting' AND wake_at <= %(now)s AND crashes = 0 AND {mine} "
        f"ORDER BY wake_at LIMIT greatest(0, {n} - (SELECT count(*) FROM a)) {lock}), "
        f"s AS MATERIALIZED (SELECT {fresh} FROM wf.instances WHERE crashes > 0 "
        "AND owner IS NULL AND status IN ('running', 'waiting') "
        "AND (wake_at <= %(now)s OR (status = 'running' AND wake_at IS NULL)) "
        f"AND {mine} ORDER BY crashes, wake_at LIMIT least(%(suspects)s, greatest(0, {n} "
        f"- (SELECT count(*) FROM a) - (SELECT count(*) FROM b))) {lock}), "
        f"q AS MATERIALIZED (SELECT {fresh} FROM wf.instances WHERE owner IS NULL "
        f"AND status = 'queued' AND {mine} ORDER BY priority DESC, queued, pk "
        f"LIMIT greatest(0, {n} "
        "- (SELECT count(*) FROM a) - (SELECT count(*) FROM b) - (SELECT count(*) FROM s)) "
        f"{lock}), "
        "c AS (SELECT * FROM a UNION ALL SELECT * FROM b UNION ALL SELECT * FROM s "
        "UNION ALL SELECT * FROM q) "
        f"UPDATE wf.instances i SET owner = %(owner)s, lease_until = {DBNOW} + %(lease)s, "
        "epoch = i.epoch + 1, status = 'running', started = coalesce(i.started, %(now)s), "
        "wake_at = NULL, waiting_for = NULL, modified = %(now)s FROM c WHERE i.pk = c.pk "
        f"RETURNING {_I_COLUMNS}, c.fresh"
    )
    errored = (
        "UPDATE wf.instances SET status = 'errored', error = %(crashed_error)s, ended = %(now)s, "
        "modified = %(now)s, owner = NULL, lease_until = NULL, wake_at = NULL "
        "WHERE pk IN (SELECT pk FROM wf.instances WHERE crashes > 0 AND crashes >= %(max)s "
        f"AND owner IS NULL AND workflow = ANY(%(all_names)s) AND {pin} "
        f"AND status IN ('running', 'waiting', 'queued') {lock}) "
        f"RETURNING {INSTANCE_COLUMNS}"
    )

    async def apply(conn: Conn) -> Finish[ClaimRound]:
        await conn.execute(_HEARTBEAT, args)
        if takeover:
            await conn.execute(_TAKEOVER, args)
            await conn.execute(_FORGET_DEAD_OWNERS, args)
        # An instance that was pausing when its process died has reached its boundary.
        await conn.execute(
            "UPDATE wf.instances SET status = 'paused', paused_at = %(now)s, modified = %(now)s "
            "WHERE status = 'waitingForPause' AND owner IS NULL",
            args,
        )
        errored_cur = await conn.execute(errored, args)
        locks = []
        claimed_curs = []
        for name, flow in limited.items():
            flow_args = args | {"w": name, "since": now - (flow.rate_period or 0.0)}
            locks.append(await conn.execute(_TRY_FLOW_LOCK, flow_args))
            claimed_curs.append(await conn.execute(_flow_claim(flow, pin), flow_args))
        if workflows:
            claimed_curs.append(await conn.execute(claim, args))

        async def finish() -> ClaimRound:
            crashed = [row_to_instance(r) for r in await errored_cur.fetchall()]
            contended = False
            for cur in locks:
                got = await cur.fetchone()
                contended = contended or got is None or got[0] != "true"
            claims = []
            for cur in claimed_curs:
                for r in await cur.fetchall():
                    row = row_to_instance(r)
                    claims.append(Claim(row, row.epoch, bool(r[-1])))
            claims.sort(key=lambda c: c.row.pk)
            return ClaimRound(claims, crashed, contended)

        return finish

    return apply


# How many instances this transaction claimed so far (the rows it wrote with this owner).
_CLAIMED_HERE = (
    "(SELECT count(*) FROM wf.instances WHERE owner = %(owner)s "
    "AND xmin = pg_current_xact_id()::xid)"
)
# Whether this transaction holds the workflow's flow lock, kept for the claim that follows.
_TRY_FLOW_LOCK = (
    "SELECT set_config('wf.flow_lock', "
    f"pg_try_advisory_xact_lock({FLOW_LOCK}, hashtext(%(w)s))::text, true)"
)


def _flow_claim(flow: FlowControl, pin: str) -> str:
    """Claim what ``choose_sql`` lets start, if this transaction holds the flow lock. The
    update checks each row again: a control may have changed it since the choice was read."""
    chosen = choose_sql(flow, postgres=True, pin=pin, free="owner IS NULL")
    return (
        f"WITH chosen AS MATERIALIZED ({chosen}), c AS (SELECT pk, fresh FROM chosen "
        "WHERE current_setting('wf.flow_lock', true) = 'true' "
        f"LIMIT greatest(0, %(n)s - {_CLAIMED_HERE})) "
        f"UPDATE wf.instances i SET owner = %(owner)s, lease_until = {DBNOW} + %(lease)s, "
        "epoch = i.epoch + 1, status = 'running', started = coalesce(i.started, %(now)s), "
        "wake_at = NULL, waiting_for = NULL, modified = %(now)s FROM c WHERE i.pk = c.pk "
        "AND i.owner IS NULL AND i.status IN ('running', 'waiting', 'queued') "
        f"RETURNING {_I_COLUMNS}, c.fresh = 1"
    )


def renew_leases(owner: str, node: str, lease: float) -> Apply[dict[int, tuple[Status, int]]]:
    args = {"owner": owner, "node": node, "lease": lease}

    async def apply(conn: Conn) -> Finish[dict[int, tuple[Status, int]]]:
        await conn.execute(_HEARTBEAT, args)
        cur = await conn.execute(
            "SELECT pk, status, epoch FROM wf.instances WHERE owner = %(owner)s", args
        )

        async def finish() -> dict[int, tuple[Status, int]]:
            return {pk: (Status(status), epoch) for pk, status, epoch in await cur.fetchall()}

        return finish

    return apply


def release_claims(owner: str, crashed: bool, now: float) -> Apply[int]:
    """Free one dead owner's claims (see ``sqlite_controls.release_claims``); its heartbeat
    row lapses, so anything left (a row locked just now) is taken over later."""
    args = {"owner": owner, "now": now}
    sql = _release_sql("SELECT pk FROM wf.instances WHERE owner = %(owner)s", crashed, bump=False)

    async def apply(conn: Conn) -> Finish[int]:
        cur = await conn.execute(sql, args)
        await conn.execute("UPDATE wf.owners SET lease_until = 0 WHERE owner = %(owner)s", args)

        async def finish() -> int:
            return cur.rowcount

        return finish

    return apply


def release_dead_claims(crashed: bool, now: float) -> Apply[int]:
    """Free the claims of every dead owner (lapsed, gone, or with no heartbeat row at all). A
    live owner elsewhere keeps its claims: a node's start takes nothing from the others."""
    args = {"now": now}
    sql = _release_sql(
        "SELECT pk FROM wf.instances i WHERE owner IS NOT NULL AND NOT EXISTS "
        f"(SELECT 1 FROM wf.owners o WHERE o.owner = i.owner AND NOT {_DEAD})",
        crashed,
        bump=True,
    )

    async def apply(conn: Conn) -> Finish[int]:
        cur = await conn.execute(sql, args)

        async def finish() -> int:
            return cur.rowcount

        return finish

    return apply


# ---- upgrades and retention --------------------------------------------------------------------
def upgrade(pk: int, version: str, now: float) -> Apply[InstanceRow]:
    args = {"pk": pk, "version": version, "now": now, "error": UPGRADED_ATTEMPT}

    async def apply(conn: Conn) -> Finish[InstanceRow]:
        row = await select_instance(conn, pk)
        _unfinished(row, "upgrade")
        if row.owner is not None:
            # Attempts a live process was running are cut short, uncounted, retried at once.
            await conn.execute(
                "WITH a AS (UPDATE wf.attempts SET ended = %(now)s, success = false, "
                "error = %(error)s, uncounted = true WHERE instance = %(pk)s AND ended IS NULL "
                "RETURNING kind, name, count) UPDATE wf.steps s SET wake_at = %(now)s FROM a "
                "WHERE s.instance = %(pk)s AND s.kind = a.kind AND s.name = a.name "
                "AND s.count = a.count",
                args,
            )
        return await _row_after(
            conn,
            "UPDATE wf.instances SET version_id = %(version)s, owner = NULL, lease_until = NULL, "
            "wake_at = CASE WHEN status = 'running' THEN coalesce(wake_at, %(now)s) "
            "ELSE wake_at END, epoch = epoch + 1, modified = %(now)s WHERE pk = %(pk)s "
            f"RETURNING {INSTANCE_COLUMNS}",
            args,
        )

    return apply


def purge(where: str, args: dict[str, Any]) -> Apply[int]:
    """Delete up to ``PURGE_BATCH`` instances matching ``where`` with everything they own."""
    sql = (
        f"WITH p AS MATERIALIZED (SELECT pk FROM wf.instances WHERE {where} "
        f"LIMIT {PURGE_BATCH} FOR UPDATE SKIP LOCKED), "
        "s AS (DELETE FROM wf.steps WHERE instance IN (SELECT pk FROM p)), "
        "a AS (DELETE FROM wf.attempts WHERE instance IN (SELECT pk FROM p)), "
        "e AS (DELETE FROM wf.events WHERE instance IN (SELECT pk FROM p)), "
        "d AS (DELETE FROM wf.instances WHERE pk IN (SELECT pk FROM p) RETURNING 1) "
        "SELECT count(*) FROM d"
    )

    async def apply(conn: Conn) -> Finish[int]:
        cur = await conn.execute(sql, args)

        async def finish() -> int:
            row = await cur.fetchone()
            return 0 if row is None else int(row[0])

        return finish

    return apply


FINISHED_BEFORE = f"status IN {FINISHED_SQL} AND ended < %(before)s AND {OWN_RETENTION_SQL} IS NULL"
OWN_RETENTION_PASSED = (
    f"{HAS_OWN_RETENTION_SQL} AND status IN {FINISHED_SQL} "
    f"AND ended < %(now)s - {OWN_RETENTION_SQL}"
)


def delete_instances(pks: list[int]) -> Apply[list[int]]:
    """Delete instances with everything they own, in one transaction; the pks that existed."""
    sql = (
        "WITH p AS MATERIALIZED (SELECT pk FROM wf.instances WHERE pk = ANY(%(pks)s) "
        "ORDER BY pk FOR UPDATE), "
        "s AS (DELETE FROM wf.steps WHERE instance IN (SELECT pk FROM p)), "
        "a AS (DELETE FROM wf.attempts WHERE instance IN (SELECT pk FROM p)), "
        "e AS (DELETE FROM wf.events WHERE instance IN (SELECT pk FROM p)) "
        "DELETE FROM wf.instances WHERE pk IN (SELECT pk FROM p) RETURNING pk"
    )

    async def apply(conn: Conn) -> Finish[list[int]]:
        cur = await conn.execute(sql, {"pks": pks})

        async def finish() -> list[int]:
            gone = {int(r[0]) for r in await cur.fetchall()}
            return [pk for pk in pks if pk in gone]

        return finish

    return apply


# ---- controls ----------------------------------------------------------------------------------
def _unfinished(row: InstanceRow, action: str) -> None:
    if row.status in FINISHED:
        raise InvalidTransition(
            f'cannot {action} instance "{row.id}": it is already {row.status.value}'
        )


def pause(pk: int, now: float) -> Apply[InstanceRow]:
    async def apply(conn: Conn) -> Finish[InstanceRow]:
        row = await select_instance(conn, pk)
        _unfinished(row, "pause")
        if row.status in (Status.PAUSED, Status.WAITING_FOR_PAUSE):
            return _done(row)
        if row.owner is None:  # nothing runs it: paused at once
            sql = "UPDATE wf.instances SET status = 'paused', paused_at = %s, modified = %s "
            args: tuple[Any, ...] = (now, now, pk)
        else:  # its runner pauses it at the next step boundary
            sql = "UPDATE wf.instances SET status = 'waitingForPause', modified = %s "
            args = (now, pk)
        return await _row_after(conn, sql + f"WHERE pk = %s RETURNING {INSTANCE_COLUMNS}", args)

    return apply


def resume(pk: int, now: float) -> Apply[InstanceRow]:
    async def apply(conn: Conn) -> Finish[InstanceRow]:
        row = await select_instance(conn, pk)
        _unfinished(row, "resume")
        if row.status == Status.WAITING_FOR_PAUSE:
            return await _row_after(
                conn,
                "UPDATE wf.instances SET status = 'running', modified = %s WHERE pk = %s "
                f"RETURNING {INSTANCE_COLUMNS}",
                (now, pk),
            )
        if row.status == Status.PAUSED:
            # Timers keep the time they had left when the pause began.
            shift = now - (row.paused_at if row.paused_at is not None else now)
            await conn.execute(
                "UPDATE wf.steps SET wake_at = wake_at + %s "
                "WHERE instance = %s AND state = 'running' AND wake_at IS NOT NULL",
                (shift, pk),
            )
            return await _row_after(
                conn,
                "UPDATE wf.instances SET status = 'queued', paused_at = NULL, queued = %s, "
                f"modified = %s WHERE pk = %s RETURNING {INSTANCE_COLUMNS}",
                (now, now, pk),
            )
        return _done(row)

    return apply


def terminate(pk: int, now: float, source: str, rollback: str | None) -> Apply[InstanceRow]:
    """See ``sqlite_controls.terminate``."""

    async def apply(conn: Conn) -> Finish[InstanceRow]:
        row = await select_instance(conn, pk)
        _unfinished(row, "terminate")
        if rollback is not None and row.rollback is not None:
            return _done(row)  # rolling back already: its running handler goes on undisturbed
        if rollback is not None:
            cur = await conn.execute(
                "SELECT 1 FROM wf.steps WHERE instance = %s AND kind = 'do' LIMIT 1", (pk,)
            )
            if await cur.fetchone() is not None:
                return await _row_after(
                    conn,
                    "UPDATE wf.instances SET status = 'running', modified = %s, "
                    "termination = %s, rollback = %s, owner = NULL, "
                    "lease_until = NULL, wake_at = %s, waiting_for = NULL, paused_at = NULL, "
                    f"epoch = epoch + 1 WHERE pk = %s RETURNING {INSTANCE_COLUMNS}",
                    (now, source, rollback, now, pk),
                )
        return await _row_after(
            conn,
            "UPDATE wf.instances SET status = 'terminated', ended = %s, modified = %s, "
            "termination = %s, owner = NULL, lease_until = NULL, wake_at = NULL, "
            f"waiting_for = NULL, epoch = epoch + 1 WHERE pk = %s RETURNING {INSTANCE_COLUMNS}",
            (now, now, source, pk),
        )

    return apply


def restart(
    pk: int,
    now: float,
    rehome: str | None,
    from_step: RestartFrom | None = None,
    params: str | None = None,
    record: str | None = None,
) -> Apply[InstanceRow]:
    """Start over (or from ``from_step``) in one transaction; see ``sqlite_controls.restart``.
    The version's row is locked, so a concurrent unload either sees this instance unfinished or
    unloads first."""

    async def apply(conn: Conn) -> Finish[InstanceRow]:
        row = await select_instance(conn, pk)
        target: int | None = None
        if from_step is not None:  # refused before anything changes
            cur = await conn.execute(
                "SELECT seq FROM wf.steps WHERE instance = %s AND kind = %s AND name = %s "
                "AND count = %s",
                (pk, from_step.kind.value, from_step.name, from_step.count),
            )
            found_step = await cur.fetchone()
            if found_step is None:
                raise step_not_found(from_step.name)
            target = int(found_step[0])
        cur = await conn.execute(
            "SELECT unloaded IS NOT NULL FROM wf.versions WHERE id = %s FOR SHARE",
            (row.version_id,),
        )
        found = await cur.fetchone()
        if found is not None and found[0]:
            if rehome is None:
                raise InvalidTransition(
                    f'cannot restart instance "{row.id}": the code of its version '
                    f"{row.version_id} is no longer deployed, and the active version has no "
                    f'workflow "{row.workflow}"'
                )
            await conn.execute(
                "UPDATE wf.instances SET version_id = %s WHERE pk = %s", (rehome, pk)
            )
        if target is None:
            await conn.execute("DELETE FROM wf.steps WHERE instance = %s", (pk,))
            await conn.execute("DELETE FROM wf.attempts WHERE instance = %s", (pk,))
            await conn.execute(
                "DELETE FROM wf.events WHERE instance = %s AND consumed_name IS NOT NULL", (pk,)
            )
            started = "NULL"
        else:
            await _wipe_from(conn, pk, target, now, row.owner is not None)
            started = "started"  # the kept steps are its history: not a fresh instance
        return await _row_after(
            conn,
            "UPDATE wf.instances SET status = 'queued', queued = %(now)s, modified = %(now)s, "
            f"started = {started}, params = coalesce(%(params)s, params), "
            "restarted = coalesce(%(record)s, restarted), ended = NULL, output = NULL, "
            "error = NULL, termination = NULL, wake_at = NULL, waiting_for = NULL, "
            "paused_at = NULL, owner = NULL, lease_until = NULL, crashes = 0, rollback = NULL, "
            f"epoch = epoch + 1 WHERE pk = %(pk)s RETURNING {INSTANCE_COLUMNS}",
            {"now": now, "params": params, "record": record, "pk": pk},
        )

    return apply


async def _wipe_from(conn: Conn, pk: int, target: int, now: float, was_running: bool) -> None:
    """See ``sqlite_controls._wipe_from``: ``seq`` is start order here."""
    args = {"pk": pk, "target": target, "now": now, "error": RESTARTED_ATTEMPT}
    later = "SELECT name, count FROM wf.steps WHERE instance = %(pk)s AND seq >= %(target)s"
    await conn.execute(  # of every kind: a rollback step's attempts go with it
        "DELETE FROM wf.attempts WHERE instance = %(pk)s AND (kind, name, count) IN "
        "(SELECT kind, name, count FROM wf.steps WHERE instance = %(pk)s AND seq >= %(target)s)",
        args,
    )
    await conn.execute(
        "DELETE FROM wf.events WHERE instance = %(pk)s AND (consumed_name IS NULL "
        f"OR (consumed_name, consumed_count) IN ({later} AND kind = 'wait'))",
        args,
    )
    await conn.execute("DELETE FROM wf.steps WHERE instance = %(pk)s AND seq >= %(target)s", args)
    if was_running:  # attempts of kept steps a live process was running: retried, uncounted
        await conn.execute(
            "WITH a AS (UPDATE wf.attempts SET ended = %(now)s, success = false, "
            "error = %(error)s, uncounted = true WHERE instance = %(pk)s AND ended IS NULL "
            "RETURNING kind, name, count) UPDATE wf.steps s SET wake_at = %(now)s FROM a "
            "WHERE s.instance = %(pk)s AND s.kind = a.kind AND s.name = a.name "
            "AND s.count = a.count",
            args,
        )


def send_event(
    pk: int, event_type: str, payload: str, now: float
) -> Apply[tuple[InstanceRow, EventRecord]]:
    async def apply(conn: Conn) -> Finish[tuple[InstanceRow, EventRecord]]:
        row = await select_instance(conn, pk)
        if row.status in FINISHED:
            raise InvalidTransition(
                f'cannot send an event to instance "{row.id}": it is already {row.status.value}'
            )
        seq_cur = await conn.execute(
            "INSERT INTO wf.events (instance, type, payload, received) VALUES (%s, %s, %s, %s) "
            "RETURNING seq",
            (pk, event_type, payload, now),
        )
        # A hibernating instance waiting for this type wakes now; its replay finds the event.
        await conn.execute(
            "UPDATE wf.instances SET wake_at = %s, modified = %s WHERE pk = %s "
            "AND status = 'waiting' AND owner IS NULL "
            "AND position(',' || %s || ',' in ',' || waiting_for || ',') > 0",
            (now, now, pk, event_type),
        )
        after = await _reselect(conn, pk)

        async def finish() -> tuple[InstanceRow, EventRecord]:
            seq = await seq_cur.fetchone()
            assert seq is not None
            return await after(), EventRecord(int(seq[0]), event_type, payload, now)

        return finish

    return apply
