"""The routes only ``wf serve`` has: deploy, versions, upgrade, secrets."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from aiohttp import web

from wf.devserver.api import EMPTY, bad_request, page_of, read_json
from wf.devserver.cloudflare_paths import mirrored_routes
from wf.devserver.envelope import INTERNAL, NO_ROUTE, TOO_LARGE, ApiError, ok
from wf.engine.details import iso
from wf.server.deploys import BundleRejected, Deployer, ImportFailed, deployed_json

if TYPE_CHECKING:
    from aiohttp.typedefs import Handler

    from wf.server.runtime import Runtime

BUNDLE_INVALID = 10008
BUNDLE_IMPORT_FAILED = 10009
SECRET_NOT_FOUND = 10404
MAX_BUNDLE = 32 * 1024 * 1024
MAX_SECRET = 64 * 1024
MAX_SECRETS_TOTAL = 1024 * 1024
SECRET_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")

RUNTIME_KEY: web.AppKey[Runtime] = web.AppKey("wf_runtime")


def _runtime(request: web.Request) -> Runtime:
    return request.app[RUNTIME_KEY]


async def _read_bundle(request: web.Request) -> bytes:
    """The raw body, at most ``MAX_BUNDLE`` bytes (read from the stream: the app's JSON limit
    is far smaller)."""
    length = request.content_length
    if length is not None and length > MAX_BUNDLE:
        raise ApiError(413, TOO_LARGE, f"the bundle is {length} bytes; the limit is {MAX_BUNDLE}")
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await request.content.read(1 << 16)
        if not chunk:
            break
        size += len(chunk)
        if size > MAX_BUNDLE:
            raise ApiError(413, TOO_LARGE, f"the bundle is over the limit of {MAX_BUNDLE} bytes")
        chunks.append(chunk)
    if not size:
        raise bad_request("the body must be the bundle (a gzip-compressed tar archive)")
    return b"".join(chunks)


async def deploy(request: web.Request) -> web.Response:
    deployer: Deployer = _runtime(request).deployer
    data = await _read_bundle(request)
    try:
        deployed = await deployer.deploy(data, request.headers.get("X-WF-Bundle-Sha256"))
    except BundleRejected as exc:
        raise ApiError(400, BUNDLE_INVALID, exc.message) from None
    except ImportFailed as exc:
        raise ApiError(400, BUNDLE_IMPORT_FAILED, exc.message) from None
    return ok(deployed_json(deployed, iso), status=201)


async def _versions(request: web.Request) -> list[dict[str, Any]]:
    runtime = _runtime(request)
    name = request.match_info["name"]
    known = runtime.controller.workflow(name)
    unfinished = await runtime.store.count_unfinished_by_version(known)
    versions = await runtime.store.list_versions()
    result: list[dict[str, Any]] = []
    for version in versions:
        workflow = next((w for w in version.workflows if w["name"] == known), None)
        if workflow is None and version.id not in unfinished:
            continue
        created = iso(version.created)
        result.append(
            {
                "id": version.id,
                "workflow_id": known,
                "workflow": known,
                "created_on": created,
                "modified_on": created,  # a version never changes once deployed
                "active": version.active,
                "loaded": version.id in runtime.workers.workers,
                "unfinished": unfinished.get(version.id, 0),
                "class_name": workflow["class_name"] if workflow else None,
                "has_dag": False,
                "language": "python",
            }
        )
    return result


async def list_versions(request: web.Request) -> web.Response:
    return page_of(request, await _versions(request))


async def get_version(request: web.Request) -> web.Response:
    wanted = request.match_info["version_id"]
    found = next((v for v in await _versions(request) if v["id"] == wanted), None)
    if found is None:
        name = request.match_info["name"]
        raise ApiError(404, NO_ROUTE, f'no version "{wanted}" of workflow "{name}"')
    return ok(found)


async def upgrade(request: web.Request) -> web.Response:
    runtime = _runtime(request)
    before, after = await runtime.controller.upgrade(
        request.match_info["name"], request.match_info["id"]
    )
    return ok(
        {
            "id": after.id,
            "from_version": before.version_id,
            "to_version": after.version_id,
            "status": after.status.value,
        }
    )


async def list_secrets(request: web.Request) -> web.Response:
    secrets = await _runtime(request).store.list_secrets()
    return ok([{"name": name, "updated_on": iso(updated)} for name, updated in secrets])


def _secret_name(request: web.Request) -> str:
    name = request.match_info["name"]
    if not SECRET_NAME.fullmatch(name):
        raise bad_request(
            f'secret name "{name}" must be a Python identifier of at most 64 characters'
        )
    return name


async def put_secret(request: web.Request) -> web.Response:
    runtime = _runtime(request)
    name = _secret_name(request)
    body = await read_json(request)
    if body is EMPTY or not isinstance(body, dict) or set(body) != {"value"}:
        raise bad_request('body must be {"value": "<the secret>"}')
    value = body["value"]
    if not isinstance(value, str) or not value:
        raise bad_request("the secret's value must be a non-empty string")
    if len(value.encode()) > MAX_SECRET:
        raise bad_request(f"the secret's value is over the limit of {MAX_SECRET} bytes")
    async with runtime.changing:  # no deploy may slip between the check and the restarts
        taken = runtime.catalog.bindings().get(name)
        if taken is not None:
            raise bad_request(
                f'secret "{name}" has the same name as the binding of workflow "{taken}"; '
                "env cannot hold both"
            )
        others = await runtime.store.secret_values()
        total = sum(len(v.encode()) for k, v in others.items() if k != name) + len(value.encode())
        if total > MAX_SECRETS_TOTAL:
            raise bad_request(f"all secrets together may hold {MAX_SECRETS_TOTAL} bytes")
        now = runtime.clock.now()
        await runtime.store.put_secret(name, value, now)
        problems = await runtime.secrets_saved()
    if problems:
        raise ApiError(500, INTERNAL, f"saved, but a worker could not restart: {problems[0]}")
    return ok({"name": name, "updated_on": iso(now)})


async def delete_secret(request: web.Request) -> web.Response:
    runtime = _runtime(request)
    name = _secret_name(request)
    async with runtime.changing:
        if not await runtime.store.delete_secret(name):
            raise ApiError(404, SECRET_NOT_FOUND, f'no secret named "{name}"')
        problems = await runtime.secrets_saved()
    if problems:
        raise ApiError(500, INTERNAL, f"deleted, but a worker could not restart: {problems[0]}")
    return ok({"name": name, "deleted": True})


SERVE_ROUTES: tuple[tuple[str, str, Handler], ...] = (
    ("POST", "/api/deploy", deploy),
    ("GET", "/api/workflows/{name}/versions", list_versions),
    ("GET", "/api/workflows/{name}/versions/{version_id}", get_version),
    ("POST", "/api/workflows/{name}/instances/{id}/upgrade", upgrade),
    ("GET", "/api/secrets", list_secrets),
    ("PUT", "/api/secrets/{name}", put_secret),
    ("DELETE", "/api/secrets/{name}", delete_secret),
)


def add_serve_routes(app: web.Application, runtime: Runtime) -> None:
    app[RUNTIME_KEY] = runtime
    for method, path, handler in (*SERVE_ROUTES, *mirrored_routes(SERVE_ROUTES)):
        app.router.add_route(method, path, handler)
