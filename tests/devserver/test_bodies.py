"""Request bodies: invalid JSON with its position, size limits, empty bodies."""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator

from tests.conftest import wait_status
from tests.devserver.conftest import Client, call, fails
from wf.devserver.api import MAX_BATCH_BODY, MAX_BODY
from wf.engine import Engine

CREATE = "/api/workflows/quick/instances"


async def test_invalid_json_is_400_with_its_position(client: Client) -> None:
    message = await fails(client, "POST", CREATE, 400, 10002, data=b'{"id": "a" "params": 1}')
    assert message == "body is not valid JSON: Expecting ',' delimiter (line 1, column 12)"
    message = await fails(client, "POST", CREATE, 400, 10002, data=b'{\n  "id": "a",\n}')
    assert message == (
        "body is not valid JSON: Expecting property name enclosed in double quotes "
        "(line 3, column 1)"
    )
    for path in (
        f"{CREATE}/batch",
        "/api/workflows/quick/instances/x/status",
        "/api/workflows/quick/instances/x/events/go",
    ):
        method = "PATCH" if path.endswith("status") else "POST"
        message = await fails(client, method, path, 400, 10002, data=b"[1, 2")
        assert "(line 1, column 6)" in message


async def test_json_that_python_would_accept_but_json_does_not(client: Client) -> None:
    message = await fails(client, "POST", CREATE, 400, 10002, data=b'{"params": NaN}')
    assert "NaN" in message
    message = await fails(client, "POST", CREATE, 400, 10002, data=b'{"params": -Infinity}')
    assert "Infinity" in message
    message = await fails(client, "POST", CREATE, 400, 10002, data=b'{"id": "\xff"}')
    assert "UTF-8" in message
    message = await fails(client, "POST", CREATE, 400, 10002, data=b"[" * 200_000)
    assert "nested too deeply" in message


async def test_a_byte_order_mark_is_ignored(client: Client) -> None:
    body = await call(client, "POST", CREATE, 201, data=b'\xef\xbb\xbf{"id": "bom"}')
    assert body["result"]["id"] == "bom"


async def test_whitespace_body_counts_as_empty(client: Client) -> None:
    body = await call(client, "POST", CREATE, 201, data=b"  \n ")
    assert body["result"]["status"] == "queued"


async def test_event_payloads_are_any_json(client: Client, engine: Engine) -> None:
    for instance_id, raw, expected in [("t1", b'"text"', "text"), ("t2", b"null", None)]:
        await call(
            client, "POST", "/api/workflows/approval/instances", 201, json={"id": instance_id}
        )
        await call(
            client,
            "POST",
            f"/api/workflows/approval/instances/{instance_id}/events/approve",
            data=raw,
        )
        output = (await wait_status(engine, "approval", instance_id))["output"]
        assert output == {"approved_with": expected}


async def test_oversized_body_is_413_before_reading_it(client: Client) -> None:
    data = io.BytesIO(b" " * (MAX_BODY + 1))  # sent with a Content-Length
    message = await fails(client, "POST", CREATE, 413, 10003, data=data)
    assert f"the limit is {MAX_BODY} bytes" in message and "1 MiB" in message
    assert (await call(client, "GET", CREATE))["result"] == []


async def test_oversized_chunked_body_is_413_in_the_envelope(client: Client) -> None:
    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: aiohttp's own limit trips
        for _ in range(MAX_BODY // 65536 + 2):
            yield b" " * 65536

    resp = await client.post(CREATE, data=chunks())
    body = await resp.json()
    assert resp.status == 413, body
    assert body["success"] is False and body["errors"][0]["code"] == 10003
    assert f"the limit is {MAX_BODY} bytes" in body["errors"][0]["message"]


async def test_a_full_one_mib_payload_fits_in_the_allowance(client: Client, engine: Engine) -> None:
    params = "x" * (1024 * 1024 - 2)  # exactly 1 MiB once JSON-encoded
    raw = json.dumps({"id": "big", "params": params}, indent=8).encode()
    raw += b" " * (MAX_BODY - len(raw))  # up to the very limit
    assert len(raw) == MAX_BODY
    await call(client, "POST", CREATE, 201, data=io.BytesIO(raw))
    assert len((await engine.details("quick", "big"))["params"]) == len(params)


# ---- batches: 1 MiB of params per instance, up to 100 instances --------------------------------

BATCH = f"{CREATE.replace('quick', 'napper')}/batch"
ONE_MIB_PARAMS = "x" * (1024 * 1024 - 2)  # exactly 1 MiB once JSON-encoded


async def test_a_batch_holds_100_instances_of_1_mib_of_params_each(
    client: Client, engine: Engine
) -> None:
    items = [{"id": f"big-{n}", "params": ONE_MIB_PARAMS} for n in range(100)]
    raw = json.dumps(items).encode()
    assert len(raw) > 100 * 1024 * 1024  # Cloudflare's limits are per instance, not per request
    body = await call(client, "POST", BATCH, 201, data=io.BytesIO(raw))
    assert [c["id"] for c in body["result"]] == [f"big-{n}" for n in range(100)]
    listed = await call(client, "GET", CREATE.replace("quick", "napper"))
    assert listed["result_info"]["total_count"] == 100
    assert (await engine.details("napper", "big-99"))["params"] == ONE_MIB_PARAMS


async def test_a_batch_names_the_instance_whose_params_are_over_the_limit(
    client: Client,
) -> None:
    items = [
        {"id": "fine", "params": ONE_MIB_PARAMS},
        {"id": "fine-too", "params": ONE_MIB_PARAMS},
        {"id": "too-big", "params": ONE_MIB_PARAMS + "x"},
    ]
    data = io.BytesIO(json.dumps(items).encode())
    message = await fails(client, "POST", BATCH, 400, 10002, data=data)
    assert message == (
        'batch[2] (id "too-big"): params is 1048577 bytes encoded; the limit is 1048576 bytes'
    )
    data = io.BytesIO(json.dumps([{"params": ONE_MIB_PARAMS + "x"}]).encode())
    message = await fails(client, "POST", BATCH, 400, 10002, data=data)
    assert message.startswith("batch[0]: params is 1048577 bytes encoded")
    # all or nothing: the two that fit were not created either
    assert (await call(client, "GET", CREATE.replace("quick", "napper")))["result"] == []


async def test_a_batch_body_may_reach_100_instances_worth_and_no_more(
    client: Client, engine: Engine
) -> None:
    raw = b'[{"id": "padded"}]'
    padded = raw + b" " * (MAX_BATCH_BODY - len(raw))
    await call(client, "POST", BATCH, 201, data=io.BytesIO(padded))
    message = await fails(client, "POST", BATCH, 413, 10003, data=io.BytesIO(padded + b" "))
    assert message == (
        f"request body is too large ({MAX_BATCH_BODY + 1} bytes): the limit is {MAX_BATCH_BODY} "
        "bytes (100 instances of 1 MiB of params each, plus 64 KiB of JSON around each)"
    )
    listed = await call(client, "GET", CREATE.replace("quick", "napper"))
    assert [i["id"] for i in listed["result"]] == ["padded"]


async def test_a_batch_reports_invalid_json_before_a_bad_instance(client: Client) -> None:
    # Read one instance at a time, a batch still says first that the body is not JSON.
    message = await fails(client, "POST", BATCH, 400, 10002, data=b'[5, {"id": "x"} {"id": "y"}]')
    assert message == "body is not valid JSON: Expecting ',' delimiter (line 1, column 17)"
    message = await fails(client, "POST", BATCH, 400, 10002, data=b'[{"id": "x"}] [')
    assert message == "body is not valid JSON: Extra data (line 1, column 15)"
    message = await fails(client, "POST", BATCH, 400, 10002, data=b"[5, 6]")
    assert message == "batch[0] must be an object with id and params, got number"
