"""Without PostgreSQL, ``make test`` says in one line how many PostgreSQL tests it skipped and how
to run them; with ``WF_REQUIRE_POSTGRES=1`` (CI) they fail instead. Checked by running pytest on
a few tests in a project of their own, on a machine made to look as if it had no PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.postgres import HOW_TO, SKIP_REASON

REPO = Path(__file__).resolve().parents[1]

CONFTEST = """
import tests.postgres

tests.postgres.find_binaries = lambda: None  # this machine has no PostgreSQL

from tests.conftest import (  # noqa: F401
    pg_cluster, pg_url, pytest_report_teststatus, pytest_terminal_summary,
)
"""
STORE_TESTS = """
def test_one(pg_url):
    pass

def test_two(pg_url):
    pass
"""
OTHER_TESTS = """
import pytest

def test_cluster(pg_cluster):
    pass

def test_plain():
    pass

@pytest.mark.skip(reason="not today")
def test_skipped_for_another_reason():
    pass
"""


def run_pytest(folder: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("WF_")}
    environment.update(PYTHONPATH=str(REPO), NO_COLOR="1", COLUMNS="400", **env)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-ra", "-p", "no:cacheprovider", str(folder)],
        cwd=folder,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "conftest.py").write_text(CONFTEST)
    (tmp_path / "test_store.py").write_text(STORE_TESTS)
    (tmp_path / "test_other.py").write_text(OTHER_TESTS)
    return tmp_path


def test_skipped_postgresql_tests_are_told_in_one_line(project: Path) -> None:
    done = run_pytest(project)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    told = [line for line in lines if SKIP_REASON in line or "PostgreSQL test" in line]
    assert told == [f"3 PostgreSQL tests skipped ({SKIP_REASON}); to run them, {HOW_TO}"], lines
    # -ra lists the other skip only; the last line counts both kinds.
    skips = [line for line in lines if line.startswith("SKIPPED")]
    assert len(skips) == 1 and skips[0].endswith(": not today"), lines
    assert "1 passed, 1 skipped, 3 skipped without PostgreSQL" in lines[-1], lines


def test_required_postgresql_fails_instead_of_skipping(project: Path) -> None:
    done = run_pytest(project, WF_REQUIRE_POSTGRES="1")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "3 errors" in done.stdout.splitlines()[-1], done.stdout
    assert f"{SKIP_REASON} and WF_REQUIRE_POSTGRES is set" in done.stdout
    assert "PostgreSQL tests skipped" not in done.stdout
