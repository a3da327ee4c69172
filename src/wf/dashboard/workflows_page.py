"""The workflows page (``/``): each workflow with its counts per status, its cron schedules
and their next firing, its latest failures, and a link to its trigger form."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from wf.dashboard.list_filters import STATUSES
from wf.dashboard.render import page
from wf.dashboard.responses import error_page, html
from wf.dashboard.serve_info import add_active_versions
from wf.devserver.api import _reads, _workflows
from wf.devserver.envelope import ApiError
from wf.devserver.state import STATE_KEY
from wf.engine.controller import Controller
from wf.engine.cron import schedules_json
from wf.engine.model import Status
from wf.errors import WfError, cut

LATEST_FAILURES = 3
FAILURE_TEXT = 200  # characters of an error message in the table; the instance has it all


async def _latest_failures(engine: Controller, name: str) -> list[dict[str, Any]]:
    """The newest errored instances, each with its error in one short line."""
    rows, _ = await engine.list_instances(
        name, status=Status.ERRORED.value, per_page=LATEST_FAILURES
    )
    failures = []
    for row in rows:
        error = row.error or {}
        message = " ".join(str(error.get("message", "")).split())
        failures.append(
            {
                "id": row.id,
                "name": error.get("name", ""),
                "message": cut(message, FAILURE_TEXT),
                "ended": row.ended,
            }
        )
    return failures


async def workflows_view(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    try:
        engine = _reads(request)
        now = engine.clock.now()
        rows = []
        for info in _workflows(state, engine):
            counts = await engine.store.count_statuses(info.name)
            rows.append(
                {
                    "name": info.name,
                    "counts": counts,
                    "total": sum(counts.values()),
                    "schedules": schedules_json(info.schedules, now),
                    "failures": await _latest_failures(engine, info.name),
                }
            )
        await add_active_versions(request, rows)
    except (WfError, ApiError) as exc:
        return error_page(exc)
    return html(
        page(
            "workflows.html",
            project=state.project_name,
            workflows=rows,
            statuses=STATUSES,
            show_versions=any("active_version" in w for w in rows),
        )
    )
