"""wf serve's dashboard: what it shows of this server (versions, secret names, active versions),
and its sessions, signed with the API token and revoked on every node at sign-out."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from wf.engine.details import iso

if TYPE_CHECKING:
    from aiohttp import web

    from wf.devserver.state import ServerState
    from wf.server.runtime import Runtime

SIGNED_OUT = "signout"  # bus topic: {session}: a session ended on another node


class RuntimeInfo:
    """``wf.dashboard.serve_info.ServeInfo`` over the runtime's store."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    async def versions(self) -> list[dict[str, Any]]:
        store = self.runtime.store
        unfinished = await store.count_unfinished_by_version()
        rows = sorted(await store.list_versions(), key=lambda v: v.created, reverse=True)
        return [
            {
                "id": v.id,
                "created": iso(v.created),
                "workflows": [str(w["name"]) for w in v.workflows],
                "active": v.active,
                "unloaded": iso(v.unloaded) if v.unloaded is not None else None,
                "unfinished": unfinished.get(v.id, 0),
            }
            for v in rows
        ]

    async def secrets(self) -> list[dict[str, Any]]:
        named = await self.runtime.store.list_secrets()
        return [{"name": name, "updated": iso(updated)} for name, updated in named]

    async def active_versions(self) -> dict[str, str]:
        return {
            str(w["name"]): v.id
            for v in await self.runtime.store.list_versions()
            if v.active
            for w in v.workflows
        }


def install_dashboard(app: web.Application, state: ServerState, runtime: Runtime) -> None:
    from wf.dashboard.serve import install
    from wf.devserver.sessions import Sessions

    sessions = Sessions.for_state(state)
    bus = runtime.bus
    sessions.on_revoke = lambda session: bus.publish(SIGNED_OUT, session=session)
    bus.on(SIGNED_OUT, lambda message: sessions.revoke(str(message["session"]), tell=False))
    install(app, sessions, RuntimeInfo(runtime))
