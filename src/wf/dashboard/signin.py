"""Signing in to wf serve's dashboard with the API token, and out again.

``POST /signin`` checks the token (in constant time, as the API does) and sets the session
cookie: HttpOnly (no script reads it), SameSite=Strict (no other site's page sends it), Path=/,
Secure when the request came over https. The token itself never goes into a URL, a page or a
cookie. ``next`` (where to go once signed in) must be a path of this server.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from aiohttp import web

from wf.dashboard.guard import SIGNIN, SIGNOUT
from wf.dashboard.render import page
from wf.dashboard.responses import PAGE_HEADERS, html
from wf.devserver.api import read_body
from wf.devserver.security import token_accepted
from wf.devserver.sessions import COOKIE, LIFETIME, SESSIONS_KEY, Sessions
from wf.devserver.state import STATE_KEY

MAX_TOKEN = 1024
# Anyone may post the sign-in form: its body is read up to this much, not the app's 100 MiB.
MAX_FORM = 16 * 1024
HOME = "/"


def local_path(raw: object) -> str:
    """``raw`` when it is a path of this server (``/w/x?status=running``), else ``/``: never
    another site (``//evil.example``, ``https://…``, ``/\\evil.example``)."""
    if not isinstance(raw, str) or not raw.startswith("/") or raw.startswith("//"):
        return HOME
    if "\\" in raw or any(ord(c) < 0x21 or ord(c) == 0x7F for c in raw) or len(raw) > 2000:
        return HOME
    parts = urlsplit(raw)
    if parts.scheme or parts.netloc or parts.path in (SIGNIN, SIGNOUT):
        return HOME
    return raw


def _form(next_path: str, error: str | None = None, status: int = 200) -> web.Response:
    return html(page("signin.html", next=next_path, error=error), status, PAGE_HEADERS)


def _is_https(request: web.Request) -> bool:
    """The request came over TLS, here or at a proxy that says so."""
    forwarded = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
    return request.secure or forwarded == "https"


async def signin_page(request: web.Request) -> web.Response:
    return _form(local_path(request.query.get("next")))


def _field(form: dict[str, list[str]], name: str) -> str | None:
    values = form.get(name)
    return values[0] if values else None


async def signin(request: web.Request) -> web.Response:
    body = await read_body(request, MAX_FORM, f"a sign-in form of at most {MAX_FORM} bytes")
    try:
        form = parse_qs(body.decode("utf-8", "replace"), max_num_fields=10)
    except ValueError:  # more fields than a sign-in form has
        form = {}
    next_path = local_path(_field(form, "next"))
    token = _field(form, "token")
    supplied = token.strip().encode("utf-8", "replace") if token else b""
    state = request.app[STATE_KEY]
    if not supplied or len(supplied) > MAX_TOKEN or not await token_accepted(supplied, state):
        # The page again, without what was typed: the token is never echoed.
        return _form(next_path, "That is not this server's API token.", 401)
    sessions: Sessions = request.app[SESSIONS_KEY]
    response = web.HTTPSeeOther(next_path)
    response.set_cookie(
        COOKIE,
        sessions.issue(),
        path="/",
        max_age=LIFETIME,
        httponly=True,
        samesite="Strict",
        secure=_is_https(request),
    )
    raise response


async def signout(request: web.Request) -> web.Response:
    """Reached only with a live session and its CSRF token (the guard checks both)."""
    sessions: Sessions = request.app[SESSIONS_KEY]
    session = sessions.check(request.cookies.get(COOKIE))
    if session is not None:
        await sessions.sign_out(session)
    gone = web.HTTPSeeOther(SIGNIN)
    gone.del_cookie(COOKIE, path="/")
    raise gone
