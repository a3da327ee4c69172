"""wf serve's versions page: each deployed version and its unfinished instances, and the names
(never the values) of the secrets."""

from __future__ import annotations

from aiohttp import web

from wf.dashboard.render import page
from wf.dashboard.responses import error_page, html
from wf.dashboard.serve_info import SERVE_INFO_KEY
from wf.devserver.envelope import ApiError
from wf.errors import WfError


async def versions_view(request: web.Request) -> web.Response:
    info = request.app[SERVE_INFO_KEY]
    try:
        versions = await info.versions()
        secrets = await info.secrets()
    except (WfError, ApiError) as exc:
        return error_page(exc)
    return html(page("versions.html", versions=versions, secrets=secrets))
