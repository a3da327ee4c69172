"""The pytest plugin (entry point ``pytest11``, so loaded wherever wf is installed): the
``wf_env`` fixture and the ``wf_project`` ini option."""

from __future__ import annotations

import importlib.util
import inspect
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from wf.errors import NonDeterminismError
from wf.testing.env import WorkflowTestEnv
from wf.testing.errors import TestKitError
from wf.testing.history import History

PROJECT_OPTION = "wf_project"
MARKER = "wf_env"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        PROJECT_OPTION,
        "the wf project (a folder with wf.toml, relative to the rootdir) the wf_env fixture "
        "loads; default: the rootdir",
        default=None,
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(**options): options of the test's wf_env fixture, as WorkflowTestEnv takes "
        'them (time="manual", strict=True, vars={...}, database=...)',
    )


@pytest.hookimpl(tryfirst=True)
def pytest_pycollect_makeitem(collector: pytest.Collector, name: str, obj: object) -> None:
    """An ``async def`` test that takes ``wf_env`` runs on asyncio as if marked
    ``@pytest.mark.asyncio``: without ``asyncio_mode = auto`` in their pytest configuration,
    users following the README got "async def functions are not natively supported" (with
    pytest-asyncio installed). Runs before any item is made, so the mark is seen as a
    decorator's would be; creates nothing itself."""
    if not inspect.iscoroutinefunction(obj) or _has_asyncio_mark(obj):
        return
    try:
        takes_env = "wf_env" in inspect.signature(obj).parameters
    except (TypeError, ValueError):  # no signature to read: not ours to decide
        return
    if takes_env and importlib.util.find_spec("pytest_asyncio") is not None:
        pytest.mark.asyncio(obj)


def _has_asyncio_mark(obj: object) -> bool:
    marks = getattr(obj, "pytestmark", [])
    return any(getattr(mark, "name", None) == "asyncio" for mark in marks)


def project_folder(config: pytest.Config) -> Path:
    """The project ``wf_env`` loads: the ``wf_project`` ini option, else pytest's rootdir."""
    given = config.getini(PROJECT_OPTION)
    root = Path(config.rootpath)
    return root / given if given else root


async def _wf_env(request: pytest.FixtureRequest) -> AsyncIterator[WorkflowTestEnv]:
    """A fresh ``WorkflowTestEnv`` for the project at pytest's rootdir (or ``wf_project``).
    Its options are ``WorkflowTestEnv``'s defaults (``time="auto"``, not strict, every finished
    instance replayed when the test ends) unless the test is marked
    ``@pytest.mark.wf_env(time="manual", vars={...}, ...)``. A project that does not load fails
    the test with one line, and so does a replay that does not match (its message says
    everything; a traceback through the kit would bury it)."""
    try:
        env = WorkflowTestEnv(project=project_folder(request.config), **_marked_options(request))
        await env.start()
    except TestKitError as exc:
        pytest.fail(f"wf_env: {exc}", pytrace=False)
    try:
        yield env
    finally:
        try:
            await env.close()
        except NonDeterminismError as exc:
            pytest.fail(str(exc), pytrace=False)


def _marked_options(request: pytest.FixtureRequest) -> dict[str, Any]:
    """The keywords of the test's ``wf_env`` markers (the closest one wins), checked."""
    options: dict[str, Any] = {}
    for marker in reversed(list(request.node.iter_markers(MARKER))):
        if marker.args:
            raise TestKitError(f'@pytest.mark.{MARKER} takes keywords only, e.g. time="manual"')
        options.update(marker.kwargs)
    if "project" in options or "workflows" in options:
        raise TestKitError(
            f"@pytest.mark.{MARKER} cannot change the project (set the {PROJECT_OPTION} ini "
            "option, or build a WorkflowTestEnv yourself)"
        )
    known = set(inspect.signature(WorkflowTestEnv).parameters) - {"project", "workflows"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise TestKitError(
            f"@pytest.mark.{MARKER}: unknown option {unknown[0]!r}; use {', '.join(sorted(known))}"
        )
    return options


def _needs_pytest_asyncio() -> Any:
    """Needs pytest-asyncio (``pip install "wf[testing]"``)."""
    pytest.fail('the wf_env fixture needs pytest-asyncio: pip install "wf[testing]"', pytrace=False)


def _fixture() -> Any:
    try:
        import pytest_asyncio
    except ImportError:  # the fixture cannot run: say how to fix it where it is used
        return pytest.fixture(name="wf_env")(_needs_pytest_asyncio)
    return pytest_asyncio.fixture(name="wf_env")(_wf_env)


wf_env = _fixture()


def pytest_make_parametrize_id(config: pytest.Config, val: object, argname: str) -> str | None:
    """A ``History`` parameter is named by its file (``History.glob`` in ``parametrize``)."""
    if isinstance(val, History):
        return str(val)
    return None
