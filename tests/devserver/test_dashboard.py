"""The dashboard's pages and forms over a real engine on SQLite, through aiohttp's test client:
status codes, the stable data-testid elements, filters kept in the URL, actions that change the
instance and redirect back, the Origin check on forms, and HTML escaping."""

from __future__ import annotations

import re
from collections import Counter
from html.parser import HTMLParser
from urllib.parse import unquote

import pytest
from pytest_aiohttp import AiohttpClient

import wf
from tests.conftest import wait_status
from tests.devserver.conftest import PORT, Client, call
from wf.dashboard.routes import install
from wf.devserver.api import create_app
from wf.devserver.state import ServerState
from wf.engine import Engine
from wf.engine.cron import Cron


class Elements(HTMLParser):
    """The page's elements that carry a data-testid, with their attributes and text."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.found: list[tuple[str, dict[str, str | None], list[str]]] = []
        self._open: list[list[str]] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = dict(attrs)
        if "data-testid" in named:
            text: list[str] = []
            self.found.append((str(named["data-testid"]), named, text))
            self._open.append(text)
        elif self._open:
            self._open.append(self._open[-1])

    def handle_endtag(self, tag: str) -> None:
        if self._open and tag not in ("input", "meta", "link", "br"):
            self._open.pop()

    def handle_data(self, data: str) -> None:
        if self._open:
            self._open[-1].append(data)

    def count(self) -> Counter[str]:
        return Counter(testid for testid, _, _ in self.found)

    def all(self, testid: str) -> list[dict[str, str | None]]:
        return [attrs for found, attrs, _ in self.found if found == testid]

    def text(self, testid: str) -> str:
        texts = ["".join(t).strip() for found, _, t in self.found if found == testid]
        assert len(texts) == 1, (testid, texts)
        return texts[0]


@pytest.fixture
async def ui(aiohttp_client: AiohttpClient, state: ServerState) -> Client:
    """The app as ``wf dev`` serves it: the API with the dashboard installed."""
    app = create_app(state)
    install(app)
    return await aiohttp_client(app)


async def page(ui: Client, path: str, expect: int = 200) -> Elements:
    resp = await ui.get(path)
    text = await resp.text()
    assert resp.status == expect, text
    assert resp.content_type == "text/html"
    return Elements(text)


async def test_the_workflows_view_counts_instances_per_status(ui: Client, engine: Engine) -> None:
    await engine.create("quick", "q1", {"n": 2})
    await wait_status(engine, "quick", "q1", "complete")
    await engine.create("napper", "n1")
    await wait_status(engine, "napper", "n1", "waiting")
    elements = await page(ui, "/")
    rows = elements.all("workflow-row")
    assert [r["data-workflow"] for r in rows] == ["quick", "napper", "approval"]
    links = elements.all("workflow-link")
    assert [link["href"] for link in links] == ["/w/quick", "/w/napper", "/w/approval"]
    assert [t for t, _, _ in elements.found if t == "workflow-total"]
    totals = ["".join(text).strip() for t, _, text in elements.found if t == "workflow-total"]
    assert totals == ["1", "1", "0"]
    complete = [a["href"] for a in elements.all("count-complete") if a.get("href")]
    assert complete == ["/w/quick?status=complete"]


async def test_the_instances_view_keeps_status_search_and_page_in_the_url(
    ui: Client, engine: Engine
) -> None:
    for i in range(27):
        await engine.create("napper", f"nap-{i:02}")
    for i in range(27):
        await wait_status(engine, "napper", f"nap-{i:02}", "waiting")
    await engine.pause("napper", "nap-00")
    await wait_status(engine, "napper", "nap-00", "paused")

    first = await page(ui, "/w/napper?status=waiting")
    assert len(first.all("instance-row")) == 25
    assert first.text("page-info") == "page 1 of 2 · 26 instances"
    assert first.all("page-next")[0]["href"] == "/w/napper?status=waiting&page=2"
    assert first.all("filter-waiting")[0].get("aria-current") == "page"
    second = await page(ui, "/w/napper?status=waiting&page=2")
    assert len(second.all("instance-row")) == 1
    assert second.all("page-prev")[0]["href"] == "/w/napper?status=waiting"

    paused = await page(ui, "/w/napper?status=paused")
    assert [r["data-instance"] for r in paused.all("instance-row")] == ["nap-00"]

    found = await page(ui, "/w/napper?q=nap-07")
    assert [r["data-instance"] for r in found.all("instance-row")] == ["nap-07"]
    assert found.all("instance-link")[0]["href"] == "/w/napper/i/nap-07"
    assert found.all("search-input")[0]["value"] == "nap-07"
    # The search keeps the status filter: nap-07 is waiting, not paused.
    assert (await page(ui, "/w/napper?status=paused&q=nap-07")).count()["no-instances"] == 1
    assert (await page(ui, "/w/napper?q=nobody")).count()["no-instances"] == 1


async def test_bad_filters_and_unknown_names_are_html_errors(ui: Client) -> None:
    bad = await page(ui, "/w/napper?status=sleepy", expect=400)
    assert 'unknown status "sleepy"' in bad.text("error-message")
    assert (await page(ui, "/w/nope", expect=404)).count()["error-message"] == 1
    assert (await page(ui, "/w/napper/i/ghost", expect=404)).count()["error-message"] == 1


async def test_the_instance_view_shows_steps_attempts_sleeps_and_waits(
    ui: Client, engine: Engine
) -> None:
    await engine.create("quick", "q1", {"n": 21}, "cli")
    await wait_status(engine, "quick", "q1", "complete")
    done = await page(ui, "/w/quick/i/q1")
    assert done.text("instance-id") == "q1"
    assert done.text("fact-status") == "complete"
    assert done.text("fact-trigger") == "api (via cli)"
    assert '"double": 42' in done.text("instance-output")
    assert '"n": 21' in done.text("instance-params")
    assert done.text("step-name") == "double-1"
    assert done.text("step-state") == "succeeded"
    assert done.count()["attempt"] == 1
    assert done.text("attempt-duration").endswith(" s")
    assert {"action-pause", "action-resume", "action-terminate", "action-restart"} <= set(
        done.count()
    )

    await engine.create("napper", "n1")
    await wait_status(engine, "napper", "n1", "waiting")
    napping = await page(ui, "/w/napper/i/n1")
    assert napping.all("step")[0]["data-step-type"] == "sleep"
    assert napping.text("step-wake-at").endswith("Z")

    await engine.create("approval", "a1")
    await wait_status(engine, "approval", "a1", "waiting")
    waiting = await page(ui, "/w/approval/i/a1")
    assert waiting.text("step-event-type") == "approve"
    assert waiting.text("step-timeout-at").endswith("Z")
    assert waiting.all("event-type")[0]["value"] == "approve"  # the form offers the awaited type


async def test_an_action_changes_the_instance_and_redirects_back(
    ui: Client, engine: Engine
) -> None:
    await engine.create("napper", "n1")
    await wait_status(engine, "napper", "n1", "waiting")
    origin = f"http://127.0.0.1:{PORT}"
    resp = await ui.post("/w/napper/i/n1/pause", headers={"Origin": origin}, allow_redirects=False)
    assert resp.status == 303
    assert resp.headers["Location"] == "/w/napper/i/n1?done=pause"
    await wait_status(engine, "napper", "n1", "paused")
    after = await page(ui, resp.headers["Location"])
    assert after.text("fact-status") == "paused"
    assert after.text("action-done") == "pause requested"

    resp = await ui.post("/w/napper/i/n1/terminate", allow_redirects=False)
    assert resp.status == 303
    await wait_status(engine, "napper", "n1", "terminated")


async def test_a_cron_firings_instance_is_reachable_from_every_link(
    ui: Client, engine: Engine
) -> None:
    """A firing's id holds its cron ("*/5 * * * *-<ms>"): each "/" in it must be escaped in the
    links, the forms and the redirect after an action, or they name another path."""
    cron = Cron.parse("*/5 * * * *")
    await engine.create_scheduled("napper", cron, 1_700_000_100.0)
    firing = cron.instance_id(1_700_000_100.0)
    await wait_status(engine, "napper", firing, "waiting")
    listed = await page(ui, "/w/napper")
    (link,) = [a["href"] for a in listed.all("instance-link")]
    assert link is not None and "/" not in link.removeprefix("/w/napper/i/"), link
    shown = await page(ui, link)
    assert shown.text("instance-id") == firing
    resp = await ui.get(link)
    forms = re.findall(r'<form method="post" action="([^"]+)"', await resp.text())
    assert f"{link}/pause" in forms and f"{link}/restart-from" in forms, forms
    origin = {"Origin": f"http://127.0.0.1:{PORT}"}
    resp = await ui.post(f"{link}/pause", headers=origin, allow_redirects=False)
    assert resp.status == 303
    where, _, query = resp.headers["Location"].partition("?")
    escaped = where.removeprefix("/w/napper/i/")
    assert "/" not in escaped and unquote(escaped) == firing and query == "done=pause", where
    await wait_status(engine, "napper", firing, "paused")
    assert (await page(ui, resp.headers["Location"])).text("fact-status") == "paused"


async def test_a_refused_action_says_why_on_the_page(ui: Client, engine: Engine) -> None:
    await engine.create("quick", "q1")
    await wait_status(engine, "quick", "q1", "complete")
    resp = await ui.post("/w/quick/i/q1/pause", allow_redirects=False)
    text = await resp.text()
    assert 400 <= resp.status < 500, text
    assert Elements(text).text("action-error").startswith("pause refused: ")


async def test_the_event_form_sends_a_json_payload(ui: Client, engine: Engine) -> None:
    await engine.create("approval", "a1")
    await wait_status(engine, "approval", "a1", "waiting")
    bad = await ui.post("/w/approval/i/a1/events", data={"type": "approve", "payload": "{oops"})
    assert bad.status == 400
    assert "payload is not valid JSON" in Elements(await bad.text()).text("action-error")
    deep = await ui.post(
        "/w/approval/i/a1/events", data={"type": "approve", "payload": "[" * 100_000}
    )
    assert deep.status == 400  # Python's JSON parser gives up: a page that says so, not a 500
    assert "nested too deeply" in Elements(await deep.text()).text("action-error")
    resp = await ui.post(
        "/w/approval/i/a1/events",
        data={"type": "approve", "payload": '{"by": "ana"}'},
        allow_redirects=False,
    )
    assert resp.status == 303
    assert resp.headers["Location"] == "/w/approval/i/a1?done=event"
    status = await wait_status(engine, "approval", "a1", "complete")
    assert status["output"] == {"approved_with": {"by": "ana"}}


async def test_a_form_post_from_another_site_is_refused(ui: Client, engine: Engine) -> None:
    await engine.create("napper", "n1")
    await wait_status(engine, "napper", "n1", "waiting")
    for path in ("/w/napper/i/n1/terminate", "/w/napper/i/n1/events"):
        resp = await ui.post(path, headers={"Origin": "https://evil.example"}, data={"type": "x"})
        assert resp.status == 403, path
        assert "cross-origin POST" in (await resp.json())["errors"][0]["message"]
    assert (await engine.status("napper", "n1"))["status"] == "waiting"
    resp = await ui.get("/", headers={"Host": "evil.example"})  # DNS rebinding
    assert resp.status == 403


async def test_values_from_a_workflow_are_escaped(ui: Client, engine: Engine) -> None:
    await engine.create("napper", "n1", {"x": "<script>alert(1)</script>"})
    await wait_status(engine, "napper", "n1", "waiting")
    resp = await ui.get("/w/napper/i/n1")
    html = await resp.text()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<script>alert" not in html
    assert '"x": "<script>alert(1)</script>"' in Elements(html).text("instance-params")


async def test_wf_dev_pages_refuse_to_be_framed(ui: Client, engine: Engine) -> None:
    """Another site could frame a page and trick a click on Terminate: the form's POST would
    come from the framed page itself, so the Origin check passes. No page may be framed."""
    await engine.create("napper", "n1")
    await wait_status(engine, "napper", "n1", "waiting")
    for path, status in (("/", 200), ("/w/napper", 200), ("/w/napper/i/n1", 200), ("/w/x", 404)):
        resp = await ui.get(path)
        assert resp.status == status, path
        assert resp.headers.get("X-Frame-Options") == "DENY", path
        assert "frame-ancestors 'none'" in resp.headers.get("Content-Security-Policy", ""), path


async def test_static_files_are_versioned_and_cached_long(ui: Client) -> None:
    html = await (await ui.get("/")).text()
    base = f"/ui/static/{wf.__version__}"
    for path, kind in (
        ("dashboard.css", "text/css"),
        ("vendor/htmx-2.0.4.min.js", "text/javascript"),
    ):
        assert f'"{base}/{path}"' in html
        resp = await ui.get(f"{base}/{path}")
        assert resp.status == 200
        assert resp.content_type == kind
        assert "immutable" in resp.headers["Cache-Control"]
        assert len(await resp.read()) > 1000
    css = await (await ui.get(f"{base}/dashboard.css")).text()
    assert "color-scheme: light dark" in css and "prefers-color-scheme: dark" in css
    assert (await ui.get("/ui/static/0.0.0/dashboard.css")).status == 404


async def test_the_api_is_unchanged_beside_the_dashboard(ui: Client) -> None:
    body = await call(ui, "GET", "/api/workflows")
    assert [w["name"] for w in body["result"]] == ["quick", "napper", "approval"]
    openapi = await ui.get("/api/openapi.json")
    assert openapi.status == 200
    await call(ui, "GET", "/api/nothing-here", 404)


async def test_a_project_that_does_not_load_is_said_on_the_page(
    aiohttp_client: AiohttpClient,
) -> None:
    broken = ServerState(project_name="demo", load_error="workflows.py:3: SyntaxError: oops")
    app = create_app(broken)
    install(app)
    ui = await aiohttp_client(app)
    elements = await page(ui, "/", expect=503)
    assert elements.text("error-message") == "workflows.py:3: SyntaxError: oops"
    resp = await ui.post("/w/quick/i/q1/pause")
    assert resp.status == 503
    assert "SyntaxError" in await resp.text()
