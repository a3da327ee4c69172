"""Importing wf (what a user's workflow module does) stays light: no server, CLI or terminal
libraries. Checked in a fresh interpreter, as click's tests/test_imports.py does."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = (
    "aiohttp",
    "typer",
    "rich",
    "watchfiles",
    "click",
    "psycopg",
    "jinja2",
    "prometheus_client",
)

SCRIPT = """
import json, sys
before = set(sys.modules)
{imports}
print(json.dumps(sorted(set(sys.modules) - before)))
"""


def loaded_by(imports: str, cwd: Path) -> list[str]:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT.format(imports=imports)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    modules: list[str] = json.loads(result.stdout)
    return modules


def heavy(modules: list[str]) -> list[str]:
    return [m for m in modules if m.split(".")[0] in HEAVY]


def test_the_heavy_libraries_are_installed(tmp_path: Path) -> None:
    # Otherwise the tests below would pass for the wrong reason.
    modules = loaded_by(
        "import aiohttp, typer, rich, watchfiles, jinja2, prometheus_client", tmp_path
    )
    assert {"aiohttp", "typer", "rich", "watchfiles", "jinja2", "prometheus_client"} <= set(modules)


@pytest.mark.parametrize(
    "imports",
    [
        "import wf",
        "import wf.engine",
        "from wf import WorkflowEntrypoint, WorkflowStep, StepConfig, NonRetryableError",
        "from wf.engine import Engine, EngineSettings, WorkflowSpec, ManualClock",
        "import wf.engine.store.sqlite",
        "from wf.engine.store import open_store",
    ],
)
def test_importing_wf_loads_no_heavy_library(imports: str, tmp_path: Path) -> None:
    modules = loaded_by(imports, tmp_path)
    assert "wf" in modules
    assert heavy(modules) == []


def test_importing_wf_does_not_load_its_cli(tmp_path: Path) -> None:
    modules = loaded_by("import wf, wf.engine", tmp_path)
    assert [m for m in modules if m.startswith("wf.cli")] == []


def test_importing_wf_loads_nothing_of_the_test_kit(tmp_path: Path) -> None:
    modules = loaded_by("import wf, wf.engine", tmp_path)
    assert [m for m in modules if m.startswith("wf.testing") or m.split(".")[0] == "pytest"] == []


def test_the_test_kit_loads_pytest_only_in_its_plugin(tmp_path: Path) -> None:
    modules = loaded_by("import wf.testing", tmp_path)
    assert "wf.testing" in modules
    assert [m for m in modules if m.split(".")[0] in ("pytest", "_pytest", *HEAVY)] == []
    assert "pytest" in loaded_by("import wf.testing.plugin", tmp_path)
