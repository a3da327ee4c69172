"""The dashboard's routes: pages that read through the Controller, forms that act through it.

Every view is a link (its state is in the path and query string). Actions are POST forms that
call the same Controller methods as the REST API, then redirect back (post/redirect/get). They
reach here only through the app's Host and Origin checks (``wf.devserver.security``).
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

import wf
from wf.dashboard.instance import (
    history_download,
    instance_page,
    instance_view,
    restart_from,
    value_view,
)
from wf.dashboard.render import page
from wf.dashboard.serve_info import add_active_versions
from wf.devserver.api import STATE_KEY, _engine, _reads
from wf.devserver.envelope import BAD_REQUEST, ApiError, from_wf_error
from wf.engine.controller import Controller
from wf.engine.model import Status
from wf.errors import WfError

STATIC_PREFIX = f"/ui/static/{wf.__version__}"
# The files are named by wf's version in the URL, so a browser may keep them for a year.
LONG_CACHE = "public, max-age=31536000, immutable"
STATIC_TYPES = {".js": "text/javascript", ".css": "text/css"}
STATIC_FILES = ("dashboard.css", "vendor/htmx-2.0.4.min.js", "instance.css", "live.js")
PER_PAGE = 25
ACTIONS = ("pause", "resume", "terminate", "restart")
STATUSES = tuple(s.value for s in Status)


def _html(text: str, status: int = 200) -> web.Response:
    return web.Response(text=text, status=status, content_type="text/html", charset="utf-8")


def _failure(exc: WfError | ApiError) -> ApiError:
    return from_wf_error(exc) if isinstance(exc, WfError) else exc


def _error_page(error: ApiError) -> web.Response:
    return _html(page("error.html", status=error.status, message=error.message), error.status)


def _page_number(raw: str | None) -> int:
    text = (raw or "").strip()
    if text.isascii() and text.isdigit() and 0 < len(text) <= 9:
        return max(int(text), 1)
    return 1


# ---- views -----------------------------------------------------------------------------------


async def workflows_view(request: web.Request) -> web.Response:
    try:
        engine = _reads(request)
        rows = []
        for name in engine.workflow_names():
            counts = await engine.store.count_statuses(name)
            rows.append({"name": name, "counts": counts, "total": sum(counts.values())})
        await add_active_versions(request, rows)
    except (WfError, ApiError) as exc:
        return _error_page(_failure(exc))
    project = request.app[STATE_KEY].project_name
    return _html(page("workflows.html", project=project, workflows=rows, statuses=STATUSES))


async def instances_view(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    status = request.query.get("status", "").strip()
    search = request.query.get("q", "").strip()
    page_number = _page_number(request.query.get("page"))
    try:
        engine = _reads(request)
        name = engine.workflow(name)
        counts = await engine.store.count_statuses(name)
        if status and status not in STATUSES:
            shown = ", ".join(STATUSES)
            raise ApiError(400, BAD_REQUEST, f'unknown status "{status}"; use one of {shown}')
        if search:
            rows, total = await _by_id(engine, name, search, status)
        else:
            rows, total = await engine.list_instances(
                name, status=status or None, page=page_number, per_page=PER_PAGE
            )
    except (WfError, ApiError) as exc:
        return _error_page(_failure(exc))
    pages = max((total + PER_PAGE - 1) // PER_PAGE, 1)

    def link(**changes: Any) -> str:
        query = {"status": status, "q": search, "page": str(page_number)}
        query.update({k: str(v) for k, v in changes.items()})
        kept = {k: v for k, v in query.items() if v and not (k == "page" and v == "1")}
        return f"/w/{name}" + (f"?{urlencode(kept)}" if kept else "")

    return _html(
        page(
            "instances.html",
            workflow=name,
            counts=counts,
            statuses=STATUSES,
            status=status,
            search=search,
            rows=rows,
            total=total,
            page_number=page_number,
            pages=pages,
            link=link,
        )
    )


async def _by_id(
    engine: Controller, name: str, instance_id: str, status: str
) -> tuple[list[Any], int]:
    """The instance with exactly this id (and this status, when one is chosen), if any."""
    found = await engine.store.get_instance(name, instance_id)
    if found is None or (status and found.status.value != status):
        return [], 0
    return [found], 1


# ---- actions ---------------------------------------------------------------------------------


def _back(name: str, instance_id: str, done: str) -> web.HTTPSeeOther:
    return web.HTTPSeeOther(f"/w/{name}/i/{instance_id}?{urlencode({'done': done})}")


async def action(request: web.Request) -> web.StreamResponse:
    name, instance_id = request.match_info["name"], request.match_info["id"]
    chosen = request.match_info["action"]
    if chosen not in ACTIONS:
        raise web.HTTPNotFound()
    try:
        engine = _engine(request)
        if chosen == "pause":
            await engine.pause(name, instance_id)
        elif chosen == "resume":
            await engine.resume(name, instance_id)
        elif chosen == "terminate":
            await engine.terminate(name, instance_id, "api")
        else:
            await engine.restart(name, instance_id, None, None)
    except (WfError, ApiError) as exc:
        error = _failure(exc)
        return await instance_page(request, f"{chosen} refused: {error.message}", error.status)
    raise _back(name, instance_id, chosen)


async def send_event(request: web.Request) -> web.StreamResponse:
    name, instance_id = request.match_info["name"], request.match_info["id"]
    form = await request.post()
    event_type = str(form.get("type", "")).strip()
    text = str(form.get("payload", "")).strip()
    try:
        payload = json.loads(text) if text else None
    except ValueError as exc:
        return await instance_page(request, f"payload is not valid JSON: {exc}", 400)
    try:
        await _engine(request).send_event(name, instance_id, event_type, payload)
    except (WfError, ApiError) as exc:
        error = _failure(exc)
        return await instance_page(request, f"event refused: {error.message}", error.status)
    raise _back(name, instance_id, "event")


# ---- static files ----------------------------------------------------------------------------


def _static_handler(relative: str) -> Any:
    body = resources.files("wf.dashboard").joinpath("static", *relative.split("/")).read_bytes()
    content_type = STATIC_TYPES[relative[relative.rfind(".") :]]

    async def serve(request: web.Request) -> web.Response:
        return web.Response(
            body=body,
            content_type=content_type,
            charset="utf-8",
            headers={"Cache-Control": LONG_CACHE},
        )

    return serve


def install(app: web.Application) -> None:
    """Add the dashboard's routes to the API app (which already checks Host and Origin)."""
    app.router.add_get("/", workflows_view)
    app.router.add_get("/w/{name}", instances_view)
    app.router.add_get("/w/{name}/i/{id}", instance_view)
    app.router.add_get("/w/{name}/i/{id}/value", value_view)
    app.router.add_get("/w/{name}/i/{id}/history", history_download)
    app.router.add_post("/w/{name}/i/{id}/restart-from", restart_from)
    app.router.add_post("/w/{name}/i/{id}/events", send_event)
    app.router.add_post("/w/{name}/i/{id}/{action}", action)
    for relative in STATIC_FILES:
        app.router.add_get(f"{STATIC_PREFIX}/{relative}", _static_handler(relative))
