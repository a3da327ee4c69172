"""``wf stats``: a summary per workflow over a window, from the raw rows a store reads
(``wf.engine.store.stats_sql``). Pure: plain data in, JSON-ready dicts out.

Percentiles are nearest-rank (each is a time that was measured). Times are milliseconds.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from wf.engine.details import iso
from wf.engine.model import Status
from wf.engine.store.stats_sql import AttemptStat, StatsRows

TOP_STEPS = 5  # rows in the slowest and the most failing steps
PERCENTILES = (50, 95, 99)


def percentile(sorted_values: Sequence[float], p: float) -> float | None:
    """The nearest-rank ``p``-th percentile of ascending values (None when there are none)."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


def _spread(seconds: list[float]) -> dict[str, float | None]:
    ordered = sorted(seconds)
    return {f"p{p}_ms": _ms(percentile(ordered, p)) for p in PERCENTILES}


def summarize(
    rows: StatsRows, workflows: Sequence[str], since: float, now: float
) -> dict[str, Any]:
    """The document ``GET /api/stats`` answers (docs/how-to/observability.md shows its shape)."""
    window = max(now - since, 1e-9)
    statuses: dict[str, dict[str, int]] = defaultdict(dict)
    for workflow, status, count in rows.statuses:
        statuses[workflow][status] = count
    finished: dict[str, list[tuple[str, float]]] = defaultdict(list)
    for workflow, status, seconds in rows.finished:
        finished[workflow].append((status, seconds))
    attempts: dict[str, list[AttemptStat]] = defaultdict(list)
    for attempt in rows.attempts:
        attempts[attempt.workflow].append(attempt)
    return {
        "since": iso(since),
        "until": iso(now),
        "window_seconds": round(window, 3),
        "workflows": [
            _workflow(name, statuses[name], finished[name], attempts[name], window)
            for name in workflows
        ],
    }


def _workflow(
    name: str,
    statuses: dict[str, int],
    finished: list[tuple[str, float]],
    attempts: list[AttemptStat],
    window: float,
) -> dict[str, Any]:
    counts = {s.value: statuses.get(s.value, 0) for s in Status}
    ends = ("complete", "errored", "terminated")
    ended = {s: sum(1 for f, _ in finished if f == s) for s in ends}
    walls = [a.wall for a in attempts]
    cpus = [a.cpu for a in attempts if a.cpu is not None]
    return {
        "workflow": name,
        "counts": counts,
        "finished": {"total": len(finished), **ended},
        "throughput_per_minute": round(len(finished) / window * 60, 3),
        "duration_ms": {"count": len(finished), **_spread([s for _, s in finished])},
        "attempts": {
            "total": len(attempts),
            "failed": sum(1 for a in attempts if not a.success),
            "wall_ms": _ms(sum(walls)),
            # None when no attempt of the window has its CPU time measured.
            "cpu_ms": _ms(sum(cpus)) if cpus else None,
        },
        "slowest_steps": _slowest(attempts),
        "failing_steps": _failing(attempts),
    }


def _by_step(attempts: list[AttemptStat]) -> dict[str, list[AttemptStat]]:
    steps: dict[str, list[AttemptStat]] = defaultdict(list)
    for attempt in attempts:
        steps[attempt.step].append(attempt)
    return steps


def _slowest(attempts: list[AttemptStat]) -> list[dict[str, Any]]:
    """The steps whose attempts took longest (by p95 of their wall time)."""
    found: list[dict[str, Any]] = []
    for step, mine in _by_step(attempts).items():
        walls = sorted(a.wall for a in mine)
        cpus = sorted(a.cpu for a in mine if a.cpu is not None)
        found.append(
            {
                "step": step,
                "attempts": len(mine),
                "p50_ms": _ms(percentile(walls, 50)),
                "p95_ms": _ms(percentile(walls, 95)),
                "max_ms": _ms(walls[-1]),
                "cpu_p95_ms": _ms(percentile(cpus, 95)),
            }
        )
    found.sort(key=lambda s: (-float(s["p95_ms"] or 0.0), str(s["step"])))
    return found[:TOP_STEPS]


def _failing(attempts: list[AttemptStat]) -> list[dict[str, Any]]:
    """The steps with the most failed attempts, with the latest error of each."""
    found: list[dict[str, Any]] = []
    for step, mine in _by_step(attempts).items():
        failed = [a for a in mine if not a.success]
        if not failed:
            continue
        last = max(failed, key=lambda a: a.ended)
        found.append(
            {
                "step": step,
                "failures": len(failed),
                "attempts": len(mine),
                "last_error": _error(last.error),
                "last_failed": iso(last.ended),
            }
        )
    found.sort(key=lambda s: (-int(s["failures"]), str(s["step"])))
    return found[:TOP_STEPS]


def _error(text: str | None) -> dict[str, str] | None:
    if text is None:
        return None
    try:
        stored = json.loads(text)
    except ValueError:
        return {"name": "Error", "message": text}
    return {"name": str(stored.get("name", "Error")), "message": str(stored.get("message", ""))}
