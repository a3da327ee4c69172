"""The dashboard of a real ``wf serve`` (a subprocess on loopback, SQLite state, a deployed
version, a secret): sign-in with the API token, the session cookie, CSRF and Origin checks on
forms, the API read with the cookie alone, sign-out, and the versions page.

Requests go over real HTTP with ``http.client`` (redirects are not followed: each test looks at
the 303 itself), and carry cookies only as a browser would: the ones the server set.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import re
import socket
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from tests.e2e.cluster_helpers import cluster, query
from tests.e2e.helpers import wait_until
from tests.e2e.serve_helpers import Serve, serving, write_project
from tests.server.test_serve_app import bundle_of
from wf.dashboard.serve_info import SERVE_INFO_KEY, add_active_versions
from wf.devserver.sessions import LIFETIME, Sessions
from wf.server import dashboard
from wf.server.dashboard import SIGNOUTS_SETTING, RuntimeInfo, SignOuts
from wf.server.runtime import Runtime
from wf.server.state import StateDir

pytestmark = pytest.mark.slow

SECRET_VALUE = "sk_live_do-not-show-4f1c9a"
CSRF_INPUT = re.compile(r'<input type="hidden" name="csrf" value="([^"]+)">')


@dataclass
class Answer:
    status: int
    headers: list[tuple[str, str]]
    text: str

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)

    def set_cookies(self) -> list[str]:
        return [v for k, v in self.headers if k.lower() == "set-cookie"]


@dataclass
class Browser:
    """A client that keeps the cookies the server sets, sends no token, follows no redirect."""

    server: Serve
    cookies: dict[str, str] = field(default_factory=dict)

    @property
    def origin(self) -> str:
        return self.server.url

    def request(
        self,
        method: str,
        path: str,
        form: Mapping[str, str] | Sequence[tuple[str, str]] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Answer:
        sent = dict(headers or {})
        if self.cookies:
            sent["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        body = None
        if form is not None:
            body = urlencode(form).encode()
            sent["Content-Type"] = "application/x-www-form-urlencoded"
        connection = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=15)
        try:
            # A 413 may come before the whole body is sent: the answer is still there.
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                connection.request(method, path, body=body, headers=sent)
            response = connection.getresponse()
            answer = Answer(
                response.status, response.getheaders(), response.read().decode(errors="replace")
            )
        finally:
            connection.close()
        for cookie in answer.set_cookies():
            name, _, rest = cookie.partition("=")
            value = rest.split(";", 1)[0]
            if "max-age=0" in cookie.lower() or not value.strip('"'):
                self.cookies.pop(name, None)
            else:
                self.cookies[name] = value
        return answer

    def get(self, path: str) -> Answer:
        return self.request("GET", path)

    def post(
        self,
        path: str,
        form: Mapping[str, str] | Sequence[tuple[str, str]],
        origin: str | None = "",
    ) -> Answer:
        """A form POST from a page of this server (``origin=""``), another site, or none."""
        headers = {} if origin is None else {"Origin": origin or self.origin}
        return self.request("POST", path, form, headers)

    def sign_in(self, next_path: str = "/") -> Answer:
        answer = self.post("/signin", {"token": self.server.token, "next": next_path})
        assert answer.status == 303, answer
        assert "wf_session" in self.cookies
        return answer

    def csrf(self, path: str = "/") -> str:
        page = self.get(path)
        assert page.status == 200, page
        found = CSRF_INPUT.search(page.text)
        assert found, page.text
        return found.group(1)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Serve]:
    home = tmp_path_factory.mktemp("dashboard-serve")
    with serving(home) as server:
        server.deploy(write_project(home / "project"))
        server.api("/api/secrets/STRIPE_KEY", "PUT", {"value": SECRET_VALUE})
        yield server


def waiting_instance(server: Serve, instance_id: str) -> None:
    """An instance of ``pin`` that waits for its "go" event (an hour at most)."""
    server.api("/api/workflows/pin/instances", "POST", {"id": instance_id, "params": {"wait": 1}})
    wait_until(lambda: server.status(instance_id) == "waiting", what=f"{instance_id} to wait")


def test_startup_output_names_the_dashboard(served: Serve) -> None:
    assert f"  ➜ Dashboard: {served.url}/\n" in served.output()


def test_pages_redirect_to_signin_and_next_is_kept(served: Serve) -> None:
    browser = Browser(served)
    for path in ("/", "/w/pin?status=waiting", "/versions", "/no/such/page"):
        answer = browser.get(path)
        assert answer.status == 303, (path, answer)
        location = answer.header("Location")
        assert location is not None and location.startswith("/signin?")
        assert parse_qs(urlsplit(location).query)["next"] == [path]
    # The sign-in page and the stylesheet load without a session; the API still wants a token.
    signin = browser.get("/signin?next=/versions")
    assert signin.status == 200
    assert 'data-testid="signin-token"' in signin.text and 'type="password"' in signin.text
    assert 'data-testid="signin-submit"' in signin.text
    assert 'name="next" value="/versions"' in signin.text
    css = re.search(r'href="(/ui/static/[^"]+\.css)"', signin.text)
    assert css and browser.get(css.group(1)).status == 200
    assert browser.get("/api/workflows").status == 401
    # A form POST without a session does nothing and says so.
    refused = browser.post("/w/pin/i/nobody/pause", {})
    assert refused.status == 403 and 'data-testid="error-message"' in refused.text


def test_wrong_token_is_refused_without_echo(served: Serve) -> None:
    browser = Browser(served)
    wrong = "not-the-token-" + served.token[:6] + "-x"
    answer = browser.post("/signin", {"token": wrong, "next": "/versions"})
    assert answer.status == 401
    assert 'data-testid="signin-error"' in answer.text
    assert wrong not in answer.text and served.token not in answer.text
    assert not answer.set_cookies() and not browser.cookies
    assert browser.post("/signin", {"token": "", "next": "/"}).status == 401
    assert browser.post("/signin", {"next": "/"}).status == 401
    crowded = {f"f{n}": "x" for n in range(20)} | {"token": served.token}
    assert browser.post("/signin", crowded).status == 401
    # Anyone may post it, so its body is small: 413 before a megabyte is read.
    huge = browser.post("/signin", {"token": served.token, "pad": "x" * (1 << 20)})
    assert huge.status == 413 and not browser.cookies
    assert browser.get("/").status == 303  # still signed out


def test_right_token_sets_a_strict_httponly_session(served: Serve) -> None:
    browser = Browser(served)
    answer = browser.sign_in("/w/pin?status=waiting")
    assert answer.header("Location") == "/w/pin?status=waiting"
    (cookie,) = answer.set_cookies()
    flags = [part.strip().lower() for part in cookie.split(";")]
    assert flags[0].startswith("wf_session=")
    assert "httponly" in flags and "samesite=strict" in flags and "path=/" in flags
    assert "secure" not in flags  # plain http on loopback: a Secure cookie would never return
    assert f"max-age={LIFETIME}" in flags
    assert served.token not in cookie and served.token not in answer.text

    home = browser.get("/")
    assert home.status == 200, home
    assert 'data-testid="workflows-table"' in home.text and 'data-workflow="pin"' in home.text
    assert 'data-testid="signout"' in home.text and 'href="/versions"' in home.text
    assert served.token not in home.text
    assert home.header("X-Frame-Options") == "DENY"
    assert browser.get("/w/pin").status == 200
    # Behind a TLS proxy (it says https), the cookie is Secure.
    proxied = Browser(served).request(
        "POST",
        "/signin",
        {"token": served.token, "next": "/"},
        {"Origin": served.url, "X-Forwarded-Proto": "https"},
    )
    assert proxied.status == 303
    assert "secure" in [p.strip().lower() for p in proxied.set_cookies()[0].split(";")]


def test_next_must_be_a_local_path(served: Serve) -> None:
    for foreign in (
        "https://evil.example/",
        "//evil.example/x",
        "/\\evil.example",
        "http:/evil.example",
        "javascript:alert(1)",
        "evil.example",
        "/\t/evil.example",
    ):
        browser = Browser(served)
        answer = browser.post("/signin", {"token": served.token, "next": foreign})
        assert answer.status == 303 and answer.header("Location") == "/", foreign
        page = browser.get("/signin?" + urlencode({"next": foreign}))
        assert 'name="next" value="/"' in page.text, foreign


def test_actions_need_the_csrf_token_and_a_same_origin_page(served: Serve) -> None:
    waiting_instance(served, "csrf-1")
    browser = Browser(served)
    browser.sign_in()
    page = browser.get("/w/pin/i/csrf-1")
    assert page.status == 200
    token = CSRF_INPUT.search(page.text)
    assert token, "every form carries the csrf field"
    # Each form on the page carries it (the actions, the event form, sign-out).
    assert page.text.count('name="csrf"') == page.text.count('method="post"')

    refusals = [
        browser.post("/w/pin/i/csrf-1/pause", {}),  # no csrf field
        browser.post("/w/pin/i/csrf-1/pause", {"csrf": "forged"}),
        browser.post("/w/pin/i/csrf-1/pause", {"csrf": token.group(1)}, "http://evil.example"),
        browser.post("/w/pin/i/csrf-1/pause", {"csrf": token.group(1)}, None),  # no Origin
        Browser(served).post("/w/pin/i/csrf-1/pause", {"csrf": token.group(1)}),  # no cookie
    ]
    for answer in refusals:
        assert answer.status == 403, answer
    assert 'data-testid="error-message"' in refusals[0].text
    assert "CSRF" in refusals[0].text
    assert served.status("csrf-1") == "waiting"  # nothing was done

    # Referer stands in for a missing Origin.
    done = browser.request(
        "POST",
        "/w/pin/i/csrf-1/pause",
        {"csrf": token.group(1)},
        {"Referer": f"{served.url}/w/pin/i/csrf-1"},
    )
    assert done.status == 303, done
    assert done.header("Location") == "/w/pin/i/csrf-1?done=pause"
    wait_until(lambda: served.status("csrf-1") == "paused", what="csrf-1 paused")
    resumed = browser.post("/w/pin/i/csrf-1/resume", {"csrf": token.group(1)})
    assert resumed.status == 303
    sent = browser.post("/w/pin/i/csrf-1/events", {"csrf": token.group(1), "type": "go"})
    assert sent.status == 303
    served.finished("csrf-1")


def test_bulk_actions_work_behind_the_sign_in(served: Serve) -> None:
    """The guard reads the form for its CSRF field before the bulk route does: the route must
    still get the form, with room for a thousand ids."""
    waiting_instance(served, "bulk-1")
    waiting_instance(served, "bulk-2")
    browser = Browser(served)
    browser.sign_in()
    token = browser.csrf("/w/pin")
    picked = [("id", "bulk-1"), ("id", "bulk-2")]
    done = browser.post("/w/pin/bulk", [("csrf", token), ("action", "pause"), *picked])
    assert done.status == 303, done
    location = done.header("Location")
    assert location and location.startswith("/w/pin?bulk="), location
    wait_until(lambda: served.status("bulk-1") == "paused", what="bulk-1 paused")
    wait_until(lambda: served.status("bulk-2") == "paused", what="bulk-2 paused")
    result = browser.get(location)
    assert 'data-testid="bulk-result"' in result.text and "paused 2 of 2" in result.text

    many = [("id", f"bulk-{n}") for n in range(1, 1001)]  # the most a bulk action takes
    done = browser.post("/w/pin/bulk", [("csrf", token), ("action", "resume"), *many])
    assert done.status == 303, done
    result = browser.get(str(done.header("Location")))
    assert "resumed 2 of 1000" in result.text, result.text
    for instance_id in ("bulk-1", "bulk-2"):
        served.go(instance_id)
        served.finished(instance_id)


def test_the_session_reads_the_api_and_writes_only_with_csrf(served: Serve) -> None:
    waiting_instance(served, "sse-1")
    browser = Browser(served)
    browser.sign_in()
    token = browser.csrf("/w/pin/i/sse-1")
    assert browser.get("/api/workflows/pin/instances/sse-1").status == 200
    history = browser.get("/api/workflows/pin/instances/sse-1/history")
    assert history.status == 200 and '"sse-1"' in history.text

    # The event stream, with the cookie alone (as EventSource sends it).
    connection = socket.create_connection(("127.0.0.1", served.port), timeout=15)
    try:
        cookie = "; ".join(f"{k}={v}" for k, v in browser.cookies.items())
        connection.sendall(
            b"GET /api/workflows/pin/instances/sse-1/subscribe HTTP/1.1\r\n"
            + f"Host: 127.0.0.1:{served.port}\r\nAccept: text/event-stream\r\n".encode()
            + f"Cookie: {cookie}\r\n\r\n".encode()
        )
        received = b""
        deadline = time.monotonic() + 15
        while b"event: status" not in received and time.monotonic() < deadline:
            chunk = connection.recv(65536)
            if not chunk:
                break
            received += chunk
    finally:
        connection.close()
    head = received.split(b"\r\n", 1)[0]
    assert head == b"HTTP/1.1 200 OK", received[:300]
    assert b"text/event-stream" in received and b"event: status" in received

    # An API write with the cookie: only with the session's CSRF token, from this origin.
    path = "/api/workflows/pin/instances/sse-1/events/go"
    json_body = {"Content-Type": "application/json", "Origin": served.url}
    assert browser.request("POST", path, None, json_body).status == 401
    forged = {**json_body, "X-WF-CSRF": "forged"}
    assert browser.request("POST", path, None, forged).status == 401
    foreign = {**json_body, "X-WF-CSRF": token, "Origin": "http://evil.example"}
    assert browser.request("POST", path, None, foreign).status == 403
    assert served.status("sse-1") == "waiting"
    assert browser.request("POST", path, None, {**json_body, "X-WF-CSRF": token}).status == 200
    assert served.finished("sse-1")["status"] == "complete"


def test_signout_ends_the_session(served: Serve) -> None:
    browser = Browser(served)
    browser.sign_in()
    session = browser.cookies["wf_session"]
    token = browser.csrf()
    assert browser.post("/signout", {}).status == 403  # without csrf, not even a sign-out
    assert browser.get("/").status == 200
    answer = browser.post("/signout", {"csrf": token})
    assert answer.status == 303 and answer.header("Location") == "/signin"
    assert any("wf_session=" in c for c in answer.set_cookies())
    assert "wf_session" not in browser.cookies
    assert browser.get("/").status == 303
    # A copy of the old cookie is refused too, by the pages and by the API.
    copy = Browser(served, {"wf_session": session})
    assert copy.get("/").status == 303
    assert copy.get("/api/workflows").status == 401


def test_versions_page_lists_versions_and_secret_names_only(served: Serve) -> None:
    browser = Browser(served)
    browser.sign_in("/versions")
    versions = served.versions()
    (active,) = [v for v in versions.values() if v["active"]]
    waiting_instance(served, "versions-1")
    page = browser.get("/versions")
    assert page.status == 200
    assert 'data-testid="versions-table"' in page.text
    row = re.search(
        rf'<tr data-testid="version-row" data-version="{active["id"]}">(.*?)</tr>', page.text, re.S
    )
    assert row, page.text
    cells = row.group(1)
    assert f'data-testid="version-id">{active["id"]}<' in cells
    assert "<strong>active</strong>" in cells
    assert 'href="/w/pin"' in cells
    unfinished = re.search(r'data-testid="version-unfinished">(\d+)<', cells)
    assert unfinished and int(unfinished.group(1)) >= 1
    assert 'data-testid="secret-names"' in page.text
    assert 'data-testid="secret-name">STRIPE_KEY<' in page.text
    assert SECRET_VALUE not in page.text
    served.go("versions-1")
    served.finished("versions-1")


def test_token_rotation_signs_everyone_out(tmp_path: Path) -> None:
    with serving(tmp_path) as server:
        browser = Browser(server)
        browser.sign_in()
        assert browser.get("/").status == 200
        server.stop()
        server.start()  # same token: the session outlives a restart
        assert browser.get("/").status == 200
        server.stop()
        server.start("--rotate-token")
        assert browser.get("/").status == 303
        assert browser.get("/api/workflows").status == 401


def test_a_sign_out_outlives_a_restart(tmp_path: Path) -> None:
    with serving(tmp_path) as server:
        leaving, staying = Browser(server), Browser(server)
        leaving.sign_in()
        staying.sign_in()
        copy = Browser(server, dict(leaving.cookies))
        assert leaving.post("/signout", {"csrf": leaving.csrf()}).status == 303
        assert copy.get("/").status == 303
        server.stop()
        server.start()
        assert copy.get("/").status == 303  # still refused, by the pages and by the API
        assert copy.get("/api/workflows").status == 401
        assert staying.get("/").status == 200  # the other session goes on


def test_a_cluster_shares_sessions_sign_outs_and_rotations(tmp_path: Path, pg_url: str) -> None:
    """Nodes on one PostgreSQL database know the token by its hash only: a session signed in on
    one node is good on the other, a sign-out on one ends it on both, a rotation on either ends
    every session."""
    with cluster(tmp_path, pg_url) as (a, b):
        a.start()
        assert a.printed_token is not None
        b.start(token=a.printed_token)
        on_a = Browser(a)
        on_a.sign_in()
        on_b = Browser(b, dict(on_a.cookies))
        assert on_b.get("/").status == 200
        assert on_b.get("/api/workflows").status == 200
        assert on_a.post("/signout", {"csrf": on_a.csrf()}).status == 303
        wait_until(lambda: on_b.get("/").status == 303, timeout=10, what="b to end the session")
        # The database keeps the sign-out: a node started afterwards refuses the session too.
        assert query(pg_url, f"SELECT 1 FROM wf.settings WHERE name = '{SIGNOUTS_SETTING}'")
        b.stop()
        b.start(token=a.printed_token)
        assert on_b.get("/").status == 303

        on_a = Browser(a)
        on_a.sign_in()
        on_b = Browser(b, dict(on_a.cookies))
        assert on_b.get("/").status == 200
        b.stop()
        b.start("--rotate-token")
        assert on_b.get("/").status == 303
        wait_until(lambda: on_a.get("/").status == 303, timeout=10, what="a to end the session")


async def test_sign_outs_kept_drop_the_expired_and_outlive_a_broken_setting(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = StateDir(tmp_path / "state")
    state.prepare()
    runtime = Runtime(state, "os", lambda notice: None)
    await runtime.start()
    try:
        signouts = SignOuts(runtime.store)
        assert await signouts.load() == []
        now = int(time.time())
        live, over = f"{now}.live", f"{now - LIFETIME - 1}.over"
        await runtime.store.put_setting(SIGNOUTS_SETTING, json.dumps([over]))
        await signouts.remember(live)
        assert await signouts.load() == [live]  # the one over is dropped
        for broken in ("{broken", "[" * 100_000, json.dumps([1, 2])):
            await runtime.store.put_setting(SIGNOUTS_SETTING, broken)
            assert await signouts.load() == []
        assert caplog.text.count("not a list of session ids") == 3
        await signouts.remember(live)  # written anew
        assert await signouts.load() == [live]
        monkeypatch.setattr(dashboard, "MOST_SIGNOUTS", 2)
        for n in range(3):
            await signouts.remember(f"{now}.{n}")
        assert await signouts.load() == [f"{now}.1", f"{now}.2"]  # the newest, at most 2

        # A database that does not answer holds a sign-out up a few seconds at most.
        async def never(*args: Any, **kwargs: Any) -> bool:
            await asyncio.Event().wait()
            return False

        monkeypatch.setattr(dashboard, "KEEP_SECONDS", 0.2)
        monkeypatch.setattr(runtime.store, "put_setting", never)
        await asyncio.wait_for(dashboard._keep(signouts, f"{now}.late"), 5)
        assert "the database took too long" in caplog.text
    finally:
        await runtime.stop()


async def test_active_versions_and_the_versions_of_a_runtime(tmp_path: Path) -> None:
    """What the pages show of a real runtime (SQLite, bundles, workers): each workflow's active
    version, and every version with its unfinished instances, newest first."""
    state = StateDir(tmp_path / "state")
    state.prepare()
    runtime = Runtime(state, "os", lambda notice: None)
    await runtime.start()
    try:
        info = RuntimeInfo(runtime)
        app = web.Application()
        app[SERVE_INFO_KEY] = info
        rows: list[dict[str, object]] = [{"name": "greet"}, {"name": "gone"}]
        await add_active_versions(make_mocked_request("GET", "/", app=app), rows)
        # Nothing deployed: no workflow has an active version.
        assert [row["active_version"] for row in rows] == [None, None]

        first = await runtime.deployer.deploy(bundle_of(tmp_path / "v1", "v1"))
        second = await runtime.deployer.deploy(bundle_of(tmp_path / "v2", "v2"))
        assert first.version.id != second.version.id
        assert await info.active_versions() == {"greet": second.version.id}
        rows = [{"name": "greet"}]
        await add_active_versions(make_mocked_request("GET", "/", app=app), rows)
        assert rows == [{"name": "greet", "active_version": second.version.id}]

        shown = await info.versions()
        assert [(v["id"], v["active"], v["workflows"]) for v in shown] == [
            (second.version.id, True, ["greet"]),
            (first.version.id, False, ["greet"]),
        ]
        assert all(v["unfinished"] == 0 and v["created"].endswith("Z") for v in shown)
        assert await info.secrets() == []
    finally:
        await runtime.stop()


def test_sessions_expire_and_refuse_tampering() -> None:
    now = [1_800_000_000.0]
    sessions = Sessions(lambda: b"d" * 32, clock=lambda: now[0])
    cookie = sessions.issue()
    session = sessions.check(cookie)
    assert session is not None and sessions.csrf_ok(session, sessions.csrf(session))
    issued, nonce, mac = cookie.split(".")
    for bad in (
        f"{int(issued) + 1}.{nonce}.{mac}",
        f"{issued}.{nonce}x.{mac}",
        f"{issued}.{nonce}.{mac[:-1]}A" if mac[-1] != "A" else f"{issued}.{nonce}.{mac[:-1]}B",
        f"{issued}.{mac}",
        "",
        "x" * 500,
    ):
        assert sessions.check(bad) is None, bad
    assert not sessions.csrf_ok(session, None) and not sessions.csrf_ok(session, "x")
    other = Sessions(lambda: b"e" * 32, clock=lambda: now[0])  # another token
    assert other.check(cookie) is None
    now[0] += LIFETIME - 1
    assert sessions.check(cookie) == session
    now[0] += 1
    assert sessions.check(cookie) is None
