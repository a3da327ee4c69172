"""Instances through the REST API: create, batch, list, details, status changes, events."""

from __future__ import annotations

import io
import json
import re
import uuid

from tests.conftest import wait_status
from tests.devserver.conftest import Client, call, fails
from wf.engine import Engine

BASE = "/api/workflows"
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


async def create(client: Client, workflow: str, **body: object) -> str:
    result = (await call(client, "POST", f"{BASE}/{workflow}/instances", 201, json=body))["result"]
    instance_id: str = result["id"]
    return instance_id


# ---- create ----------------------------------------------------------------------------------


async def test_create_answers_201_and_the_instance_runs(client: Client, engine: Engine) -> None:
    body = await call(
        client, "POST", f"{BASE}/quick/instances", 201, json={"id": "a1", "params": {"n": 21}}
    )
    assert body["result"] == {
        "id": "a1",
        "status": "queued",
        "version_id": engine.version_id,
        "workflow_id": "quick",  # Cloudflare's key; a workflow's id is its name
        "workflow": "quick",
        "trigger_source": "api",
    }
    assert (await wait_status(engine, "quick", "a1"))["output"] == {"double": 42}


async def test_create_without_body_or_id_makes_a_uuid(client: Client, engine: Engine) -> None:
    body = await call(client, "POST", f"{BASE}/quick/instances", 201)
    instance_id = body["result"]["id"]
    assert str(uuid.UUID(instance_id)) == instance_id
    assert (await engine.details("quick", instance_id))["params"] == {}
    body = await call(client, "POST", f"{BASE}/quick/instances", 201, json={"id": None})
    assert str(uuid.UUID(body["result"]["id"])) == body["result"]["id"]


async def test_create_accepts_cloudflares_instance_id(client: Client, engine: Engine) -> None:
    body = await call(
        client, "POST", f"{BASE}/quick/instances", 201, json={"instance_id": "cf-1", "params": 3}
    )
    assert body["result"]["id"] == "cf-1"
    assert (await engine.details("quick", "cf-1"))["params"] == 3


async def test_cli_triggers_are_recorded_but_shown_as_cloudflares_api(
    client: Client, engine: Engine
) -> None:
    await call(
        client,
        "POST",
        f"{BASE}/quick/instances",
        201,
        json={"id": "c"},
        headers={"X-WF-Trigger": "cli"},
    )
    await call(client, "POST", f"{BASE}/quick/instances", 201, json={"id": "d"})
    assert (await engine.row("quick", "c")).trigger == "cli"  # kept for the terminal's notices
    # The REST enum is Cloudflare's (api|binding|event|cron|unknown): wrangler's are "api" too.
    details = (await call(client, "GET", f"{BASE}/quick/instances/c"))["result"]
    assert details["trigger"] == {"source": "api", "via": "cli"}  # describe says who asked
    details = (await call(client, "GET", f"{BASE}/quick/instances/d"))["result"]
    assert details["trigger"] == {"source": "api"}
    listed = (await call(client, "GET", f"{BASE}/quick/instances"))["result"]
    assert [(i["id"], i["trigger"]) for i in listed] == [("d", "api"), ("c", "api")]
    message = await fails(
        client, "POST", f"{BASE}/quick/instances", 400, 10002, headers={"X-WF-Trigger": "cron"}
    )
    assert "X-WF-Trigger" in message


async def test_duplicate_id_is_400_with_code_10405(client: Client) -> None:
    # Cloudflare answers 400 (instance.already_exists, 10405); its SDKs map the status to a
    # bad-request exception, so a 409 would surface as another exception class.
    await create(client, "quick", id="dup")
    message = await fails(client, "POST", f"{BASE}/quick/instances", 400, 10405, json={"id": "dup"})
    assert '"dup"' in message and "already exists" in message


async def test_bad_ids_are_400(client: Client) -> None:
    for bad in ("has space", "-leading", "x" * 101, "", 42):
        message = await fails(
            client, "POST", f"{BASE}/quick/instances", 400, 10002, json={"id": bad}
        )
        assert "instance id" in message


async def test_an_id_with_a_newline_is_shown_escaped(client: Client) -> None:
    message = await fails(
        client, "POST", f"{BASE}/quick/instances", 400, 10002, json={"id": "abc\n"}
    )
    assert 'instance id "abc\\n"' in message


async def test_bad_create_bodies_are_400(client: Client) -> None:
    path = f"{BASE}/quick/instances"
    message = await fails(client, "POST", path, 400, 10002, json={"id": "x", "parms": {}})
    assert '"parms"' in message
    message = await fails(client, "POST", path, 400, 10002, json={"id": "x", "instance_id": "y"})
    assert "both" in message
    message = await fails(client, "POST", path, 400, 10002, json=[{"id": "x"}])
    assert "JSON object" in message and "array" in message
    message = await fails(client, "POST", path, 400, 10002, json="x")
    assert "string" in message


async def test_params_over_one_mib_are_400(client: Client) -> None:
    params = "x" * (1024 * 1024)  # 1 MiB + 2 quotes once encoded, the body fits the limit
    data = io.BytesIO(json.dumps({"params": params}).encode())
    message = await fails(client, "POST", f"{BASE}/quick/instances", 400, 10002, data=data)
    assert "params" in message and "limit" in message


async def test_unknown_workflow_is_404_listing_known_ones(client: Client) -> None:
    for method, path in [
        ("POST", f"{BASE}/nope/instances"),
        ("GET", f"{BASE}/nope/instances"),
        ("POST", f"{BASE}/nope/instances/batch"),
        ("GET", f"{BASE}/nope/instances/x"),
        ("PATCH", f"{BASE}/nope/instances/x/status"),
        ("POST", f"{BASE}/nope/instances/x/events/t"),
    ]:
        body = {"status": "pause"} if method == "PATCH" else ([{}] if "batch" in path else {})
        message = await fails(client, method, path, 404, 10200, json=body)
        assert message == 'workflow "nope" not found; known workflows: approval, napper, quick'


# ---- batch -----------------------------------------------------------------------------------


async def test_batch_creates_and_skips_existing_ids(client: Client, engine: Engine) -> None:
    path = f"{BASE}/quick/instances/batch"
    body = await call(
        client,
        "POST",
        path,
        201,
        json=[{"id": "b1", "params": {"n": 1}}, {"instance_id": "b2"}, {"params": {"n": 3}}],
    )
    created = body["result"]
    assert [c["id"] for c in created[:2]] == ["b1", "b2"]
    assert str(uuid.UUID(created[2]["id"])) == created[2]["id"]
    assert all(
        set(c) == {"id", "status", "version_id", "workflow_id", "workflow", "trigger_source"}
        and c["status"] == "queued"
        and c["workflow_id"] == c["workflow"] == "quick"
        and c["version_id"] == engine.version_id
        for c in created
    )
    again = await call(
        client,
        "POST",
        path,
        201,
        json=[{"id": "b1"}, {"id": "b4"}],
        headers={"X-WF-Trigger": "cli"},
    )
    assert [c["id"] for c in again["result"]] == ["b4"]
    assert (await engine.row("quick", "b4")).trigger == "cli"
    assert (await engine.details("quick", "b4"))["trigger"] == {"source": "api", "via": "cli"}
    for one in ("b1", "b2", "b4"):
        await wait_status(engine, "quick", one)
    assert (await engine.status("quick", "b1"))["output"] == {"double": 2}


async def test_batch_errors(client: Client) -> None:
    path = f"{BASE}/quick/instances/batch"
    message = await fails(client, "POST", path, 400, 10002, json={"id": "x"})
    assert "JSON array" in message
    await fails(client, "POST", path, 400, 10002)
    message = await fails(client, "POST", path, 400, 10002, json=[])
    assert "at least one" in message
    message = await fails(client, "POST", path, 400, 10002, json=[{}] * 101)
    assert "at most 100" in message
    message = await fails(client, "POST", path, 400, 10002, json=[{"id": "ok"}, 5])
    assert "batch[1]" in message
    message = await fails(client, "POST", path, 400, 10002, json=[{"id": "ok"}, {"idd": "x"}])
    assert "batch[1]" in message and '"idd"' in message
    message = await fails(client, "POST", path, 400, 10002, json=[{"id": "bad id"}])
    assert "batch[0]" in message
    # nothing of a refused batch was written
    listed = await call(client, "GET", f"{BASE}/quick/instances")
    assert listed["result"] == []


# ---- list ------------------------------------------------------------------------------------


async def test_list_pages_newest_first_and_reverses(client: Client, engine: Engine) -> None:
    ids = [f"i{n}" for n in range(5)]
    for one in ids:
        await create(client, "quick", id=one)
    path = f"{BASE}/quick/instances"
    body = await call(client, "GET", path)
    assert [r["id"] for r in body["result"]] == ids[::-1]
    assert body["result_info"] == {"page": 1, "per_page": 25, "count": 5, "total_count": 5}
    body = await call(client, "GET", path, params={"per_page": "2", "page": "2"})
    assert [r["id"] for r in body["result"]] == ["i2", "i1"]
    assert body["result_info"] == {"page": 2, "per_page": 2, "count": 2, "total_count": 5}
    body = await call(client, "GET", path, params={"per_page": "2", "reverse": "true"})
    assert [r["id"] for r in body["result"]] == ["i0", "i1"]
    body = await call(client, "GET", path, params={"page": "9"})
    assert body["result"] == [] and body["result_info"]["total_count"] == 5
    first = body = (await call(client, "GET", path, params={"per_page": "1"}))["result"][0]
    assert set(first) == {
        "id",
        "status",
        "version_id",
        "workflow_id",
        "workflow",
        "created_on",
        "modified_on",
        "started_on",
        "ended_on",
        "trigger",
        "trigger_source",
    }
    assert first["workflow_id"] == first["workflow"] == "quick" and first["trigger"] == "api"
    assert first["version_id"] == engine.version_id
    assert ISO.match(first["created_on"]) and ISO.match(first["modified_on"])


async def test_list_filters_by_status(client: Client, engine: Engine) -> None:
    for one in ("s1", "s2"):
        await create(client, "quick", id=one)
        await wait_status(engine, "quick", one, "complete")
    await create(client, "napper", id="n1")
    await wait_status(engine, "napper", "n1", "waiting")
    path = f"{BASE}/quick/instances"
    body = await call(client, "GET", path, params={"status": "complete"})
    assert {r["id"] for r in body["result"]} == {"s1", "s2"}
    assert body["result_info"]["total_count"] == 2
    body = await call(client, "GET", path, params={"status": "waiting"})
    assert body["result"] == [] and body["result_info"]["total_count"] == 0
    body = await call(client, "GET", f"{BASE}/napper/instances", params={"status": "waiting"})
    assert [r["id"] for r in body["result"]] == ["n1"]


async def test_list_parameter_errors_are_400(client: Client) -> None:
    path = f"{BASE}/quick/instances"
    message = await fails(client, "GET", path, 400, 10002, params={"status": "done"})
    assert '"done"' in message and "waitingForPause" in message
    for params in (
        {"page": "0"},
        {"page": "x"},
        {"page": "+5"},
        {"page": "١"},  # an Arabic-Indic one: a digit to Python, not to the API
        {"page": "1" + "0" * 24},
        {"per_page": "0"},
        {"per_page": "1001"},
    ):
        message = await fails(client, "GET", path, 400, 10002, params=params)
        assert next(iter(params)) in message
    message = await fails(client, "GET", path, 400, 10002, params={"reverse": "maybe"})
    assert "reverse" in message


# ---- details ---------------------------------------------------------------------------------


async def test_details_have_cloudflares_shape(client: Client, engine: Engine) -> None:
    await create(client, "quick", id="d1", params={"n": 2})
    await wait_status(engine, "quick", "d1")
    result = (await call(client, "GET", f"{BASE}/quick/instances/d1"))["result"]
    assert set(result) == {
        "id", "workflow", "status", "params", "trigger", "versionId", "created", "queued",
        "start", "end", "success", "error", "output", "rollback", "step_count", "steps",
    }  # fmt: skip
    assert result["id"] == "d1" and result["workflow"] == "quick"
    assert result["status"] == "complete" and result["success"] is True
    assert result["params"] == {"n": 2} and result["output"] == {"double": 4}
    assert result["trigger"] == {"source": "api"} and result["versionId"] == engine.version_id
    assert result["error"] is None and result["step_count"] == 1
    for key in ("created", "queued", "start", "end"):
        assert ISO.match(result[key]), key
    (step,) = result["steps"]
    assert step["type"] == "step" and step["name"] == "double-1" and step["success"] is True
    assert step["output"] == {"double": 4} and step["error"] is None
    assert set(step["config"]) == {"retries", "timeout"}
    assert set(step["config"]["retries"]) == {"limit", "delay", "backoff"}
    (attempt,) = step["attempts"]
    assert attempt["success"] is True and ISO.match(attempt["start"]) and ISO.match(attempt["end"])


async def test_details_of_a_waiting_and_a_terminated_instance(
    client: Client, engine: Engine
) -> None:
    await create(client, "approval", id="w1")
    await wait_status(engine, "approval", "w1", "waiting")
    result = (await call(client, "GET", f"{BASE}/approval/instances/w1"))["result"]
    (wait,) = result["steps"]
    assert wait["type"] == "waitForEvent" and wait["event_type"] == "approve"
    assert wait["finished"] is False and ISO.match(wait["timeout_at"])
    await call(
        client, "PATCH", f"{BASE}/approval/instances/w1/status", json={"status": "terminate"}
    )
    result = (await call(client, "GET", f"{BASE}/approval/instances/w1"))["result"]
    assert result["status"] == "terminated" and result["success"] is False
    assert result["steps"][-1] == {"type": "termination", "trigger": {"source": "api"}}


async def test_unknown_instance_is_404(client: Client) -> None:
    message = await fails(client, "GET", f"{BASE}/quick/instances/ghost", 404, 10400)
    assert '"ghost"' in message
    await fails(
        client,
        "PATCH",
        f"{BASE}/quick/instances/ghost/status",
        404,
        10400,
        json={"status": "pause"},
    )
    await fails(client, "POST", f"{BASE}/quick/instances/ghost/events/go", 404, 10400)


# ---- status changes --------------------------------------------------------------------------


async def patch(client: Client, instance_id: str, action: str, key: str = "status") -> str:
    body = await call(
        client, "PATCH", f"{BASE}/napper/instances/{instance_id}/status", json={key: action}
    )
    assert set(body["result"]) == {"status", "timestamp"}
    assert ISO.match(body["result"]["timestamp"])
    status: str = body["result"]["status"]
    return status


async def test_pause_resume_terminate_restart(client: Client, engine: Engine) -> None:
    await create(client, "napper", id="p1")
    await wait_status(engine, "napper", "p1", "waiting")
    assert await patch(client, "p1", "pause") in ("paused", "waitingForPause")
    await wait_status(engine, "napper", "p1", "paused")
    assert await patch(client, "p1", "pause") == "paused"  # pausing twice is harmless
    assert await patch(client, "p1", "resume", key="action") in ("queued", "running", "waiting")
    await wait_status(engine, "napper", "p1", "waiting")
    body = await call(
        client,
        "PATCH",
        f"{BASE}/napper/instances/p1/status",
        json={"status": "terminate"},
        headers={"X-WF-Trigger": "cli"},
    )
    assert body["result"]["status"] == "terminated"
    steps = (await call(client, "GET", f"{BASE}/napper/instances/p1"))["result"]["steps"]
    assert steps[-1] == {"type": "termination", "trigger": {"source": "api", "via": "cli"}}
    assert (await engine.status("napper", "p1"))["status"] == "terminated"
    assert await patch(client, "p1", "restart") == "queued"
    await wait_status(engine, "napper", "p1", "waiting")


async def test_terminating_a_finished_instance_is_409(client: Client, engine: Engine) -> None:
    await create(client, "quick", id="f1")
    await wait_status(engine, "quick", "f1", "complete")
    path = f"{BASE}/quick/instances/f1/status"
    for action in ("terminate", "pause", "resume"):
        message = await fails(client, "PATCH", path, 409, 10406, json={"status": action})
        assert "already complete" in message
    await call(client, "PATCH", path, json={"status": "restart"})  # restart works on any state


async def test_bad_status_bodies_are_400(client: Client) -> None:
    await create(client, "napper", id="x1")
    path = f"{BASE}/napper/instances/x1/status"
    message = await fails(client, "PATCH", path, 400, 10002, json={"status": "stop"})
    assert '"stop"' in message and "terminate" in message
    message = await fails(client, "PATCH", path, 400, 10002, json={"status": "pause", "from": "x"})
    assert '"from"' in message
    await fails(client, "PATCH", path, 400, 10002, json={"status": "pause", "action": "pause"})
    await fails(client, "PATCH", path, 400, 10002, json={})
    await fails(client, "PATCH", path, 400, 10002)
    await fails(client, "PATCH", path, 400, 10002, json=["pause"])
    await fails(client, "PATCH", path, 400, 10002, json={"status": 1})


# ---- events ----------------------------------------------------------------------------------


async def test_event_wakes_a_waiting_instance(client: Client, engine: Engine) -> None:
    await create(client, "approval", id="e1")
    await wait_status(engine, "approval", "e1", "waiting")
    body = await call(
        client, "POST", f"{BASE}/approval/instances/e1/events/approve", json={"by": "ann"}
    )
    result = body["result"]
    assert ISO.match(result.pop("timestamp")), result
    assert result == {"type": "approve", "instance_id": "e1", "instanceId": "e1"}
    assert (await wait_status(engine, "approval", "e1"))["output"] == {
        "approved_with": {"by": "ann"}
    }


async def test_event_with_empty_body_is_null(client: Client, engine: Engine) -> None:
    await create(client, "approval", id="e2")
    await call(client, "POST", f"{BASE}/approval/instances/e2/events/approve")
    assert (await wait_status(engine, "approval", "e2"))["output"] == {"approved_with": None}


async def test_event_errors(client: Client, engine: Engine) -> None:
    await create(client, "quick", id="done")
    await wait_status(engine, "quick", "done", "complete")
    message = await fails(client, "POST", f"{BASE}/quick/instances/done/events/go", 409, 10406)
    assert "already complete" in message
    await create(client, "approval", id="e3")
    message = await fails(
        client, "POST", f"{BASE}/approval/instances/e3/events/bad%20type", 400, 10002
    )
    assert "event type" in message


async def test_created_date_filters(client: Client) -> None:
    made = await create(client, "quick", params={"n": 1})
    path = f"{BASE}/quick/instances"
    found = await call(client, "GET", f"{path}?date_start=2000-01-01T00:00:00Z")
    assert made in [row["id"] for row in found["result"]]
    gone = await call(client, "GET", f"{path}?date_end=2000-01-01T00:00:00Z")
    assert gone["result"] == [] and gone["result_info"]["total_count"] == 0
    # A range that ends before it starts holds nothing; it is no malformed request.
    empty = f"{path}?date_start=2030-01-02T00:00:00Z&date_end=2030-01-01T00:00:00Z"
    assert (await call(client, "GET", empty))["result"] == []
    for bad in ("", "yesterday", "2024-13-01"):
        message = await fails(client, "GET", f"{path}?date_start={bad}", 400, 10002)
        assert message.startswith("date_start must be an ISO 8601 date"), message
