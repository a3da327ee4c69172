"""OpenTelemetry spans of the engine's lives and step attempts (the optional extra ``wf[otel]``).

Both servers (``wf dev``'s child, ``wf serve``'s workers) ask ``from_environment()`` for a tracer.
Tracing is on when the environment asks for it the standard way (``OTEL_TRACES_EXPORTER`` other
than ``none``, ``OTEL_EXPORTER_OTLP_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) or with
``WF_OTEL=1``, and opentelemetry-sdk is installed; otherwise nothing of OpenTelemetry is imported
and the engine gets no tracer. Every import of opentelemetry is inside a function for that reason.

A life is one span (``life <workflow>``), a child of the trace context of the request that created
the instance when it came with a ``traceparent``; each step attempt is a span under it (``step
<name>``), current while the step's body runs, so spans the body makes nest under it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from wf.engine.model import ErrorInfo, InstanceRow
from wf.engine.tracing import FAILED, RETRY

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Span

log = logging.getLogger("wf.server")

TRACER_NAME = "wf"
DEFAULT_SERVICE_NAME = "wf"
_SWITCHES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
# Ending a life for these reasons is the instance's end: the life span says so in its status.
_ERRORED = "errored"


def wanted(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether the environment asks for traces (without importing anything)."""
    exporter = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter == "none":
        return False
    if exporter or environ.get("WF_OTEL", "").strip().lower() in ("1", "true", "yes", "on"):
        return True
    return any(environ.get(name, "").strip() for name in _SWITCHES)


def from_environment(environ: Mapping[str, str] = os.environ) -> OtelTracer | None:
    """The tracer the environment asks for, or None (tracing off, or it cannot be set up: one
    log line says why). Its spans go to the exporters ``OTEL_TRACES_EXPORTER`` names (default
    ``otlp``), through a batch processor (``OTEL_BSP_*``); the service is ``OTEL_SERVICE_NAME``
    (default "wf")."""
    if not wanted(environ):
        return None
    try:
        from opentelemetry import trace
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        log.warning(
            "traces are asked for (OTEL_*/WF_OTEL) but opentelemetry-sdk is not installed: "
            "pip install 'wf[otel]'; tracing is off"
        )
        return None
    exporters = []
    names = environ.get("OTEL_TRACES_EXPORTER", "").strip() or "otlp"
    for name in (n.strip() for n in names.split(",")):
        if name and name != "none":
            exporter = _exporter(name)
            if exporter is None:
                return None
            exporters.append(exporter)
    resource = Resource.create()
    if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
        resource = resource.merge(Resource({"service.name": DEFAULT_SERVICE_NAME}))
    provider = TracerProvider(resource=resource)
    for exporter in exporters:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    # Global, so spans the workflows' own code makes go to the same place. The provider exports
    # what is pending when the process exits.
    trace.set_tracer_provider(provider)
    return OtelTracer(provider)


def _exporter(name: str) -> Any:
    """An instance of the span exporter registered under ``name`` (the entry points
    ``opentelemetry_traces_exporter``, as the SDK's own configuration finds them)."""
    from importlib.metadata import entry_points

    found = {e.name: e for e in entry_points(group="opentelemetry_traces_exporter")}
    if name == "otlp" and name not in found and "otlp_proto_http" in found:
        name = "otlp_proto_http"  # "otlp" means gRPC; the HTTP exporter alone does as well
    if name not in found:
        hint = (
            "pip install opentelemetry-exporter-otlp-proto-http"
            if name.startswith("otlp")
            else f"install the package that provides it, or use one of {sorted(found)}"
        )
        log.warning(
            "OTEL_TRACES_EXPORTER: no span exporter %r is installed (%s); tracing is off",
            name,
            hint,
        )
        return None
    try:
        return found[name].load()()
    except Exception as exc:
        log.warning("the span exporter %r failed to start: %s; tracing is off", name, exc)
        return None


@dataclass
class _Life:
    span: Span
    workflow: str
    instance: str


@dataclass
class _Attempt:
    span: Span
    token: Any  # the context token of the span made current while the body runs


class OtelTracer:
    """The engine's ``Tracer`` over an OpenTelemetry tracer provider."""

    def __init__(self, provider: TracerProvider) -> None:
        from opentelemetry import context, trace
        from opentelemetry.trace import Status, StatusCode
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        self.provider = provider
        self._tracer = provider.get_tracer(TRACER_NAME)
        self._trace = trace
        self._context = context
        self._propagator = TraceContextTextMapPropagator()
        self._status, self._error_code = Status, StatusCode.ERROR

    def life_began(self, row: InstanceRow, fresh: bool) -> object:
        parent = None
        if row.traceparent is not None:
            parent = self._propagator.extract({"traceparent": row.traceparent})
        span = self._tracer.start_span(
            f"life {row.workflow}",
            context=parent,
            attributes={
                "wf.workflow": row.workflow,
                "wf.instance": row.id,
                "wf.version": row.version_id,
                "wf.life.first": fresh,
            },
        )
        return _Life(span, row.workflow, row.id)

    def life_ended(self, life: object, reason: str, error: ErrorInfo | None) -> None:
        assert isinstance(life, _Life)
        life.span.set_attribute("wf.end", reason)
        if reason == _ERRORED and error is not None:
            self._fail(life.span, error)
        life.span.end()

    def attempt_began(self, life: object, step: str, count: int, attempt: int) -> object:
        assert isinstance(life, _Life)
        span = self._tracer.start_span(
            f"step {step}",
            context=self._trace.set_span_in_context(life.span),
            attributes={
                "wf.workflow": life.workflow,
                "wf.instance": life.instance,
                "wf.step": step,
                "wf.step.count": count,
                "wf.attempt": attempt,
            },
        )
        # Current while the body runs (the same task calls attempt_ended): the body's own spans
        # nest under it, and a thread running a sync body copies this context.
        token = self._context.attach(self._trace.set_span_in_context(span))
        return _Attempt(span, token)

    def attempt_ended(self, attempt: object, outcome: str, error: ErrorInfo | None) -> None:
        assert isinstance(attempt, _Attempt)
        self._context.detach(attempt.token)
        attempt.span.set_attribute("wf.outcome", outcome)
        if outcome in (RETRY, FAILED) and error is not None:
            self._fail(attempt.span, error)
        attempt.span.end()

    def _fail(self, span: Span, error: ErrorInfo) -> None:
        span.set_status(self._status(self._error_code, f"{error['name']}: {error['message']}"))
        span.add_event(
            "exception",
            {"exception.type": error["name"], "exception.message": error["message"]},
        )
