"""``make test`` without PostgreSQL: one line saying how many PostgreSQL tests were skipped and how
to run them, instead of one ``SKIPPED`` line per test file in ``-ra``'s summary.

The hooks are imported by tests/conftest.py. A test that ``tests.postgres`` skipped is reported
in a category of its own, so ``-ra`` does not list it and the last line counts it apart ("12
skipped without PostgreSQL"); ``pytest_terminal_summary`` then says what to do about it. With
``WF_REQUIRE_POSTGRES=1`` (CI) nothing is skipped: ``pg_cluster`` fails instead.
"""

from __future__ import annotations

import pytest

from tests.postgres import HOW_TO, SKIP_REASON

CATEGORY = "skipped without PostgreSQL"


def _skipped_for_postgres(report: pytest.TestReport) -> bool:
    if not report.skipped or hasattr(report, "wasxfail"):
        return False
    longrepr = report.longrepr
    return isinstance(longrepr, tuple) and str(longrepr[2]).startswith(f"Skipped: {SKIP_REASON}")


def pytest_report_teststatus(
    report: pytest.TestReport, config: pytest.Config
) -> tuple[str, str, str] | None:
    if _skipped_for_postgres(report):
        return CATEGORY, "s", "SKIPPED"
    return None


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    skipped = len(terminalreporter.stats.get(CATEGORY, []))
    if skipped:
        tests = "test" if skipped == 1 else "tests"
        terminalreporter.write_line(
            f"{skipped} PostgreSQL {tests} skipped ({SKIP_REASON}); to run them, {HOW_TO}",
            yellow=True,
        )
