"""The dashboard's routes: pages that read through the Controller, forms that act through it.

Every view is a link (its state is in the path and query string). Actions are POST forms that
call the same Controller methods as the REST API, then redirect back (post/redirect/get). They
reach here only through the app's Host and Origin checks (``wf.devserver.security``).
"""

from __future__ import annotations

import json
from importlib import resources
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from aiohttp import web

import wf
from wf.dashboard import bulk_results, render
from wf.dashboard.bulk import bulk_action
from wf.dashboard.instance import (
    history_download,
    instance_page,
    instance_view,
    restart_from,
    value_view,
)
from wf.dashboard.instances_page import instances_view
from wf.dashboard.trigger import trigger
from wf.dashboard.workflows_page import workflows_view
from wf.devserver.api import _engine
from wf.devserver.envelope import ApiError, from_wf_error
from wf.devserver.state import STATE_KEY
from wf.errors import WfError

if TYPE_CHECKING:
    from aiohttp.typedefs import Handler

STATIC_PREFIX = f"/ui/static/{wf.__version__}"
# The files are named by wf's version in the URL, so a browser may keep them for a year.
LONG_CACHE = "public, max-age=31536000, immutable"
STATIC_TYPES = {".js": "text/javascript", ".css": "text/css"}
STATIC_FILES = (
    "dashboard.css",
    "instance.css",
    "keys.js",
    "lists.js",
    "live.js",
    "vendor/htmx-2.0.4.min.js",
)
ACTIONS = ("pause", "resume", "terminate", "restart")


# ---- actions ---------------------------------------------------------------------------------


def _back(name: str, instance_id: str, done: str) -> web.HTTPSeeOther:
    where = f"/w/{quote(name, safe='')}/i/{quote(instance_id, safe='')}"
    return web.HTTPSeeOther(f"{where}?{urlencode({'done': done})}")


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
        error = from_wf_error(exc) if isinstance(exc, WfError) else exc
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
    except RecursionError:
        return await instance_page(request, "payload is not usable JSON: nested too deeply", 400)
    try:
        await _engine(request).send_event(name, instance_id, event_type, payload)
    except (WfError, ApiError) as exc:
        error = from_wf_error(exc) if isinstance(exc, WfError) else exc
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


@web.middleware
async def _say_load_problem(request: web.Request, handler: Handler) -> web.StreamResponse:
    """While wf dev's project does not load, its pages (read from the database) say why."""
    state = request.app[STATE_KEY]
    shown = state.engine is None and state.reader is not None
    token = render.load_problem.set(state.load_error if shown else None)
    try:
        return await handler(request)
    finally:
        render.load_problem.reset(token)


def install(app: web.Application) -> None:
    """Add the dashboard's routes to the API app (which already checks Host and Origin)."""
    app.middlewares.append(_say_load_problem)
    bulk_results.install(app)
    app.router.add_get("/", workflows_view)
    app.router.add_get("/w/{name}", instances_view)
    app.router.add_post("/w/{name}/bulk", bulk_action)
    app.router.add_post("/w/{name}/trigger", trigger)
    app.router.add_get("/w/{name}/i/{id}", instance_view)
    app.router.add_get("/w/{name}/i/{id}/value", value_view)
    app.router.add_get("/w/{name}/i/{id}/history", history_download)
    app.router.add_post("/w/{name}/i/{id}/restart-from", restart_from)
    app.router.add_post("/w/{name}/i/{id}/events", send_event)
    app.router.add_post("/w/{name}/i/{id}/{action}", action)
    for relative in STATIC_FILES:
        app.router.add_get(f"{STATIC_PREFIX}/{relative}", _static_handler(relative))
