"""OpenTelemetry spans of lives and step attempts (wf.devserver.tracing) on a real engine, both
stores, collected by the SDK's in-memory exporter."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from tests.conftest import Harness, wait_for, wait_status
from wf import NonRetryableError, StepContext, StepError, WorkflowEntrypoint
from wf.devserver.tracing import OtelTracer
from wf.engine import Engine, EngineSettings, ManualClock, WorkflowSpec

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    yield exporter
    exporter.shutdown()


async def start(
    harness: Harness, exporter: InMemorySpanExporter, cls: type[WorkflowEntrypoint], **kw: Any
) -> Engine:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    engine = Engine(
        harness.store(),
        [WorkflowSpec("wf", cls, "WF")],
        settings=EngineSettings(poll_interval=0.2, **kw.pop("settings", {})),
        tracer=OtelTracer(provider),
        **kw,
    )
    await engine.start()
    harness.engines.append(engine)
    return engine


def named(spans: tuple[ReadableSpan, ...], prefix: str) -> list[ReadableSpan]:
    return sorted((s for s in spans if s.name.startswith(prefix)), key=lambda s: s.start_time or 0)


async def test_a_life_and_its_attempts_are_spans_under_the_creating_request(
    harness: Harness, exporter: InMemorySpanExporter
) -> None:
    class Flow(WorkflowEntrypoint):
        async def run(self, event, step):
            def flaky(ctx: StepContext) -> int:
                if ctx.attempt < 3:
                    raise ConnectionError(f"down {ctx.attempt}")
                return ctx.attempt

            await step.do("flaky", {"retries": {"limit": 4, "delay": 0.01}}, flaky)

            def doomed() -> None:
                raise NonRetryableError("card declined")

            with contextlib.suppress(StepError):
                await step.do("charge", doomed)
            await step.do("charge", doomed)  # the same name again: its second occurrence

    engine = await start(harness, exporter, Flow)
    inst = await engine.create("wf", "traced", traceparent=TRACEPARENT)
    assert (await wait_status(engine, "wf", inst.id))["status"] == "errored"
    await wait_for(lambda: named(exporter.get_finished_spans(), "life"))
    spans = exporter.get_finished_spans()

    [life] = named(spans, "life")
    assert life.name == "life wf"
    assert life.context is not None and life.parent is not None
    assert format(life.context.trace_id, "032x") == TRACE_ID  # the request's trace
    assert format(life.parent.span_id, "016x") == PARENT_ID
    assert life.attributes is not None
    assert dict(life.attributes) == {
        "wf.workflow": "wf",
        "wf.instance": "traced",
        "wf.version": engine.version_id,
        "wf.life.first": True,
        "wf.end": "errored",
    }
    assert life.status.status_code is StatusCode.ERROR
    assert life.status.description == "NonRetryableError: card declined"

    attempts = named(spans, "step")
    seen = [
        (
            s.name,
            dict(s.attributes or {}).get("wf.step.count"),
            dict(s.attributes or {}).get("wf.attempt"),
            dict(s.attributes or {}).get("wf.outcome"),
            s.status.status_code,
        )
        for s in attempts
    ]
    assert seen == [
        ("step flaky", 1, 1, "retry", StatusCode.ERROR),
        ("step flaky", 1, 2, "retry", StatusCode.ERROR),
        ("step flaky", 1, 3, "success", StatusCode.UNSET),
        ("step charge", 1, 1, "failed", StatusCode.ERROR),
        ("step charge", 2, 1, "failed", StatusCode.ERROR),
    ]
    for span in attempts:
        assert span.parent is not None and life.context is not None
        assert span.parent.span_id == life.context.span_id
        assert dict(span.attributes or {})["wf.instance"] == "traced"
        assert dict(span.attributes or {})["wf.workflow"] == "wf"
    assert attempts[0].status.description == "ConnectionError: down 1"
    [event] = attempts[3].events
    assert event.name == "exception"
    assert dict(event.attributes or {}) == {
        "exception.type": "NonRetryableError",
        "exception.message": "card declined",
    }


async def test_each_life_is_a_span_hibernation_ends_one(
    harness: Harness, exporter: InMemorySpanExporter
) -> None:
    clock = ManualClock()

    class Flow(WorkflowEntrypoint):
        async def run(self, event, step):
            await step.do("before", lambda: 1)
            await step.sleep("a day", "1 day")
            return await step.do("after", lambda: 2)

    engine = await start(harness, exporter, Flow, clock=clock)
    inst = await engine.create("wf", "sleeper", traceparent=TRACEPARENT)
    await wait_status(engine, "wf", inst.id, "waiting")
    await wait_for(lambda: named(exporter.get_finished_spans(), "life"))
    clock.advance(86400)
    assert (await wait_status(engine, "wf", inst.id))["output"] == 2
    await wait_for(lambda: len(named(exporter.get_finished_spans(), "life")) == 2)
    spans = exporter.get_finished_spans()
    first, second = named(spans, "life")
    assert [dict(s.attributes or {})["wf.end"] for s in (first, second)] == [
        "hibernate",
        "complete",
    ]
    assert [dict(s.attributes or {})["wf.life.first"] for s in (first, second)] == [True, False]
    # Both lives join the creating request's trace, days apart.
    assert {format(s.context.trace_id, "032x") for s in (first, second) if s.context} == {TRACE_ID}
    by_life = {
        dict(s.attributes or {})["wf.step"]: s.parent.span_id if s.parent else None
        for s in named(spans, "step")
    }
    assert first.context is not None and second.context is not None
    assert by_life == {"before": first.context.span_id, "after": second.context.span_id}


async def test_without_a_traceparent_a_life_is_a_root_span_and_the_body_sees_its_attempt(
    harness: Harness, exporter: InMemorySpanExporter
) -> None:
    inside: list[int] = []
    between: list[bool] = []

    class Flow(WorkflowEntrypoint):
        async def run(self, event, step):
            async def body() -> int:
                await asyncio.sleep(0)
                inside.append(trace.get_current_span().get_span_context().span_id)
                return 1

            def sync_body() -> int:
                inside.append(trace.get_current_span().get_span_context().span_id)
                return 2

            await step.do("async", body)
            # Between steps, run() sees no attempt span (it was current only during the step).
            between.append(trace.get_current_span().get_span_context().is_valid)
            return await step.do("sync", sync_body)

    engine = await start(harness, exporter, Flow)
    inst = await engine.create("wf", "untraced")
    await wait_status(engine, "wf", inst.id)
    await wait_for(lambda: named(exporter.get_finished_spans(), "life"))
    spans = exporter.get_finished_spans()
    [life] = named(spans, "life")
    assert life.parent is None
    attempts = named(spans, "step")
    assert inside == [s.context.span_id for s in attempts if s.context]
    assert between == [False]


def test_a_malformed_traceparent_is_ignored() -> None:
    from wf.engine.tracing import valid_traceparent

    assert valid_traceparent(TRACEPARENT) == TRACEPARENT
    assert valid_traceparent(f" {TRACEPARENT} ") == TRACEPARENT
    for bad in (
        None,
        "",
        "garbage",
        f"ff-{TRACE_ID}-{PARENT_ID}-01",
        f"00-{'0' * 32}-{PARENT_ID}-01",
        f"00-{TRACE_ID}-{'0' * 16}-01",
        f"00-{TRACE_ID.upper()}-{PARENT_ID}-01",
        f"00-{TRACE_ID}-{PARENT_ID}-01-extra",
    ):
        assert valid_traceparent(bad) is None, bad
    assert valid_traceparent(f"01-{TRACE_ID}-{PARENT_ID}-01-future") is not None
