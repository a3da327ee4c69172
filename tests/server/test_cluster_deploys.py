"""Deploys racing what another node of a cluster does at the same moment, in-process: a real
runtime on a real PostgreSQL database, its real workers, and a second store standing for the
other node."""

from __future__ import annotations

import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import pytest

from wf.bundle import build_bundle
from wf.engine.store import open_store
from wf.engine.store.base import ServerStore
from wf.project import load_project
from wf.server import runtime as runtime_module
from wf.server.database import Database
from wf.server.runtime import Runtime
from wf.server.state import StateDir

WF_TOML = """
name = "raced"
main = "workflows.py"

[[workflows]]
name = "greet"
binding = "GREET"
class_name = "Greet"
"""

WORKFLOWS = """
from wf import WorkflowEntrypoint

VERSION = "{version}"


class Greet(WorkflowEntrypoint):
    async def run(self, event, step):
        return VERSION
"""


def bundle_of(folder: Path, version: str) -> bytes:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "wf.toml").write_text(WF_TOML)
    (folder / "workflows.py").write_text(textwrap.dedent(WORKFLOWS.format(version=version)))
    return build_bundle(load_project(folder / "wf.toml")).data


class UnloadedMeanwhile:
    """The runtime's store, but another node unloads the version being deployed right after its
    bundle is stored (it saw that version inactive and unneeded, a moment before it is active)."""

    def __init__(self, store: ServerStore, other: ServerStore) -> None:
        self._store = store
        self._other = other
        self.unloaded: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def put_bundle(self, version_id: str, data: bytes) -> None:
        await self._store.put_bundle(version_id, data)
        if await self._other.try_unload(version_id, 0.0):
            self.unloaded.append(version_id)


@pytest.fixture
async def node(
    tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Runtime]:
    # This node's own rounds would unload the old version first: only the other node does here.
    monkeypatch.setattr(runtime_module, "RECONCILE_SECONDS", 3600.0)
    state = StateDir(tmp_path / "state")
    state.prepare()
    runtime = Runtime(state, "os", lambda notice: None, database=Database(pg_url))
    await runtime.start()
    try:
        yield runtime
    finally:
        await runtime.stop()


async def test_a_redeploy_keeps_its_bundle_when_another_node_unloads_it_meanwhile(
    tmp_path: Path, pg_url: str, node: Runtime
) -> None:
    v1 = bundle_of(tmp_path / "v1", "v1")
    first = await node.deployer.deploy(v1)
    await node.deployer.deploy(bundle_of(tmp_path / "v2", "v2"))
    other = cast(ServerStore, open_store(pg_url, durability="os"))  # PostgresStore is one
    await other.open()
    try:
        racing = UnloadedMeanwhile(node.store, other)
        node.deployer.store = racing
        back = await node.deployer.deploy(v1)  # a rollback to v1, still loaded here
        assert racing.unloaded == [first.version.id]  # the race happened
        assert back.version.id == first.version.id and back.version.active
        # Every node fetches the active version's bundle from the database: it must be there.
        assert await other.get_bundle(first.version.id) == v1
    finally:
        await other.close()
