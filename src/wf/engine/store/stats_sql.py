"""What ``wf stats`` reads from a store: the same three queries on SQLite and PostgreSQL, and the
raw rows they return (``wf.engine.stats`` turns them into a summary)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

# The CPU time of an attempt, in seconds (NULL when it was not measured: a timeout, an attempt
# cut short, or one recorded before wf measured CPU).
ATTEMPT_CPU_SQL = "a.cpu"


@dataclass(frozen=True)
class AttemptStat:
    """One step attempt that ended in the window (attempts a stop cut short are left out)."""

    workflow: str
    step: str
    wall: float  # seconds
    cpu: float | None  # seconds; None while the store does not record it
    success: bool
    error: str | None  # JSON {name, message} of a failed attempt
    ended: float


@dataclass
class StatsRows:
    """Raw figures over a window, for some workflows."""

    # (workflow, status, how many): instances created, finished or unfinished in the window
    statuses: list[tuple[str, str, int]] = field(default_factory=list)
    # (workflow, status, seconds from creation to end): instances that finished in the window
    finished: list[tuple[str, str, float]] = field(default_factory=list)
    attempts: list[AttemptStat] = field(default_factory=list)


def queries(dialect: str, workflows: Sequence[str], since: float) -> list[tuple[str, Any]]:
    """The statuses, finished and attempts queries with their arguments, for ``dialect``
    ("sqlite" or "postgres")."""
    names = list(workflows)
    if dialect == "sqlite":
        prefix, mark = "", "?"
        among = f"IN ({','.join('?' * len(names))})"
        named: tuple[Any, ...] = tuple(names)
    else:
        prefix, mark = "wf.", "%s"
        among, named = "= ANY(%s)", (names,)
    statuses = (
        f"SELECT workflow, status, count(*) FROM {prefix}instances WHERE workflow {among} "
        f"AND (ended IS NULL OR ended >= {mark} OR created >= {mark}) GROUP BY workflow, status"
    )
    finished = (
        f"SELECT workflow, status, ended - created FROM {prefix}instances "
        f"WHERE ended >= {mark} AND workflow {among} "
        "AND status IN ('complete', 'errored', 'terminated')"
    )
    attempts = (
        f"SELECT i.workflow, a.name, a.ended - a.started, {ATTEMPT_CPU_SQL}, a.success, "
        "CASE WHEN a.success THEN NULL ELSE a.error END, a.ended "
        f"FROM {prefix}attempts a JOIN {prefix}instances i ON i.pk = a.instance "
        f"WHERE a.ended >= {mark} AND a.kind = 'do' AND NOT a.uncounted AND i.workflow {among}"
    )
    return [
        (statuses, (*named, since, since)),
        (finished, (since, *named)),
        (attempts, (since, *named)),
    ]


def rows_of(results: Sequence[Sequence[Sequence[Any]]]) -> StatsRows:
    """The rows of the three queries, in ``queries``' order."""
    statuses, finished, attempts = results
    return StatsRows(
        [(str(w), str(s), int(n)) for w, s, n in statuses],
        [(str(w), str(s), float(d)) for w, s, d in finished],
        [
            AttemptStat(
                str(w),
                str(step),
                float(wall),
                None if cpu is None else float(cpu),
                bool(ok),
                error,
                float(ended),
            )
            for w, step, wall, cpu, ok, error, ended in attempts
        ],
    )
