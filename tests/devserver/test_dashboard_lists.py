"""The dashboard's lists over a real engine, through aiohttp's test client: the workflows page
(schedules, latest failures, trigger links), the instances page's filters (status, id prefix,
created range) kept in every link, bulk actions, the trigger form, the live region, and a
workflow of 100,000 instances on SQLite and PostgreSQL."""

from __future__ import annotations

import io
import time
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from pytest_aiohttp import AiohttpClient

import wf
from tests.conftest import wait_status
from tests.devserver.conftest import CONFIGS, PORT, SPECS, Client
from tests.devserver.test_dashboard import Elements
from wf import NonRetryableError, WorkflowEntrypoint
from wf.dashboard.render import page as render_page
from wf.dashboard.routes import install
from wf.devserver.api import create_app
from wf.devserver.state import ServerState
from wf.engine import Engine, EngineSettings, ManualClock, WorkflowSpec
from wf.engine.cron import Cron
from wf.engine.details import iso
from wf.engine.model import Status
from wf.engine.store.base import Store
from wf.engine.store.listing import InstanceFilter, order_clause, prefix_end, where_clause
from wf.engine.store.sqlite import SqliteStore
from wf.errors import InstanceNotFound
from wf.project import WorkflowConfig

ORIGIN = {"Origin": f"http://127.0.0.1:{PORT}"}
START = 1_699_999_980.0  # 2023-11-14T22:13:00Z, on a minute
SCHEDULES = ("0 9 * * 1", "*/15 * * * *")


class Flaky(WorkflowEntrypoint):
    async def run(self, event, step):
        async def charge() -> Any:
            raise NonRetryableError(f"card {event.payload.get('card', '?')} declined")

        return await step.do("charge", charge)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
async def engine(tmp_path: Path, clock: ManualClock) -> AsyncIterator[Engine]:
    engine = Engine(
        SqliteStore(tmp_path / "wf.db", durability="os"),
        [*SPECS, WorkflowSpec("flaky", Flaky, "FLAKY")],
        clock=clock,
        settings=EngineSettings(poll_interval=0.2),
    )
    await engine.start()
    try:
        yield engine
    finally:
        await engine.stop()


def _state(engine: Engine) -> ServerState:
    others = CONFIGS[1:]  # quick gets schedules here
    return ServerState(
        project_name="demo",
        workflows=(
            WorkflowConfig("quick", "QUICK", "Quick", schedules=SCHEDULES),
            *others,
            WorkflowConfig("flaky", "FLAKY", "Flaky"),
        ),
        engine=engine,
        version_id="v-test",
        bound_host="127.0.0.1",
        port=PORT,
    )


@pytest.fixture
async def ui(aiohttp_client: AiohttpClient, engine: Engine) -> Client:
    app = create_app(_state(engine))
    install(app)
    return await aiohttp_client(app)


async def page(ui: Client, path: str, expect: int = 200) -> Elements:
    resp = await ui.get(path)
    text = await resp.text()
    assert resp.status == expect, text
    assert resp.content_type == "text/html"
    return Elements(text)


def ids(elements: Elements) -> list[str | None]:
    return [row["data-instance"] for row in elements.all("instance-row")]


def texts(elements: Elements, testid: str) -> list[str]:
    return ["".join(t).strip() for found, _, t in elements.found if found == testid]


def query_of(url: str | None) -> dict[str, list[str]]:
    assert url is not None
    return parse_qs(urlsplit(url).query)


def stamp(seconds: float, shape: str = "%Y-%m-%dT%H:%M") -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).strftime(shape)


# ---- the workflows page ----------------------------------------------------------------------


async def test_the_workflows_page_shows_schedules_latest_failures_and_trigger_links(
    ui: Client, engine: Engine, clock: ManualClock
) -> None:
    for n in range(1, 5):
        await engine.create("flaky", f"f{n}", {"card": f"40{n}"})
        await wait_status(engine, "flaky", f"f{n}", "errored")
        clock.advance(1)
    elements = await page(ui, "/")
    rows = [r["data-workflow"] for r in elements.all("workflow-row")]
    assert rows == ["quick", "napper", "approval", "flaky"]

    # Each row has one schedules cell and one failures cell, in the rows' order.
    schedules = texts(elements, "workflow-schedules")
    assert len(schedules) == 4
    assert texts(elements, "schedule-cron") == list(SCHEDULES)
    expected_next = [iso(Cron(c).next_after(clock.now())) for c in SCHEDULES]
    nexts = [t["datetime"] for t in elements.all("schedule-next")]
    assert nexts == expected_next
    assert schedules[1:] == ["none", "none", "none"]

    failures = texts(elements, "latest-failures")
    assert failures[:3] == ["none", "none", "none"]
    links = [a["href"] for a in elements.all("failure-link")]
    assert links == ["/w/flaky/i/f4", "/w/flaky/i/f3", "/w/flaky/i/f2"]  # newest first, 3
    messages = texts(elements, "failure-message")
    assert messages[0] == "NonRetryableError: card 404 declined"
    assert elements.all("failures-all")[0]["href"] == "/w/flaky?status=errored"

    triggers = [a["href"] for a in elements.all("trigger-link")]
    assert triggers == [
        "/w/quick#trigger",
        "/w/napper#trigger",
        "/w/approval#trigger",
        "/w/flaky#trigger",
    ]
    assert "active-version" not in elements.count()  # wf dev has no active version


def test_an_active_version_is_shown_when_the_rows_have_one() -> None:
    row = {"name": "quick", "counts": {}, "total": 0, "schedules": [], "failures": []}
    html = render_page(
        "workflows.html",
        project="demo",
        workflows=[{**row, "active_version": "v-7"}, {**row, "name": "other"}],
        statuses=("complete",),
        show_versions=True,
    )
    assert Elements(html).text("active-version") == "v-7"


# ---- the instances page: filters -------------------------------------------------------------


async def test_an_id_search_matches_a_prefix_with_the_exact_id_first(
    ui: Client, engine: Engine
) -> None:
    for instance_id in ("ord-2", "ord-11", "ord-1", "ord-10", "other", "ord"):
        await engine.create("napper", instance_id)
        await wait_status(engine, "napper", instance_id, "waiting")
    await engine.pause("napper", "ord-10")
    await wait_status(engine, "napper", "ord-10", "paused")

    found = await page(ui, "/w/napper?q=ord-1")
    assert ids(found) == ["ord-1", "ord-10", "ord-11"]
    assert found.text("page-info") == "page 1 of 1 · 3 instances"
    assert ids(await page(ui, "/w/napper?q=ord")) == ["ord", "ord-1", "ord-10", "ord-11", "ord-2"]
    assert ids(await page(ui, "/w/napper?q=ord-1&status=paused")) == ["ord-10"]
    assert ids(await page(ui, "/w/napper?q=ord-1&status=waiting")) == ["ord-1", "ord-11"]
    nothing = await page(ui, "/w/napper?q=zzz")
    assert "starting “zzz”" in nothing.text("no-instances")
    assert ids(await page(ui, "/w/napper?q=ord-1%25")) == []  # no wildcard: just a character


async def test_the_created_range_filters_and_is_shown_again_in_its_inputs(
    ui: Client, engine: Engine, clock: ManualClock
) -> None:
    day = 86_400.0
    for n in range(3):  # one instance a day, at 22:13 UTC
        await engine.create("quick", f"day-{n}")
        await wait_status(engine, "quick", f"day-{n}", "complete")
        clock.advance(day)
    second = START + day
    date = stamp(second, "%Y-%m-%d")

    assert ids(await page(ui, f"/w/quick?since={date}")) == ["day-2", "day-1"]
    assert ids(await page(ui, f"/w/quick?until={date}")) == ["day-1", "day-0"]  # the whole day
    assert ids(await page(ui, f"/w/quick?since={date}&until={date}")) == ["day-1"]

    # A minute takes in the whole minute; seconds and an offset are understood too.
    minute = stamp(second)
    shown = await page(ui, f"/w/quick?since={minute}&until={minute}")
    assert ids(shown) == ["day-1"]
    assert shown.all("filter-since")[0]["value"] == minute
    assert shown.all("filter-until")[0]["value"] == minute
    assert shown.all("filter-since")[0]["type"] == "datetime-local"
    before = stamp(second - 1, "%Y-%m-%dT%H:%M:%S")
    assert ids(await page(ui, f"/w/quick?until={before}")) == ["day-0"]
    zoned = stamp(second + 3600, "%Y-%m-%dT%H:%M") + "%2B01:00"  # the same moment in UTC+1
    assert ids(await page(ui, f"/w/quick?since={zoned}")) == ["day-2", "day-1"]
    assert ids(await page(ui, f"/w/quick?since={date}&q=day-2")) == ["day-2"]


@pytest.mark.parametrize(
    ("query", "said"),
    [
        ("since=yesterday", "since must be a date (2024-05-01) or a date and time"),
        ("until=2024-13-01", "until is not a real date or time"),
        ("since=2024-05-02&until=2024-05-01", "the created range is empty"),
        ("since=2024-05-01T10:00&until=2024-05-01T09:59", "the created range is empty"),
        ("status=sleepy", 'unknown status "sleepy"'),
        ("q=" + "x" * 300, "the id search is 300 characters"),
        # The ends of the calendar: no time past them to stand for (was a 500).
        ("until=9999-12-31", "until is out of range"),
        ("since=9999-12-31T23:59:59.999999", "since is out of range"),
        ("since=0001-01-01", "since is out of range"),
    ],
)
async def test_a_bad_filter_is_a_400_page_that_says_why(ui: Client, query: str, said: str) -> None:
    elements = await page(ui, f"/w/napper?{query}", expect=400)
    assert said in elements.text("error-message")


async def test_every_link_of_the_page_keeps_every_filter(
    ui: Client, engine: Engine, clock: ManualClock
) -> None:
    for n in range(30):
        await engine.create("napper", f"p-{n:02}")
    for n in range(30):
        await wait_status(engine, "napper", f"p-{n:02}", "waiting")
    since, until = stamp(START - 3600), stamp(START + 3600)
    filters = {"status": ["waiting"], "q": ["p-"], "since": [since], "until": [until]}
    path = f"/w/napper?status=waiting&q=p-&since={since}&until={until}"

    first = await page(ui, path)
    assert ids(first)[:2] == ["p-00", "p-01"] and len(ids(first)) == 25
    assert first.text("page-info") == "page 1 of 2 · 30 instances"
    next_link = first.all("page-next")[0]["href"]
    assert query_of(next_link) == {**filters, "page": ["2"]}
    second = await page(ui, str(next_link))
    assert ids(second) == ["p-25", "p-26", "p-27", "p-28", "p-29"]
    assert query_of(second.all("page-prev")[0]["href"]) == filters  # page 1 is left out
    # The status strip changes the status only; the live region and the bulk form keep all.
    assert query_of(first.all("filter-paused")[0]["href"]) == {**filters, "status": ["paused"]}
    assert query_of(first.all("instances-live")[0]["hx-get"]) == filters
    assert query_of(second.all("instances-live")[0]["hx-get"]) == {**filters, "page": ["2"]}
    assert query_of(first.all("bulk-form")[0]["action"]) == filters
    assert first.all("search-input")[0]["value"] == "p-"
    assert first.all("filters-clear")[0]["href"] == "/w/napper"


# ---- the live region, the scripts --------------------------------------------------------------


async def test_the_live_region_refreshes_from_the_same_url_and_keeps_the_checkboxes_apart(
    ui: Client, engine: Engine
) -> None:
    await engine.create("napper", "n1")
    await wait_status(engine, "napper", "n1", "waiting")
    first = await page(ui, "/w/napper?status=waiting")
    live = first.all("instances-live")[0]
    assert live["id"] == "instances-live"
    assert live["hx-select"] == "#instances-live" and live["hx-swap"] == "outerHTML"
    assert live["hx-trigger"] == "wf-refresh"  # lists.js sends it every 2 s while visible
    box = first.all("select-row")[0]
    assert (box["value"], box["form"], box["name"]) == ("n1", "bulk-form", "id")
    assert first.all("bulk-form")[0]["id"] == "bulk-form"
    assert first.count()["select-all"] == 1
    assert {f"bulk-{a}" for a in ("pause", "resume", "terminate", "restart")} <= set(first.count())

    await engine.pause("napper", "n1")
    await wait_status(engine, "napper", "n1", "paused")
    again = await page(ui, str(live["hx-get"]))  # what the next refresh gets
    assert ids(again) == []
    assert "1" in again.text("filter-paused")


async def test_the_scripts_are_served_and_the_help_dialog_is_on_every_page(
    ui: Client, engine: Engine
) -> None:
    await engine.create("napper", "n1")
    await wait_status(engine, "napper", "n1", "waiting")
    base = f"/ui/static/{wf.__version__}"
    for path in ("/", "/w/napper", "/w/napper/i/n1"):
        resp = await ui.get(path)
        html = await resp.text()
        assert f'src="{base}/keys.js"' in html, path
        assert Elements(html).count()["shortcuts-help"] == 1, path
    assert f'src="{base}/lists.js"' in await (await ui.get("/w/napper")).text()
    for name, needle in (("keys.js", "aria-selected"), ("lists.js", "JSON.parse")):
        resp = await ui.get(f"{base}/{name}")
        assert resp.status == 200 and resp.content_type == "text/javascript"
        assert needle in await resp.text()


# ---- bulk actions ------------------------------------------------------------------------------


async def bulk(ui: Client, path: str, action: str, chosen: list[str]) -> Any:
    form = [("action", action), *(("id", i) for i in chosen)]
    return await ui.post(path, data=form, headers=ORIGIN, allow_redirects=False)


async def test_bulk_actions_act_on_each_instance_and_say_what_was_refused(
    ui: Client, engine: Engine
) -> None:
    for n in range(1, 4):
        await engine.create("napper", f"n{n}")
        await wait_status(engine, "napper", f"n{n}", "waiting")
    await engine.terminate("napper", "n3")
    await wait_status(engine, "napper", "n3", "terminated")

    resp = await bulk(ui, "/w/napper/bulk", "pause", ["n1", "n2"])
    assert resp.status == 303
    for one in ("n1", "n2"):
        await wait_status(engine, "napper", one, "paused")
    shown = await page(ui, resp.headers["Location"])
    assert shown.text("bulk-result") == "paused 2 of 2"

    resp = await bulk(ui, "/w/napper/bulk?status=paused&q=n", "resume", ["n1", "n2", "n3", "n1"])
    location = resp.headers["Location"]
    assert location.startswith("/w/napper?status=paused&q=n&bulk=")  # the filters are kept
    said = (await page(ui, location)).text("bulk-result")
    assert said.startswith("resumed 2 of 3; 1 refused: n3: ")
    for one in ("n1", "n2"):
        await wait_status(engine, "napper", one, "waiting")

    resp = await bulk(ui, "/w/napper/bulk", "terminate", ["n1", "n2", "n3", "ghost"])
    said = (await page(ui, resp.headers["Location"])).text("bulk-result")
    assert said.startswith("terminated 2 of 4; 2 refused: n3: ")
    assert '; ghost: instance "ghost" not found' in said
    for one in ("n1", "n2"):
        await wait_status(engine, "napper", one, "terminated")

    resp = await bulk(ui, "/w/napper/bulk", "restart", ["n1", "n3"])
    said = (await page(ui, resp.headers["Location"])).text("bulk-result")
    assert said == "restarted 2 of 2"
    for one in ("n1", "n3"):  # running again (no longer terminated)
        await wait_status(engine, "napper", one, ("queued", "running", "waiting"))
    assert (await engine.status("napper", "n2"))["status"] == "terminated"
    # A token this process never gave shows nothing.
    assert (await page(ui, "/w/napper?bulk=made-up")).count()["bulk-result"] == 0


async def test_bulk_requests_out_of_bounds_are_refused(ui: Client, engine: Engine) -> None:
    await engine.create("napper", "n1")
    await wait_status(engine, "napper", "n1", "waiting")
    too_many = [f"x{n}" for n in range(1001)]
    resp = await bulk(ui, "/w/napper/bulk", "terminate", too_many)
    assert resp.status == 400
    assert "at most 1000 instances, got 1001" in Elements(await resp.text()).text("error-message")
    resp = await bulk(ui, "/w/napper/bulk", "terminate", too_many * 5)  # past aiohttp's count
    assert resp.status == 400
    assert "at most 1000 instances" in Elements(await resp.text()).text("error-message")
    resp = await bulk(ui, "/w/napper/bulk", "terminate", [])
    assert resp.status == 400
    assert "select at least one instance" in Elements(await resp.text()).text("error-message")
    resp = await bulk(ui, "/w/napper/bulk", "delete", ["n1"])
    assert resp.status == 400
    resp = await bulk(ui, "/w/nope/bulk", "pause", ["n1"])
    assert resp.status == 404
    resp = await ui.post(
        "/w/napper/bulk",
        data={"action": "terminate", "id": "n1"},
        headers={"Origin": "https://evil.example"},
    )
    assert resp.status == 403
    assert (await engine.status("napper", "n1"))["status"] == "waiting"


async def test_a_thousand_ids_are_taken_in_one_request(ui: Client, engine: Engine) -> None:
    await engine.create("napper", "n1")
    await wait_status(engine, "napper", "n1", "waiting")
    chosen = ["n1", *(f"gone-{n}" for n in range(999))]
    resp = await bulk(ui, "/w/napper/bulk", "pause", chosen)
    assert resp.status == 303
    said = (await page(ui, resp.headers["Location"])).text("bulk-result")
    assert said.startswith("paused 1 of 1000; 999 refused: gone-0: ")
    assert said.endswith("; and 979 more")  # 20 are named


# ---- the trigger form --------------------------------------------------------------------------


async def trigger(ui: Client, name: str, **form: str) -> Any:
    body = io.BytesIO(urlencode(form).encode())  # a stream: aiohttp warns of large bytes
    headers = {**ORIGIN, "Content-Type": "application/x-www-form-urlencoded"}
    return await ui.post(f"/w/{name}/trigger", data=body, headers=headers, allow_redirects=False)


async def test_the_trigger_form_creates_an_instance_and_leads_to_it(
    ui: Client, engine: Engine
) -> None:
    elements = await page(ui, "/w/quick")
    form = elements.all("trigger-form")[0]
    assert (form["method"], form["action"]) == ("post", "/w/quick/trigger")
    assert {"trigger-id", "trigger-params", "trigger-submit", "trigger-error"} <= set(
        elements.count()
    )
    assert "hidden" in elements.all("trigger-error")[0]  # until there is one

    resp = await trigger(ui, "quick", id="t1", params='{"n": 21}')
    assert resp.status == 303
    assert resp.headers["Location"] == "/w/quick/i/t1"
    status = await wait_status(engine, "quick", "t1", "complete")
    assert status["output"] == {"double": 42}

    resp = await trigger(ui, "quick", id="", params="")  # a new id, params {}
    location = resp.headers["Location"]
    assert resp.status == 303 and location.startswith("/w/quick/i/")
    made = location.rsplit("/", 1)[1]
    assert (await wait_status(engine, "quick", made, "complete"))["output"] == {"double": 0}


@pytest.mark.parametrize(
    ("form", "status", "said"),
    [
        ({"id": "t2", "params": '{"n": '}, 400, "params are not valid JSON: Expecting value"),
        ({"id": "t2", "params": '{"n": NaN}'}, 400, "NaN is not valid JSON"),
        ({"id": "t1", "params": "{}"}, 409, 'with id "t1" already exists'),
        ({"id": "bad id!", "params": "{}"}, 400, "may only contain letters, digits"),
        ({"id": "t2", "params": '"' + "x" * (1 << 20) + '"'}, 413, "the limit is 1048576 bytes"),
    ],
)
async def test_a_refused_trigger_shows_the_form_again_with_why(
    ui: Client, engine: Engine, form: dict[str, str], status: int, said: str
) -> None:
    await engine.create("quick", "t1")
    resp = await trigger(ui, "quick", **form)
    text = await resp.text()
    assert resp.status == status, text
    elements = Elements(text)
    assert said in elements.text("trigger-error")
    assert "hidden" not in elements.all("trigger-error")[0]
    assert elements.all("trigger-id")[0]["value"] == form["id"]
    if status != 413:  # a megabyte is not sent back
        assert elements.text("trigger-params") == form["params"].strip()  # text() strips
    with pytest.raises(InstanceNotFound):
        await engine.status("quick", "t2")


# ---- 100,000 instances -------------------------------------------------------------------------

HUNDRED_K = 100_000
STATUS_CYCLE = ("complete", "errored", "terminated", "paused")  # none that a runner would claim


def _bulk_rows() -> list[tuple[Any, ...]]:
    rows = [
        ("quick", f"i{n:06d}", STATUS_CYCLE[n % 4], "{}", "api", "v-test", START + n)
        for n in range(HUNDRED_K)
    ]
    rows.append(("quick", "i01234", "complete", "{}", "api", "v-test", START - 1))
    return [(*r, r[-1], r[-1]) for r in rows]  # created, queued, modified


def _insert_sqlite(path: Path) -> None:
    import sqlite3
    from contextlib import closing

    with closing(sqlite3.connect(path)) as conn, conn:
        conn.executemany(
            "INSERT INTO instances (workflow, id, status, params, trigger, version_id, "
            "created, queued, modified) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            _bulk_rows(),
        )


def _insert_postgres(url: str) -> None:
    import psycopg

    with psycopg.connect(url) as conn:
        with conn.cursor().copy(
            "COPY wf.instances (workflow, id, status, params, trigger, version_id, created, "
            "queued, modified) FROM STDIN"
        ) as copy:
            for row in _bulk_rows():
                copy.write_row(row)
        conn.commit()
        conn.execute("ANALYZE wf.instances")  # what autovacuum does soon after such a load


PLANNED = (
    InstanceFilter(),
    InstanceFilter(Status.PAUSED),
    InstanceFilter(None, "i01234"),
    InstanceFilter(Status.ERRORED, "i01234"),
    InstanceFilter(None, None, START, START + 100),
    InstanceFilter(Status.PAUSED, None, START, START + 100),
)


def _plans(backend: str, where: Path | str) -> list[str]:
    """The database's plan of each page query (its count's too, on SQLite)."""
    import sqlite3
    from contextlib import closing

    plans = []
    for chosen in PLANNED:
        if backend == "sqlite":
            sql, args = where_clause("quick", chosen, "?")
            order = order_clause(chosen, True)
            with closing(sqlite3.connect(where)) as conn:
                for query in (
                    f"SELECT * FROM instances WHERE {sql} ORDER BY {order} LIMIT 25 OFFSET 900",
                    f"SELECT count(*) FROM instances WHERE {sql}",
                ):
                    found = conn.execute(f"EXPLAIN QUERY PLAN {query}", args).fetchall()
                    plans.append(" / ".join(str(row[-1]) for row in found))
        else:
            import psycopg

            sql, args = where_clause("quick", chosen, "%s", 'id COLLATE "C"')
            order = order_clause(chosen, True, 'id COLLATE "C"')
            with psycopg.connect(str(where)) as conn:
                found = conn.execute(
                    f"EXPLAIN SELECT * FROM wf.instances WHERE {sql} ORDER BY {order} "
                    "LIMIT 25 OFFSET 900",
                    args,
                ).fetchall()
                plans.append(" / ".join(str(row[0]).strip() for row in found[:3]))
    return plans


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_a_hundred_thousand_instances_page_search_and_filter_correctly(
    request: pytest.FixtureRequest,
    aiohttp_client: AiohttpClient,
    tmp_path: Path,
    backend: str,
) -> None:
    store: Store
    if backend == "postgres":
        from wf.engine.store.postgres import PostgresStore

        url = request.getfixturevalue("pg_url")
        store = PostgresStore(url, durability="os")
    else:
        store = SqliteStore(tmp_path / "wf.db", durability="os")
    engine = Engine(store, SPECS, settings=EngineSettings(poll_interval=0.2))
    await engine.start()
    try:
        started = time.perf_counter()
        if backend == "postgres":
            _insert_postgres(url)
        else:
            _insert_sqlite(tmp_path / "wf.db")
        print(
            f"\n[{backend}] inserted {HUNDRED_K + 1:,} instances in "
            f"{time.perf_counter() - started:.2f} s"
        )
        app = create_app(_state(engine))
        install(app)
        ui = await aiohttp_client(app)

        async def timed(path: str) -> Elements:
            began = time.perf_counter()
            elements = await page(ui, path)
            print(f"[{backend}] GET {path[:60]:60} {1000 * (time.perf_counter() - began):7.1f} ms")
            return elements

        first = await timed("/w/quick")
        assert ids(first) == [f"i{n:06d}" for n in range(99_999, 99_974, -1)]
        assert first.text("page-info") == "page 1 of 4001 · 100001 instances"
        far = await timed("/w/quick?page=3000")  # rows 74,975 to 74,999 from the newest
        assert ids(far) == [f"i{n:06d}" for n in range(25_024, 24_999, -1)]
        last = await timed("/w/quick?page=4001")
        assert ids(last) == ["i01234"]

        prefix = await timed("/w/quick?q=i01234")
        assert ids(prefix) == ["i01234", *(f"i{n:06d}" for n in range(12_340, 12_350))]
        wide = await timed("/w/quick?q=i0&page=2")  # 100,000 ids start with i0: by id
        assert ids(wide)[0] == "i000025" and wide.text("page-info").endswith("100001 instances")

        paused = await timed("/w/quick?status=paused")
        assert ids(paused)[:3] == ["i099999", "i099995", "i099991"]
        assert paused.text("page-info") == "page 1 of 1000 · 25000 instances"
        paused_far = await timed("/w/quick?status=paused&page=900")
        assert ids(paused_far)[0] == f"i{99_999 - 4 * 22_475:06d}"
        errored = await timed("/w/quick?status=errored&q=i01234")
        assert ids(errored) == ["i012341", "i012345", "i012349"]

        since = stamp(START + 60_000, "%Y-%m-%dT%H:%M:%S")
        until = stamp(START + 60_099, "%Y-%m-%dT%H:%M:%S")
        ranged = await timed(f"/w/quick?since={since}&until={until}&page=4")
        assert ids(ranged) == [f"i{n:06d}" for n in range(60_024, 59_999, -1)]
        assert ranged.text("page-info") == "page 4 of 4 · 100 instances"

        for plan in _plans(backend, url if backend == "postgres" else tmp_path / "wf.db"):
            print(f"[{backend}] plan: {plan}")
            if backend == "sqlite":  # every page is an index range, in the index's order
                assert plan.startswith("SEARCH instances USING "), plan
                assert "TEMP B-TREE" not in plan and "SCAN" not in plan, plan
            else:
                assert "Index Scan" in plan and "Sort" not in plan, plan

        home = await timed("/")
        assert texts(home, "workflow-total")[0] == "100001"
        assert [a["href"] for a in home.all("failure-link")] == [
            "/w/quick/i/i099997",
            "/w/quick/i/i099993",
            "/w/quick/i/i099989",
        ]
    finally:
        await engine.stop()


def test_a_prefix_ends_at_its_successor_by_code_point() -> None:
    assert prefix_end("ab") == "ac"
    assert prefix_end("a\U0010ffff") == "b"
    assert prefix_end("\U0010ffff") is None
    assert prefix_end("a\ud7ff") == "a\ue000"  # past the surrogates
