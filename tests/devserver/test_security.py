"""Host check (DNS rebinding), Origin check on writes, and the API token of ``wf serve``."""

from __future__ import annotations

import pytest

from tests.devserver.conftest import PORT, Client, MakeClient, call, fails
from wf.devserver.security import host_allowed, origin_allowed, split_host_header, token_matches
from wf.devserver.state import ServerState

CREATE = "/api/workflows/quick/instances"


@pytest.mark.parametrize(
    ("header", "host"),
    [
        ("localhost", "localhost"),
        ("LocalHost:8787", "localhost"),
        ("127.0.0.1:1", "127.0.0.1"),
        ("[::1]", "::1"),
        ("[::1]:8787", "::1"),
        ("", None),
        ("[::1", None),
        ("[::1]x", None),
        ("::1", None),
        ("localhost:port", None),
    ],
)
def test_split_host_header(header: str, host: str | None) -> None:
    assert split_host_header(header) == host


def test_allowed_hosts_and_origins() -> None:
    state = ServerState(project_name="p", bound_host="Box.Local", port=9000, extra_hosts=("lan",))
    for ok in ("localhost:1", "127.0.0.1", "[::1]:9000", "box.local:9000", "lan"):
        assert host_allowed(ok, state), ok
    for bad in (None, "evil.example", "127.0.0.1.evil.example", "localhost.evil", "0.0.0.0"):
        assert not host_allowed(bad, state), bad
    for ok in (
        "http://localhost:9000",
        "http://127.0.0.1:9000",
        "http://box.local:9000",
        "http://[::1]:9000",
    ):
        assert origin_allowed(ok, state), ok
    for bad in (
        "null",
        "http://localhost:9001",
        "https://localhost:9000",
        "http://evil.example:9000",
    ):
        assert not origin_allowed(bad, state), bad


def test_token_matches() -> None:
    assert token_matches("Bearer s3cret", "s3cret")
    assert token_matches("bearer  s3cret ", "s3cret")
    for bad in (None, "", "s3cret", "Basic s3cret", "Bearer s3cre", "Bearer s3cret2", "Bearer é"):
        assert not token_matches(bad, "s3cret"), bad


async def test_foreign_host_header_is_refused(client: Client) -> None:
    for host in ("evil.example", "evil.example:8787", "127.0.0.1.nip.io"):
        message = await fails(client, "GET", "/api/health", 403, 10005, headers={"Host": host})
        assert host in message
        await fails(client, "POST", CREATE, 403, 10005, headers={"Host": host}, json={})
    assert (await call(client, "GET", CREATE))["result"] == []
    for host in ("localhost:8787", "127.0.0.1:4000", "[::1]:8787", "localhost"):
        await call(client, "GET", "/api/health", headers={"Host": host})


async def test_bound_host_is_allowed(make_client: MakeClient, state: ServerState) -> None:
    state.bound_host = "devbox.lan"
    client = await make_client(state)
    await call(client, "GET", "/api/health", headers={"Host": "devbox.lan:8787"})
    await call(
        client, "POST", CREATE, 201, headers={"Origin": f"http://devbox.lan:{PORT}"}, json={}
    )


async def test_cross_origin_writes_are_refused(client: Client) -> None:
    evil = {"Origin": "http://evil.example"}
    message = await fails(client, "POST", CREATE, 403, 10005, headers=evil, json={"id": "x"})
    assert "http://evil.example" in message and "cross-origin" in message
    await fails(client, "POST", CREATE, 403, 10005, headers={"Origin": "null"}, json={})
    await fails(
        client, "POST", CREATE, 403, 10005, headers={"Origin": "http://localhost:9999"}, json={}
    )
    await fails(client, "DELETE", "/api/workflows/quick", 403, 10005, headers=evil)
    await fails(
        client,
        "PATCH",
        "/api/workflows/quick/instances/x/status",
        403,
        10005,
        headers=evil,
        json={"status": "terminate"},
    )
    assert (await call(client, "GET", CREATE))["result"] == []  # nothing was created
    await call(client, "GET", CREATE, headers=evil)  # reads are not writes


async def test_same_origin_and_originless_writes_pass(client: Client) -> None:
    for n, origin in enumerate((f"http://127.0.0.1:{PORT}", f"http://localhost:{PORT}", None)):
        headers = {"Origin": origin} if origin else {}
        await call(client, "POST", CREATE, 201, headers=headers, json={"id": f"ok{n}"})
    assert (await call(client, "GET", CREATE))["result_info"]["total_count"] == 3


async def test_no_token_needed_without_one(client: Client) -> None:
    await call(client, "GET", "/api/workflows", headers={"Authorization": "Bearer whatever"})


async def test_token_required_when_set(make_client: MakeClient, state: ServerState) -> None:
    state.token = "s3cret"
    client = await make_client(state)
    for path in ("/api/health", "/api/workflows", "/api/openapi.json", "/api/nothing"):
        resp = await client.get(path)
        body = await resp.json()
        assert resp.status == 401 and body["errors"][0]["code"] == 10006, body
        assert resp.headers["WWW-Authenticate"] == "Bearer"
        assert "missing API token" in body["errors"][0]["message"]
    message = await fails(
        client, "GET", "/api/workflows", 401, 10006, headers={"Authorization": "Bearer nope"}
    )
    assert "wrong API token" in message
    await fails(client, "POST", CREATE, 401, 10006, json={})
    good = {"Authorization": "Bearer s3cret"}
    await call(client, "GET", "/api/workflows", headers=good)
    await call(client, "POST", CREATE, 201, headers=good, json={"id": "t"})
    # the Host check still comes first
    await fails(client, "GET", "/api/health", 403, 10005, headers={**good, "Host": "evil.example"})


def test_origin_of_the_requested_host_only_for_serve_beyond_loopback() -> None:
    """Behind a TLS proxy, wf serve's dashboard is https://its.name: its forms' Origin names the
    Host the request was sent to. wf dev (and wf serve on loopback, Host checked) keep the list."""
    proxied = ServerState(project_name="p", bound_host="0.0.0.0", port=8788)
    proxied.serve, proxied.host_check = True, False
    assert origin_allowed("https://wf.example.com", proxied, "wf.example.com")
    assert origin_allowed("http://wf.example.com:8788", proxied, "wf.example.com:8788")
    assert not origin_allowed("https://evil.example", proxied, "wf.example.com")
    assert not origin_allowed("https://wf.example.com", proxied, None)
    assert not origin_allowed("wf.example.com", proxied, "wf.example.com")
    for state in (
        ServerState(project_name="p", bound_host="0.0.0.0", port=8788, host_check=False),
        ServerState(project_name="p", port=8788, serve=True),
    ):
        assert not origin_allowed("https://wf.example.com", state, "wf.example.com")
