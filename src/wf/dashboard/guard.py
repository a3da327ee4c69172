"""The dashboard's guard on wf serve: a page needs a signed-in session, a form its CSRF token.

A browser without a live session is sent to ``/signin?next=<the page>`` (GET) or refused (any
other method). A signed-in write must come from a page of this server (``Origin``, else
``Referer``) and carry the session's CSRF token (the ``csrf`` field ``csrf_field()`` renders, or
the ``X-WF-CSRF`` header); otherwise it is refused with a 403 page and nothing is done. The API
(``/api/``, and Cloudflare's ``/client/v4/``) is the token middleware's
(``wf.devserver.security``), which runs before this.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlencode

from aiohttp import web

from wf.dashboard.bulk import FORM_FIELDS
from wf.dashboard.render import csrf_token, page
from wf.dashboard.responses import PAGE_HEADERS, html
from wf.dashboard.routes import STATIC_PREFIX
from wf.devserver.security import SAFE_METHODS, is_api_path, same_origin
from wf.devserver.sessions import COOKIE, CSRF_FIELD, CSRF_HEADER, Sessions
from wf.devserver.state import ServerState

if TYPE_CHECKING:
    from aiohttp.typedefs import Handler, Middleware

SIGNIN = "/signin"
SIGNOUT = "/signout"


def refused(message: str, status: int = 403) -> web.Response:
    return html(page("error.html", status=status, message=message), status, PAGE_HEADERS)


METRICS = "/metrics"  # a scraper's: it checks the API token itself (wf.server.metrics)


def _open(path: str) -> bool:
    """Paths a browser may load before signing in: the sign-in page and the static files (and
    /metrics, which is no page and wants the token, not a session)."""
    return path in (SIGNIN, METRICS) or path.startswith(STATIC_PREFIX + "/")


def _signed_out() -> web.HTTPSeeOther:
    gone = web.HTTPSeeOther(SIGNIN)
    gone.del_cookie(COOKIE, path="/")
    return gone


def guard_middleware(state: ServerState, sessions: Sessions) -> Middleware:
    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        if is_api_path(request.path) or _open(request.path):
            return await handler(request)
        session = sessions.check(request.cookies.get(COOKIE))
        if session is None:
            if request.path == SIGNOUT:
                raise _signed_out()  # already over: nothing to end
            if request.method in SAFE_METHODS:
                raise web.HTTPSeeOther(f"{SIGNIN}?{urlencode({'next': request.path_qs})}")
            return refused("Not signed in (or the session expired): nothing was done. Sign in.")
        if request.method not in SAFE_METHODS:
            if not same_origin(request, state):
                return refused(
                    "Refused: this form was not sent from a page of this server (Origin/Referer "
                    "missing or foreign). Nothing was done."
                )
            given: object = request.headers.get(CSRF_HEADER)
            if given is None:
                # Read once, as the bulk form needs it (a request read cannot be cloned): the
                # handler gets this request, its form already parsed.
                request = request.clone(client_max_fields=FORM_FIELDS)
                try:
                    given = (await request.post()).get(CSRF_FIELD)
                except web.HTTPRequestEntityTooLarge:
                    return refused(
                        f"Refused: this form is larger than any of the dashboard's (at most "
                        f"{FORM_FIELDS} fields). Nothing was done.",
                        413,
                    )
            if not sessions.csrf_ok(session, given):
                return refused(
                    "Refused: the form's CSRF token is missing or wrong (a page from before a "
                    "sign-in, or another site). Nothing was done; reload the page and try again."
                )
        reset = csrf_token.set(sessions.csrf(session))
        try:
            response = await handler(request)
        finally:
            csrf_token.reset(reset)
        response.headers.update(PAGE_HEADERS)
        return response

    return guard
