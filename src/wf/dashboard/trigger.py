"""The trigger form of the instances page: a new instance with an optional id and JSON params.

The browser checks the JSON before sending (``static/lists.js``); the server checks it again,
and a refusal shows the page again with the form as it was and why: 400 for bad JSON or input,
409 for an id in use, 413 for params over the limit. Success leads to the new instance.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from aiohttp import web

from wf.dashboard.instances_page import TriggerForm, render
from wf.dashboard.responses import error_page
from wf.devserver.api import _engine
from wf.devserver.envelope import ApiError, from_wf_error
from wf.errors import InstanceAlreadyExists, WfError


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


async def trigger(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    instance_id = str(form.get("id", "")).strip()
    given = str(form.get("params", ""))  # shown again as it was typed
    text = given.strip()
    try:
        engine = _engine(request)
        name = engine.workflow(request.match_info["name"])
    except (WfError, ApiError) as exc:
        return error_page(exc)
    limit = engine.limits.payload_bytes
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > limit:
        message = f"params are {size} bytes; the limit is {limit} bytes"
        return await render(request, TriggerForm(instance_id, "", message), 413)
    try:
        params = json.loads(text, parse_constant=_refuse_constant) if text else None
    except json.JSONDecodeError as exc:
        message = f"params are not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        return await render(request, TriggerForm(instance_id, given, message), 400)
    except RecursionError:
        message = "params are not usable JSON: they are nested too deeply"
        return await render(request, TriggerForm(instance_id, given, message), 400)
    except ValueError as exc:  # NaN / Infinity
        message = f"params are not usable JSON: {exc}"
        return await render(request, TriggerForm(instance_id, given, message), 400)
    try:
        created = await engine.create(name, instance_id or None, params)
    except InstanceAlreadyExists as exc:
        return await render(request, TriggerForm(instance_id, given, exc.message), 409)
    except WfError as exc:
        error = from_wf_error(exc)
        return await render(request, TriggerForm(instance_id, given, error.message), error.status)
    path = f"/w/{quote(name, safe='')}/i/{quote(created.id, safe='')}"
    raise web.HTTPSeeOther(path)
