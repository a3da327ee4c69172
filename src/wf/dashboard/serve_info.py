"""What only wf serve knows and its dashboard shows: deployed versions, secret names, each
workflow's active version. wf serve provides it (``wf.server.dashboard``); wf dev has none."""

from __future__ import annotations

from typing import Any, Protocol

from aiohttp import web


class ServeInfo(Protocol):
    """**Protocol:** the server's deploys and secrets, as the dashboard shows them."""

    async def versions(self) -> list[dict[str, Any]]:
        """Newest first: ``{"id", "created" (ISO), "workflows" (names), "active",
        "unloaded" (ISO or None), "unfinished"}``."""
        ...

    async def secrets(self) -> list[dict[str, Any]]:
        """``{"name", "updated" (ISO)}`` per secret: never its value."""
        ...

    async def active_versions(self) -> dict[str, str]:
        """Workflow name → the id of the active version that defines it."""
        ...


SERVE_INFO_KEY = web.AppKey("wf_dashboard_serve_info", ServeInfo)


async def add_active_versions(request: web.Request, rows: list[dict[str, Any]]) -> None:
    """On wf serve, each workflow row of the workflows page gets ``active_version``."""
    info = request.app.get(SERVE_INFO_KEY)
    if info is None:
        return
    active = await info.active_versions()
    for row in rows:
        row["active_version"] = active.get(row["name"])
