"""The parts of a ``wf serve`` cluster that need no second node: what the SQLite store keeps for
``wf serve`` (bundles, settings), the token known by its hash, and the bus between nodes."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from wf.engine.model import NewInstance
from wf.engine.store.base import ServerStore
from wf.engine.store.sqlite import SqliteStore
from wf.server import tokens
from wf.server.cluster import Bus, new_node_id


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    opened = SqliteStore(tmp_path / "wf.db", durability="os")
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()


async def test_a_bundle_is_kept_until_its_version_is_unloaded(store: SqliteStore) -> None:
    server: ServerStore = store  # the protocol wf serve types against
    assert await server.get_bundle("v1") is None
    await server.put_bundle("v1", b"first")
    await server.put_bundle("v1", b"\x00bytes")  # a redeploy of the same version replaces it
    assert await server.get_bundle("v1") == b"\x00bytes"
    await server.activate_version("v1", 1.0, [{"name": "w"}], 1, 6)
    await server.put_bundle("v2", b"second")
    await server.activate_version("v2", 2.0, [{"name": "w"}], 1, 6)
    await server.create_instances(
        [NewInstance("w", "busy", "{}", "api", "v1", 3.0)], skip_existing=False
    )
    assert not await server.try_unload("v1", 4.0)  # an unfinished instance needs it
    assert await server.get_bundle("v1") == b"\x00bytes"
    busy = await server.get_instance("w", "busy")
    assert busy is not None
    await server.terminate(busy.pk, 5.0, "api")
    assert await server.try_unload("v1", 6.0)
    assert await server.get_bundle("v1") is None
    assert await server.get_bundle("v2") == b"second"


async def test_a_setting_only_if_missing_is_written_once(store: SqliteStore) -> None:
    assert await store.get_setting("api_token_sha256") is None
    assert await store.put_setting("api_token_sha256", "one", only_if_missing=True)
    assert not await store.put_setting("api_token_sha256", "two", only_if_missing=True)
    assert await store.get_setting("api_token_sha256") == "one"
    assert await store.put_setting("api_token_sha256", "three")
    assert await store.get_setting("api_token_sha256") == "three"


async def test_the_first_node_makes_the_token_and_the_next_finds_its_hash(
    store: SqliteStore,
) -> None:
    check, made = await tokens.cluster_token(store, rotate=False)
    assert made is not None
    assert await store.get_setting(tokens.HASH_SETTING) == hashlib.sha256(made.encode()).hexdigest()
    assert await check.matches(made.encode())
    again, shown = await tokens.cluster_token(store, rotate=False)
    assert shown is None and await again.matches(made.encode())
    assert not await again.matches(b"wrong")


async def test_a_token_rotated_elsewhere_is_found_without_a_message(
    store: SqliteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    here, old = await tokens.cluster_token(store, rotate=False)
    _, new = await tokens.cluster_token(store, rotate=True)  # another node
    assert old is not None and new is not None
    # Within a second of its last read, a wrong token is refused without asking the database.
    reads = 0
    get_setting = store.get_setting

    async def counted(name: str) -> str | None:
        nonlocal reads
        reads += 1
        return await get_setting(name)

    monkeypatch.setattr(store, "get_setting", counted)
    assert await here.matches(old.encode())
    assert not await here.matches(new.encode())
    assert reads == 0
    here._read_at -= tokens.REREAD_SECONDS  # a second later
    assert await here.matches(new.encode())  # a failed check rereads the hash
    assert reads == 1
    assert not await here.matches(old.encode())


def test_a_node_ignores_its_own_messages() -> None:
    sent: list[tuple[str, dict[str, Any]]] = []

    class Wire:
        """Stands for the store: what one node publishes, every node hears."""

        def __init__(self) -> None:
            self.listeners: list[Any] = []

        def publish(self, topic: str, payload: dict[str, Any]) -> None:
            sent.append((topic, payload))
            for listener in self.listeners:
                listener(topic, payload)

        def listen(self, callback: Any) -> None:
            self.listeners.append(callback)

    wire = Wire()
    heard: dict[str, list[dict[str, Any]]] = {"a": [], "b": []}
    buses = {name: Bus(wire, f"node-{name}") for name in heard}  # type: ignore[arg-type]
    for name, bus in buses.items():
        bus.on("created", heard[name].append)
        bus.on("broken", lambda message: message["missing"])  # raises KeyError: logged only
        bus.listen()
    buses["a"].publish("created", version="v1")
    buses["b"].publish("broken")
    buses["b"].publish("unknown topic")
    assert heard == {"a": [], "b": [{"version": "v1", "node": "node-a"}]}
    assert sent[0] == ("created", {"version": "v1", "node": "node-a"})


def test_node_ids_are_new_on_every_start() -> None:
    first, second = new_node_id(), new_node_id()
    assert first != second and first.startswith("node-") and "/" not in first
