"""The REST API (Cloudflare's paths and envelope) over a running engine.

``create_app(state)`` serves ``/api/...`` over ``state.engine``; when the project failed to load
(``state.engine is None``) the routes that need its code answer 503 with the load error, the read
routes answer from ``state.reader`` (the store, read-only) when there is one, and
``/api/health`` still answers so the supervisor and ``wf dev`` can tell "up but broken".
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from aiohttp import web

from wf.devserver import cloudflare_paths, openapi, subscribe
from wf.devserver.bad_requests import unreadable_body
from wf.devserver.batch_body import NotAnArray, array_items
from wf.devserver.envelope import (
    BAD_REQUEST,
    INTERNAL,
    NO_ROUTE,
    PROJECT_BROKEN,
    TOO_LARGE,
    WORKFLOW_IN_CONFIG,
    ApiError,
    error_response,
    from_wf_error,
    ok,
)
from wf.devserver.security import host_middleware, origin_middleware, token_middleware
from wf.devserver.state import STATE_KEY, ServerState
from wf.durations import to_seconds
from wf.engine import codec
from wf.engine.controller import Controller, EncodedParams
from wf.engine.cron import schedules_json
from wf.engine.details import iso, trigger_source
from wf.engine.flow import check_priority
from wf.engine.limits import DEFAULT_LIMITS, MIB, Limits, check_identifier
from wf.engine.model import InstanceRow, Status
from wf.engine.retention import parse_retention
from wf.engine.tracing import valid_traceparent
from wf.errors import StoreUnavailable, ValidationError, WfError, quote

if TYPE_CHECKING:
    from aiohttp.typedefs import Handler

log = logging.getLogger("wf.server")

ENVELOPE_ALLOWANCE = 64 * 1024
MAX_BODY = MIB + ENVELOPE_ALLOWANCE  # 1 MiB of params or payload, plus the JSON around it
BODY_ROOM = f"1 MiB of params or payload plus {ENVELOPE_ALLOWANCE // 1024} KiB of JSON around it"
# Cloudflare limits params per instance, not per request: a batch has room for each instance's.
MAX_BATCH_BODY = DEFAULT_LIMITS.batch_size * MAX_BODY
BATCH_ROOM = (
    f"{DEFAULT_LIMITS.batch_size} instances of 1 MiB of params each, plus "
    f"{ENVELOPE_ALLOWANCE // 1024} KiB of JSON around each"
)
MAX_PER_PAGE = 1000
MAX_PAGE = 1_000_000_000  # keeps offsets within SQLite's integers
DEFAULT_PER_PAGE = 25
DEFAULT_STATS_WINDOW = "1h"
TRIGGER_HEADER = "X-WF-Trigger"
TRIGGERS = ("api", "cli")
ACTIONS = ("pause", "resume", "terminate", "restart")
RESTART_KEYS = ("from", "params")  # restart from a step; new params (beyond Cloudflare)


class _Empty:
    """An empty request body (distinct from a JSON ``null``)."""


EMPTY = _Empty()


def bad_request(message: str) -> ApiError:
    return ApiError(400, BAD_REQUEST, message)


def too_large(size: int | None = None, limit: int = MAX_BODY, room: str = BODY_ROOM) -> ApiError:
    got = f" ({size} bytes)" if size is not None else ""
    return ApiError(
        413, TOO_LARGE, f"request body is too large{got}: the limit is {limit} bytes ({room})"
    )


# ---- errors as envelopes ---------------------------------------------------------------------


def _from_http_exception(request: web.Request, exc: web.HTTPException) -> web.StreamResponse:
    if exc.status == 404:
        return error_response(
            ApiError(
                404,
                NO_ROUTE,
                f"no route {request.method} {request.path}; the routes are listed at "
                "/api/openapi.json",
            )
        )
    if exc.status == 405:
        allowed = sorted(getattr(exc, "allowed_methods", ()) or ())
        headers = {"Allow": ", ".join(allowed)} if allowed else None
        return error_response(
            ApiError(
                405,
                NO_ROUTE,
                f"method {request.method} is not allowed on {request.path}; "
                f"allowed: {', '.join(allowed) or 'none'}",
                headers,
            )
        )
    if exc.status == 413:
        return error_response(too_large())
    if exc.status < 400:
        raise exc  # redirects and the like stay what they are
    return error_response(
        ApiError(exc.status, INTERNAL if exc.status >= 500 else BAD_REQUEST, exc.reason)
    )


@web.middleware
async def envelope_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure becomes one envelope; tracebacks go to the log, never to the client."""
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(exc)
    except web.RequestPayloadError as exc:
        return error_response(unreadable_body(exc))
    except web.HTTPException as exc:
        return _from_http_exception(request, exc)
    except WfError as exc:
        error = from_wf_error(exc)
        # A database that went away is said once by its store, not once a request.
        if error.status >= 500 and not isinstance(exc, StoreUnavailable):
            log.error("%s %s failed: %s", request.method, request.path, exc.message)
        return error_response(error)
    except Exception as exc:
        log.exception("%s %s failed", request.method, request.path)
        detail = str(exc) or "no detail"
        return error_response(
            ApiError(
                500,
                INTERNAL,
                f"internal error while handling {request.method} {request.path}: "
                f"{type(exc).__name__}: {detail} (details in the server log)",
            )
        )


# ---- request helpers -------------------------------------------------------------------------


def _state(request: web.Request) -> ServerState:
    return request.app[STATE_KEY]


def _engine(request: web.Request) -> Controller:
    state = _state(request)
    if state.engine is None:
        raise ApiError(503, PROJECT_BROKEN, state.load_error or "the project failed to load")
    return state.engine


def _reads(request: web.Request) -> Controller:
    """Who answers a read: the engine, or the store reader while the project's code does not
    load (the answers are the same: the same controller methods over the same store)."""
    state = _state(request)
    found = state.engine or state.reader
    if found is None:
        message = state.read_error or state.load_error or "the project failed to load"
        raise ApiError(503, PROJECT_BROKEN, message)
    return found


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


async def read_body(request: web.Request, limit: int = MAX_BODY, room: str = BODY_ROOM) -> bytes:
    """The raw body, at most ``limit`` bytes: refused before reading it (Content-Length) or
    while reading it (chunked). Read here rather than by aiohttp, whose one limit is the app's."""
    length = request.content_length
    if length is not None and length > limit:
        raise too_large(length, limit, room)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_chunked(1 << 16):
        size += len(chunk)
        if size > limit:
            raise too_large(None, limit, room)
        chunks.append(chunk)
    return b"".join(chunks)


def _body_text(raw: bytes) -> str | None:
    """The body as text, None when it is empty or blank."""
    if not raw.strip():
        return None
    try:
        return raw.decode("utf-8-sig")  # RFC 8259 lets a parser ignore a byte order mark
    except UnicodeDecodeError as exc:
        raise bad_request(f"body is not UTF-8 text (invalid byte at offset {exc.start})") from None


def _not_json(exc: ValueError | RecursionError) -> ApiError:
    if isinstance(exc, json.JSONDecodeError):
        return bad_request(
            f"body is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        )
    if isinstance(exc, RecursionError):
        return bad_request("body is not usable JSON: it is nested too deeply")
    return bad_request(f"body is not valid JSON: {exc}")  # NaN / Infinity


async def read_json(request: web.Request) -> Any:
    """The body as JSON, ``EMPTY`` when there is none. Refuses oversized bodies, and invalid
    JSON with its position."""
    text = _body_text(await read_body(request))
    if text is None:
        return EMPTY
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as exc:
        raise _not_json(exc) from None


def _int_param(request: web.Request, name: str, default: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    text = raw.strip()
    value = int(text) if text.isascii() and text.isdigit() and len(text) <= 12 else None
    if value is None or not 1 <= value <= high:
        shown = raw if value is None else value
        raise bad_request(f'{name} must be an integer from 1 to {high}, got "{shown}"')
    return value


def _bool_param(request: web.Request, name: str, default: bool) -> bool:
    raw = request.query.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in ("true", "1", "yes", ""):
        return True
    if value in ("false", "0", "no"):
        return False
    raise bad_request(f'{name} must be true or false, got "{raw}"')


def _date_param(request: web.Request, name: str) -> float | None:
    """An ISO 8601 date (UTC when it names no offset) as epoch seconds, or None."""
    raw = request.query.get(name)
    if raw is None:
        return None
    text = raw.strip()
    try:
        stamp = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
    except ValueError:
        raise bad_request(f'{name} must be an ISO 8601 date, got "{raw}"') from None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=timezone.utc)
    return stamp.timestamp()


def _paging(request: web.Request) -> tuple[int, int]:
    page = _int_param(request, "page", 1, MAX_PAGE)
    per_page = _int_param(request, "per_page", DEFAULT_PER_PAGE, MAX_PER_PAGE)
    return page, per_page


def _result_info(page: int, per_page: int, count: int, total: int) -> dict[str, int]:
    return {"page": page, "per_page": per_page, "count": count, "total_count": total}


def page_of(request: web.Request, items: list[Any]) -> web.Response:
    """The page of ``items`` the request asks for (?page, ?per_page): clients page until one
    comes back empty (Cloudflare's SDKs do)."""
    page, per_page = _paging(request)
    chosen = items[(page - 1) * per_page : page * per_page]
    return ok(chosen, result_info=_result_info(page, per_page, len(chosen), len(items)))


def _trigger(request: web.Request) -> str:
    raw = request.headers.get(TRIGGER_HEADER)
    if raw is None:
        return "api"
    value = raw.strip().lower()
    if value not in TRIGGERS:
        raise bad_request(f'{TRIGGER_HEADER} must be "api" or "cli", got "{raw}"')
    return value


def _traceparent(request: web.Request) -> str | None:
    """The W3C trace context the request came with: stored with the instances it creates, so
    their spans join the caller's trace (malformed: ignored, as the W3C spec says)."""
    return valid_traceparent(request.headers.get("traceparent"))


def _instance_item(body: Mapping[str, Any], where: str) -> dict[str, Any]:
    """``{"id"?, "params"?, "instance_retention"?, "priority"?}`` with Cloudflare's
    ``instance_id`` accepted for ``id``; retention durations are strings or (as Cloudflare's)
    milliseconds; ``priority`` a whole number, higher claimed first."""
    for key in body:
        if key not in ("id", "instance_id", "params", "instance_retention", "priority"):
            raise bad_request(
                f'{where} has unknown key "{key}"; expected id, params, instance_retention '
                "and priority"
            )
    if "id" in body and "instance_id" in body:
        raise bad_request(f'{where} has both "id" and "instance_id"; give one')
    item: dict[str, Any] = {}
    instance_id = body.get("id", body.get("instance_id"))
    if instance_id is not None:
        item["id"] = instance_id
    if "params" in body:
        item["params"] = body["params"]
    if body.get("priority") is not None:
        try:
            item["priority"] = check_priority(body["priority"])
        except ValidationError as exc:
            raise bad_request(f"{where}.{exc}") from None
    if body.get("instance_retention") is not None:
        try:
            item["retention"] = parse_retention(
                body["instance_retention"], f"{where}.instance_retention", numbers_are_ms=True
            )
        except ValidationError as exc:
            raise bad_request(str(exc)) from None
    return item


def _batch_item(entry: Any, index: int, limits: Limits) -> dict[str, Any]:
    """One instance of a batch, its params encoded as they are stored; errors name it."""
    where = f"batch[{index}]"
    if not isinstance(entry, dict):
        raise bad_request(f"{where} must be an object with id and params, got {_json_type(entry)}")
    item = _instance_item(entry, where)
    instance_id = item.get("id")
    if instance_id is not None:
        try:
            check_identifier(instance_id, "instance id", limits.id_length)
        except ValidationError as exc:
            raise bad_request(f"{where}: {exc}") from None
        where += f" (id {quote(instance_id)})"
    params = item.get("params")
    try:
        text = codec.encode_payload(
            {} if params is None else params, "params", limits.payload_bytes
        )
    except ValidationError as exc:
        raise bad_request(f"{where}: {exc}") from None
    item["params"] = EncodedParams(text)
    return item


def _read_batch(text: str, limits: Limits) -> list[dict[str, Any]]:
    """The instances of a batch body, read one at a time. A body that is not JSON is said so
    first (the reading goes on past a wrong instance), then the first wrong instance."""
    items: list[dict[str, Any]] = []
    problem: ApiError | None = None
    count = 0
    try:
        for index, entry in enumerate(array_items(text)):
            count += 1
            if problem is None and count <= limits.batch_size:
                try:
                    items.append(_batch_item(entry, index, limits))
                except ApiError as exc:
                    problem = exc
    except NotAnArray as exc:
        raise bad_request(
            f'body must be a JSON array of {{"id", "params"}} objects, or {{"count", "params"}} '
            f'or {{"instances": [...]}}, got {exc.kind}'
        ) from None
    except (ValueError, RecursionError) as exc:
        raise _not_json(exc) from None
    if problem is not None:
        raise problem
    if count > limits.batch_size:
        raise bad_request(f"a batch holds at most {limits.batch_size} instances, got {count}")
    return items


# ---- shapes ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _WorkflowInfo:
    name: str
    binding: str | None
    class_name: str
    script_name: str
    schedules: tuple[str, ...] = ()


def _workflows(state: ServerState, engine: Controller) -> list[_WorkflowInfo]:
    """The workflows served, in wf.toml's order, with their wf.toml binding and class."""
    configs = {w.name: w for w in state.workflows}
    found: list[_WorkflowInfo] = []
    for name in engine.workflow_names():
        config = configs.get(name)
        if config is not None:
            found.append(
                _WorkflowInfo(
                    name, config.binding, config.class_name, state.project_name, config.schedules
                )
            )
        else:
            binding, class_name = engine.describe_workflow(name)
            script = engine.script_name(name) or state.project_name
            schedules = engine.workflow_schedules(name)
            found.append(_WorkflowInfo(name, binding, class_name, script, schedules))
    return found


def _workflow_info(state: ServerState, engine: Controller, name: str) -> _WorkflowInfo:
    """One served workflow (``name`` already checked by ``engine.workflow``)."""
    return next(w for w in _workflows(state, engine) if w.name == name)


async def _workflow_json(
    state: ServerState, engine: Controller, info: _WorkflowInfo
) -> dict[str, Any]:
    counts = await engine.store.count_statuses(info.name)
    # Oldest creation, newest creation (the last trigger), latest change of its instances.
    created, triggered, modified = await engine.store.workflow_times(info.name)
    loaded = iso(state.started)
    return {
        "id": info.name,  # Cloudflare's workflows have an id besides the name; wf's is the name
        "name": info.name,
        "binding": info.binding,
        "class_name": info.class_name,
        "script_name": info.script_name,
        "version_id": _version(state, engine),
        # Never null: Cloudflare's clients sort and parse these (wrangler's workflows list).
        "created_on": iso(created) or loaded,
        "modified_on": iso(modified) or loaded,
        "triggered_on": iso(triggered),
        "instances": {s.value: counts.get(s.value, 0) for s in Status},
        "schedules": schedules_json(info.schedules, engine.clock.now()),
    }


def _version(state: ServerState, engine: Controller | None) -> str | None:
    if state.version_id is not None:
        return state.version_id
    return engine.current_version() if engine is not None else None


def _summary(row: InstanceRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "status": row.status.value,
        "version_id": row.version_id,
        "workflow_id": row.workflow,
        "workflow": row.workflow,
        "created_on": iso(row.created),
        "modified_on": iso(row.modified),
        "started_on": iso(row.started),
        "ended_on": iso(row.ended),
        "trigger": trigger_source(row.trigger),
        "trigger_source": trigger_source(row.trigger),
    }


def _created(
    engine: Controller, workflow: str, instance_id: str, trigger: str = "api"
) -> dict[str, Any]:
    return {
        "id": instance_id,
        "status": Status.QUEUED.value,
        "version_id": engine.new_instance_version(workflow),
        "workflow_id": workflow,
        "workflow": workflow,
        "trigger_source": trigger_source(trigger),
    }


# ---- handlers --------------------------------------------------------------------------------


async def health(request: web.Request) -> web.Response:
    state = _state(request)
    engine = state.engine
    if engine is not None:
        names = [w.name for w in _workflows(state, engine)]
    else:
        names = [w.name for w in state.workflows]
    broken = engine is None or state.load_error is not None
    result = {
        "status": "error" if broken else "ok",
        "project": state.project_name,
        "version_id": _version(state, engine),
        "workflows": names,
        "error": (state.load_error or "the project failed to load") if broken else None,
    }
    if state.node_status is not None:
        result.update(await state.node_status())
    return ok(result)


async def openapi_document(request: web.Request) -> web.Response:
    serve = _state(request).serve
    return web.Response(text=openapi.document_text(serve), content_type="application/json")


async def get_stats(request: web.Request) -> web.Response:
    """``wf stats``: a summary per workflow over the window ``since`` (default 1h)."""
    engine = _reads(request)
    since = request.query.get("since", DEFAULT_STATS_WINDOW)
    try:
        window = to_seconds(since, "since")
    except ValidationError as exc:
        raise bad_request(str(exc)) from None
    return ok(await engine.stats(request.query.get("workflow") or None, window))


async def list_workflows(request: web.Request) -> web.Response:
    engine = _reads(request)
    state = _state(request)
    page, per_page = _paging(request)
    search = request.query.get("search", "").casefold()
    every = [w for w in _workflows(state, engine) if search in w.name.casefold()]
    chosen = every[(page - 1) * per_page : page * per_page]
    result = [await _workflow_json(state, engine, info) for info in chosen]
    return ok(result, result_info=_result_info(page, per_page, len(result), len(every)))


async def get_workflow(request: web.Request) -> web.Response:
    engine = _reads(request)
    state = _state(request)
    name = engine.workflow(request.match_info["name"])
    info = _workflow_info(state, engine, name)
    return ok(await _workflow_json(state, engine, info))


# What Cloudflare's update (PUT) may set that wf takes from wf.toml alone.
CONFIG_ONLY = ("concurrency", "default_retention", "limits", "schedules")


async def put_workflow(request: web.Request) -> web.Response:
    """Cloudflare's "create or update a workflow" (its SDK's ``workflows.update``). A wf
    workflow is its code and wf.toml, so an update that matches them answers the workflow, and
    one that would change them is refused (409), naming what differs."""
    engine = _reads(request)
    state = _state(request)
    name = engine.workflow(request.match_info["name"])
    info = _workflow_info(state, engine, name)
    body = await read_json(request)
    if not isinstance(body, dict):
        raise bad_request("the body must be a JSON object with class_name and script_name")
    wanted = {"class_name": info.class_name, "script_name": info.script_name}
    for key in wanted:
        if key not in body:
            raise bad_request(f"{key} is missing from the body")
    for key, value in wanted.items():
        if body[key] != value:
            raise _defined_in_config(name, f'{key} is "{value}", not {json.dumps(body[key])}')
    for key in CONFIG_ONLY:
        if body.get(key) is not None:  # null asks for no change
            raise _defined_in_config(name, f"{key} is set in wf.toml")
    # Cloudflare's update answer also says whether the workflow is deleted and whether a
    # terminate-all job runs (as 0/1): neither, here (wf's terminate-all ends before it answers).
    workflow = await _workflow_json(state, engine, info)
    return ok({**workflow, "is_deleted": 0, "terminator_running": 0})


def _defined_in_config(name: str, detail: str) -> ApiError:
    return ApiError(
        409,
        WORKFLOW_IN_CONFIG,
        f'workflow "{name}" is defined by the project: {detail}; change wf.toml or the code and '
        "deploy it (wf deploy), or let wf dev reload it",
    )


async def delete_workflow(request: web.Request) -> web.Response:
    engine = _engine(request)
    name = engine.workflow(request.match_info["name"])
    deleted = await engine.delete_workflow_instances(name)
    log.info("deleted %d instance(s) of workflow %s", deleted, name)
    return ok({"status": "ok", "name": name, "deleted": deleted})


async def list_instances(request: web.Request) -> web.Response:
    engine = _reads(request)
    name = request.match_info["name"]
    page, per_page = _paging(request)
    oldest_first = _bool_param(request, "reverse", False)
    status = request.query.get("status")
    rows, total = await engine.list_instances(
        name,
        status=status if status else None,
        page=page,
        per_page=per_page,
        newest_first=not oldest_first,
        since=_date_param(request, "date_start"),
        until=_date_param(request, "date_end"),
    )
    result = [_summary(row) for row in rows]
    return ok(result, result_info=_result_info(page, per_page, len(result), total))


async def create_instance(request: web.Request) -> web.Response:
    engine = _engine(request)
    name = engine.workflow(request.match_info["name"])
    trigger = _trigger(request)
    body = await read_json(request)
    if body is EMPTY:
        body = {}
    if not isinstance(body, dict):
        raise bad_request(
            f'body must be a JSON object such as {{"id": "...", "params": {{}}}}, '
            f"got {_json_type(body)}"
        )
    item = _instance_item(body, "body")
    instance = await engine.create(
        name,
        item.get("id"),
        item.get("params"),
        trigger,
        item.get("retention"),
        item.get("priority"),
        traceparent=_traceparent(request),
    )
    return ok(_created(engine, name, instance.id), status=201)


async def create_batch(request: web.Request) -> web.Response:
    engine = _engine(request)
    name = engine.workflow(request.match_info["name"])
    trigger = _trigger(request)
    text = _body_text(await read_body(request, MAX_BATCH_BODY, BATCH_ROOM))
    if text is None:
        raise bad_request('body must be a JSON array of {"id", "params"} objects, got nothing')
    traceparent = _traceparent(request)
    if text.lstrip().startswith("{"):
        return await _create_many(engine, name, text, trigger, traceparent)
    items = _read_batch(text, engine.limits)
    del text  # up to 100 MiB: let it go before the instances are written
    instances = await engine.create_batch(name, items, trigger, traceparent)
    return ok([_created(engine, name, i.id) for i in instances], status=201)


async def _create_many(
    engine: Controller, name: str, text: str, trigger: str, traceparent: str | None
) -> web.Response:
    """The object form: ``{"count": N, "params"}`` or ``{"instances": [{"instance_id",
    "params", "instance_retention"}]}`` → ``{"created": [...], "errors": [...]}``."""
    try:
        body = json.loads(text, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as exc:
        raise _not_json(exc) from None
    del text
    request: dict[str, Any] = dict(body)
    if "instances" in request and isinstance(request["instances"], list):
        items = []
        for index, entry in enumerate(request["instances"]):
            if not isinstance(entry, dict):
                raise bad_request(
                    f"instances[{index}] must be an object with instance_id and params, "
                    f"got {_json_type(entry)}"
                )
            items.append(_instance_item(entry, f"instances[{index}]"))
        request["instances"] = items
    elif "instance_retention" in request:
        request["retention"] = _instance_item(
            {"instance_retention": request.pop("instance_retention")}, "body"
        ).get("retention")
    created, errors = await engine.create_many(name, request, trigger, traceparent)
    result = {"created": [_created(engine, name, i.id) for i in created], "errors": errors}
    return ok(result, status=201 if created else 200)


async def delete_instance(request: web.Request) -> web.Response:
    """Delete an instance with its history; a running one stops, without rollbacks."""
    engine = _engine(request)
    name, instance_id = request.match_info["name"], request.match_info["id"]
    await engine.delete(name, instance_id)
    log.info("deleted instance %s/%s", name, instance_id)
    return ok({"id": instance_id, "deleted": True})


async def delete_batch(request: web.Request) -> web.Response:
    """``{"instances": [ids]}`` (1 to 100) → ``{"deleted": [{"id"}], "errors": [...]}``."""
    engine = _engine(request)
    name = engine.workflow(request.match_info["name"])
    body = await read_json(request)
    usage = 'body must be {"instances": ["<id>", ...]}'
    if not isinstance(body, dict) or set(body) != {"instances"}:
        got = "nothing" if body is EMPTY else _json_type(body)
        raise bad_request(f"{usage}, got {got}")
    ids = body["instances"]
    if not isinstance(ids, list):
        raise bad_request(f"{usage}; instances is {_json_type(ids)}")
    return ok(await engine.delete_batch(name, ids))


async def get_instance(request: web.Request) -> web.Response:
    engine = _reads(request)
    name, instance_id = request.match_info["name"], request.match_info["id"]
    return ok(await engine.details(name, instance_id))


async def get_history(request: web.Request) -> web.Response:
    """The instance's full history (format "wf-history"), for ``wf instances export`` and replay."""
    engine = _reads(request)
    name, instance_id = request.match_info["name"], request.match_info["id"]
    return ok(await engine.history(name, instance_id))


async def subscribe_instance(request: web.Request) -> web.StreamResponse:
    """The instance's progress as server-sent events (see ``wf.devserver.subscribe``)."""
    return await subscribe.subscribe(request, _reads(request))


async def change_status(request: web.Request) -> web.Response:
    engine = _engine(request)
    name, instance_id = request.match_info["name"], request.match_info["id"]
    trigger = _trigger(request)
    body = await read_json(request)
    usage = 'body must be {"status": "pause" | "resume" | "terminate" | "restart"}'
    if not isinstance(body, dict):
        got = "nothing" if body is EMPTY else _json_type(body)
        raise bad_request(f"{usage}, got {got}")
    for key in body:
        if key not in ("status", "action", "rollback", *RESTART_KEYS):
            raise bad_request(f'body has unknown key "{key}"; {usage}')
    if "status" in body and "action" in body:
        raise bad_request(f'body has both "status" and "action"; give one ({usage})')
    if "status" not in body and "action" not in body:
        raise bad_request(usage)
    action = body.get("status", body.get("action"))
    if action not in ACTIONS:
        shown = f'"{action}"' if isinstance(action, str) else _json_type(action)
        raise bad_request(f"unknown status change {shown}; use one of {', '.join(ACTIONS)}")
    for key in RESTART_KEYS:
        if key in body and action != "restart":
            raise bad_request(f'"{key}" goes with "status": "restart" only')
    rollback = body.get("rollback", False)
    if not isinstance(rollback, bool):
        raise bad_request(f'"rollback" must be true or false, got {_json_type(rollback)}')
    if rollback and action != "terminate":
        raise bad_request('"rollback" goes with {"status": "terminate"} only')
    if action == "pause":
        row = await engine.pause(name, instance_id)
    elif action == "resume":
        row = await engine.resume(name, instance_id)
    elif action == "terminate":
        row = await engine.terminate(name, instance_id, trigger, rollback=rollback)
    else:
        row = await engine.restart(name, instance_id, body.get("from"), body.get("params"))
    log.info("%s %s/%s → %s", action, name, instance_id, row.status.value)
    return ok({"status": row.status.value, "timestamp": iso(engine.clock.now())})


async def terminate_all(request: web.Request) -> web.Response:
    """Terminate every unfinished instance (``?status=`` one unfinished status): the route of
    wrangler's ``workflows instances terminate-all``. Cloudflare starts a job and answers
    ``{"status": "ok"}``; wf terminates them before answering, and says how many."""
    engine = _engine(request)
    name = engine.workflow(request.match_info["name"])
    # It ends every unfinished instance: anything it would not understand (a misspelt filter,
    # a body) is refused before it ends any, not taken for "all".
    unknown = sorted(set(request.query) - {"status"})
    if unknown:
        raise bad_request(f'unknown query parameter "{unknown[0]}"; only "status" filters')
    status = request.query.get("status")
    if status == "":
        raise bad_request('"status" is empty; leave it out to terminate every unfinished one')
    if await read_json(request) is not EMPTY:
        raise bad_request("the body must be empty; filter with ?status=")
    terminated = await engine.terminate_all(name, status, _trigger(request))
    log.info("terminated %d instance(s) of workflow %s", terminated, name)
    return ok({"status": "ok", "terminated": terminated})


async def send_event(request: web.Request) -> web.Response:
    engine = _engine(request)
    name, instance_id = request.match_info["name"], request.match_info["id"]
    event_type = request.match_info["type"]
    body = await read_json(request)
    payload = None if body is EMPTY else body
    row = await engine.send_event(name, instance_id, event_type, payload)
    # instanceId and timestamp: Cloudflare's answer, as its SDKs read it.
    result = {"type": event_type, "instance_id": row.id, "instanceId": row.id}
    return ok({**result, "timestamp": iso(engine.clock.now())})


def _dev_version_json(state: ServerState, engine: Controller, name: str) -> dict[str, Any] | None:
    """wf dev's one version of workflow ``name``: the code it runs now."""
    version = _version(state, engine)
    if version is None:
        return None
    info = _workflow_info(state, engine, name)
    loaded = iso(state.started)
    return {
        "id": version,
        "workflow_id": name,
        "workflow": name,
        "class_name": info.class_name,
        "created_on": loaded,
        "modified_on": loaded,
        "active": True,
        "has_dag": False,
        "language": "python",
    }


async def list_dev_versions(request: web.Request) -> web.Response:
    """wf dev runs one version, the project's code as it is now (wf serve keeps every deploy)."""
    engine = _reads(request)
    name = engine.workflow(request.match_info["name"])
    found = _dev_version_json(_state(request), engine, name)
    return page_of(request, [] if found is None else [found])


async def get_dev_version(request: web.Request) -> web.Response:
    engine = _reads(request)
    name = engine.workflow(request.match_info["name"])
    found = _dev_version_json(_state(request), engine, name)
    wanted = request.match_info["version_id"]
    if found is None or found["id"] != wanted:
        raise ApiError(404, NO_ROUTE, f'no version "{wanted}" of workflow "{name}"')
    return ok(found)


# ---- the app ---------------------------------------------------------------------------------

ROUTES: tuple[tuple[str, str, Handler], ...] = (
    ("GET", "/api/health", health),
    ("GET", "/api/openapi.json", openapi_document),
    ("GET", "/api/stats", get_stats),
    ("GET", "/api/workflows", list_workflows),
    ("GET", "/api/workflows/{name}", get_workflow),
    ("PUT", "/api/workflows/{name}", put_workflow),
    ("DELETE", "/api/workflows/{name}", delete_workflow),
    ("GET", "/api/workflows/{name}/instances", list_instances),
    ("POST", "/api/workflows/{name}/instances", create_instance),
    ("POST", "/api/workflows/{name}/instances/batch", create_batch),
    ("POST", "/api/workflows/{name}/instances/batch/delete", delete_batch),
    ("PUT", "/api/workflows/{name}/instances/terminate", terminate_all),
    ("GET", "/api/workflows/{name}/instances/{id}", get_instance),
    ("DELETE", "/api/workflows/{name}/instances/{id}", delete_instance),
    ("GET", "/api/workflows/{name}/instances/{id}/history", get_history),
    ("GET", "/api/workflows/{name}/instances/{id}/subscribe", subscribe_instance),
    ("PATCH", "/api/workflows/{name}/instances/{id}/status", change_status),
    ("POST", "/api/workflows/{name}/instances/{id}/events/{type}", send_event),
)
# wf serve has its own (wf.server.routes): every deployed version.
DEV_ROUTES: tuple[tuple[str, str, Handler], ...] = (
    ("GET", "/api/workflows/{name}/versions", list_dev_versions),
    ("GET", "/api/workflows/{name}/versions/{version_id}", get_dev_version),
)


def create_app(state: ServerState) -> web.Application:
    """The API over ``state.engine`` (already started by the caller, stopped by it too)."""
    app = web.Application(
        client_max_size=MAX_BATCH_BODY,  # the largest body a route reads; each checks its own
        middlewares=[
            envelope_errors,
            host_middleware(state),
            origin_middleware(state),
            token_middleware(state),
        ],
    )
    app[STATE_KEY] = state
    subscribe.install(app)
    routes = ROUTES if state.serve else (*ROUTES, *DEV_ROUTES)
    for method, path, handler in routes:
        app.router.add_route(method, path, handler)
    cloudflare_paths.install(app, routes)
    return app
