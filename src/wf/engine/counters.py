"""Plain counters the engine and its writers keep about their own work, for whoever exports them
(``wf.devserver.metrics`` turns them into Prometheus metrics; a ``wf serve`` worker sends them to
its server with each heartbeat). No lock: each is written from one thread, and a reader from
another sees a figure at most one update old, which is all a metric needs."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Mapping, Sequence
from typing import Any

# Seconds: from well under a millisecond (a claim of a ready instance, a commit) to minutes (an
# instance that queued behind a full concurrency limit).
LATENCY_BUCKETS: tuple[float, ...] = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
)
# Writes per group commit.
BATCH_BUCKETS: tuple[float, ...] = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class Histogram:
    """Counts of observations per bucket (``counts[i]``: at most ``bounds[i]``; the last: above
    every bound) and their sum, as Prometheus wants them (made cumulative when exported)."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: Sequence[float] = LATENCY_BUCKETS) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    @property
    def count(self) -> int:
        return sum(self.counts)

    def to_json(self) -> dict[str, Any]:
        return {"counts": list(self.counts), "sum": self.sum}

    def add(self, data: Mapping[str, Any]) -> None:
        """Add another histogram's figures (``to_json``'s form, the same bounds)."""
        counts = data.get("counts")
        if isinstance(counts, list) and len(counts) == len(self.counts):
            for i, n in enumerate(counts):
                if isinstance(n, int):
                    self.counts[i] += n
            total = data.get("sum")
            if isinstance(total, (int, float)):
                self.sum += float(total)


class WriteStats:
    """What a writer did: commits, the writes each served, how long each took."""

    __slots__ = ("batch", "commits", "latency")

    def __init__(self) -> None:
        self.commits = 0
        self.batch = Histogram(BATCH_BUCKETS)
        self.latency = Histogram()

    def committed(self, writes: int, seconds: float) -> None:
        self.commits += 1
        self.batch.observe(writes)
        self.latency.observe(seconds)


class EngineStats:
    """What the scheduler and the lives of one engine saw."""

    __slots__ = ("claim_lag", "hibernations", "timer_lateness")

    def __init__(self) -> None:
        self.claim_lag = Histogram()  # queued → claimed by a life
        self.timer_lateness = Histogram()  # a sleep's due time → its end
        self.hibernations = 0  # lives that left memory to wait


def snapshot(
    engine: EngineStats | None,
    writes: WriteStats | None,
    lives: int = 0,
    waiting_lives: int = 0,
    slots_used: int = 0,
) -> dict[str, Any]:
    """Everything above as JSON (a worker's heartbeat carries it; ``merge`` adds them up)."""
    return {
        "claim_lag": engine.claim_lag.to_json() if engine else None,
        "timer_lateness": engine.timer_lateness.to_json() if engine else None,
        "hibernations": engine.hibernations if engine else 0,
        "commits": writes.commits if writes else 0,
        "commit_batch": writes.batch.to_json() if writes else None,
        "commit_seconds": writes.latency.to_json() if writes else None,
        "lives": lives,
        "waiting_lives": waiting_lives,
        "slots_used": slots_used,
    }


class Totals:
    """Snapshots added up: the process's own, its workers' and the workers' that are gone."""

    def __init__(self) -> None:
        self.claim_lag = Histogram()
        self.timer_lateness = Histogram()
        self.commit_batch = Histogram(BATCH_BUCKETS)
        self.commit_seconds = Histogram()
        self.hibernations = 0
        self.commits = 0
        self.lives = 0
        self.waiting_lives = 0
        self.slots_used = 0

    def add(self, data: Mapping[str, Any]) -> Totals:
        for name in ("claim_lag", "timer_lateness", "commit_batch", "commit_seconds"):
            part = data.get(name)
            if isinstance(part, Mapping):
                getattr(self, name).add(part)
        for name in ("hibernations", "commits", "lives", "waiting_lives", "slots_used"):
            value = data.get(name)
            if isinstance(value, int):
                setattr(self, name, getattr(self, name) + value)
        return self

    def snapshot(self) -> dict[str, Any]:
        return {
            "claim_lag": self.claim_lag.to_json(),
            "timer_lateness": self.timer_lateness.to_json(),
            "commit_batch": self.commit_batch.to_json(),
            "commit_seconds": self.commit_seconds.to_json(),
            "hibernations": self.hibernations,
            "commits": self.commits,
            "lives": self.lives,
            "waiting_lives": self.waiting_lives,
            "slots_used": self.slots_used,
        }
