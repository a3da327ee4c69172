"""``GET .../instances/{id}/subscribe``: an instance's progress as server-sent events, over
real HTTP (aiohttp's test client) against a real engine on SQLite."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientResponse

from tests.conftest import wait_for
from tests.devserver.conftest import Client, MakeClient, fails
from wf import WorkflowEntrypoint
from wf.devserver import subscribe
from wf.devserver.state import ServerState
from wf.engine import Engine, EngineSettings, WorkflowSpec
from wf.engine.store.base import Store
from wf.engine.store.sqlite import SqliteStore
from wf.project import WorkflowConfig

BASE = "/api/workflows/order/instances"


class Order(WorkflowEntrypoint):
    async def run(self, event, step):
        def charge(ctx: Any) -> Any:
            if ctx.attempt == 1:
                raise ConnectionError("card network down")
            return {"paid": True}

        fast = {"retries": {"limit": 2, "delay": 0.01, "backoff": "constant"}}
        await step.do("charge", fast, charge)
        got = await step.wait_for_event("approval", type="approve", timeout="1 hour")
        return {"approved": got.payload}


@pytest.fixture(params=["sqlite", "postgres"])
async def engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Engine]:
    """The same engine on SQLite, then on PostgreSQL: the stream only reads the store."""
    store: Store
    if request.param == "postgres":
        from wf.engine.store.postgres import PostgresStore

        store = PostgresStore(request.getfixturevalue("pg_url"), durability="os")
    else:
        store = SqliteStore(tmp_path / "wf.db", durability="os")
    engine = Engine(
        store,
        [WorkflowSpec("order", Order, "ORDER")],
        settings=EngineSettings(poll_interval=0.2),
    )
    await engine.start()
    try:
        yield engine
    finally:
        await engine.stop()


@pytest.fixture
async def client(make_client: MakeClient, engine: Engine) -> Client:
    state = ServerState(
        project_name="demo",
        workflows=(WorkflowConfig("order", "ORDER", "Order"),),
        engine=engine,
        version_id="v-test",
    )
    return await make_client(state)


async def at_approval(engine: Engine, instance_id: str) -> None:
    """Wait until the instance waits for its approval (a retry's delay shows "waiting" too)."""

    async def waiting() -> bool:
        shown = await engine.details("order", instance_id)
        return shown["status"] == "waiting" and len(shown["steps"]) == 2

    await wait_for(waiting)


async def next_event(resp: ClientResponse, timeout: float = 10.0) -> tuple[str, Any, str | None]:
    """The next event of the stream as (type, data, id); ("eof", None, None) at its end."""
    event, data, event_id = "message", "", None
    while True:
        raw = await asyncio.wait_for(resp.content.readline(), timeout)
        if not raw:
            return "eof", None, None
        line = raw.decode().rstrip("\n")
        if not line:
            if data:
                return event, json.loads(data), event_id
            continue
        if line.startswith((":", "retry:")):
            continue
        field, _, value = line.partition(": ")
        if field == "event":
            event = value
        elif field == "data":
            data = value
        elif field == "id":
            event_id = value


async def events_until(resp: ClientResponse, last: str) -> list[tuple[str, Any, str | None]]:
    """The events up to the first that summary() shows as ``last`` (included)."""
    found: list[tuple[str, Any, str | None]] = []
    while True:
        item = await next_event(resp)
        assert item[0] != "eof", found
        found.append(item)
        if summary([item]) == [last]:
            return found


def steps_of(items: list[tuple[str, Any, str | None]]) -> list[str]:
    return [line for line in summary(items) if not line.startswith("status")]


async def events_until_end(resp: ClientResponse) -> list[tuple[str, Any, str | None]]:
    found = []
    while True:
        item = await next_event(resp)
        found.append(item)
        if item[0] in ("end", "eof"):
            return found


def summary(items: list[tuple[str, Any, str | None]]) -> list[str]:
    shown = []
    for event, data, _ in items:
        if event in ("step", "attempt"):
            shown.append(f"{event} {data['name']} {data.get('state', data.get('attempt'))}")
        elif event in ("status", "end"):
            shown.append(f"{event} {data['status']}")
        else:
            shown.append(event)
    return shown


async def test_history_first_then_live_events_then_the_end(client: Client, engine: Engine) -> None:
    instance = await engine.create("order", "o-1", {"n": 1})
    await at_approval(engine, instance.id)
    resp = await client.get(f"{BASE}/o-1/subscribe")
    try:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        first = await resp.content.readline()
        assert first == b"retry: 1000\n"
        replayed = await events_until(resp, "status waiting")
        # The engine may still show the instance running for a moment after it waits.
        assert steps_of(replayed) == [
            "step charge-1 running",
            "attempt charge-1 1",
            "step charge-1 succeeded",
            "step approval-1 running",
        ]
        assert replayed[1][1]["error"]["message"] == "card network down"
        assert replayed[3][1]["event_type"] == "approve"
        ids = [i for _, _, i in replayed]
        assert len(set(ids[:4])) == 4 and ids[-1] == ids[3]  # status repeats the last id
        await engine.send_event("order", "o-1", "approve", {"by": "ann"})
        live = await events_until_end(resp)
        assert summary(live)[0] == "step approval-1 finished"
        assert summary(live)[-2:] == ["status complete", "end complete"]
        assert (await resp.content.read()) == b""  # the stream ended after "end"
    finally:
        resp.close()


async def test_a_finished_instance_replays_its_history_and_ends(
    client: Client, engine: Engine
) -> None:
    await engine.create("order", "o-2")
    await at_approval(engine, "o-2")
    await engine.terminate("order", "o-2")
    async with client.get(f"{BASE}/o-2/subscribe") as resp:
        items = await events_until_end(resp)
    assert summary(items) == [
        "step charge-1 running",
        "attempt charge-1 1",
        "step charge-1 succeeded",
        "step approval-1 running",
        "status terminated",
        "end terminated",
    ]


async def test_resume_after_an_event_with_last_event_id_or_cursor(
    client: Client, engine: Engine
) -> None:
    await engine.create("order", "o-3")
    await at_approval(engine, "o-3")
    await engine.terminate("order", "o-3")
    async with client.get(f"{BASE}/o-3/subscribe") as resp:
        items = await events_until_end(resp)
    second = items[1][2]
    assert second is not None
    async with client.get(f"{BASE}/o-3/subscribe", headers={"Last-Event-ID": second}) as resp:
        resumed = await events_until_end(resp)
    assert summary(resumed) == summary(items)[2:]
    assert [i for _, _, i in resumed] == [i for _, _, i in items][2:]
    async with client.get(f"{BASE}/o-3/subscribe", params={"cursor": second}) as resp:
        assert summary(await events_until_end(resp)) == summary(items)[2:]
    # An id the history does not hold (say, from before a restart) replays it all.
    async with client.get(f"{BASE}/o-3/subscribe", params={"cursor": "nope"}) as resp:
        assert summary(await events_until_end(resp)) == summary(items)


async def test_the_stream_is_guarded_like_every_read(
    make_client: MakeClient, engine: Engine
) -> None:
    state = ServerState(
        project_name="demo",
        workflows=(WorkflowConfig("order", "ORDER", "Order"),),
        engine=engine,
        token="s3cret",
    )
    client = await make_client(state)
    await engine.create("order", "o-7")
    await at_approval(engine, "o-7")
    path = f"{BASE}/o-7/subscribe"
    await fails(client, "GET", path, 401, 10006)
    await fails(client, "GET", path, 401, 10006, headers={"Authorization": "Bearer nope"})
    good = {"Authorization": "Bearer s3cret"}
    await fails(client, "GET", path, 403, 10005, headers={**good, "Host": "evil.example"})
    async with client.get(path, headers=good) as resp:
        assert resp.status == 200
        assert (await next_event(resp))[0] == "step"


async def test_a_restart_replays_the_new_run_and_parallel_steps_are_in_order(
    client: Client, engine: Engine
) -> None:
    await engine.create("order", "o-8")
    await at_approval(engine, "o-8")
    resp = await client.get(f"{BASE}/o-8/subscribe")
    try:
        before = await events_until(resp, "status waiting")
        await engine.restart("order", "o-8")
        again = await events_until(resp, "step approval-1 running")
        # The new run's steps come again, with new ids (a cursor from the old run replays all).
        assert steps_of(again)[-4:] == steps_of(before)
        assert not {i for _, _, i in again} & {i for _, _, i in before[:4]}
    finally:
        resp.close()


def test_facts_follow_time_so_a_parallel_step_ending_later_extends_the_list() -> None:
    def step(name: str, start: str, end: str | None) -> dict[str, Any]:
        done = end is not None
        return {
            "type": "step",
            "name": name,
            "start": start,
            "end": end,
            "success": True if done else None,
            "attempts": [],
        }

    early = {"created": "c", "steps": [step("a-1", "T1", None), step("b-1", "T2", None)]}
    later = {"created": "c", "steps": [step("a-1", "T1", "T3"), step("b-1", "T2", None)]}
    first = [f.id for f in subscribe.facts(early)]
    second = subscribe.facts(later)
    assert [f.id for f in second][:2] == first
    assert (second[2].event, second[2].data["name"], second[2].data["state"]) == (
        "step",
        "a-1",
        "succeeded",
    )


async def test_unknown_workflow_or_instance_is_404_before_any_stream(client: Client) -> None:
    message = await fails(client, "GET", f"{BASE}/missing/subscribe", 404, 10400)
    assert "missing" in message
    await fails(client, "GET", "/api/workflows/nope/instances/x/subscribe", 404, 10200)


async def test_closing_the_streams_ends_them_without_an_end_event(
    client: Client, engine: Engine
) -> None:
    await engine.create("order", "o-4")
    await at_approval(engine, "o-4")
    resp = await client.get(f"{BASE}/o-4/subscribe")
    try:
        await events_until(resp, "status waiting")
        subscribe.close_streams(client.app)  # as wf dev does before a reload's drain
        assert (await next_event(resp))[0] == "eof"
    finally:
        resp.close()


async def test_a_client_that_goes_away_ends_its_stream(client: Client, engine: Engine) -> None:
    await engine.create("order", "o-9")
    await at_approval(engine, "o-9")
    streams = client.app[subscribe.STREAMS_KEY]
    resp = await client.get(f"{BASE}/o-9/subscribe")
    await events_until(resp, "status waiting")
    assert streams.open == 1
    resp.close()
    await wait_for(lambda: streams.open == 0)


async def test_a_deleted_instance_ends_its_stream(client: Client, engine: Engine) -> None:
    await engine.create("order", "o-5")
    await at_approval(engine, "o-5")
    resp = await client.get(f"{BASE}/o-5/subscribe")
    try:
        await events_until(resp, "status waiting")
        await engine.delete("order", "o-5")
        event, data, _ = await next_event(resp)
        assert (event, data) == ("end", {"status": None, "deleted": True})
    finally:
        resp.close()


async def test_a_quiet_stream_sends_pings(
    client: Client, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(subscribe, "PING_SECONDS", 0.3)
    await engine.create("order", "o-6")
    await at_approval(engine, "o-6")
    resp = await client.get(f"{BASE}/o-6/subscribe")
    try:
        await events_until(resp, "status waiting")
        line = await asyncio.wait_for(resp.content.readline(), 10)
        assert line == b": ping\n"  # nothing changes, so the next thing said is a ping
    finally:
        resp.close()
