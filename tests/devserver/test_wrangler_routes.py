"""The two routes wrangler 4.86 calls beyond the SDK's: ``PUT .../instances/terminate``
(``wrangler workflows instances terminate-all``) and ``GET .../instances/`` with its trailing
slash (how ``instances describe`` and the other commands find the instance "latest")."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import wait_status
from tests.devserver.conftest import Client, call, fails
from wf.engine import Engine

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


@pytest.mark.parametrize("started", [("n1", "n2"), ("n2",)])
async def test_terminate_all_sweeps_again_for_an_instance_it_did_not_see(
    client: Client, engine: Engine, monkeypatch: pytest.MonkeyPatch, started: tuple[str, ...]
) -> None:
    # An instance moving between statuses while the listing pages through them (or rows
    # shifting under its offsets) is missing from one sweep: the next one finds it, also when
    # it is the only one (the first sweep then terminated nothing).
    await _start(client, engine, *started)
    store = engine.store
    listed = store.list_instances
    hidden = {"n2"}

    async def list_missing_n2_once(*args: Any, **kwargs: Any) -> tuple[list[Any], int]:
        rows, total = await listed(*args, **kwargs)
        shown = [row for row in rows if row.id not in hidden]
        if len(shown) < len(rows):
            hidden.clear()
        return shown, total

    monkeypatch.setattr(store, "list_instances", list_missing_n2_once)
    body = await call(client, "PUT", f"{BASE}/napper/instances/terminate")
    assert body["result"] == {"status": "ok", "terminated": len(started)}
    for instance_id in started:
        assert (await engine.status("napper", instance_id))["status"] == "terminated"
