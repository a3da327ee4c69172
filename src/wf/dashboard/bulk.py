"""Bulk pause / resume / terminate / restart of the instances selected on the list.

One POST form (``action`` and a repeated ``id``), up to ``MAX_IDS`` ids; each instance goes
through the Controller as the single actions do, and a refusal of one (already finished, gone)
does not stop the others. The page it redirects back to (filters kept) says what was done.
"""

from __future__ import annotations

from aiohttp import web

from wf.dashboard import bulk_results
from wf.dashboard.instances_page import BULK_ACTIONS
from wf.dashboard.list_filters import ListFilters
from wf.dashboard.responses import error_page
from wf.devserver.api import _engine
from wf.devserver.envelope import BAD_REQUEST, ApiError
from wf.engine.controller import Controller
from wf.errors import StoreError, WfError

MAX_IDS = 1000
FORM_ROOM = 16  # fields beside the ids (action, csrf)
FORM_FIELDS = MAX_IDS + FORM_ROOM  # the most fields a dashboard form may send
TOO_MANY = f"a bulk action takes at most {MAX_IDS} instances"
LISTED = 20  # refusals named in the sentence; the rest are counted
PAST = {"pause": "paused", "resume": "resumed", "terminate": "terminated", "restart": "restarted"}


async def _act(engine: Controller, action: str, name: str, instance_id: str) -> None:
    if action == "pause":
        await engine.pause(name, instance_id)
    elif action == "resume":
        await engine.resume(name, instance_id)
    elif action == "terminate":
        await engine.terminate(name, instance_id, "api")
    else:
        await engine.restart(name, instance_id, None, None)


def summary(action: str, done: int, asked: int, refused: list[tuple[str, str]]) -> str:
    """ "terminated 2 of 3; 1 refused: q1: cannot terminate …"."""
    text = f"{PAST[action]} {done} of {asked}"
    if refused:
        named = "; ".join(f"{i}: {reason}" for i, reason in refused[:LISTED])
        more = f"; and {len(refused) - LISTED} more" if len(refused) > LISTED else ""
        text += f"; {len(refused)} refused: {named}{more}"
    return text


async def bulk_action(request: web.Request) -> web.StreamResponse:
    try:
        # aiohttp reads at most 1,000 form fields by default: room for the ids and the rest
        # (wf serve's guard has read the form already, for its CSRF field, with that room).
        if request.client_max_fields < FORM_FIELDS:
            request = request.clone(client_max_fields=FORM_FIELDS)
        form = await request.post()
    except web.HTTPRequestEntityTooLarge:
        return error_page(ApiError(400, BAD_REQUEST, TOO_MANY))
    action = str(form.get("action", ""))
    raw_ids = [str(v).strip() for v in form.getall("id", [])]
    try:
        if action not in BULK_ACTIONS:
            raise ApiError(
                400,
                BAD_REQUEST,
                f'unknown bulk action "{action[:40]}"; use one of ' + ", ".join(BULK_ACTIONS),
            )
        if len(raw_ids) > MAX_IDS:
            raise ApiError(400, BAD_REQUEST, f"{TOO_MANY}, got {len(raw_ids)}")
        ids = list(dict.fromkeys(i for i in raw_ids if i))
        if not ids:
            raise ApiError(400, BAD_REQUEST, "select at least one instance first")
        engine = _engine(request)
        name = engine.workflow(request.match_info["name"])
    except (WfError, ApiError) as exc:
        return error_page(exc)
    done = 0
    refused: list[tuple[str, str]] = []
    for index, instance_id in enumerate(ids):
        try:
            await _act(engine, action, name, instance_id)
            done += 1
        except StoreError as exc:  # the database went away: the rest would fail the same way
            refused.extend((i, exc.message) for i in ids[index:])
            break
        except WfError as exc:
            refused.append((instance_id, exc.message))
    token = bulk_results.remember(request.app, summary(action, done, len(ids), refused))
    try:
        back = ListFilters.parse(request.query).link(name)
    except ApiError:
        back = ListFilters().link(name)
    raise web.HTTPSeeOther(back + ("&" if "?" in back else "?") + f"bulk={token}")
