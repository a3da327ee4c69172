"""The dashboard's two kinds of answer: an HTML page, and the error page for a refusal."""

from __future__ import annotations

from aiohttp import web

from wf.dashboard.render import page
from wf.devserver.envelope import ApiError, from_wf_error
from wf.errors import WfError


def html(text: str, status: int = 200) -> web.Response:
    return web.Response(text=text, status=status, content_type="text/html", charset="utf-8")


def error_page(exc: WfError | ApiError) -> web.Response:
    error = from_wf_error(exc) if isinstance(exc, WfError) else exc
    return html(page("error.html", status=error.status, message=error.message), error.status)
