"""The two routes wrangler 4.86 calls beyond the SDK's: ``PUT .../instances/terminate``
(``wrangler workflows instances terminate-all``) and ``GET .../instances/`` with its trailing
slash (how ``instances describe`` and the other commands find the instance "latest")."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import wait_status
from tests.devserver.conftest import Client, call, fails
from wf.engine import Engine, controller

BASE = "/api/workflows"
CLOUDFLARE = "/client/v4/accounts/any-account/workflows"


async def _start(client: Client, engine: Engine, *ids: str) -> None:
    for instance_id in ids:
        await call(client, "POST", f"{BASE}/napper/instances", 201, json={"id": instance_id})
    for instance_id in ids:
        await wait_status(engine, "napper", instance_id, "waiting")


async def test_terminate_all_of_one_status_then_every_unfinished(
    client: Client, engine: Engine
) -> None:
    await _start(client, engine, "n1", "n2", "n3")
    await call(client, "PATCH", f"{BASE}/napper/instances/n3/status", json={"status": "pause"})
    await wait_status(engine, "napper", "n3", "paused")
    await call(client, "POST", f"{BASE}/quick/instances", 201, json={"id": "q1"})
    await wait_status(engine, "quick", "q1", "complete")

    body = await call(client, "PUT", f"{BASE}/napper/instances/terminate?status=paused")
    assert body["result"] == {"status": "ok", "terminated": 1}  # wrangler reads "status": "ok"
    assert (await engine.status("napper", "n3"))["status"] == "terminated"
    for instance_id in ("n1", "n2"):
        assert (await engine.status("napper", instance_id))["status"] == "waiting"

    body = await call(client, "PUT", f"{CLOUDFLARE}/napper/instances/terminate")
    assert body["result"] == {"status": "ok", "terminated": 2}
    for instance_id in ("n1", "n2", "n3"):
        assert (await engine.status("napper", instance_id))["status"] == "terminated"
    body = await call(client, "PUT", f"{CLOUDFLARE}/napper/instances/terminate")
    assert body["result"] == {"status": "ok", "terminated": 0}  # nothing left: still ok
    # Another workflow's instances are not touched.
    assert (await engine.status("quick", "q1"))["status"] == "complete"


async def test_terminate_all_refuses_a_finished_status_and_an_unknown_workflow(
    client: Client, engine: Engine
) -> None:
    await _start(client, engine, "n1")
    message = await fails(
        client, "PUT", f"{BASE}/napper/instances/terminate?status=complete", 400, 10002
    )
    assert message == (
        'cannot terminate by status "complete"; use one of '
        "queued, running, paused, waiting, waitingForPause"
    )
    await fails(client, "PUT", f"{CLOUDFLARE}/nope/instances/terminate", 404, 10200)
    # A misspelt filter, an empty one, or a body: refused, not taken for "every instance".
    path = f"{BASE}/napper/instances/terminate"
    message = await fails(client, "PUT", f"{path}?stauts=paused", 400, 10002)
    assert message == 'unknown query parameter "stauts"; only "status" filters'
    message = await fails(client, "PUT", f"{path}?status=", 400, 10002)
    assert message == '"status" is empty; leave it out to terminate every unfinished one'
    message = await fails(client, "PUT", path, 400, 10002, json={"status": "paused"})
    assert message == "the body must be empty; filter with ?status="
    await fails(client, "PUT", path, 400, 10002, data=b"{")
    assert (await engine.status("napper", "n1"))["status"] == "waiting"


async def test_instances_listed_with_a_trailing_slash_as_wrangler_asks(
    client: Client, engine: Engine
) -> None:
    await _start(client, engine, "n1", "n2")
    plain = await call(client, "GET", f"{CLOUDFLARE}/napper/instances")
    slashed = await call(client, "GET", f"{CLOUDFLARE}/napper/instances/")
    assert [i["id"] for i in slashed["result"]] == [i["id"] for i in plain["result"]]
    assert sorted(i["id"] for i in slashed["result"]) == ["n1", "n2"]
    # Only under Cloudflare's prefix: wf's own paths stay as they are.
    await fails(client, "GET", f"{BASE}/napper/instances/", 404, 10007)


async def test_terminate_all_walks_past_status_changes_and_spares_newer_instances(
    client: Client, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One instance a page. While the walk is on n1, n3 moves from waiting to paused (a
    # listing status by status would have passed "paused" already) and n9 is created (after
    # the call began: not asked for); once n2 is listed, it is deleted and its id taken again
    # by a new instance (not the one listed: left alone).
    await _start(client, engine, "n1", "n2", "n3")
    monkeypatch.setattr(controller, "TERMINATE_ALL_PAGE", 1)
    store = engine.store
    walk = store.list_after
    pages = 0

    async def changing_meanwhile(*args: Any) -> list[Any]:
        nonlocal pages
        pages += 1
        if pages == 2:
            await engine.pause("napper", "n3")
            await wait_status(engine, "napper", "n3", "paused")
            await engine.create("napper", "n9", {})
        page = await walk(*args)
        if [row.id for row in page] == ["n2"]:
            await engine.delete("napper", "n2")
            await engine.create("napper", "n2", {})
        return page

    monkeypatch.setattr(store, "list_after", changing_meanwhile)
    body = await call(client, "PUT", f"{BASE}/napper/instances/terminate")
    assert body["result"] == {"status": "ok", "terminated": 2}
    for instance_id in ("n1", "n3"):
        assert (await engine.status("napper", instance_id))["status"] == "terminated"
    for instance_id in ("n2", "n9"):
        assert (await engine.status("napper", instance_id))["status"] != "terminated"
    assert pages == 4  # n1, n2, n3, and the empty page that ends the walk
