"""Tracing is off unless the environment asks for it, and then nothing of OpenTelemetry is
imported (checked in fresh interpreters); when asked for, the exporters named are found."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from wf.devserver.tracing import wanted

SCRIPT = """
import json, logging, sys
logging.basicConfig(level=logging.WARNING, format="%(message)s")
import wf, wf.engine, wf.devserver.child, wf.server.worker
from wf.devserver import tracing
tracer = tracing.from_environment()
loaded = sorted(m for m in sys.modules if m.split(".")[0] == "opentelemetry")
print(json.dumps({"tracer": type(tracer).__name__, "otel": len(loaded)}))
"""


def run(env: dict[str, str], tmp_path: Path) -> tuple[dict[str, object], str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "WF_OTEL"))}
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**clean, **env},
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    found: dict[str, object] = json.loads(result.stdout)
    return found, result.stderr


def test_off_by_default_imports_nothing_of_opentelemetry(tmp_path: Path) -> None:
    found, stderr = run({}, tmp_path)
    assert found == {"tracer": "NoneType", "otel": 0}
    assert stderr == ""


def test_console_exporter_turns_it_on(tmp_path: Path) -> None:
    # The check above could pass for the wrong reason if nothing ever imported it.
    found, _ = run({"OTEL_TRACES_EXPORTER": "console"}, tmp_path)
    assert found["tracer"] == "OtelTracer"
    assert isinstance(found["otel"], int) and found["otel"] > 0


def test_an_exporter_that_is_not_installed_says_so_in_one_line(tmp_path: Path) -> None:
    found, stderr = run({"WF_OTEL": "1", "OTEL_TRACES_EXPORTER": "jaeger_thrift"}, tmp_path)
    assert found["tracer"] == "NoneType"
    assert stderr.count("\n") == 1
    assert "no span exporter 'jaeger_thrift' is installed" in stderr
    assert "tracing is off" in stderr


@pytest.mark.parametrize(
    ("env", "on"),
    [
        ({}, False),
        ({"WF_OTEL": "1"}, True),
        ({"WF_OTEL": "0"}, False),
        ({"OTEL_TRACES_EXPORTER": "console"}, True),
        ({"OTEL_TRACES_EXPORTER": "none", "WF_OTEL": "1"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}, True),
        ({"OTEL_SERVICE_NAME": "shop"}, False),
    ],
)
def test_what_turns_tracing_on(env: dict[str, str], on: bool) -> None:
    assert wanted(env) is on
