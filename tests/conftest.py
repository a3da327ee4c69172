"""Shared fixtures: engines on real SQLite files in a temporary folder, or on a throwaway
PostgreSQL cluster (``pg_cluster``, ``pg_url``: see ``tests/postgres.py``)."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from tests.postgres import HOW_TO, SKIP_REASON, TestServer, required, start_test_server
from tests.postgres_skips import pytest_report_teststatus  # noqa: F401
from tests.postgres_skips import pytest_terminal_summary as postgres_skips_summary
from tests.summary_lines import pytest_runtest_logreport, write_summary_lines  # noqa: F401
from wf.engine import Engine, EngineSettings, ManualClock, Notice, WorkflowSpec
from wf.engine.clock import Clock
from wf.engine.store.base import Store
from wf.engine.store.sqlite import SqliteStore

FINISHED = ("complete", "errored", "terminated")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On pytest-xdist's workers (``make test``), the files marked slow come first: files are
    handed out in this order, so the long ones start at once and the many quick ones even out
    the end, instead of one worker running a minute-long file alone while the other idles."""
    if hasattr(config, "workerinput"):
        items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    write_summary_lines(terminalreporter)
    postgres_skips_summary(terminalreporter)


class Harness:
    """Builds engines on one database (a file, or a PostgreSQL ``url``); every engine it
    started is stopped at the end."""

    def __init__(self, path: Path, url: str | None = None) -> None:
        self.path = path
        self.url = url
        self.engines: list[Engine] = []
        self.notices: list[Notice] = []

    @property
    def backend(self) -> str:
        return "postgres" if self.url else "sqlite"

    def store(self, durability: str = "os") -> Store:
        if self.url is not None:
            from wf.engine.store.postgres import PostgresStore

            return PostgresStore(self.url, durability=durability)
        return SqliteStore(self.path, durability=durability)

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        """Rows of a raw SQL query on the database, through a connection of its own (on
        PostgreSQL, wf's tables are found without their schema's name)."""
        if self.url is not None:
            import psycopg

            with psycopg.connect(self.url, options="-c search_path=wf") as conn:
                return conn.execute(sql).fetchall()
        with closing(sqlite3.connect(self.path)) as conn:
            return conn.execute(sql).fetchall()

    async def start(
        self,
        workflows: Sequence[WorkflowSpec],
        *,
        clock: Clock | None = None,
        vars: dict[str, Any] | None = None,
        durability: str = "os",
        **settings: Any,
    ) -> Engine:
        settings.setdefault("poll_interval", 0.2)
        engine = Engine(
            self.store(durability),
            workflows,
            clock=clock,
            vars=vars,
            settings=EngineSettings(**settings),
            on_notice=self.notices.append,
        )
        await engine.start()
        self.engines.append(engine)
        return engine

    async def stop(self, engine: Engine) -> None:
        await engine.stop()
        self.engines.remove(engine)

    async def close(self) -> None:
        for engine in list(self.engines):
            await self.stop(engine)

    def kinds(self, instance_id: str) -> list[str]:
        return [n.kind for n in self.notices if n.instance_id == instance_id]


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    h = Harness(tmp_path / "wf.db")
    try:
        yield h
    finally:
        await h.close()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


async def wait_for(
    predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.01
) -> Any:
    """Poll ``predicate`` (sync or async) until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)


async def wait_status(
    engine: Engine,
    workflow: str,
    instance_id: str,
    statuses: str | Sequence[str] = FINISHED,
    timeout: float = 10.0,
) -> dict[str, Any]:
    wanted = (statuses,) if isinstance(statuses, str) else tuple(statuses)
    last: dict[str, Any] = {}

    async def check() -> bool:
        nonlocal last
        last = await engine.status(workflow, instance_id)
        return last["status"] in wanted

    try:
        await wait_for(check, timeout)
    except AssertionError:
        raise AssertionError(f"status stayed {last} (wanted {wanted})") from None
    return last


async def settle(clock: ManualClock | None = None, rounds: int = 5) -> None:
    """Let the engine run until it has nothing to do but wait (for real I/O, a few ms)."""
    for _ in range(rounds):
        await asyncio.sleep(0.01)


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[TestServer]:
    """The tests' PostgreSQL server (ours, or WF_TEST_DATABASE_URL's); skipped when there is none,
    unless WF_REQUIRE_POSTGRES=1."""
    server = start_test_server()
    if server is None:
        if required():
            pytest.fail(f"{SKIP_REASON} and WF_REQUIRE_POSTGRES is set: {HOW_TO}")
        pytest.skip(f"{SKIP_REASON}: {HOW_TO}")
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def pg_url(pg_cluster: TestServer) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test; its URL."""
    url = pg_cluster.new_database()
    try:
        yield url
    finally:
        pg_cluster.drop_database(url)
