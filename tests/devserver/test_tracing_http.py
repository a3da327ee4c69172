"""The trace context of the HTTP request that creates an instance (its W3C ``traceparent``
header) is stored with it, and the instance's spans join that trace: over real HTTP on
loopback, a real engine on SQLite, spans in the SDK's in-memory exporter."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.conftest import wait_for, wait_status
from tests.devserver.conftest import CONFIGS, PORT, SPECS, Client, MakeClient, call
from wf.devserver.state import ServerState
from wf.devserver.tracing import OtelTracer
from wf.engine import Engine, EngineSettings
from wf.engine.store.sqlite import SqliteStore

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT_ID = "b7ad6b7169203331"


@pytest.fixture
async def traced(tmp_path: Path) -> AsyncIterator[tuple[Engine, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    engine = Engine(
        SqliteStore(tmp_path / "wf.db", durability="os"),
        SPECS,
        settings=EngineSettings(poll_interval=0.2),
        tracer=OtelTracer(provider),
    )
    await engine.start()
    try:
        yield engine, exporter
    finally:
        await engine.stop()
        exporter.shutdown()


@pytest.fixture
async def client(make_client: MakeClient, traced: tuple[Engine, InMemorySpanExporter]) -> Client:
    state = ServerState(
        project_name="demo",
        workflows=CONFIGS,
        engine=traced[0],
        version_id="v-test",
        bound_host="127.0.0.1",
        port=PORT,
    )
    return await make_client(state)


def lives(exporter: InMemorySpanExporter) -> dict[str, ReadableSpan]:
    return {
        str(dict(s.attributes or {})["wf.instance"]): s
        for s in exporter.get_finished_spans()
        if s.name.startswith("life ")
    }


def parent_of(span: ReadableSpan) -> tuple[str, str] | None:
    if span.parent is None:
        return None
    return format(span.parent.trace_id, "032x"), format(span.parent.span_id, "016x")


async def test_the_create_requests_traceparent_is_the_parent_of_the_life(
    client: Client, traced: tuple[Engine, InMemorySpanExporter]
) -> None:
    engine, exporter = traced
    header = {"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"}
    await call(
        client,
        "POST",
        "/api/workflows/quick/instances",
        201,
        json={"id": "one", "params": {"n": 2}},
        headers=header,
    )
    await call(
        client,
        "POST",
        "/api/workflows/quick/instances/batch",
        201,
        json=[{"id": "two"}, {"id": "three"}],
        headers=header,
    )
    await call(
        client,
        "POST",
        "/api/workflows/quick/instances/batch",
        201,
        json={"instances": [{"instance_id": "four"}]},
        headers=header,
    )
    await call(
        client,
        "POST",
        "/api/workflows/quick/instances",
        201,
        json={"id": "bad-header"},
        headers={"traceparent": "not-a-trace-context"},
    )
    await call(client, "POST", "/api/workflows/quick/instances", 201, json={"id": "none"})
    ids = ("one", "two", "three", "four", "bad-header", "none")
    for instance_id in ids:
        await wait_status(engine, "quick", instance_id)
    found = await wait_for(lambda: (lambda got: got if len(got) == 6 else None)(lives(exporter)))
    assert {i: parent_of(found[i]) for i in ids} == {
        "one": (TRACE_ID, PARENT_ID),
        "two": (TRACE_ID, PARENT_ID),
        "three": (TRACE_ID, PARENT_ID),
        "four": (TRACE_ID, PARENT_ID),
        "bad-header": None,  # ignored, as the W3C spec says; the instance is created all the same
        "none": None,
    }
    # The step's attempt is in the request's trace too, under its life.
    [attempt] = [
        s
        for s in exporter.get_finished_spans()
        if s.name == "step double" and dict(s.attributes or {})["wf.instance"] == "one"
    ]
    assert attempt.context is not None and format(attempt.context.trace_id, "032x") == TRACE_ID
    assert dict(attempt.attributes or {})["wf.outcome"] == "success"
