"""Lines a test adds to the closing summary of the run (the chaos suites' figures, the browser's
version). They travel in the test's report (``user_properties``), so they reach the summary from
pytest-xdist's workers too, whose own output nobody sees.

The hooks are imported by tests/conftest.py.
"""

from __future__ import annotations

import pytest

KEY = "wf_summary_line"
_LINES: list[str] = []  # in the order they came, each once


def add_summary_line(node: pytest.Item, line: str) -> None:
    """``line`` goes into the run's closing summary."""
    node.user_properties.append((KEY, line))


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when != "teardown":  # the last report of a test carries every line it added
        return
    for name, value in report.user_properties:
        if name == KEY and value not in _LINES:
            _LINES.append(str(value))


def write_summary_lines(terminalreporter: pytest.TerminalReporter) -> None:
    for line in _LINES:
        terminalreporter.write_line(line)
