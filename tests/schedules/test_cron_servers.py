"""Cron schedules in real servers: ``wf dev`` (SQLite and PostgreSQL) and ``wf serve`` (one node
on SQLite, two nodes on one PostgreSQL database) fire them, show them (terminal, REST, ``wf
workflows describe``) and make a missed firing up once at start, never twice.

A firing is provoked without waiting for the wall clock: once a server has seen the schedules,
the test moves their record back in the database ("last fired two years ago", as if nothing had
run since), so the next start finds one firing to make up: New Year's, for ``0 0 1 1 *``.
"""

from __future__ import annotations

import json
import sqlite3
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.cluster_helpers import cluster
from tests.e2e.helpers import api, dev_server, wait_until, wf
from tests.e2e.serve_helpers import Serve, serving

YEARLY = "0 0 1 1 *"
QUARTER = "*/15 * * * *"

WF_TOML = f"""\
name = "reports"
main = "workflows.py"

[[workflows]]
name = "pin"
binding = "PIN"
class_name = "Report"
schedules = ["{YEARLY}", "{QUARTER}"]
"""

WORKFLOWS = """\
from wf import WorkflowEntrypoint


class Report(WorkflowEntrypoint):
    async def run(self, event, step):
        schedule = event.schedule
        return await step.do(
            "report", lambda: {"cron": schedule.cron, "at": schedule["scheduledTime"]}
        )
"""


def project(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "wf.toml").write_text(WF_TOML)
    (root / "workflows.py").write_text(WORKFLOWS)
    return root


def new_year_id() -> str:
    year = datetime.now(timezone.utc).year
    moment = datetime(year, 1, 1, tzinfo=timezone.utc).timestamp()
    return f"{YEARLY}-{round(moment * 1000)}"


def rewind(database: str) -> None:
    """Say the yearly schedule last fired two years ago (the record a server keeps)."""
    past = time.time() - 2 * 366 * 86400
    if database.startswith("postgresql"):
        import psycopg

        with psycopg.connect(database) as pg:
            changed = pg.execute(
                "UPDATE wf.schedule_firings SET fired = %s WHERE cron = %s", (past, YEARLY)
            ).rowcount
    else:
        with closing(sqlite3.connect(database)) as conn, conn:
            changed = conn.execute(
                "UPDATE schedule_firings SET fired = ? WHERE cron = ?", (past, YEARLY)
            ).rowcount
    assert changed == 1  # the server recorded it when it first saw the schedule


def yearly_ids(instances: list[dict[str, Any]]) -> list[str]:
    return [i["id"] for i in instances if i["id"].startswith(YEARLY)]


def quoted(instance_id: str) -> str:
    return urllib.parse.quote(instance_id, safe="")


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgres":
        return str(request.getfixturevalue("pg_url"))
    return str(tmp_path / "proj" / ".wf" / "wf.db")


def test_wf_dev_fires_shows_and_makes_up_a_firing_once(tmp_path: Path, database: str) -> None:
    root = project(tmp_path / "proj")
    args = ("--database", database) if database.startswith("postgresql") else ()
    with dev_server(root, args=args) as server:
        banner = server.output()
        assert "Schedules: (UTC)" in banner
        year = datetime.now(timezone.utc).year
        assert f"{YEARLY}" in banner and f"next {year + 1}-01-01 00:00:00 UTC" in banner
        described = wf("workflows", "describe", "pin", "--url", server.url, cwd=root).stdout
        assert "Schedules (UTC):" in described
        assert f"next {year + 1}-01-01 00:00:00 UTC" in described
        assert QUARTER in described
        shown = api(server.url, "/api/workflows/pin")
        assert [s["cron"] for s in shown["schedules"]] == [YEARLY, QUARTER]
        assert shown["schedules"][0]["next"] == f"{year + 1}-01-01T00:00:00.000Z"
        listed = api(server.url, "/api/workflows/pin/instances")
        assert yearly_ids(listed) == []  # a new schedule fires from now on
    rewind(database)
    for _ in range(2):  # the second start finds the firing made and makes it no more
        with dev_server(root, args=args) as server:
            made_up_once(server.url, root)


def made_up_once(url: str, root: Path) -> None:
    """The yearly firing was made up, once, ran, and is shown as a cron instance."""
    made_up = new_year_id()
    wait_until(
        lambda: yearly_ids(api(url, "/api/workflows/pin/instances")) == [made_up],
        what="the made-up firing",
    )
    path = f"/api/workflows/pin/instances/{quoted(made_up)}"
    details = wait_until(
        lambda: (d := api(url, path)) and d["status"] == "complete" and d,
        what="the instance to complete",
    )
    assert details["trigger"] == {"source": "cron"}
    assert details["output"]["cron"] == YEARLY
    assert made_up.endswith(f"-{details['output']['at']}")
    time.sleep(0.5)  # a second firing would come now, if one were to
    assert yearly_ids(api(url, "/api/workflows/pin/instances")) == [made_up]
    described = wf("instances", "describe", "pin", made_up, "--url", url, cwd=root).stdout
    assert "Cron" in described and made_up in described


def test_wf_dev_terminal_says_a_firing_and_the_next_one(tmp_path: Path) -> None:
    root = project(tmp_path / "proj")
    with dev_server(root):
        pass
    rewind(str(root / ".wf" / "wf.db"))
    with dev_server(root) as server:
        wait_until(lambda: f'⏰ queued by cron "{YEARLY}"; next firing' in server.output())
        line = next(x for x in server.output().splitlines() if "queued by cron" in x)
        assert f"pin/{new_year_id()}" in line
        assert f"next firing {datetime.now(timezone.utc).year + 1}-01-01" in line


def test_wf_serve_fires_the_active_versions_schedules(tmp_path: Path) -> None:
    root = project(tmp_path / "proj")
    with serving(tmp_path) as server:
        server.deploy(root)
        shown = server.api("/api/workflows/pin")
        assert [s["cron"] for s in shown["schedules"]] == [YEARLY, QUARTER]
        described = server.wf("workflows", "describe", "pin", cwd=root).stdout
        assert "Schedules (UTC):" in described and YEARLY in described
        wait_until(lambda: _recorded(server.state / "wf.db"), what="the schedules to be seen")
    rewind(str(server.state / "wf.db"))
    with serving(tmp_path, server.state) as server:
        made_up = new_year_id()
        finished = served_instance(server, made_up)
        assert finished["output"]["cron"] == YEARLY
    with serving(tmp_path, server.state) as server:
        time.sleep(0.5)
        assert yearly_ids(server.api("/api/workflows/pin/instances")) == [made_up]


def served_instance(server: Serve, instance_id: str) -> dict[str, Any]:
    """The instance once complete, asked for by its id as a path segment (its / quoted)."""
    path = f"/api/workflows/pin/instances/{quoted(instance_id)}"

    def complete() -> dict[str, Any] | None:
        found = server.request("GET", path)
        details: dict[str, Any] | None = found.result if found.status == 200 else None
        return details if details and details["status"] == "complete" else None

    result: dict[str, Any] = wait_until(complete, timeout=30, what=f"{instance_id} to complete")
    assert result["trigger"] == {"source": "cron"}
    return result


def _recorded(path: Path) -> bool:
    with closing(sqlite3.connect(path)) as conn:
        rows = conn.execute("SELECT cron FROM schedule_firings").fetchall()
    return {r[0] for r in rows} == {YEARLY, QUARTER}


def test_two_serve_nodes_on_one_database_fire_once(tmp_path: Path, pg_url: str) -> None:
    root = project(tmp_path / "proj")
    with cluster(tmp_path, pg_url) as (a, b):
        a.start()
        token = a.token
        a.deploy(root)
        wait_until(lambda: _pg_recorded(pg_url), what="the schedules to be seen")
        a.stop()
        rewind(pg_url)
        # Both start at once, each finding the same firing to make up.
        with ThreadPoolExecutor(2) as pool:
            for started in [pool.submit(node.start, token=token) for node in (a, b)]:
                started.result()
        made_up = new_year_id()
        finished = served_instance(b, made_up)
        assert finished["output"]["cron"] == YEARLY
        time.sleep(1.0)
        listed = a.api("/api/workflows/pin/instances")
        assert yearly_ids(listed) == [made_up]
        assert json.dumps(listed).count(made_up) == 1


def _pg_recorded(url: str) -> bool:
    import psycopg

    with psycopg.connect(url) as conn:
        try:
            rows = conn.execute("SELECT cron FROM wf.schedule_firings").fetchall()
        except psycopg.errors.UndefinedTable:
            return False
    return {r[0] for r in rows} == {YEARLY, QUARTER}
