"""Everything a running ``wf serve`` node holds, and the loop that keeps its workers right: the
active version and every version with unfinished instances have a live worker; the others are
unloaded.

Every change to the workers (a deploy, a secret, a reconcile round) holds one lock, so none of
them misses what another one did. On a database other nodes share, a round also picks up what
they did (a deploy, an unload): it rereads the versions and fetches a bundle it lacks; their
messages (``wf.server.cluster``) start a round at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
from collections.abc import Callable, Coroutine
from typing import Any

from wf.durations import to_seconds
from wf.engine.clock import Clock, SystemClock
from wf.engine.firing import Firings, schedules_of
from wf.engine.limits import Limits
from wf.engine.runner import Notice
from wf.engine.scheduler import purge_forever
from wf.engine.store.base import ServerStore
from wf.errors import StoreUnavailable
from wf.server.cluster import Bus, new_node_id
from wf.server.controller import Catalog, ServerController
from wf.server.database import Database
from wf.server.deploys import Deployer, fetch_bundle, refresh
from wf.server.state import ServeError, StateDir
from wf.server.workers import WorkerManager

log = logging.getLogger("wf.server")

RECONCILE_SECONDS = 1.0
RETENTION = "30 days"  # for a version deployed before versions kept their own (the default then)


class Runtime:
    def __init__(
        self,
        state: StateDir,
        durability: str,
        on_notice: Callable[[dict[str, Any]], None],
        clock: Clock | None = None,
        *,
        database: Database | None = None,
        lease: float | None = None,
        node: str | None = None,
        on_controller_notice: Callable[[Notice], None] | None = None,
    ) -> None:
        self.state = state
        self.clock: Clock = clock or SystemClock()
        self.database = database or Database(str(state.database))
        self.node = node or new_node_id()
        self.store: ServerStore = self.database.open_for_server(durability)
        self.bus = Bus(self.store, self.node)
        self.catalog = Catalog()
        self.workers = WorkerManager(
            self.store,
            state.root,
            self.database,
            durability,
            self.store.secret_values,
            on_notice,
            bus=self.bus,
            lease=lease,
        )
        self.controller = ServerController(
            self.store, self.clock, Limits(), self.catalog, self.workers, on_controller_notice
        )
        self.changing = asyncio.Lock()
        self.deployer = Deployer(
            state, self.store, self.workers, self.catalog, self.clock, self.changing
        )
        # The active version's cron schedules fire here (on every node: a firing's id makes it
        # happen once); they are looked at again whenever another version becomes active.
        self.firings = Firings(
            self.controller, lambda: schedules_of(self.catalog.active_schedules())
        )
        self._fired_version: str | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._chores: set[asyncio.Task[None]] = set()  # started by other nodes' messages
        self._round_wanted = asyncio.Event()
        self._supervising = False
        self._warned: set[str] = set()
        # The secrets (names and times) this node's workers were started with: a round that
        # finds others restarts them, should a node's message about them be lost.
        self._secrets_seen: list[tuple[str, float]] | None = None

    async def start(self) -> None:
        await self.store.open()
        try:
            if not self.database.clustered:
                # This process owns the database: workers of an earlier server stopped when it
                # died. Other nodes' workers are alive or not by their leases, never by this.
                await self.store.release_dead_claims()
            await refresh(self.store, self.catalog)
            self.workers.set_active(*self._active())
            await asyncio.to_thread(self._remove_stray_bundles)
            self._listen()
            self._supervising = True
            await self.reconcile()
        except BaseException:
            self._supervising = False
            await self.workers.stop_all()
            await self.store.close()
            raise
        self._fired_version = self._active()[0]
        self.firings.start()
        self._tasks = [
            asyncio.create_task(self._keep_right(), name="wf serve workers"),
            asyncio.create_task(self._purge_old(), name="wf serve retention"),
        ]

    def stop_supervising(self) -> None:
        """Stop replacing and starting workers (the server is going away)."""
        self._supervising = False
        for task in [*self._tasks, *self._chores]:
            task.cancel()

    async def stop(self) -> None:
        self.stop_supervising()
        for task in [*self._tasks, *self._chores]:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.firings.stop()
        await self.workers.stop_all()
        await self.store.close()

    async def node_status(self) -> dict[str, Any]:
        """Which node this is and how many share the database (those with a live lease; this
        one counts even before its workers first claim)."""
        nodes = {self.node}
        if self.database.clustered:
            nodes.update(owner.split("/", 1)[0] for owner in await self.store.live_owners())
        kind = "postgresql" if self.database.clustered else "sqlite"
        return {"node": self.node, "nodes": len(nodes), "database": kind}

    # ---- what other nodes say ---------------------------------------------------------------
    def _listen(self) -> None:
        bus, workers = self.bus, self.workers
        bus.on("versions", lambda _: self._round_wanted.set())
        bus.on("secrets", lambda _: self._round_wanted.set())
        bus.on(
            "change",
            lambda m: workers.change(
                m.get("owner"),
                str(m["version"]),
                int(m["pk"]),
                str(m["change"]),
                m.get("event_type"),
                relay=False,
            ),
        )
        bus.on("created", lambda m: workers.poke(str(m["version"])))
        bus.on(
            "deleted",
            lambda m: workers.broadcast({"op": "deleted", "workflow": str(m["workflow"])}),
        )
        bus.listen()

    def chore(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` beside the requests (a message's consequence); cancelled on stop."""
        if not self._supervising:
            work.close()
            return
        task = asyncio.ensure_future(work)
        self._chores.add(task)
        task.add_done_callback(self._chores.discard)

    def _active(self) -> tuple[str | None, list[str]]:
        active = self.catalog.active
        return (active.id if active else None), self.catalog.active_workflows()

    async def _keep_right(self) -> None:
        while True:
            # Every second, and at once when another node deployed or unloaded a version.
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._round_wanted.wait(), RECONCILE_SECONDS)
            self._round_wanted.clear()
            if self._active()[0] != self._fired_version:  # a deploy, here or on another node
                self._fired_version = self._active()[0]
                self.firings.replan()
            try:
                await self.reconcile()
            except StoreUnavailable:
                pass  # the store says once when the database goes away and once when it is back
            except Exception as exc:  # the loop must outlive any one bad round
                log.error("cannot manage the workers: %s", exc)

    async def _purge_old(self) -> None:
        # Each version keeps its finished instances as long as its own wf.toml says.
        # An instance's own retention (create(..., retention=...) or its workflow's
        # default_retention) goes before its version's.
        default = to_seconds(RETENTION)

        async def purge() -> int:
            now = self.clock.now()
            own = await self.store.purge_by_own_retention(now)
            return own + await self.store.purge_by_version_retention(now, default)

        await purge_forever(purge)

    async def reconcile(self) -> None:
        """Replace dead workers, start missing ones, unload the versions nobody needs; follow
        what other nodes did to the versions."""
        async with self.changing:
            if await refresh(self.store, self.catalog):
                self.workers.set_active(*self._active())
            await self._follow_secrets()
            await self.workers.forget_dead()
            await self._stop_unloaded()
            unfinished = await self.store.count_unfinished_by_version()
            active = self.catalog.active
            for version_id in list(self.catalog.versions):
                is_active = active is not None and version_id == active.id
                running = version_id in self.workers.workers
                if not running and (is_active or unfinished.get(version_id, 0) > 0):
                    await self._start_worker(version_id)
                elif not is_active and not unfinished.get(version_id):
                    await self._unload(version_id)
            for version_id, count in unfinished.items():
                if version_id not in self.catalog.versions and version_id not in self._warned:
                    self._warned.add(version_id)
                    log.error(
                        "%d unfinished instance(s) belong to version %s, which is not loaded; "
                        "upgrade them (wf instances upgrade) to run them",
                        count,
                        version_id,
                    )

    async def _stop_unloaded(self) -> None:
        """Stop the workers of versions another node unloaded, and forget their bundles."""
        for version_id, worker in list(self.workers.workers.items()):
            if version_id not in self.catalog.versions:
                await self.workers.stop(worker)
                await asyncio.to_thread(shutil.rmtree, self.state.bundle(version_id), True)

    async def _start_worker(self, version_id: str) -> None:
        try:
            bundle = await fetch_bundle(self.state, self.store, version_id)
        except ServeError as exc:
            self._error_once(f"bundle {version_id}", "%s", exc)
            return
        if bundle is None:
            self._error_once(
                f"bundle {version_id}",
                "version %s has instances but its bundle is gone (from %s and the database)",
                version_id,
                self.state.bundle(version_id),
            )
            return
        try:
            worker = await self.workers.load(version_id, bundle)
            await self.workers.start(worker)
        except (ServeError, asyncio.TimeoutError) as exc:
            log.error("cannot start the worker of version %s: %s", version_id, exc)

    async def _unload(self, version_id: str) -> None:
        # Decided in one transaction with the count, so a restart racing it cannot strand an
        # instance on a version whose code is gone.
        if not await self.store.try_unload(version_id, self.clock.now()):
            return
        await refresh(self.store, self.catalog)
        worker = self.workers.workers.get(version_id)
        if worker is not None:
            await self.workers.stop(worker)
        await asyncio.to_thread(shutil.rmtree, self.state.bundle(version_id), True)
        self.bus.publish("versions")
        log.info("unloaded version %s: no instance needs it any more", version_id)

    def _error_once(self, key: str, message: str, *args: Any) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.error(message, *args)

    def _remove_stray_bundles(self) -> None:
        """A deploy cut short by a crash may leave a staging folder, or a bundle that was never
        activated: neither is any version's code."""
        known = set(self.catalog.versions)
        for folder in self.state.bundles.iterdir():
            if folder.name not in known:
                shutil.rmtree(folder, ignore_errors=True)

    async def secrets_saved(self) -> list[str]:
        """A secret was put or deleted here (the caller holds ``changing``): restart this node's
        workers, and tell the others to restart theirs. Returns the problems of this node's (see
        ``secrets_changed``)."""
        self.bus.publish("secrets")
        self._secrets_seen = await self.store.list_secrets()
        return await self.secrets_changed()

    async def _follow_secrets(self) -> None:
        """Restart the workers when another node changed the secrets."""
        seen = await self.store.list_secrets()
        if self._secrets_seen is not None and seen != self._secrets_seen:
            await self.secrets_changed()
        self._secrets_seen = seen

    async def secrets_changed(self) -> list[str]:
        """Restart every worker (a fresh one first, then the old one stops) so env is current.
        Returns the problems (a worker that could not restart keeps running the old env)."""
        problems = []
        for version_id, old in list(self.workers.workers.items()):
            try:
                fresh = await self.workers.load(version_id, old.bundle)
                await self.workers.start(fresh)  # stops the old one
            except (ServeError, asyncio.TimeoutError) as exc:
                problems.append(f"version {version_id}: {exc}")
                log.error("cannot restart the worker of version %s: %s", version_id, exc)
        return problems
