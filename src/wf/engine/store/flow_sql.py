"""The SQL both stores claim flow-controlled workflows with (see ``wf.engine.flow``).

One SELECT picks which ready instances of one workflow may start now: it counts the
instances of the workflow that run (claimed, and not in a wait: a waiting instance has no owner,
since the waits of a limited workflow always leave memory), per concurrency key, and the
starts (first claims) of the rate window, per rate key; ranks the ready instances per key in
claim order (woken ones, then suspects, then queued ones; higher priority first, then oldest);
and keeps those that fit. The caller claims them in the same transaction, which on PostgreSQL
holds the workflow's advisory lock (every claimer of the workflow takes it first), so two nodes
never both see the same free slot; SQLite's writer transactions are serial anyway.

Rank and budget are per key, so one busy key never hides the others' instances. The ranking
reads every ready instance of the workflow: fine for thousands queued, not for millions.
"""

from __future__ import annotations

from wf.engine.flow import FlowControl

# Any constant of our own: "wf" in ASCII, then the purpose (2: the flow control of a workflow).
FLOW_LOCK = 0x7766_0002

CLAIM_ORDER = "cls, priority DESC, t, pk"


def choose_sql(flow: FlowControl, *, postgres: bool, pin: str, free: str) -> str:
    """The pks (and whether each is fresh) that may be claimed now, in claim order.

    Parameters (named, ``%(x)s`` on PostgreSQL, ``:x`` on SQLite): ``w`` the workflow, ``now``
    (engine clock), ``since`` (``now`` minus the rate period), ``n`` at most how many,
    ``suspects`` at most how many suspects, ``max`` the crash limit; ``pin`` and ``free`` are
    the caller's conditions on the version and on who may take a row.
    """

    def p(name: str) -> str:
        return f"%({name})s" if postgres else f":{name}"

    same = "IS NOT DISTINCT FROM" if postgres else "IS"
    ck = "concurrency_key" if flow.concurrency_key else "''"
    rk = "rate_key" if flow.rate_key else "''"
    table = "wf.instances" if postgres else "instances"
    mine = f"workflow = {p('w')}"
    if not postgres:
        mine = f"+workflow = {p('w')}"  # see sqlite_controls.claim_ready
    ctes = []
    joins = []
    where = [f"(k.suspect = 0 OR k.rs <= {p('suspects')})"]
    if flow.concurrency is not None:
        # Who holds a slot: a claim, and not in a wait (a pausing instance still runs a step).
        ctes.append(
            f"running AS (SELECT {ck} AS k, count(*) AS n FROM {table} WHERE {mine} "
            f"AND status IN ('running', 'waitingForPause') AND NOT ({free})  GROUP BY 1)"
        )
        joins.append(f"LEFT JOIN running u ON u.k {same} k.ck")
        where.append(f"k.rc + coalesce(u.n, 0) <= {flow.concurrency}")
    if flow.rate_limit is not None:
        ctes.append(
            f"recent AS (SELECT {rk} AS k, count(*) AS n FROM {table} WHERE {mine} "
            f"AND started > {p('since')} GROUP BY 1)"
        )
        joins.append(f"LEFT JOIN recent e ON e.k {same} k.rk")
        where.append(f"(k.fresh = 0 OR k.rr + coalesce(e.n, 0) <= {flow.rate_limit})")
    ready = (
        f"(crashes = 0 AND (status IN ('running', 'queued') OR "
        f"(status = 'waiting' AND wake_at <= {p('now')}))) "
        f"OR (crashes > 0 AND crashes < {p('max')} AND status IN ('running', 'waiting') "
        f"AND (wake_at <= {p('now')} OR (status = 'running' AND wake_at IS NULL)))"
    )
    ctes.append(
        f"ready AS (SELECT pk, CASE WHEN started IS NULL THEN 1 ELSE 0 END AS fresh, "
        f"{ck} AS ck, {rk} AS rk, CASE WHEN crashes > 0 THEN 1 ELSE 0 END AS suspect, "
        "CASE WHEN status = 'queued' THEN 2 WHEN crashes > 0 THEN 1 ELSE 0 END AS cls, priority, "
        "CASE WHEN status = 'queued' THEN queued ELSE coalesce(wake_at, 0) END AS t "
        f"FROM {table} WHERE {mine} AND {free} AND {pin} AND ({ready}))"
    )
    ctes.append(
        f"ranked AS (SELECT r.*, row_number() OVER (PARTITION BY ck ORDER BY {CLAIM_ORDER}) AS rc, "
        f"sum(fresh) OVER (PARTITION BY rk ORDER BY {CLAIM_ORDER}) AS rr, "
        f"row_number() OVER (PARTITION BY suspect ORDER BY {CLAIM_ORDER}) AS rs FROM ready r)"
    )
    return (
        f"WITH {', '.join(ctes)} SELECT k.pk, k.fresh FROM ranked k {' '.join(joins)} "
        f"WHERE {' AND '.join(where)} ORDER BY k.cls, k.priority DESC, k.t, k.pk LIMIT {p('n')}"
    )


def next_start_sql(flow: FlowControl, *, postgres: bool) -> str:
    """When a rate-limited workflow with fresh instances waiting may start one again: the
    oldest start of the window plus the period (params ``w``, ``since``, ``period``)."""
    table = "wf.instances" if postgres else "instances"

    def p(name: str) -> str:
        return f"%({name})s" if postgres else f":{name}"

    return (
        f"SELECT min(started) + {p('period')} FROM {table} WHERE workflow = {p('w')} "
        f"AND started > {p('since')} AND EXISTS (SELECT 1 FROM {table} WHERE "
        f"workflow = {p('w')} AND status = 'queued' AND started IS NULL)"
    )
