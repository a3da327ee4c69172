"""Flow control in wf.toml: ``wf dev`` on a bad value says what is wrong in one line, naming the
key and the workflow (a real ``wf dev`` process; it keeps watching the project meanwhile)."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

MAIN = """
from wf import WorkflowEntrypoint

class Orders(WorkflowEntrypoint):
    async def run(self, event, step):
        return 1
"""

HEAD = """
name = "shop"
main = "main.py"

[[workflows]]
name = "orders"
binding = "ORDERS"
class_name = "Orders"
"""


def dev_problem(tmp_path: Path, lines: str) -> str:
    """The line ``wf dev`` prints about the project (it is then stopped)."""
    (tmp_path / "main.py").write_text(MAIN)
    (tmp_path / "wf.toml").write_text(HEAD + lines)
    env = {k: v for k, v in os.environ.items() if not k.startswith("WF_")}
    env.update(COLUMNS="200", PYTHONIOENCODING="utf-8", NO_COLOR="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "wf", "dev", "--port", "0"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        encoding="utf-8",
    )
    lines_seen: queue.Queue[str] = queue.Queue()
    assert proc.stdout is not None
    stdout = proc.stdout

    def read() -> None:
        for line in stdout:
            lines_seen.put(line)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        while True:
            line = lines_seen.get(timeout=30)
            assert "Traceback" not in line
            if "wf.toml" in line:
                return line.strip().lstrip("✗ ")
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            reader.join()
            stdout.close()


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        (
            "concurrency = 0",
            'wf.toml: workflows[0].concurrency (workflow "orders") must be an integer from 1 to '
            "1000000, got 0",
        ),
        (
            'concurrency_key = "customerId"\nconcurrency = 2',
            'wf.toml: workflows[0].concurrency_key (workflow "orders") must be a dotted path into '
            "the params such as \"params.customerId\", got 'customerId'",
        ),
        (
            'concurrency_key = "params.customerId"',
            'wf.toml: workflows[0].concurrency_key (workflow "orders") needs concurrency = N '
            "(at most N per key)",
        ),
        (
            'rate_limit = { limit = 10, period = "soon" }',
            'wf.toml: workflows[0].rate_limit.period (workflow "orders") must be a duration such '
            'as "1 minute" or "10 seconds", got \'soon\'',
        ),
        (
            'rate_limit = { limit = 10, period = "1 minute", every = 2 }',
            'wf.toml: workflows[0].rate_limit.every (workflow "orders") is not a known key; '
            "expected one of limit, period, key",
        ),
        (
            'rate_limit = { limit = -1, period = "1 minute" }',
            'wf.toml: workflows[0].rate_limit.limit (workflow "orders") must be an integer from 1 '
            "to 1000000, got -1",
        ),
    ],
)
def test_bad_flow_config_is_one_line(tmp_path: Path, lines: str, expected: str) -> None:
    assert dev_problem(tmp_path, lines) == expected
