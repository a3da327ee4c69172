"""Cloudflare's own paths, so its clients (wrangler, the ``cloudflare`` SDKs) work unmodified.

Every ``/api/workflows/...`` route is served also as
``/client/v4/accounts/{account_id}/workflows/...`` by the same handler, in the same envelope,
behind the same token check: a client's base URL is ``http://<host>:<port>/client/v4``. Any
account id is accepted unless the server was given one (``wf serve --account-id``); then another
is refused (404). Besides the workflows, wrangler may ask who the token belongs to (a token
check, the accounts, the memberships, the user): those are answered here with this server as the
one account, as far as wrangler's ``workflows`` commands need.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from aiohttp import web

from wf.devserver.envelope import NO_ROUTE, ApiError, ok
from wf.devserver.state import STATE_KEY, ServerState

if TYPE_CHECKING:
    from aiohttp.typedefs import Handler

CLIENT_PREFIX = "/client/v4"
ACCOUNT_PREFIX = CLIENT_PREFIX + "/accounts/{account_id}"
MIRRORED = "/api/workflows"  # the routes Cloudflare also has, under ACCOUNT_PREFIX
DEFAULT_ACCOUNT = "wf"  # the account id named when the server was given none
# Routes wrangler asks for with a trailing slash: `wrangler workflows instances describe <name>`
# (id "latest", the default) lists the instances as GET .../instances/ to find the newest.
SLASHED = frozenset({("GET", "/api/workflows/{name}/instances")})


def is_client_path(path: str) -> bool:
    return path == CLIENT_PREFIX or path.startswith(CLIENT_PREFIX + "/")


def cloudflare_path(path: str) -> str:
    """``/api/workflows/x`` → ``/client/v4/accounts/{account_id}/workflows/x``."""
    return ACCOUNT_PREFIX + path.removeprefix("/api")


def _account(state: ServerState) -> str:
    return state.account_id or DEFAULT_ACCOUNT


def _checking_account(handler: Handler) -> Handler:
    async def checked(request: web.Request) -> web.StreamResponse:
        wanted = request.app[STATE_KEY].account_id
        given = request.match_info["account_id"]
        if wanted is not None and given != wanted:
            raise ApiError(
                404,
                NO_ROUTE,
                f'no account "{given}" on this server; its account id is "{wanted}" '
                "(wf serve --account-id)",
            )
        return await handler(request)

    return checked


def mirrored_routes(
    routes: Iterable[tuple[str, str, Handler]],
) -> Iterator[tuple[str, str, Handler]]:
    """The ``/api/workflows`` routes among ``routes`` under Cloudflare's path (and again with a
    trailing slash, for those in ``SLASHED``)."""
    for method, path, handler in routes:
        if path == MIRRORED or path.startswith(MIRRORED + "/"):
            yield method, cloudflare_path(path), _checking_account(handler)
            if (method, path) in SLASHED:
                yield method, cloudflare_path(path) + "/", _checking_account(handler)


# ---- who the token is (wrangler's questions besides the workflows) --------------------------


def _account_json(state: ServerState) -> dict[str, Any]:
    return {"id": _account(state), "name": state.project_name, "type": "standard"}


async def verify_token(request: web.Request) -> web.Response:
    """``GET /user/tokens/verify``: the token middleware already let it through."""
    return ok({"id": "wf", "status": "active", "not_before": None, "expires_on": None})


# The one page of a one-item list.
ONE_ITEM = {"page": 1, "per_page": 20, "count": 1, "total_count": 1}


async def list_accounts(request: web.Request) -> web.Response:
    account = _account_json(request.app[STATE_KEY])
    return ok([account], result_info=ONE_ITEM)


async def list_memberships(request: web.Request) -> web.Response:
    account = _account_json(request.app[STATE_KEY])
    membership = {"id": account["id"], "status": "accepted", "account": account}
    return ok([membership], result_info=ONE_ITEM)


async def get_user(request: web.Request) -> web.Response:
    return ok({"id": "wf", "email": None, "has_pro_zones": False, "suspended": False})


ACCOUNT_ROUTES: tuple[tuple[str, str, Handler], ...] = (
    ("GET", CLIENT_PREFIX + "/user/tokens/verify", verify_token),
    ("GET", CLIENT_PREFIX + "/accounts", list_accounts),
    ("GET", CLIENT_PREFIX + "/memberships", list_memberships),
    ("GET", CLIENT_PREFIX + "/user", get_user),
)


def install(app: web.Application, routes: Iterable[tuple[str, str, Handler]]) -> None:
    """Serve ``routes``' workflows routes under Cloudflare's paths, and the account routes."""
    for method, path, handler in (*mirrored_routes(routes), *ACCOUNT_ROUTES):
        app.router.add_route(method, path, handler)
