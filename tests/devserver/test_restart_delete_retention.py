"""Issue 12 over REST: restart from a step (``from``, ``params``), DELETE an instance, delete
in batches, ``instance_retention``, and create_batch's object form."""

from __future__ import annotations

from tests.conftest import wait_status
from tests.devserver.conftest import Client, call, fails
from wf.engine import Engine
from wf.engine.cron import Cron

BASE = "/api/workflows"


async def test_restart_from_a_step_with_new_params(client: Client, engine: Engine) -> None:
    await call(client, "POST", f"{BASE}/quick/instances", 201, json={"id": "r", "params": {"n": 1}})
    await wait_status(engine, "quick", "r")
    path = f"{BASE}/quick/instances/r/status"
    body = {"status": "restart", "from": {"name": "double"}, "params": {"n": 5}}
    result = (await call(client, "PATCH", path, json=body))["result"]
    assert result["status"] == "queued"
    assert (await wait_status(engine, "quick", "r"))["output"] == {"double": 10}
    details = (await call(client, "GET", f"{BASE}/quick/instances/r"))["result"]
    assert details["restarted"]["from"] == {"name": "double", "count": 1, "type": "do"}
    assert details["restarted"]["new_params"] is True and details["params"] == {"n": 5}
    message = await fails(
        client, "PATCH", path, 409, 10406, json={"status": "restart", "from": {"name": "x"}}
    )
    assert message == '(instance.cannot_restart) Step "x" not found in execution history'
    message = await fails(
        client, "PATCH", path, 400, 10002, json={"status": "pause", "from": {"name": "x"}}
    )
    assert '"from" goes with "status": "restart" only' in message
    bad = {"status": "restart", "from": {"name": "double", "type": "step"}}
    assert "type must be one of" in await fails(client, "PATCH", path, 400, 10002, json=bad)


async def test_delete_one_and_in_batches(client: Client, engine: Engine) -> None:
    for i in ("a", "b", "c"):
        await call(client, "POST", f"{BASE}/napper/instances", 201, json={"id": i})
    await wait_status(engine, "napper", "a", "waiting")
    result = (await call(client, "DELETE", f"{BASE}/napper/instances/a"))["result"]
    assert result == {"id": "a", "deleted": True}
    await fails(client, "GET", f"{BASE}/napper/instances/a", 404, 10400)
    await fails(client, "DELETE", f"{BASE}/napper/instances/a", 404, 10400)
    body = {"instances": ["b", "zz", "c", "b"]}
    result = (await call(client, "POST", f"{BASE}/napper/instances/batch/delete", json=body))[
        "result"
    ]
    assert result["deleted"] == [{"id": "b"}, {"id": "c"}, {"id": "b"}]
    assert [(e["id"], e["code"]) for e in result["errors"]] == [("zz", 10400)]
    wrongs: list[dict[str, object]] = [
        {"ids": ["b"]},
        {"instances": "b"},
        {"instances": []},
        {"instances": ["a b"]},
    ]
    for wrong in wrongs:
        await fails(client, "POST", f"{BASE}/napper/instances/batch/delete", 400, 10002, json=wrong)


async def test_instance_retention_over_rest(client: Client) -> None:
    retention = {"success_retention": "7 days", "error_retention": 86_400_000}  # ms, as Cloudflare
    body = {"instance_id": "kept", "instance_retention": retention}
    await call(client, "POST", f"{BASE}/quick/instances", 201, json=body)
    details = (await call(client, "GET", f"{BASE}/quick/instances/kept"))["result"]
    assert details["retention"] == {"success_retention": "7 days", "error_retention": "1 day"}
    wrong = {"instance_retention": {"success_retention": "soon"}}
    message = await fails(client, "POST", f"{BASE}/quick/instances", 400, 10002, json=wrong)
    assert "body.instance_retention.success_retention" in message
    await fails(client, "POST", f"{BASE}/quick/instances", 400, 10405, json={"id": "kept"})


async def test_create_batch_object_form(client: Client, engine: Engine) -> None:
    path = f"{BASE}/quick/instances/batch"
    result = (await call(client, "POST", path, 201, json={"count": 2, "params": {"n": 3}}))[
        "result"
    ]
    assert len(result["created"]) == 2 and result["errors"] == []
    for created in result["created"]:
        assert created["status"] == "queued"
        assert (await wait_status(engine, "quick", created["id"]))["output"] == {"double": 6}
    body = {
        "instances": [
            {"instance_id": "x", "params": {"n": 1}, "instance_retention": {"error_retention": 5}},
            {"instance_id": "x"},
        ]
    }
    result = (await call(client, "POST", path, 201, json=body))["result"]
    assert [c["id"] for c in result["created"]] == ["x"]
    assert [(e["index"], e["id"], e["code"]) for e in result["errors"]] == [(1, "x", 10405)]
    result = (await call(client, "POST", path, 200, json={"instances": [{"id": "x"}]}))["result"]
    assert result["created"] == [] and result["errors"][0]["id"] == "x"
    await fails(client, "POST", path, 400, 10002, json={"count": 101})
    await fails(client, "POST", path, 400, 10002, json={"instances": [{"bad": 1}]})
    assert len((await call(client, "POST", path, 201, json=[{"id": "y"}]))["result"]) == 1


async def test_a_cron_firings_instance_is_deleted_in_a_batch(
    client: Client, engine: Engine
) -> None:
    cron = Cron.parse("*/15 * * * *")
    await engine.create_scheduled("napper", cron, 1_700_000_100.0)
    fired = cron.instance_id(1_700_000_100.0)  # "*/15 * * * *-1700000100000"
    body = {"instances": [fired, "0 9 * * MON-FRI-1700000000000"]}
    path = f"{BASE}/napper/instances/batch/delete"
    result = (await call(client, "POST", path, json=body))["result"]
    assert result["deleted"] == [{"id": fired}]
    assert [(e["id"], e["code"]) for e in result["errors"]] == [
        ("0 9 * * MON-FRI-1700000000000", 10400)
    ]
    await fails(client, "POST", path, 400, 10002, json={"instances": ["* * * * *"]})


async def test_whole_numbers_written_as_json_floats_are_whole_numbers(
    client: Client, engine: Engine
) -> None:
    """JSON has one number type (a JavaScript client may send 2.0): as Cloudflare's API reads
    them, and as the OpenAPI document's "integer" allows."""
    path = f"{BASE}/quick/instances/batch"
    result = (await call(client, "POST", path, 201, json={"count": 2.0}))["result"]
    assert len(result["created"]) == 2
    await call(client, "POST", f"{BASE}/quick/instances", 201, json={"id": "f"})
    await wait_status(engine, "quick", "f")
    body = {"status": "restart", "from": {"name": "double", "count": 1.0}}
    await call(client, "PATCH", f"{BASE}/quick/instances/f/status", json=body)
    await fails(client, "POST", path, 400, 10002, json={"count": 2.5})


async def test_a_retention_too_long_for_a_float_is_a_bad_request(client: Client) -> None:
    huge = "1" + "0" * 400  # milliseconds, as Cloudflare's API takes them
    text = '{"id": "h", "instance_retention": {"success_retention": ' + huge + "}}"
    message = await fails(
        client,
        "POST",
        f"{BASE}/quick/instances",
        400,
        10002,
        data=text,
        headers={"Content-Type": "application/json"},
    )
    assert "success_retention" in message and "too long" in message
