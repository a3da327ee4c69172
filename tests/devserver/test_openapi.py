"""The OpenAPI document describes exactly the routes the app serves."""

from __future__ import annotations

from typing import Any

from tests.devserver.conftest import Client
from wf.devserver.api import create_app
from wf.devserver.openapi import document
from wf.devserver.state import ServerState

METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


def _refs(node: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                found.add(value)
            else:
                found |= _refs(value)
    elif isinstance(node, list):
        for item in node:
            found |= _refs(item)
    return found


async def test_every_route_is_documented_and_nothing_else(client: Client) -> None:
    resp = await client.get("/api/openapi.json")
    assert resp.status == 200 and resp.content_type == "application/json"
    doc = await resp.json()
    assert doc["openapi"] == "3.1.0"
    documented = {
        (method.upper(), path)
        for path, item in doc["paths"].items()
        for method in item
        if method in METHODS
    }
    app = create_app(ServerState(project_name="p"))
    served = {
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if route.resource is not None
    }
    assert documented == served
    # 20 under /api, their 17 workflows routes under /client/v4/accounts/{account_id} (one also
    # with a trailing slash, as wrangler asks for it), 4 more
    assert len(served) == 42


def test_operations_are_complete() -> None:
    doc = document()
    operation_ids = []
    for path, item in doc["paths"].items():
        for method, op in item.items():
            operation_ids.append(op["operationId"])
            assert op["summary"]
            assert "200" in op["responses"] or "201" in op["responses"]
            declared = {
                doc["components"]["parameters"][p["$ref"].rsplit("/", 1)[1]]["name"]
                for p in op.get("parameters", [])
                if p["$ref"].rsplit("/", 1)[1]
                not in (
                    "trigger",
                    "page",
                    "per_page",
                    "status",
                    "terminate_status",
                    "reverse",
                    "search",
                    "cursor",
                    "last_event_id",
                    "traceparent",
                    "stats_workflow",
                    "since",
                    "date_start",
                    "date_end",
                )
            }
            assert declared == {seg[1:-1] for seg in path.split("/") if seg.startswith("{")}, path
            if method in ("post", "patch"):
                assert "requestBody" in op, (method, path)
    assert len(operation_ids) == len(set(operation_ids))


def test_every_reference_resolves() -> None:
    doc = document()
    for ref in _refs(doc):
        node: Any = doc
        for part in ref.removeprefix("#/").split("/"):
            node = node[part]
        assert isinstance(node, dict), ref


def test_document_is_a_fresh_copy() -> None:
    document()["paths"].clear()
    assert document()["paths"]
