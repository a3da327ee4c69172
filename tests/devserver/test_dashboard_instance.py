"""The one-instance page through aiohttp's test client, over a real engine: the live region and
its event stream, the step timeline (attempts, retry waits, sleeps, waits, rollbacks), events
received and still buffered (on SQLite and PostgreSQL), the history download, restart from a step
with edited params, large values collapsed and fetched on demand, and escaping."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pytest_aiohttp import AiohttpClient

import wf
from tests.conftest import Harness, wait_for, wait_status
from tests.devserver.conftest import PORT, Client
from tests.devserver.test_dashboard import Elements, page
from wf import WorkflowEntrypoint
from wf.dashboard.routes import install
from wf.devserver.api import create_app
from wf.devserver.state import ServerState
from wf.engine import Engine, WorkflowSpec
from wf.project import WorkflowConfig
from wf.testing import History

NO_RETRY = {"retries": {"limit": 0, "delay": 0.01, "backoff": "constant"}}
BIG = 70 * 1024  # over the page's 64 KiB
failures: dict[str, int] = {}  # instance id -> attempts of "fetch" still to fail


class Pair(WorkflowEntrypoint):
    async def run(self, event, step):
        n = (event.payload or {}).get("n", 1)
        one = await step.do("one", lambda: n)
        two = await step.do("two", lambda: n * 10)
        return {"one": one, "two": two}


class Flaky(WorkflowEntrypoint):
    async def run(self, event, step):
        def fetch() -> str:
            if failures.get(event.instance_id, 0) > 0:
                failures[event.instance_id] -= 1
                raise RuntimeError("the network is down")
            return "fetched"

        retries = {"retries": {"limit": 3, "delay": 0.3, "backoff": "constant"}}
        await step.do("fetch", retries, fetch)
        await step.sleep("nap", "1 hour")


class Saga(WorkflowEntrypoint):
    async def run(self, event, step):
        await step.do("reserve", lambda: {"room": 7}, rollback=lambda context: None)

        def decline() -> None:
            raise RuntimeError("card declined")

        await step.do("charge", NO_RETRY, decline)


class Inbox(WorkflowEntrypoint):
    async def run(self, event, step):
        first = await step.wait_for_event("first", type="hello", timeout="1 hour")
        await step.wait_for_event("second", type="never", timeout="1 hour")
        return first.payload


class Big(WorkflowEntrypoint):
    async def run(self, event, step):
        return await step.do("blob", NO_RETRY, lambda: "x" * BIG)


class Evil(WorkflowEntrypoint):
    async def run(self, event, step):
        await step.do("<img src=x onerror=alert(1)>", lambda: "</pre><script>alert(2)</script>")
        await step.sleep("nap", "1 hour")


NAMES = {"pair": Pair, "flaky": Flaky, "saga": Saga, "inbox": Inbox, "big": Big, "evil": Evil}


@pytest.fixture(params=["sqlite", "postgres"])
async def harness(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Harness]:
    url = request.getfixturevalue("pg_url") if request.param == "postgres" else None
    h = Harness(tmp_path / "wf.db", url)
    try:
        yield h
    finally:
        await h.close()


async def _serve(aiohttp_client: AiohttpClient, engine: Engine) -> Client:
    state = ServerState(
        project_name="demo",
        workflows=tuple(WorkflowConfig(n, n.upper(), c.__name__) for n, c in NAMES.items()),
        engine=engine,
        version_id="v-test",
        bound_host="127.0.0.1",
        port=PORT,
    )
    app = create_app(state)
    install(app)
    return await aiohttp_client(app)


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[Engine]:
    h = Harness(tmp_path / "wf.db")
    try:
        yield await h.start([WorkflowSpec(n, c, n.upper()) for n, c in NAMES.items()])
    finally:
        await h.close()


@pytest.fixture
async def ui(aiohttp_client: AiohttpClient, engine: Engine) -> Client:
    return await _serve(aiohttp_client, engine)


async def napping(engine: Engine, instance_id: str) -> None:
    """Wait until the flaky instance's fetch succeeded and its nap began (a retry's wait is
    "waiting" too)."""

    async def check() -> bool:
        return len((await engine.details("flaky", instance_id))["steps"]) == 2

    await wait_for(check)


def rows(elements: Elements) -> list[dict[str, str | None]]:
    return elements.all("timeline-row")


def texts(elements: Elements, testid: str) -> list[str]:
    return ["".join(t).strip() for found, _, t in elements.found if found == testid]


# ---- the live region and its stream ------------------------------------------------------------


async def test_the_live_region_holds_status_facts_timeline_and_steps(
    ui: Client, engine: Engine
) -> None:
    await engine.create("pair", "p1", {"n": 2})
    await wait_status(engine, "pair", "p1", "complete")
    html = await (await ui.get("/w/pair/i/p1")).text()
    live = html[html.index('id="instance-live"') : html.rindex("</ol>")]
    for testid in ("status-badge", "fact-status", "instance-output", "timeline", "steps"):
        assert f'data-testid="{testid}"' in live, testid
    forms = html[html.index('id="instance-forms"') : html.index('id="instance-live"')]
    for testid in ("action-pause", "event-form", "restart-from-form", "download-history"):
        assert f'data-testid="{testid}"' in forms, testid  # never re-rendered under the user
    elements = Elements(html)
    assert elements.text("fact-status") == "complete"
    for testid, form_id in (("event-form", "event-form"), ("restart-from-form", "restart-from")):
        form = elements.all(testid)[0]
        assert form["id"] == form_id and "data-live-form" in form  # refreshed when untouched
    # A final instance opens no stream; the script that would is on the page.
    assert elements.all("live")[0].get("data-subscribe") is None
    assert f"/ui/static/{wf.__version__}/live.js" in html


async def test_a_running_instance_subscribes_after_what_the_page_shows(
    ui: Client, engine: Engine
) -> None:
    await engine.create("flaky", "f1")
    await napping(engine, "f1")
    live = (await page(ui, "/w/flaky/i/f1")).all("live")[0]
    assert live["data-status"] == "waiting"
    url = str(live["data-subscribe"])
    assert url.startswith("/api/workflows/flaky/instances/f1/subscribe?cursor=")
    resp = await ui.get(url)
    try:
        assert resp.status == 200
        assert resp.content_type == "text/event-stream"
        seen = b""
        while b"event: status" not in seen:
            seen += await resp.content.readany()
        # The steps the page already shows are not sent again: only the status.
        assert b"event: step" not in seen
        assert b'"status":"waiting"' in seen
        await engine.terminate("flaky", "f1")
        while b"event: end" not in seen:
            chunk = await resp.content.readany()
            assert chunk, "the stream closed without its end event"
            seen += chunk
    finally:
        resp.close()
    after = await page(ui, "/w/flaky/i/f1")
    assert after.text("fact-status") == "terminated"  # what the re-fetch of the region shows
    assert after.all("live")[0].get("data-subscribe") is None


async def test_the_page_script_and_styles_are_served(ui: Client) -> None:
    base = f"/ui/static/{wf.__version__}"
    script = await ui.get(f"{base}/live.js")
    assert script.status == 200 and script.content_type == "text/javascript"
    text = await script.text()
    assert "new EventSource(" in text and "#instance-live" in text and ".ajax(" in text
    css = await ui.get(f"{base}/instance.css")
    assert css.status == 200 and css.content_type == "text/css"


# ---- the timeline -----------------------------------------------------------------------------


async def test_the_timeline_shows_attempts_retry_waits_and_an_open_sleep(
    ui: Client, engine: Engine
) -> None:
    failures["f1"] = 1
    await engine.create("flaky", "f1")
    await napping(engine, "f1")
    elements = await page(ui, "/w/flaky/i/f1")
    fetch, nap = rows(elements)
    assert (fetch["data-step"], fetch["data-type"]) == ("fetch-1", "step")
    assert fetch["data-kinds"] == "failed retry ok"
    assert fetch.get("data-open") is None
    assert (nap["data-step"], nap["data-type"], nap["data-kinds"]) == ("nap-1", "sleep", "sleeping")
    assert nap["data-open"] == "true"  # open-ended: runs to now
    status = texts(elements, "timeline-status")
    assert status[0].startswith("✓ ") and status[0].endswith(", 2 attempts")
    assert status[1].startswith("… until ") and status[1].endswith("Z")
    legend = texts(elements, "timeline-legend")[0]
    for mark in ("█ success", "▓ failed attempt", "─ retry wait", "┈ sleep"):
        assert mark in " ".join(legend.split()), mark
    assert elements.text("timeline-caption").endswith("→ now")
    assert elements.count()["step-output"] == 1  # the fetch's; a sleep has no output


async def test_the_timeline_of_a_finished_instance_and_a_terminated_one(
    ui: Client, engine: Engine
) -> None:
    await engine.create("pair", "p1")
    await wait_status(engine, "pair", "p1", "complete")
    done = await page(ui, "/w/pair/i/p1")
    assert [(r["data-step"], r["data-kinds"]) for r in rows(done)] == [
        ("one-1", "ok"),
        ("two-1", "ok"),
    ]
    assert "→ now" not in done.text("timeline-caption")

    await engine.create("inbox", "i1")
    await wait_status(engine, "inbox", "i1", "waiting")
    waiting = await page(ui, "/w/inbox/i/i1")
    assert [r["data-kinds"] for r in rows(waiting)] == ["waiting"]
    assert texts(waiting, "timeline-status") == ['… for "hello"']
    await engine.terminate("inbox", "i1")
    await wait_status(engine, "inbox", "i1", "terminated")
    ended = await page(ui, "/w/inbox/i/i1")
    assert [r["data-kinds"] for r in rows(ended)] == ["waiting", "terminated"]
    assert texts(ended, "timeline-status") == ["… unfinished", "by api"]


async def test_rollback_steps_show_as_rollbacks_and_cannot_be_restarted_from(
    ui: Client, engine: Engine
) -> None:
    await engine.create("saga", "s1")
    await wait_status(engine, "saga", "s1", "errored")
    elements = await page(ui, "/w/saga/i/s1")
    types = [s["data-step-type"] for s in elements.all("step")]
    assert types == ["step", "step", "rollback"]
    assert elements.text("step-rollback") == "↩ rollback"
    assert [(r["data-step"], r["data-type"]) for r in rows(elements)][-1] == (
        "reserve-1 ↩",
        "rollback",
    )
    assert elements.text("fact-rollback") == "complete"
    choices = [o for o in texts(elements, "restart-from-step")[0].split("\n") if o.strip()]
    assert [c.strip() for c in choices] == ["the start", "reserve-1 (do)", "charge-1 (do)"]


# ---- events -----------------------------------------------------------------------------------


async def test_events_received_by_a_wait_and_still_buffered(
    aiohttp_client: AiohttpClient, harness: Harness
) -> None:
    engine = await harness.start([WorkflowSpec("inbox", Inbox, "INBOX")])
    ui = await _serve(aiohttp_client, engine)
    await engine.create("inbox", "i1")
    await wait_status(engine, "inbox", "i1", "waiting")
    empty = await page(ui, "/w/inbox/i/i1")
    assert empty.count()["event"] == 0
    await engine.send_event("inbox", "i1", "hello", {"n": 1})
    await engine.send_event("inbox", "i1", "later", {"n": 2})

    async def taken() -> bool:
        details = await engine.details("inbox", "i1")
        return len(details["steps"]) == 2

    await wait_for(taken)
    html = await (await ui.get("/w/inbox/i/i1")).text()
    received = html[html.index('data-testid="events-received"') :]
    received, buffered = received.split('data-testid="events-buffered"')
    got = Elements(received)
    assert [(e["data-event-type"], e["data-consumed-by"]) for e in got.all("event")] == [
        ("hello", "first-1")
    ]
    assert '"n": 1' in got.text("event-payload")
    waiting = Elements(buffered)
    assert [e["data-event-type"] for e in waiting.all("event")] == ["later"]
    assert '"n": 2' in waiting.text("event-payload")
    # A large payload is collapsed like any value, and fetched by its index.
    await engine.send_event("inbox", "i1", "huge", "z" * BIG)
    big = await page(ui, "/w/inbox/i/i1")
    assert [c["data-for"] for c in big.all("output-collapsed")] == ["event-payload"]
    resp = await ui.get("/w/inbox/i/i1/value?event=2")
    assert resp.status == 200
    assert Elements(await resp.text()).text("event-payload") == json.dumps("z" * BIG)


# ---- download history -------------------------------------------------------------------------


async def test_download_history_is_the_file_the_test_kit_replays(
    ui: Client, engine: Engine
) -> None:
    await engine.create("pair", "p1", {"n": 3})
    await wait_status(engine, "pair", "p1", "complete")
    link = (await page(ui, "/w/pair/i/p1")).all("download-history")[0]
    assert link["href"] == "/w/pair/i/p1/history"
    assert "download" in link
    resp = await ui.get(str(link["href"]))
    assert resp.status == 200
    assert resp.content_type == "application/json"
    assert resp.headers["Content-Disposition"] == 'attachment; filename="pair-p1.history.json"'
    body = await resp.read()
    history = History.from_json(body)
    assert (history.workflow, history.id, history.params) == ("pair", "p1", {"n": 3})
    assert [s.name for s in history.steps] == ["one", "two"]
    assert json.loads(body) == await engine.history("pair", "p1")
    missing = await ui.get("/w/pair/i/ghost/history")
    assert missing.status == 404 and missing.content_type == "text/html"


# ---- restart from a step ----------------------------------------------------------------------


async def test_restart_from_a_step_with_edited_params(ui: Client, engine: Engine) -> None:
    await engine.create("pair", "p1", {"n": 1})
    await wait_status(engine, "pair", "p1", "complete")
    elements = await page(ui, "/w/pair/i/p1")
    assert json.loads(elements.text("restart-from-params")) == {"n": 1}
    options = await ui.get("/w/pair/i/p1")
    assert '<option value="do:2:two"' not in await options.text()  # counts are per name
    assert '<option value="do:1:two">two-1 (do)</option>' in await options.text()
    resp = await ui.post(
        "/w/pair/i/p1/restart-from",
        data={"from": "do:1:two", "params": '{"n": 5}'},
        headers={"Origin": f"http://127.0.0.1:{PORT}"},
        allow_redirects=False,
    )
    assert resp.status == 303, await resp.text()
    assert resp.headers["Location"] == "/w/pair/i/p1?done=restart-from"

    async def rerun() -> dict[str, Any] | None:
        status = await engine.status("pair", "p1")
        return status if status["status"] == "complete" and status["output"]["two"] == 50 else None

    status = await wait_for(rerun)
    assert status["output"] == {"one": 1, "two": 50}  # "one" kept its cached result
    after = await page(ui, resp.headers["Location"])
    assert after.text("action-done") == "restart requested"
    restarted = " ".join(after.text("fact-restarted").split())
    assert "from step “two” (do, count 1)" in restarted and "with new params" in restarted


async def test_restart_from_the_start_with_unchanged_params_records_no_new_params(
    ui: Client, engine: Engine
) -> None:
    await engine.create("pair", "p1", {"n": 2})
    await wait_status(engine, "pair", "p1", "complete")
    resp = await ui.post(
        "/w/pair/i/p1/restart-from",
        data={"from": "", "params": '{\n  "n": 2\n}'},
        allow_redirects=False,
    )
    assert resp.status == 303
    await wait_for(lambda: engine.details("pair", "p1"))
    details = await wait_for(_restarted(engine, "pair", "p1"))
    assert details["restarted"]["from"] is None
    assert details["restarted"]["new_params"] is False


def _restarted(engine: Engine, workflow: str, instance_id: str) -> Any:
    async def check() -> dict[str, Any] | None:
        details = await engine.details(workflow, instance_id)
        return details if "restarted" in details and details["status"] == "complete" else None

    return check


async def test_restart_from_with_bad_json_or_an_unknown_step_restarts_nothing(
    ui: Client, engine: Engine
) -> None:
    await engine.create("pair", "p1", {"n": 1})
    await wait_status(engine, "pair", "p1", "complete")
    bad = await ui.post("/w/pair/i/p1/restart-from", data={"from": "do:1:two", "params": '{"n": 5'})
    assert bad.status == 400
    elements = Elements(await bad.text())
    error = elements.text("action-error")
    assert error.startswith("params are not valid JSON: ") and "nothing was restarted" in error
    assert elements.text("restart-from-params") == '{"n": 5'  # kept, to be fixed
    chosen = [o for o in (await bad.text()).split("<option") if "selected" in o]
    assert len(chosen) == 1 and 'value="do:1:two"' in chosen[0]
    deep = await ui.post("/w/pair/i/p1/restart-from", data={"from": "", "params": "[" * 100_000})
    assert deep.status == 400  # Python's JSON parser gives up: a page that says so, not a 500
    assert "nested too deeply" in Elements(await deep.text()).text("action-error")

    for choice, code, words in (
        ("do:1:nope", 409, 'Step "nope" not found'),  # as the REST API answers it
        ("rollback:1:one", 400, "unknown step to restart from"),
        ("do:x:one", 400, "unknown step to restart from"),
    ):
        refused = await ui.post(
            "/w/pair/i/p1/restart-from", data={"from": choice, "params": '{"n": 5}'}
        )
        assert refused.status == code, choice
        message = Elements(await refused.text()).text("action-error")
        assert message.startswith("restart refused: ") and words in message, message
    details = await engine.details("pair", "p1")
    assert "restarted" not in details and details["params"] == {"n": 1}

    foreign = await ui.post(
        "/w/pair/i/p1/restart-from",
        data={"from": "", "params": "{}"},
        headers={"Origin": "https://evil.example"},
    )
    assert foreign.status == 403
    assert "restarted" not in await engine.details("pair", "p1")


# ---- large values -----------------------------------------------------------------------------


async def test_values_over_64_kib_are_collapsed_and_fetched_on_demand(
    ui: Client, engine: Engine
) -> None:
    await engine.create("big", "b1", {"blob": "y" * BIG})
    await wait_status(engine, "big", "b1", "complete")
    elements = await page(ui, "/w/big/i/b1")
    collapsed = elements.all("output-collapsed")
    assert [c["data-for"] for c in collapsed] == [
        "instance-params",
        "instance-output",
        "step-output",
    ]
    size = len(json.dumps("x" * BIG))
    assert collapsed[1]["data-size"] == str(size)
    assert texts(elements, "output-size")[1] == f"{size / 1024:.1f} KiB"
    assert "x" * 1000 not in await (await ui.get("/w/big/i/b1")).text()
    assert elements.count()["instance-output"] == 0
    loads = [str(b["hx-get"]) for b in elements.all("output-load")]
    assert loads == [
        "/w/big/i/b1/value?of=params",
        "/w/big/i/b1/value?of=output",
        "/w/big/i/b1/value?step=0&of=output",
    ]
    for url, testid, value in (
        (loads[0], "instance-params", {"blob": "y" * BIG}),
        (loads[1], "instance-output", "x" * BIG),
        (loads[2], "step-output", "x" * BIG),
    ):
        resp = await ui.get(url)
        assert resp.status == 200 and resp.content_type == "text/html"
        assert json.loads(Elements(await resp.text()).text(testid)) == value

    # Just under the limit is shown in full.
    await engine.create("pair", "p1", {"blob": "y" * (60 * 1024)})
    await wait_status(engine, "pair", "p1", "complete")
    assert (await page(ui, "/w/pair/i/p1")).count()["output-collapsed"] == 0


async def test_the_value_route_refuses_what_names_no_value(ui: Client, engine: Engine) -> None:
    failures["f1"] = 1
    await engine.create("flaky", "f1")
    await napping(engine, "f1")
    error = await ui.get("/w/flaky/i/f1/value?step=0&attempt=1")
    assert "the network is down" in Elements(await error.text()).text("attempt-error")
    for query in ("of=nope", "step=7&of=output", "step=x", "step=0&attempt=0", "event=0", ""):
        resp = await ui.get(f"/w/flaky/i/f1/value?{query}")
        assert resp.status == 404, query
        assert Elements(await resp.text()).count()["error-message"] == 1
    assert (await ui.get("/w/flaky/i/ghost/value?of=output")).status == 404


# ---- escaping ---------------------------------------------------------------------------------


async def test_step_names_and_values_are_escaped_everywhere(ui: Client, engine: Engine) -> None:
    await engine.create("evil", "e1", {"x": '"><script>alert(3)</script>'})
    await wait_status(engine, "evil", "e1", "waiting")
    html = await (await ui.get("/w/evil/i/e1")).text()
    assert "<img" not in html and "<script>alert" not in html and "</pre><script>" not in html
    elements = Elements(html)
    assert rows(elements)[0]["data-step"] == "<img src=x onerror=alert(1)>-1"
    assert elements.all("step-name")  # the name is text, not markup
    assert texts(elements, "step-name")[0] == "<img src=x onerror=alert(1)>-1"
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    assert '"x": "\\"><script>alert(3)</script>"' in elements.text("restart-from-params")
    value = await (await ui.get("/w/evil/i/e1/value?step=0&of=output")).text()
    assert "</pre><script>" not in value and "&lt;/pre&gt;&lt;script&gt;" in value
