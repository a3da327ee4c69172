"""wf serve's dashboard: what it shows of this server (versions, secret names, active versions),
and its sessions, signed with the API token and revoked on every node at sign-out."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import TYPE_CHECKING, Any

from wf.engine.details import iso

if TYPE_CHECKING:
    from aiohttp import web

    from wf.devserver.state import ServerState
    from wf.engine.store.base import ServerStore
    from wf.server.runtime import Runtime

log = logging.getLogger("wf.server")

SIGNED_OUT = "signout"  # bus topic: {session}: a session ended on another node
SIGNOUTS_SETTING = "dashboard_signouts"  # the ids of sessions signed out, as a JSON list
MOST_SIGNOUTS = 10_000  # kept at once (the newest); each id is about 40 bytes
KEEP_SECONDS = 5.0  # a sign-out waits this long at most for the database to keep it


class SignOuts:
    """The sessions signed out, kept in the database until they would have expired, so a node
    that starts later (or again) refuses them too. Two nodes writing the list at the same
    instant may each leave the other's id out: every node that hears of a sign-out writes it
    again if it is missing, so the list is whole once any of them has."""

    def __init__(self, store: ServerStore) -> None:
        self.store = store
        self._writing = asyncio.Lock()  # one read-change-write at a time on this node

    async def load(self) -> list[str]:
        """The ids still to refuse."""
        from wf.devserver.sessions import expires_at

        text = await self.store.get_setting(SIGNOUTS_SETTING) or "[]"
        try:
            # Bounded before it is parsed: a list nested deep enough would not parse at all.
            ids = json.loads(text) if len(text) <= 64 * MOST_SIGNOUTS else None
        except (ValueError, RecursionError):
            ids = None
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            log.error("the %s setting is not a list of session ids; ignoring it", SIGNOUTS_SETTING)
            return []
        now = time.time()
        return [i for i in ids if (expires_at(i) or 0) > now]

    async def remember(self, session_id: str) -> None:
        async with self._writing:
            ids = await self.load()
            if session_id in ids:
                return
            ids = [*ids, session_id][-MOST_SIGNOUTS:]
            await self.store.put_setting(SIGNOUTS_SETTING, json.dumps(ids))


async def _keep(signouts: SignOuts, session_id: str) -> None:
    """Write a sign-out to the database, waiting for it a few seconds at most: it already holds
    on the nodes running now (revoked here, told to the others)."""
    try:
        await asyncio.wait_for(signouts.remember(session_id), KEEP_SECONDS)
    except asyncio.TimeoutError:
        log.error("could not keep the sign-out of a dashboard session: the database took too long")
    except Exception as exc:
        log.error("could not keep the sign-out of a dashboard session: %s", exc)


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


async def install_dashboard(app: web.Application, state: ServerState, runtime: Runtime) -> None:
    from wf.dashboard.serve import install
    from wf.devserver.sessions import Sessions

    sessions = Sessions.for_state(state)
    signouts = SignOuts(runtime.store)
    bus = runtime.bus

    async def signed_out(session_id: str) -> None:
        bus.publish(SIGNED_OUT, session=session_id)
        await _keep(signouts, session_id)  # before the answer: a restart right after refuses it

    def heard(message: dict[str, Any]) -> None:
        session_id = str(message["session"])
        if sessions.revoke(session_id):
            runtime.chore(_keep(signouts, session_id))  # in case its own write lost a race

    sessions.on_sign_out = signed_out
    bus.on(SIGNED_OUT, heard)  # before the list is read: a sign-out meanwhile is heard
    for session_id in await signouts.load():
        sessions.revoke(session_id)
    install(app, sessions, RuntimeInfo(runtime))
