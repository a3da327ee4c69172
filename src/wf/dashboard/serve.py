"""The dashboard as wf serve installs it: the pages of ``wf.dashboard.routes``, behind a
sign-in with the API token (``signin``, ``guard``), plus the versions page."""

from __future__ import annotations

from aiohttp import web

from wf.dashboard import routes
from wf.dashboard.guard import SIGNIN, SIGNOUT, guard_middleware
from wf.dashboard.serve_info import SERVE_INFO_KEY, ServeInfo
from wf.dashboard.signin import signin, signin_page, signout
from wf.dashboard.versions import versions_view
from wf.devserver.sessions import SESSIONS_KEY, Sessions
from wf.devserver.state import STATE_KEY


def install(app: web.Application, sessions: Sessions, info: ServeInfo) -> None:
    """Serve the dashboard at ``/`` of wf serve's app (made by ``create_app``; not started)."""
    app[SESSIONS_KEY] = sessions  # the token middleware now lets a session read the API
    app[SERVE_INFO_KEY] = info
    # After the Host, Origin and token middlewares: the token middleware leaves pages to it.
    app.middlewares.append(guard_middleware(app[STATE_KEY], sessions))
    routes.install(app)
    app.router.add_get(SIGNIN, signin_page)
    app.router.add_post(SIGNIN, signin)
    app.router.add_post(SIGNOUT, signout)
    app.router.add_get("/versions", versions_view)
