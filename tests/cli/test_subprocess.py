"""``wf`` as a real process (``python -m wf``): exit codes, one-line errors, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from .conftest import LiveServer, unused_port, wait_status

pytestmark = pytest.mark.slow


def run_wf(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WF_")}
    env.update(COLUMNS="100", PYTHONIOENCODING="utf-8")
    return subprocess.run(
        [sys.executable, "-m", "wf", *args],
        capture_output=True,
        text=True,
        encoding="utf-8",
        env=env,
        timeout=60,
        check=False,
    )


def error_line(result: subprocess.CompletedProcess[str], code: int = 1) -> str:
    assert result.returncode == code, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_invalid_params_json() -> None:
    result = run_wf("trigger", "quick", "[1, 2", "--url", f"http://127.0.0.1:{unused_port()}")
    assert error_line(result) == (
        "wf: params are not valid JSON: Expecting ',' delimiter (line 1, column 6)"
    )


def test_no_server() -> None:
    url = f"http://127.0.0.1:{unused_port()}"
    for args in (("trigger", "quick"), ("instances", "list", "quick"), ("workflows", "list")):
        line = error_line(run_wf(*args, "--url", url))
        assert line == f"wf: no wf server at {url}; start one with wf dev"


def test_errors_from_the_server(server: LiveServer) -> None:
    url = ["--url", server.url]
    line = error_line(run_wf("trigger", "nope", *url))
    assert line == (
        'wf: workflow "nope" not found; known workflows: approval, chatty, failing, napper, quick'
    )
    line = error_line(run_wf("instances", "describe", "quick", "ghost", *url))
    assert line == 'wf: instance "ghost" not found in workflow "quick"'

    first = run_wf("trigger", "quick", '{"n": 1}', "--id", "dup", *url)
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith('🚀 Workflow instance "dup" has been queued successfully\n')
    line = error_line(run_wf("trigger", "quick", "--id", "dup", *url))
    assert line == 'wf: an instance with id "dup" already exists in workflow "quick"'

    wait_status(server.client(), "quick", "dup")
    described = run_wf("instances", "describe", "quick", "latest", *url)
    assert described.returncode == 0, described.stderr
    assert described.stdout.startswith("Describing latest instance:\n")
    assert "Instance Id:           dup" in described.stdout


def test_usage_errors_exit_2() -> None:
    for args in (("trigger",), ("instances", "pause", "quick"), ("nosuchcommand",)):
        result = run_wf(*args)
        assert result.returncode == 2, (args, result.stderr)
        assert "Traceback" not in result.stderr


def test_help_and_version() -> None:
    result = run_wf("--help")
    assert result.returncode == 0
    for command in ("trigger", "workflows", "instances"):
        assert command in result.stdout
    assert run_wf("--version").stdout.startswith("wf ")
