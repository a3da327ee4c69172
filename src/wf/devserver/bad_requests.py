"""Requests aiohttp's HTTP parser refuses, answered in the API's envelope.

aiohttp answers a request it cannot parse (a bad request line or header, a line or headers too
long, invalid chunked encoding...) itself, in plain text, before any middleware sees it, and has
no hook for that answer (aio-libs/aiohttp#3287): the protocol object of each connection makes it,
in ``RequestHandler.handle_error``. ``EnvelopeRequestHandler`` gives it as ``{success: false,
errors: [{code, message}]}`` JSON instead, like every other error of the API. Both ``wf dev``
and ``wf serve`` run their app with ``wf.devserver.handoff.HandoffRunner``, whose connections
are handled by a subclass of it.

A body that turns out unreadable while a handler reads it (gzip that does not decompress, say)
raises ``web.RequestPayloadError`` there instead; ``unreadable_body`` is the API's 400 for it.
"""

from __future__ import annotations

from http import HTTPStatus

from aiohttp import web

from wf.devserver.envelope import BAD_REQUEST, INTERNAL, ApiError, fail


class EnvelopeRequestHandler(web.RequestHandler):
    """aiohttp's per-connection protocol, refusing malformed requests in the envelope."""

    __slots__ = ()

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        # aiohttp's own logs the error, and refuses once part of a response went out.
        super().handle_error(request, status, exc, message)
        code = INTERNAL if status >= 500 else BAD_REQUEST
        response = fail(status, code, describe(status, message))
        response.force_close()  # the connection's bytes no longer line up with requests
        return response


def describe(status: int, message: str | None) -> str:
    """One line for what aiohttp says, e.g. "Invalid header token:\\n\\n  b'Bad Header: y'\\n  ^"
    (the offending bytes under a caret) becomes "Invalid header token: b'Bad Header: y'"."""
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    if status >= 500:
        return f"internal error ({status} {phrase}); details in the server log"
    return f"the request is not valid HTTP: {_one_line(message) or phrase}"


def unreadable_body(exc: web.RequestPayloadError) -> ApiError:
    # aiohttp chains the parser's error, whose message is the one to show.
    cause = exc.__cause__
    detail = getattr(cause, "message", None) if cause is not None else None
    shown = _one_line(detail if isinstance(detail, str) else str(exc))
    return ApiError(400, BAD_REQUEST, f"the request body cannot be read: {shown}")


def _one_line(message: str | None) -> str:
    lines = (line.strip() for line in (message or "").splitlines())
    return " ".join(line for line in lines if line.strip("^"))
