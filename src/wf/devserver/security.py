"""Who may talk to the server: Host check (DNS rebinding), Origin check on writes, API token.

A web page on another site can make a browser send requests to ``127.0.0.1``. Two checks stop it:

* **Host**: a page reached through a DNS name that resolves to 127.0.0.1 (DNS rebinding) sends
  that name in ``Host``; only the bound host, ``localhost``, ``127.0.0.1`` and ``[::1]`` (any port)
  are served.
* **Origin**: a cross-site ``fetch``/form POST carries its page's ``Origin``; writes (anything but
  GET, HEAD, OPTIONS) are refused unless the origin is this server itself. Requests without
  ``Origin`` (curl, the CLI, same-origin GETs) pass.

The token check (``wf serve``, issue 4) applies only when ``state.token`` (a token known in full)
or ``state.token_check`` (one known by its hash, as a cluster of nodes keeps it) is set. When the
app has dashboard sessions (``wf.devserver.sessions``, wf serve's dashboard), a signed-in browser
may also read the API with its session cookie, and write to it with the session's CSRF token in
``X-WF-CSRF`` from a page of this server; the dashboard's pages (every path outside ``/api/``
and ``/client/v4/``) are left to the dashboard's own guard, which sends a browser without a
session to sign in.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from typing import TYPE_CHECKING, Protocol

from aiohttp import web

from wf.devserver.cloudflare_paths import CLIENT_PREFIX
from wf.devserver.envelope import FORBIDDEN, UNAUTHORIZED, ApiError
from wf.devserver.sessions import CSRF_HEADER, SESSIONS_KEY, session_of
from wf.devserver.state import ServerState

if TYPE_CHECKING:
    from aiohttp.typedefs import Handler, Middleware

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")


def _bare(host: str) -> str:
    """``[::1]`` → ``::1``; names compare in lower case."""
    host = host.strip().lower()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host


def split_host_header(value: str) -> str | None:
    """The host part of a ``Host`` header (``name``, ``name:port``, ``[v6]``, ``[v6]:port``)."""
    value = value.strip()
    if not value:
        return None
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return None
        rest = value[end + 1 :]
        if rest and not (rest.startswith(":") and rest[1:].isdigit()):
            return None
        return value[1:end].lower()
    name, sep, port = value.rpartition(":")
    if sep:
        if not port.isdigit() or ":" in name:
            return None
        return name.lower()
    return value.lower()


def allowed_hosts(state: ServerState) -> frozenset[str]:
    return frozenset(_bare(h) for h in (*LOCAL_HOSTS, state.bound_host, *state.extra_hosts))


def host_allowed(header: str | None, state: ServerState) -> bool:
    if header is None:
        return False
    host = split_host_header(header)
    return host is not None and host in allowed_hosts(state)


def _origin_of(host: str, port: int) -> str:
    bare = _bare(host)
    shown = f"[{bare}]" if ":" in bare else bare
    return f"http://{shown}:{port}"


def allowed_origins(state: ServerState) -> frozenset[str]:
    hosts: Iterable[str] = (*LOCAL_HOSTS, state.bound_host, *state.extra_hosts)
    return frozenset(_origin_of(h, state.port) for h in hosts)


def origin_allowed(origin: str, state: ServerState, host_header: str | None = None) -> bool:
    """``origin`` is this server. On wf serve beyond loopback (behind a TLS proxy, say) that is
    also any origin naming the host the request was sent to (``host_header``), whatever the
    scheme: there the Host check is off, and the proxy's name is not known in advance."""
    shown = origin.strip().lower().rstrip("/")
    if shown in allowed_origins(state):
        return True
    if state.serve and not state.host_check and host_header:
        _, sep, authority = shown.partition("://")
        return bool(sep) and authority == host_header.strip().lower()
    return False


def _origin_of_referer(referer: str | None) -> str | None:
    """``scheme://host[:port]`` of a ``Referer`` URL."""
    if not referer:
        return None
    scheme, sep, rest = referer.strip().partition("://")
    if not sep or not scheme.isalpha():
        return None
    authority = rest.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0]
    return f"{scheme}://{authority}" if authority else None


def same_origin(request: web.Request, state: ServerState) -> bool:
    """A write a signed-in browser makes must say it comes from a page of this server:
    ``Origin`` (every browser sends it on a POST), else ``Referer``. Neither: refused."""
    origin = request.headers.get("Origin") or _origin_of_referer(request.headers.get("Referer"))
    if not origin or origin.strip().lower() == "null":
        return False
    return origin_allowed(origin, state, request.headers.get("Host"))


class TokenCheck(Protocol):
    """**Protocol:** tells a right token from a wrong one without holding the token itself."""

    digest: str  # the token's sha256 (hex): dashboard sessions are signed with a key from it

    async def matches(self, supplied: bytes) -> bool: ...


def bearer(header: str | None) -> bytes | None:
    """The token of ``Authorization: Bearer <token>`` (as bytes: a header that is not valid
    UTF-8 is a wrong token, not a crash), or None."""
    if header is None:
        return None
    scheme, _, given = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return given.strip().encode("utf-8", "surrogateescape")


def token_matches(header: str | None, token: str) -> bool:
    """``Authorization: Bearer <token>``, compared in constant time."""
    supplied = bearer(header)
    return supplied is not None and hmac.compare_digest(supplied, token.encode("utf-8"))


async def token_accepted(supplied: bytes, state: ServerState) -> bool:
    """``supplied`` is the API token (``state.token``, or one ``state.token_check`` accepts),
    compared in constant time; False when the server has none."""
    if state.token_check is not None:
        return await state.token_check.matches(supplied)
    return state.token is not None and hmac.compare_digest(supplied, state.token.encode("utf-8"))


def host_middleware(state: ServerState) -> Middleware:
    @web.middleware
    async def check_host(request: web.Request, handler: Handler) -> web.StreamResponse:
        header = request.headers.get("Host")
        if state.host_check and not host_allowed(header, state):
            shown = "missing" if header is None else f'"{header}"'
            raise ApiError(
                403,
                FORBIDDEN,
                f"request refused: Host header {shown} is not allowed "
                f"(use localhost, 127.0.0.1 or {state.bound_host})",
            )
        return await handler(request)

    return check_host


def origin_middleware(state: ServerState) -> Middleware:
    @web.middleware
    async def check_origin(request: web.Request, handler: Handler) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        if (
            origin is not None
            and request.method not in SAFE_METHODS
            and not origin_allowed(origin, state, request.headers.get("Host"))
        ):
            raise ApiError(
                403,
                FORBIDDEN,
                f'request refused: cross-origin {request.method} from "{origin}" is not allowed',
            )
        return await handler(request)

    return check_origin


def is_api_path(path: str) -> bool:
    """``/api/...``, and Cloudflare's own ``/client/v4/...`` (wf.devserver.cloudflare_paths)."""
    return path in ("/api", CLIENT_PREFIX) or path.startswith(("/api/", CLIENT_PREFIX + "/"))


def _session_may_use_api(request: web.Request, state: ServerState) -> bool:
    """A signed-in browser reads the API with its cookie alone; it writes with the session's
    CSRF token in ``X-WF-CSRF``, from a page of this server."""
    session = session_of(request)
    if session is None:
        return False
    if request.method in SAFE_METHODS:
        return True
    sessions = request.app[SESSIONS_KEY]
    return sessions.csrf_ok(session, request.headers.get(CSRF_HEADER)) and same_origin(
        request, state
    )


def token_middleware(state: ServerState, exempt: Iterable[str] = ()) -> Middleware:
    """Require ``Authorization: Bearer <state.token>`` (or one ``state.token_check`` accepts) on
    every path but ``exempt`` ones; with dashboard sessions (``SESSIONS_KEY`` set on the app), a
    live session cookie does on ``/api/`` (writes need its CSRF token), and the dashboard's own
    guard answers for the other paths.

    Does nothing while neither is set (``wf dev``)."""
    open_paths = frozenset(exempt)

    @web.middleware
    async def check_token(request: web.Request, handler: Handler) -> web.StreamResponse:
        guarded = bool(state.token) or state.token_check is not None
        if not guarded or request.path in open_paths:
            return await handler(request)
        header = request.headers.get("Authorization")
        if header is not None:
            supplied = bearer(header)
            if supplied is not None and await token_accepted(supplied, state):
                return await handler(request)
        elif SESSIONS_KEY in request.app:
            if not is_api_path(request.path):
                return await handler(request)  # a dashboard page: its guard signs the user in
            if _session_may_use_api(request, state):
                return await handler(request)
        problem = "missing" if header is None else "wrong"
        raise ApiError(
            401,
            UNAUTHORIZED,
            f"{problem} API token: send Authorization: Bearer <token> "
            "(wf: --token or WF_API_TOKEN)",
            headers={"WWW-Authenticate": "Bearer"},
        )

    return check_token
