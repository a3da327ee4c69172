"""The engine's suites run on both stores: ``harness`` builds engines on SQLite, then on a
throwaway PostgreSQL database. A test about SQLite's files is marked ``sqlite_only``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.conftest import Harness


@pytest.fixture(params=["sqlite", "postgres"])
async def harness(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Harness]:
    url = None
    if request.param == "postgres":
        if request.node.get_closest_marker("sqlite_only"):
            pytest.skip("about SQLite's files")
        url = request.getfixturevalue("pg_url")
    h = Harness(tmp_path / "wf.db", url)
    try:
        yield h
    finally:
        await h.close()
