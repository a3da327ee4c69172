"""``GET /metrics``: Prometheus metrics of a ``wf dev`` or ``wf serve`` process.

Counters and histograms of instances and step attempts come from the engine's notices (in this
process for ``wf dev``; relayed by each worker for ``wf serve``); the rest is read at scrape time:
instances by status from the database (the same for every node of a cluster), and the plain
figures the engines and writers keep (``wf.engine.stats``: this process and its workers). Each
app has a registry of its own, so several in one process never clash.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Any

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from wf.engine.model import Status
from wf.engine.runner import Notice
from wf.engine.stats import LATENCY_BUCKETS, Totals
from wf.engine.stats import Histogram as Figures

log = logging.getLogger("wf.server")

# Step attempts: from a trivial body (tens of microseconds) to the default 10-minute timeout.
ATTEMPT_BUCKETS = (0.0001, 0.00025, 0.0005, *LATENCY_BUCKETS, 600.0)
# Whole instances: from milliseconds to days of sleeping.
INSTANCE_BUCKETS = (0.01, 0.1, 0.5, 1.0, 5.0, 30.0, 60.0, 300.0, 3600.0, 86400.0, 604800.0)
_STEP_CACHE_LIMIT = 10_000

# Instances by status per workflow, read from the database at each scrape.
Statuses = Callable[[], Awaitable[Mapping[str, Mapping[str, int]]]]


class Metrics:
    """One process's metrics: ``observe`` each notice, ``render`` at each scrape."""

    def __init__(self, statuses: Statuses, figures: Callable[[], Totals | None]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._statuses = statuses
        self._figures = figures
        r = self.registry

        def by_workflow(name: str, doc: str) -> Counter:
            return Counter(name, doc, ["workflow"], registry=r)

        def by_step(name: str, doc: str) -> Counter:
            return Counter(name, doc, ["workflow", "step"], registry=r)

        self.created = by_workflow("wf_instances_created", "Instances created")
        self.completed = by_workflow("wf_instances_completed", "Instances that completed")
        self.errored = by_workflow("wf_instances_errored", "Instances that errored")
        self.terminated = by_workflow("wf_instances_terminated", "Instances terminated")
        self.attempts = by_step("wf_step_attempts", "Step attempts run (each retry is one)")
        self.failures = by_step("wf_step_attempt_failures", "Step attempts that failed")
        self.retries = by_step("wf_step_retries", "Retries scheduled after a failed attempt")
        self.attempt_seconds = Histogram(
            "wf_step_attempt_seconds",
            "Wall time of each step attempt",
            ["workflow", "step"],
            buckets=ATTEMPT_BUCKETS,
            registry=r,
        )
        self.attempt_cpu = Histogram(
            "wf_step_attempt_cpu_seconds",
            "CPU time each step attempt's body used (beside wf_step_attempt_seconds)",
            ["workflow", "step"],
            buckets=ATTEMPT_BUCKETS,
            registry=r,
        )
        self.instance_seconds = Histogram(
            "wf_instance_duration_seconds",
            "From creation to the end (complete, errored or terminated)",
            ["workflow", "status"],
            buckets=INSTANCE_BUCKETS,
            registry=r,
        )
        self._read: Mapping[str, Mapping[str, int]] = {}
        r.register(_AtScrape(self))
        # Labelled children, found once per (workflow, step as shown: "name-count").
        self._steps: dict[tuple[str, str], _StepChildren] = {}
        self._ends: dict[tuple[str, str], tuple[Any, Any]] = {}

    # ---- notices ---------------------------------------------------------------------------------
    def observe(self, notice: Notice) -> None:
        """An engine notice in this process."""
        self._count(notice.kind, notice.workflow, notice.step, notice.detail)

    def observe_dict(self, notice: Mapping[str, Any]) -> None:
        """A notice a ``wf serve`` worker relayed (``dataclasses.asdict`` of a ``Notice``)."""
        detail = notice.get("detail")
        self._count(
            str(notice.get("kind")),
            str(notice.get("workflow")),
            notice.get("step"),
            detail if isinstance(detail, dict) else {},
        )

    def _count(self, kind: str, workflow: str, step: Any, detail: Mapping[str, Any]) -> None:
        try:
            if kind in ("step_done", "attempt_failed", "step_failed"):
                if isinstance(step, str):
                    self._step(kind, workflow, step, detail)
            elif kind == "queued":
                self.created.labels(workflow).inc()
            elif kind in ("completed", "errored", "terminated"):
                self._ended(kind, workflow, detail)
        except Exception:  # metrics must never break what they watch
            log.exception("cannot count a %s notice", kind)

    def _step(self, kind: str, workflow: str, step: str, detail: Mapping[str, Any]) -> None:
        children = self._steps.get((workflow, step))
        if children is None:
            if len(self._steps) > _STEP_CACHE_LIMIT:
                self._steps.clear()
            name = step.rsplit("-", 1)[0]  # "name-count": the count is not a label
            children = self._steps[(workflow, step)] = _StepChildren(self, workflow, name)
        if kind == "attempt_failed":
            children.retries.inc()
        ms = detail.get("ms")
        if ms is None:  # no attempt ran here (one cut short by a crash, a recorded failure)
            return
        children.attempts.inc()
        if kind != "step_done":
            children.failures.inc()
        children.seconds.observe(ms / 1000)
        cpu = detail.get("cpu_ms")
        if cpu is not None:
            children.cpu.observe(cpu / 1000)

    def _ended(self, kind: str, workflow: str, detail: Mapping[str, Any]) -> None:
        ends = self._ends.get((workflow, kind))
        if ends is None:
            counter = {"completed": self.completed, "errored": self.errored}.get(
                kind, self.terminated
            )
            status = {"completed": "complete"}.get(kind, kind)
            ends = self._ends[(workflow, kind)] = (
                counter.labels(workflow),
                self.instance_seconds.labels(workflow, status),
            )
        ends[0].inc()
        seconds = detail.get("seconds")
        if isinstance(seconds, (int, float)):
            ends[1].observe(seconds)

    # ---- scraping --------------------------------------------------------------------------------
    async def render(self) -> bytes:
        try:
            self._read = await self._statuses()
        except Exception as exc:  # the database is away: the process's own figures still show
            log.warning("metrics: cannot count instances by status: %s", exc)
            self._read = {}
        return generate_latest(self.registry)

    def _collect(self) -> Iterator[Metric]:
        read = self._read
        by_status = GaugeMetricFamily(
            "wf_instances", "Instances by status (the database's)", labels=["workflow", "status"]
        )
        queued = 0
        waiting = 0
        for workflow, counts in sorted(read.items()):
            for status in Status:
                n = counts.get(status.value, 0)
                by_status.add_metric([workflow, status.value], n)
            queued += counts.get(Status.QUEUED.value, 0)
            waiting += counts.get(Status.WAITING.value, 0)
        yield by_status
        yield GaugeMetricFamily(
            "wf_queue_depth", "Instances queued, waiting for a first run (the database's)", queued
        )
        totals = self._figures() or Totals()
        lives = GaugeMetricFamily(
            "wf_lives_in_memory",
            "Instances in this process's (and its workers') memory",
            labels=["state"],
        )
        lives.add_metric(["running"], totals.lives - totals.waiting_lives)
        lives.add_metric(["waiting"], totals.waiting_lives)
        yield lives
        yield GaugeMetricFamily(
            "wf_instances_hibernated",
            "Waiting instances out of memory: the database's waiting ones less this process's "
            "waiting lives (on a cluster, less this node's only)",
            max(0, waiting - totals.waiting_lives),
        )
        yield GaugeMetricFamily(
            "wf_concurrency_slots_used", "Concurrency slots held here", totals.slots_used
        )
        yield CounterMetricFamily(
            "wf_hibernations", "Lives that left memory to wait", totals.hibernations
        )
        yield CounterMetricFamily(
            "wf_commits", "Transactions committed by this process's writers", totals.commits
        )
        yield _histogram(
            "wf_claim_lag_seconds", "From queued to claimed by a life", totals.claim_lag
        )
        yield _histogram(
            "wf_timer_lateness_seconds",
            "From a sleep's due time to its end (in memory, or after hibernation)",
            totals.timer_lateness,
        )
        yield _histogram(
            "wf_commit_batch_size", "Writes served by each group commit", totals.commit_batch
        )
        yield _histogram(
            "wf_commit_seconds", "Time of each group commit (fsync included)", totals.commit_seconds
        )


class _StepChildren:
    __slots__ = ("attempts", "cpu", "failures", "retries", "seconds")

    def __init__(self, metrics: Metrics, workflow: str, step: str) -> None:
        self.attempts = metrics.attempts.labels(workflow, step)
        self.failures = metrics.failures.labels(workflow, step)
        self.retries = metrics.retries.labels(workflow, step)
        self.seconds = metrics.attempt_seconds.labels(workflow, step)
        self.cpu = metrics.attempt_cpu.labels(workflow, step)


class _AtScrape(Collector):
    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        return self._metrics._collect()

    def describe(self) -> Iterator[Metric]:
        """Nothing: the registry would otherwise collect once as it registers this (before
        whatever it reads exists)."""
        return iter(())


def _histogram(name: str, doc: str, figures: Figures) -> HistogramMetricFamily:
    buckets: list[tuple[str, float]] = []
    running = 0
    for bound, n in zip(figures.bounds, figures.counts, strict=False):
        running += n
        buckets.append((_le(bound), running))
    buckets.append(("+Inf", figures.count))
    return HistogramMetricFamily(name, doc, buckets=buckets, sum_value=figures.sum)


def _le(bound: float) -> str:
    return repr(float(bound))


async def statuses_of(
    names: Callable[[], list[str]], count: Callable[[str], Awaitable[dict[str, int]]]
) -> dict[str, dict[str, int]]:
    return {name: await count(name) for name in names()}


def tee(*observers: Callable[[Notice], None] | None) -> Callable[[Notice], None]:
    """One notice observer that calls each of ``observers`` (None ones skipped)."""
    present = [o for o in observers if o is not None]

    def observe(notice: Notice) -> None:
        for observer in present:
            observer(notice)

    return observe


# Set (to anything but "" or "0") by --no-metrics, so wf dev's children see it too.
NO_METRICS_VARIABLE = "WF_NO_METRICS"


def metrics_wanted() -> bool:
    return os.environ.get(NO_METRICS_VARIABLE, "") in ("", "0")


# ---- the route ---------------------------------------------------------------------------------
METRICS_KEY: web.AppKey[Metrics] = web.AppKey("wf_metrics")
Guard = Callable[[web.Request], Awaitable[None]]


def install(app: web.Application, metrics: Metrics, guard: Guard | None = None) -> None:
    """Serve ``GET /metrics`` on ``app``; ``guard`` raises for a request it refuses."""

    async def scrape(request: web.Request) -> web.Response:
        if guard is not None:
            await guard(request)
        body = await metrics.render()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    app[METRICS_KEY] = metrics
    app.router.add_get("/metrics", scrape)
