"""``GET /metrics``: Prometheus metrics of a ``wf dev`` or ``wf serve`` process.

Counters and histograms of instances and step attempts come from the engine's notices (in this
process for ``wf dev``; relayed by each worker for ``wf serve``); the rest is read at scrape time:
instances by status from the database (the same for every node of a cluster), and the plain
figures the engines and writers keep (``wf.engine.counters``: this process and its workers). Each
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
    generate_latest,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from wf.engine.counters import LATENCY_BUCKETS, Totals
from wf.engine.counters import Histogram as Figures
from wf.engine.model import Status
from wf.engine.runner import Notice

log = logging.getLogger("wf.server")

# Step attempts: from a trivial body (tens of microseconds) to the default 10-minute timeout.
ATTEMPT_BUCKETS = (0.0001, 0.00025, 0.0005, *LATENCY_BUCKETS, 600.0)
# Whole instances: from milliseconds to days of sleeping.
INSTANCE_BUCKETS = (0.01, 0.1, 0.5, 1.0, 5.0, 30.0, 60.0, 300.0, 3600.0, 86400.0, 604800.0)
_STEP_CACHE_LIMIT = 10_000
# Step names may be made from data (f"charge {order}"): past this many names in a workflow, its
# further ones share one label, so the series (and this process's memory) stay bounded.
MAX_STEP_LABELS = 200
OTHER_STEPS = "(other)"

# Instances by status per workflow, read from the database at each scrape.
Statuses = Callable[[], Awaitable[Mapping[str, Mapping[str, int]]]]


class Metrics:
    """One process's metrics: ``observe`` each notice, ``render`` at each scrape.

    The notices are counted in plain figures (ints, and histograms as bucket counts: no lock,
    no label lookup, about a microsecond a step) and turned into Prometheus families only when
    scraped."""

    def __init__(self, statuses: Statuses, figures: Callable[[], Totals | None]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._statuses = statuses
        self._figures = figures
        self._read: Mapping[str, Mapping[str, int]] = {}
        # Per workflow, and per (workflow, step as shown: "name-count") found once.
        self._workflows: dict[str, _WorkflowFigures] = {}
        self._steps: dict[tuple[str, str], _StepFigures] = {}
        self._by_name: dict[tuple[str, str], _StepFigures] = {}  # (workflow, step name)
        self._names: dict[str, int] = {}  # step names labelled per workflow
        self.registry.register(_AtScrape(self))

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
                self._workflow(workflow).created += 1
            elif kind in ("completed", "errored", "terminated"):
                self._workflow(workflow).ended(kind, detail.get("seconds"))
        except Exception:  # metrics must never break what they watch
            log.exception("cannot count a %s notice", kind)

    def _workflow(self, workflow: str) -> _WorkflowFigures:
        found = self._workflows.get(workflow)
        if found is None:
            found = self._workflows[workflow] = _WorkflowFigures()
        return found

    def _step(self, kind: str, workflow: str, step: str, detail: Mapping[str, Any]) -> None:
        figures = self._steps.get((workflow, step))
        if figures is None:
            if len(self._steps) > _STEP_CACHE_LIMIT:
                self._steps.clear()  # the figures stay, by name
            name = step.rsplit("-", 1)[0]  # "name-count": the count is not a label
            figures = self._by_name.get((workflow, name))
            if figures is None:
                named = self._names.get(workflow, 0)
                if named >= MAX_STEP_LABELS:
                    name = OTHER_STEPS
                    figures = self._by_name.get((workflow, name))
                else:
                    self._names[workflow] = named + 1
            if figures is None:
                figures = self._by_name[(workflow, name)] = _StepFigures()
            self._steps[(workflow, step)] = figures
        if kind == "attempt_failed":
            figures.retries += 1
        ms = detail.get("ms")
        if ms is None:  # no attempt ran here (one cut short by a crash, a recorded failure)
            return
        figures.attempts += 1
        if kind != "step_done":
            figures.failures += 1
        figures.seconds.observe(ms / 1000)
        cpu = detail.get("cpu_ms")
        if cpu is not None:
            figures.cpu.observe(cpu / 1000)

    # ---- scraping --------------------------------------------------------------------------------
    async def render(self) -> bytes:
        try:
            self._read = await self._statuses()
        except Exception as exc:  # the database is away: the process's own figures still show
            log.warning("metrics: cannot count instances by status: %s", exc)
            self._read = {}
        return generate_latest(self.registry)

    def _notice_families(self) -> Iterator[Metric]:
        workflows = sorted(self._workflows.items())
        created = CounterMetricFamily(
            "wf_instances_created", "Instances created", labels=["workflow"]
        )
        for workflow, figures in workflows:
            created.add_metric([workflow], figures.created)
        yield created
        for kind, doc in (
            ("completed", "Instances that completed"),
            ("errored", "Instances that errored"),
            ("terminated", "Instances terminated"),
        ):
            family = CounterMetricFamily(f"wf_instances_{kind}", doc, labels=["workflow"])
            for workflow, figures in workflows:
                family.add_metric([workflow], figures.ends[kind])
            yield family
        durations = HistogramMetricFamily(
            "wf_instance_duration_seconds",
            "From creation to the end (complete, errored or terminated)",
            labels=["workflow", "status"],
        )
        for workflow, figures in workflows:
            for kind, status in _ENDS.items():
                if figures.ends[kind]:
                    _add_histogram(durations, [workflow, status], figures.durations[kind])
        yield durations
        steps = sorted(self._by_name.items())
        for attribute, name, doc in (
            ("attempts", "wf_step_attempts", "Step attempts run (each retry is one)"),
            ("failures", "wf_step_attempt_failures", "Step attempts that failed"),
            ("retries", "wf_step_retries", "Retries scheduled after a failed attempt"),
        ):
            family = CounterMetricFamily(name, doc, labels=["workflow", "step"])
            for (workflow, step), of_step in steps:
                family.add_metric([workflow, step], getattr(of_step, attribute))
            yield family
        for attribute, name, doc in (
            ("seconds", "wf_step_attempt_seconds", "Wall time of each step attempt"),
            (
                "cpu",
                "wf_step_attempt_cpu_seconds",
                "CPU time each step attempt's body used (beside wf_step_attempt_seconds)",
            ),
        ):
            histogram = HistogramMetricFamily(name, doc, labels=["workflow", "step"])
            for (workflow, step), of_step in steps:
                _add_histogram(histogram, [workflow, step], getattr(of_step, attribute))
            yield histogram

    def _collect(self) -> Iterator[Metric]:
        yield from self._notice_families()
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


class _StepFigures:
    __slots__ = ("attempts", "cpu", "failures", "retries", "seconds")

    def __init__(self) -> None:
        self.attempts = 0
        self.failures = 0
        self.retries = 0
        self.seconds = Figures(ATTEMPT_BUCKETS)
        self.cpu = Figures(ATTEMPT_BUCKETS)


_ENDS = {"completed": "complete", "errored": "errored", "terminated": "terminated"}


class _WorkflowFigures:
    __slots__ = ("created", "durations", "ends")

    def __init__(self) -> None:
        self.created = 0
        self.ends = dict.fromkeys(_ENDS, 0)
        self.durations = {kind: Figures(INSTANCE_BUCKETS) for kind in _ENDS}

    def ended(self, kind: str, seconds: object) -> None:
        self.ends[kind] += 1
        if isinstance(seconds, (int, float)) and not isinstance(seconds, bool):
            self.durations[kind].observe(seconds)


class _AtScrape(Collector):
    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        return self._metrics._collect()

    def describe(self) -> Iterator[Metric]:
        """Nothing: the registry would otherwise collect once as it registers this (before
        whatever it reads exists)."""
        return iter(())


def _buckets(figures: Figures) -> list[tuple[str, float]]:
    buckets: list[tuple[str, float]] = []
    running = 0
    for bound, n in zip(figures.bounds, figures.counts, strict=False):
        running += n
        buckets.append((_le(bound), running))
    buckets.append(("+Inf", figures.count))
    return buckets


def _histogram(name: str, doc: str, figures: Figures) -> HistogramMetricFamily:
    return HistogramMetricFamily(name, doc, buckets=_buckets(figures), sum_value=figures.sum)


def _add_histogram(family: HistogramMetricFamily, labels: list[str], figures: Figures) -> None:
    family.add_metric(labels, _buckets(figures), figures.sum)


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
