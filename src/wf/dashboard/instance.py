"""The one-instance page (``/w/{name}/i/{id}``) and what belongs to it alone: the live region
its script re-fetches on each server-sent event, the step timeline, the events received and
still buffered, restart from a step with edited params, large values fetched on demand, and
the history file to download (what ``wf.testing`` replays)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

from aiohttp import web

from wf.dashboard import values
from wf.dashboard.render import page
from wf.dashboard.responses import error_page, html
from wf.dashboard.timeline import timeline
from wf.devserver.api import _engine, _reads
from wf.devserver.envelope import BAD_REQUEST, NO_ROUTE, ApiError, from_wf_error
from wf.devserver.subscribe import FINISHED, START, facts
from wf.engine import codec
from wf.engine.controller import Controller
from wf.engine.details import instance_details, iso
from wf.engine.model import RESTART_TYPES, EventRecord, History, InstanceRow, StepKind
from wf.errors import WfError

CONTROLS = ("pause", "resume", "terminate", "restart")
DONE = (*CONTROLS, "event", "restart-from")
START_OVER = ""  # the restart-from select's first choice: from the beginning


@dataclass(frozen=True)
class Loaded:
    row: InstanceRow
    history: History
    details: dict[str, Any]
    events: list[EventRecord]


@dataclass(frozen=True)
class RestartForm:
    """What the restart-from form shows: the choice and the params text (the user's, when the
    page is shown again because they were refused)."""

    chosen: str = START_OVER
    params: str | None = None  # None: the instance's params


async def load(engine: Controller, workflow: str, instance_id: str) -> Loaded:
    """The instance with its history and events, read once for one page."""
    row = await engine.row(workflow, instance_id)
    history = await engine.store.load_history(row.pk)
    events = await engine.store.load_events(row.pk)
    return Loaded(row, history, instance_details(row, history), events)


def restart_choice(kind: StepKind, name: str, count: int) -> str:
    """A step as the restart-from select's value: ``do:1:charge card`` (the name may hold ``:``)."""
    return f"{kind.restart_type}:{count}:{name}"


def restart_choices(history: History) -> list[tuple[str, str]]:
    """(value, label) of every step a restart can start from (rollback handlers cannot)."""
    return [
        (restart_choice(s.kind, s.name, s.count), f"{s.name}-{s.count} ({s.kind.restart_type})")
        for s in history.steps
        if s.kind is not StepKind.ROLLBACK
    ]


def parse_choice(value: str) -> dict[str, Any] | None:
    """The ``from`` of ``Controller.restart`` for a restart-from select value; None: start over."""
    if value == START_OVER:
        return None
    kind, _, rest = value.partition(":")
    count, _, name = rest.partition(":")
    if kind not in RESTART_TYPES or not (count.isascii() and count.isdigit()) or not name:
        raise ApiError(400, BAD_REQUEST, f"unknown step to restart from: {value!r}")
    return {"name": name, "count": int(count), "type": kind}


def _events(loaded: Loaded) -> list[dict[str, Any]]:
    return [
        {
            "index": index,
            "type": event.type,
            "payload": codec.decode(event.payload),
            "received": iso(event.received),
            "by": None if event.consumed_by is None else "{}-{}".format(*event.consumed_by),
        }
        for index, event in enumerate(loaded.events)
    ]


def _subscribe_url(details: dict[str, Any]) -> str:
    """The instance's event stream, resuming after what this page shows already."""
    found = facts(details)
    cursor = found[-1].id if found else START
    name, instance_id = quote(details["workflow"], safe=""), quote(details["id"], safe="")
    query = urlencode({"cursor": cursor})
    return f"/api/workflows/{name}/instances/{instance_id}/subscribe?{query}"


async def instance_page(
    request: web.Request,
    message: str | None = None,
    status: int = 200,
    restart: RestartForm | None = None,
) -> web.Response:
    """The page; with ``message`` (an action refused), shown with that HTTP ``status``."""
    name, instance_id = request.match_info["name"], request.match_info["id"]
    try:
        loaded = await load(_reads(request), name, instance_id)
    except (WfError, ApiError) as exc:
        return error_page(exc)
    details = loaded.details
    restart = restart or RestartForm()
    events = _events(loaded)
    done = request.query.get("done", "")
    return html(
        page(
            "instance.html",
            workflow=details["workflow"],
            instance=details,
            actions=CONTROLS,
            done=done if done in DONE else "",
            message=message,
            live=details["status"] not in FINISHED,
            subscribe=_subscribe_url(details),
            timeline=timeline(details),
            received=[e for e in events if e["by"] is not None],
            buffered=[e for e in events if e["by"] is None],
            restart_choices=restart_choices(loaded.history),
            restart_chosen=restart.chosen,
            restart_params=(
                values.pretty(details["params"]) if restart.params is None else restart.params
            ),
            shown=values.shown,
            value_query=values.query,
        ),
        status,
    )


async def instance_view(request: web.Request) -> web.Response:
    return await instance_page(request)


async def restart_from(request: web.Request) -> web.StreamResponse:
    """Restart from the chosen step (or from the start) with the params of the form."""
    name, instance_id = request.match_info["name"], request.match_info["id"]
    form = await request.post()
    chosen = str(form.get("from", START_OVER))
    text = str(form.get("params", ""))
    kept = RestartForm(chosen, text)
    try:
        params = json.loads(text) if text.strip() else None
    except ValueError as exc:
        message = f"params are not valid JSON: {exc}; nothing was restarted"
        return await instance_page(request, message, 400, kept)
    except RecursionError:
        message = "params are not usable JSON: nested too deeply; nothing was restarted"
        return await instance_page(request, message, 400, kept)
    try:
        engine = _engine(request)
        from_step = parse_choice(chosen)
        row = await engine.row(name, instance_id)
        if params is not None and params == codec.decode(row.params):
            params = None  # unchanged: not recorded as new params
        await engine.restart(name, instance_id, from_step, params)
    except (WfError, ApiError) as exc:
        error = from_wf_error(exc) if isinstance(exc, WfError) else exc
        message = f"restart refused: {error.message}"
        return await instance_page(request, message, error.status, kept)
    where = f"/w/{quote(name, safe='')}/i/{quote(instance_id, safe='')}"
    raise web.HTTPSeeOther(f"{where}?{urlencode({'done': 'restart-from'})}")


async def value_view(request: web.Request) -> web.Response:
    """One value in full, as an HTML fragment (a collapsed value's "show" button fetches it)."""
    name, instance_id = request.match_info["name"], request.match_info["id"]
    try:
        loaded = await load(_reads(request), name, instance_id)
        value, testid = values.find(loaded.details, loaded.events, request.query)
    except (WfError, ApiError) as exc:
        return error_page(exc)
    except values.NoSuchValue as exc:
        return error_page(ApiError(404, NO_ROUTE, str(exc)))
    return html(page("_value.html", text=values.pretty(value), testid=testid))


_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


async def history_download(request: web.Request) -> web.StreamResponse:
    """The history file (format "wf-history") as an attachment: what ``wf instances export``
    writes and ``wf.testing``'s ``History.load`` reads."""
    name, instance_id = request.match_info["name"], request.match_info["id"]
    try:
        history = await _reads(request).history(name, instance_id)
    except (WfError, ApiError) as exc:
        return error_page(exc)
    filename = _UNSAFE.sub("_", f"{history['workflow']}-{history['id']}.history.json")
    return web.Response(
        text=json.dumps(history, indent=2, ensure_ascii=False) + "\n",
        content_type="application/json",
        charset="utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="{filename}"',
            "Cache-Control": "no-store",
        },
    )
