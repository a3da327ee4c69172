"""The dashboard's two kinds of answer: an HTML page, and the error page for a refusal."""

from __future__ import annotations

from aiohttp import web

from wf.dashboard.render import page
from wf.devserver.envelope import ApiError, from_wf_error
from wf.errors import WfError

# No page may be framed by another site (on wf dev too): a framed page's forms post from the
# page itself, so the Origin check would not stop a click tricked onto "Terminate".
NO_FRAMING = {"X-Frame-Options": "DENY", "Content-Security-Policy": "frame-ancestors 'none'"}
# Pages of wf serve's signed-in dashboard are also nobody's to cache or pass on in a Referer.
PAGE_HEADERS = {**NO_FRAMING, "Referrer-Policy": "same-origin", "Cache-Control": "no-store"}


def html(text: str, status: int = 200, headers: dict[str, str] = NO_FRAMING) -> web.Response:
    return web.Response(
        text=text, status=status, content_type="text/html", charset="utf-8", headers=headers
    )


def error_page(exc: WfError | ApiError) -> web.Response:
    error = from_wf_error(exc) if isinstance(exc, WfError) else exc
    return html(page("error.html", status=error.status, message=error.message), error.status)
