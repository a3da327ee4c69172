"""The pytest plugin as a user meets it: installed with wf, it gives a project's tests a fresh
``wf_env`` for the wf.toml at the rootdir (or the ``wf_project`` ini option). Run as a user
runs it: pytest in a subprocess, in a project folder of its own."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

WF_TOML = """\
name = "plugin-check"
main = "flows.py"

[[workflows]]
name = "greet"
binding = "GREET"
class_name = "Greet"

[vars]
GREETING = "hello"
"""

FLOWS = """\
from wf import WorkflowEntrypoint


class Greet(WorkflowEntrypoint):
    async def run(self, event, step):
        await step.sleep("think it over", "2 days")
        who = await step.do("look up", lambda: event.payload["who"])
        return f"{self.env.GREETING} {who}"
"""

TESTS = """\
async def test_greets(wf_env):
    inst = await wf_env.create("greet", params={"who": "ada"})
    assert await inst.result() == "hello ada"


async def test_each_test_gets_a_fresh_env(wf_env):
    assert await wf_env.instances("greet") == []
    wf_env.mock_step("greet", "look up", result="grace")
    inst = await wf_env.create("greet", params={"who": "ada"})
    assert await inst.result() == "hello grace"
    assert wf_env.calls("greet", "look up") == 1


async def test_the_kit_is_the_real_thing(wf_env):
    inst = await wf_env.create("greet", params={})  # no "who": the step fails, then run()
    assert (await inst.wait_for_status("errored"))["error"]["name"] == "KeyError"
"""

PYTEST_INI = """\
[pytest]
asyncio_mode = auto
asyncio_default_fixture_loop_scope = function
"""


def make_project(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "wf.toml").write_text(WF_TOML)
    (folder / "flows.py").write_text(FLOWS)


def run_pytest(folder: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "error"],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_wf_env_loads_the_project_at_the_rootdir(tmp_path: Path) -> None:
    make_project(tmp_path)
    (tmp_path / "pytest.ini").write_text(PYTEST_INI)
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_greet.py").write_text(TESTS)
    result = run_pytest(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 passed" in result.stdout


def test_wf_project_names_a_project_elsewhere(tmp_path: Path) -> None:
    make_project(tmp_path / "service")
    (tmp_path / "pytest.ini").write_text(PYTEST_INI + "wf_project = service\n")
    (tmp_path / "test_greet.py").write_text(TESTS)
    result = run_pytest(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 passed" in result.stdout


def test_async_tests_taking_wf_env_run_without_asyncio_mode_auto(tmp_path: Path) -> None:
    make_project(tmp_path)
    # pytest-asyncio's default (strict) mode, as a user who never configured it has.
    (tmp_path / "pytest.ini").write_text(
        "[pytest]\nasyncio_default_fixture_loop_scope = function\n"
    )
    (tmp_path / "test_greet.py").write_text(
        "import pytest\n\n"
        + TESTS
        + "\n\n@pytest.mark.asyncio\nasync def test_marked_already(wf_env):\n"
        "    assert await wf_env.instances('greet') == []\n"
    )
    result = run_pytest(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 passed" in result.stdout


def test_a_missing_project_fails_the_test_with_one_line(tmp_path: Path) -> None:
    (tmp_path / "pytest.ini").write_text(PYTEST_INI)
    (tmp_path / "test_greet.py").write_text(TESTS)
    result = run_pytest(tmp_path)
    assert result.returncode == 1
    assert "wf_env: no wf.toml at" in result.stdout
    assert "3 errors" in result.stdout


MARKED_TESTS = """\
import pytest


@pytest.mark.wf_env(time="manual", vars={"GREETING": "hi"})
async def test_options_from_the_marker(wf_env):
    inst = await wf_env.create("greet", params={"who": "ada"})
    await wf_env.settle()
    assert (await inst.status())["status"] == "waiting"  # manual: the 2-day sleep waits
    await wf_env.advance("2 days")
    assert await inst.result() == "hi ada"


@pytest.mark.wf_env(strict=True)
async def test_strict_from_the_marker(wf_env):
    inst = await wf_env.create("greet", params={"who": "ada"})
    assert (await inst.wait_for_status("errored"))["error"]["message"].startswith('step "look up"')


@pytest.mark.wf_env(clock="fast")
async def test_a_wrong_option_is_one_line(wf_env):
    pass
"""


def test_a_marker_sets_the_fixture_s_options(tmp_path: Path) -> None:
    make_project(tmp_path)
    (tmp_path / "pytest.ini").write_text(PYTEST_INI)
    (tmp_path / "test_marked.py").write_text(MARKED_TESTS)
    result = run_pytest(tmp_path)
    assert "2 passed, 1 error" in result.stdout, result.stdout
    assert "wf_env: @pytest.mark.wf_env: unknown option 'clock'; use database, " in result.stdout


def test_a_project_that_does_not_import_fails_the_test_with_one_line(tmp_path: Path) -> None:
    make_project(tmp_path)
    # The main module imports a sibling, which is broken: the line says where.
    (tmp_path / "flows.py").write_text("import helpers\n" + FLOWS)
    (tmp_path / "helpers.py").write_text("X = 1\nraise ImportError('helpers are broken')\n")
    (tmp_path / "pytest.ini").write_text(PYTEST_INI)
    (tmp_path / "test_greet.py").write_text(TESTS)
    result = run_pytest(tmp_path)
    assert result.returncode == 1
    assert "wf_env: helpers.py:2: ImportError: helpers are broken" in result.stdout
    assert "Traceback" not in result.stdout and "env.py" not in result.stdout, result.stdout


def test_a_project_whose_main_imports_a_sibling_loads(tmp_path: Path) -> None:
    make_project(tmp_path)
    flows = FLOWS.replace("{self.env.GREETING}", "{hello()}")
    (tmp_path / "flows.py").write_text("from helpers import hello\n" + flows)
    (tmp_path / "helpers.py").write_text("def hello():\n    return 'hello'\n")
    (tmp_path / "pytest.ini").write_text(PYTEST_INI)
    (tmp_path / "test_greet.py").write_text(TESTS)
    result = run_pytest(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_replay_that_does_not_match_fails_the_test_with_its_message(tmp_path: Path) -> None:
    make_project(tmp_path)
    # The step's name changes on the second run(): the replay at the test's end.
    renamed = '"look up" if RUNS.append(1) or len(RUNS) == 1 else "other"'
    fickle = FLOWS.replace('"look up"', renamed)
    (tmp_path / "flows.py").write_text("RUNS = []\n" + fickle)
    (tmp_path / "pytest.ini").write_text(PYTEST_INI)
    (tmp_path / "test_greet.py").write_text(TESTS.split("\n\n\nasync def test_each")[0] + "\n")
    result = run_pytest(tmp_path)
    assert result.returncode == 1
    assert 'does not match the code: call 2 is do "other" (1st)' in result.stdout, result.stdout
    assert "Traceback" not in result.stdout and "env.py" not in result.stdout, result.stdout
