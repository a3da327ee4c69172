"""Who may talk to the server: Host check (DNS rebinding), Origin check on writes, API token.

A web page on another site can make a browser send requests to ``127.0.0.1``. Two checks stop it:

* **Host**: a page reached through a DNS name that resolves to 127.0.0.1 (DNS rebinding) sends
  that name in ``Host``; only the bound host, ``localhost``, ``127.0.0.1`` and ``[::1]`` (any port)
  are served.
* **Origin**: a cross-site ``fetch``/form POST carries its page's ``Origin``; writes (anything but
  GET, HEAD, OPTIONS) are refused unless the origin is this server itself. Requests without
  ``Origin`` (curl, the CLI, same-origin GETs) pass.

The token check (``wf serve``, issue 4) applies only when ``state.token`` (a token known in full)
or ``state.token_check`` (one known by its hash, as a cluster of nodes keeps it) is set.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from typing import TYPE_CHECKING, Protocol

from aiohttp import web

from wf.devserver.envelope import FORBIDDEN, UNAUTHORIZED, ApiError
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


def origin_allowed(origin: str, state: ServerState) -> bool:
    return origin.strip().lower().rstrip("/") in allowed_origins(state)


class TokenCheck(Protocol):
    """**Protocol:** tells a right token from a wrong one without holding the token itself."""

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
            and not origin_allowed(origin, state)
        ):
            raise ApiError(
                403,
                FORBIDDEN,
                f'request refused: cross-origin {request.method} from "{origin}" is not allowed',
            )
        return await handler(request)

    return check_origin


def token_middleware(state: ServerState, exempt: Iterable[str] = ()) -> Middleware:
    """Require ``Authorization: Bearer <state.token>`` (or one ``state.token_check`` accepts) on
    every path but ``exempt`` ones.

    Does nothing while neither is set (``wf dev``)."""
    open_paths = frozenset(exempt)

    async def accepted(header: str | None) -> bool:
        if state.token_check is not None:
            supplied = bearer(header)
            return supplied is not None and await state.token_check.matches(supplied)
        return state.token is not None and token_matches(header, state.token)

    @web.middleware
    async def check_token(request: web.Request, handler: Handler) -> web.StreamResponse:
        guarded = bool(state.token) or state.token_check is not None
        if guarded and request.path not in open_paths:
            header = request.headers.get("Authorization")
            if not await accepted(header):
                problem = "missing" if header is None else "wrong"
                raise ApiError(
                    401,
                    UNAUTHORIZED,
                    f"{problem} API token: send Authorization: Bearer <token> "
                    "(wf: --token or WF_API_TOKEN)",
                    headers={"WWW-Authenticate": "Bearer"},
                )
        return await handler(request)

    return check_token
