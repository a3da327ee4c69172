"""Dev-server security, fuzzed: the Host check and the Origin check on every route, path-like
names and ids that never reach the file system, and secrets from .dev.vars never echoed.

(tests/devserver/test_security.py checks the helpers and a few routes by example; this module
checks every route, generated headers, and what happens on disk.)
"""

from __future__ import annotations

import json
import re
import urllib.parse
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz.helpers import (
    SECRET,
    SECRET_NAME,
    LiveApi,
    Reply,
    check_envelope,
    fuzz,
    listing,
    request,
    wait_until,
)
from tests.fuzz.strategies import PATH_LIKE, json_values, path_texts, unicode_text
from wf.devserver.api import ROUTES

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
EVERY_METHOD = ("GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE")
LOCAL_NAMES = ("localhost", "127.0.0.1", "::1")
CONCRETE = {"name": "quick", "id": "known", "type": "approve"}


def _concrete(template: str) -> str:
    for key, value in CONCRETE.items():
        template = template.replace("{" + key + "}", value)
    return template


# every route the app serves, with concrete values, plus paths no route serves
PATHS = [
    *sorted({_concrete(path) for _, path, _ in ROUTES}),
    "/",
    "/api",
    "/api/nothing",
    "/api/workflows/quick/instances/known/events",
    "/../../etc/passwd",
]


def _elsewhere(path: str) -> str:
    """Requests that will pass go to another workflow: "known" must survive a DELETE."""
    return path.replace("/quick", "/napper")


def _expected_host(header: str) -> bool:
    """The contract: the host part of Host is localhost, 127.0.0.1 or [::1] (any port)."""
    match = re.fullmatch(r"(?:\[([^\]]*)\]|([^:\[\]]*))(?::(\d+))?", header.strip())
    if not match:
        return False
    name = match.group(1) if match.group(1) is not None else match.group(2)
    if match.group(1) is not None and ":" not in name:
        return False
    return name.lower() in LOCAL_NAMES


def _expected_origin(origin: str, port: int) -> bool:
    hosts = ("localhost", "127.0.0.1", "[::1]")
    return origin.strip().lower().rstrip("/") in {f"http://{h}:{port}" for h in hosts}


TRICKY_HOSTS = (
    "evil.example",
    "evil.example:8787",
    "localhost.evil.example",
    "127.0.0.1.nip.io",
    "localhost.",
    "127.1",
    "2130706433",
    "0x7f.0.0.1",
    "0.0.0.0",
    "[::ffff:127.0.0.1]",
    "[::2]",
    "[::1",
    "::1",
    "localhost:abc",
    "localhost:8787:8787",
    "127.0.0.1@evil.example",
    "evil.example#127.0.0.1",
    "lоcalhost",  # Cyrillic "о"
    "ｌｏｃａｌｈｏｓｔ",
    "LOCALHOST:1",
    "[::1]:8787",
    "localhost",
    "",
    " ",
)
host_headers = st.one_of(
    st.sampled_from(TRICKY_HOSTS),
    st.text(alphabet="localhst127.0:[]evi-x", max_size=24),
    unicode_text(20).filter(lambda s: s.isprintable()),
)


def _origin_strategy(port: int) -> st.SearchStrategy[str]:
    good = (f"http://localhost:{port}", f"http://127.0.0.1:{port}", f"http://[::1]:{port}")
    tricky = (
        "null",
        "file://",
        f"https://localhost:{port}",
        "http://localhost",
        f"http://localhost:{port + 1}",
        f"http://localhost:0{port}",
        f"http://127.0.0.1:{port}.evil.example",
        f"http://127.0.0.1:{port}@evil.example",
        f"http://evil.example:{port}",
        f"http://localhost:{port}/",
        f"HTTP://LOCALHOST:{port}",
        f" http://localhost:{port} ",
        f"http://localhost:{port}/path",
        f"http://user@localhost:{port}",
    )
    return st.one_of(
        st.sampled_from(good + tricky),
        st.builds(lambda g, t: g + t, st.sampled_from(good), unicode_text(6)),
        unicode_text(30),
    ).filter(str.isprintable)


def _headers(**given: str) -> dict[str, Any]:
    # header values as UTF-8 bytes: http.client would refuse non-Latin-1 text
    return {k.replace("_", "-"): v.encode("utf-8") for k, v in given.items()}


def _instances(api: LiveApi) -> int:
    body = request(api.url, "GET", "/api/workflows/quick/instances?per_page=1").json()
    total: int = body["result_info"]["total_count"]
    return total


@pytest.fixture(scope="module")
def known(live_api: LiveApi) -> LiveApi:
    """An instance "known" of quick, so every route has something real to act on; and what the
    folder around the project held before any request."""
    live_api.notes["before"] = listing(
        live_api.project.root.parent, skip=live_api.project.state_dir
    )
    body = json.dumps({"id": "known", "params": {"n": 1}}).encode()
    assert request(live_api.url, "POST", "/api/workflows/quick/instances", body).status == 201
    return live_api


@fuzz(400)
@given(
    host=host_headers,
    method=st.sampled_from(EVERY_METHOD),
    path=st.sampled_from(PATHS),
)
def test_host_check_on_every_route(known: LiveApi, host: str, method: str, path: str) -> None:
    before = _instances(known)
    body = b'{"id": "from-a-bad-host"}' if method not in SAFE_METHODS else None
    if _expected_host(host):
        reply = request(known.url, method, _elsewhere(path), body, headers=_headers(Host=host))
        assert reply.status != 403, (host, reply)
        return
    reply = request(known.url, method, path, body, headers=_headers(Host=host))
    assert reply.status == 403, (host, method, path, reply)
    if method != "HEAD":
        envelope = check_envelope(reply)
        assert envelope["errors"][0]["code"] == 10005
    assert _instances(known) == before  # nothing happened


@fuzz(300)
@given(data=st.data(), method=st.sampled_from(EVERY_METHOD), path=st.sampled_from(PATHS))
def test_origin_check_on_every_route(
    known: LiveApi, data: st.DataObject, method: str, path: str
) -> None:
    origin = data.draw(_origin_strategy(known.port), label="origin")
    before = _instances(known)
    body = b'{"id": "from-another-site"}' if method not in SAFE_METHODS else None
    refused = method not in SAFE_METHODS and not _expected_origin(origin, known.port)
    if not refused:
        reply = request(known.url, method, _elsewhere(path), body, headers=_headers(Origin=origin))
        assert reply.status != 403, (origin, method, path, reply)
        return
    reply = request(known.url, method, path, body, headers=_headers(Origin=origin))
    assert reply.status == 403, (origin, method, path, reply)
    envelope = check_envelope(reply)
    assert envelope["errors"][0]["code"] == 10005
    assert _instances(known) == before


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
def test_cross_origin_writes_are_refused_on_every_route(known: LiveApi, method: str) -> None:
    for path in PATHS:
        before = _instances(known)
        reply = request(known.url, method, path, b"{}", headers={"Origin": "http://evil.example"})
        assert reply.status == 403, (method, path, reply)
        assert check_envelope(reply)["errors"][0]["code"] == 10005
        assert _instances(known) == before
    # the instance is still there, untouched
    details = request(known.url, "GET", "/api/workflows/quick/instances/known").json()
    assert details["result"]["id"] == "known"


def test_requests_the_http_parser_refuses_are_400(known: LiveApi) -> None:
    """Malformed requests (NUL in Host, no Host, two Hosts, a request line over 8 KiB) never
    reach the app: they are 400, never a 5xx, and nothing is created."""
    before = _instances(known)
    for headers, path in (
        ({"Host": b"localhost\x00.evil.example"}, "/api/workflows"),
        ({"Host": b"localhost\r\n"}, "/api/workflows"),
        ({}, "/api/workflows/quick/instances/" + "a" * 9000),
    ):
        try:
            reply = request(known.url, "POST", path, b"{}", headers=headers)
        except ValueError:  # http.client refuses to send it at all: fine too
            continue
        assert reply.status in (400, 403, 413, 414, 431), reply
        assert b"Traceback" not in reply.body
    assert _instances(known) == before


# ---- nothing in a request reaches the file system ------------------------------------------

path_bodies = st.one_of(
    st.fixed_dictionaries({"id": st.sampled_from(PATH_LIKE)}),
    st.fixed_dictionaries({"id": path_texts(), "params": json_values(text=path_texts())}),
    st.fixed_dictionaries({"instance_id": st.sampled_from(PATH_LIKE)}),
)


def _quote(text: str) -> str:
    return urllib.parse.quote(text, safe="")


@fuzz(300)
@given(
    name=st.one_of(st.just("quick"), st.sampled_from(PATH_LIKE), path_texts()),
    instance_id=st.one_of(st.sampled_from(PATH_LIKE), path_texts()),
    event_type=st.one_of(st.sampled_from(PATH_LIKE), path_texts()),
    body=path_bodies,
    raw=st.booleans(),
)
def test_path_like_names_and_ids_never_touch_the_file_system(
    known: LiveApi, name: str, instance_id: str, event_type: str, body: Any, raw: bool
) -> None:
    """Names, ids and event types are opaque: refused (400) or not found (404), never used as
    a path. ``raw`` sends them unquoted where HTTP allows (``../`` segments, ``/``)."""
    quote = (lambda s: urllib.parse.quote(s, safe="/.~")) if raw else _quote
    n, i, t = quote(name), quote(instance_id), quote(event_type)
    data = json.dumps(body, ensure_ascii=False).encode()
    for method, path, payload in (
        ("POST", f"/api/workflows/{n}/instances", data),
        ("GET", f"/api/workflows/{n}/instances/{i}", None),
        ("POST", f"/api/workflows/{n}/instances/{i}/events/{t}", b'"payload"'),
        ("PATCH", f"/api/workflows/{n}/instances/{i}/status", b'{"status": "pause"}'),
        ("GET", f"/api/workflows/{n}", None),
    ):
        reply = request(known.url, method, path, payload)
        assert reply.status < 500, (method, path, reply)
        check_envelope(reply)
        if reply.status < 300 and method == "POST" and path.endswith("/instances"):
            created = reply.json()["result"]["id"]
            assert "/" not in created and ".." not in created and "\x00" not in created


def test_the_project_folder_is_unchanged_but_for_the_state_dir(known: LiveApi) -> None:
    """After the fuzzing above (same module, same server): nothing was created, changed or
    removed outside the state dir, and the state dir holds only the database."""
    project = known.project
    outside = project.root.parent
    # once more, with the most path-like inputs, aimed at files that exist
    targets = ["../wf.toml", "../.dev.vars", "../../project/wf.toml", "/etc/passwd", ".wf/wf.db"]
    for target in targets:
        for quoted in (_quote(target), urllib.parse.quote(target, safe="/")):
            for path in (
                f"/api/workflows/{quoted}",
                f"/api/workflows/quick/instances/{quoted}",
                f"/api/workflows/quick/instances/known/events/{quoted}",
            ):
                reply = request(known.url, "GET", path)
                assert reply.status in (404, 405), (path, reply)
                assert SECRET.encode() not in reply.body
                assert b"root:" not in reply.body
    after = listing(outside, skip=project.state_dir)
    assert after == known.notes["before"]
    files = {"project", "project/.dev.vars", "project/fuzzflows.py", "project/wf.toml"}
    assert set(after) == files
    state_files = {p.name for p in project.state_dir.iterdir()}
    assert state_files <= {"wf.db", "wf.db-wal", "wf.db-shm", "wf.db.lock"}, state_files
    assert not Path("/tmp/wf-fuzz-escape").exists()


# ---- secrets from .dev.vars are never echoed --------------------------------------------------


@fuzz(200)
@given(
    path=st.sampled_from(PATHS),
    method=st.sampled_from(EVERY_METHOD),
    body=st.one_of(
        st.none(),
        json_values(),
        st.just({"id": SECRET_NAME, "params": {"env": SECRET_NAME}}),
        st.just({"status": SECRET_NAME}),
    ),
    query=st.sampled_from(("", f"?status={SECRET_NAME}", "?page=x", f"?per_page={SECRET_NAME}")),
)
def test_no_response_contains_a_secret(
    known: LiveApi, path: str, method: str, body: Any, query: str
) -> None:
    data = None if body is None else json.dumps(body).encode()
    target = path if method in SAFE_METHODS else _elsewhere(path)
    reply = request(known.url, method, target + query, data)
    assert SECRET.encode() not in reply.body, (method, path, reply)
    assert all(SECRET not in value for value in reply.headers.values())


def test_instances_that_use_the_secret_do_not_show_it(known: LiveApi) -> None:
    """The workflow reads the secret in a step; its details, output and listings do not show it."""

    def done() -> Reply | None:
        reply = request(known.url, "GET", "/api/workflows/quick/instances/known")
        return reply if reply.json()["result"]["status"] == "complete" else None

    details = wait_until(done, what="the instance using the secret")
    assert details.json()["result"]["output"]["secret_length"] == len(SECRET)
    for path in (
        "/api/workflows/quick/instances/known",
        "/api/workflows/quick/instances",
        "/api/workflows/quick",
        "/api/workflows",
        "/api/health",
        "/api/openapi.json",
    ):
        reply = request(known.url, "GET", path)
        assert reply.status == 200
        assert SECRET.encode() not in reply.body, path
