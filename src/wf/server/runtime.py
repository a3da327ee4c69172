"""Everything a running ``wf serve`` holds, and the loop that keeps its workers right: the active
version and every version with unfinished instances have a live worker; the others are unloaded."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
from collections.abc import Callable
from typing import Any

from wf.engine.clock import Clock, SystemClock
from wf.engine.limits import Limits
from wf.engine.store.sqlite import SqliteStore
from wf.server.controller import Catalog, ServerController
from wf.server.deploys import Deployer, refresh
from wf.server.state import ServeError, StateDir
from wf.server.workers import WorkerManager

log = logging.getLogger("wf.server")

RECONCILE_SECONDS = 1.0


class Runtime:
    def __init__(
        self,
        state: StateDir,
        durability: str,
        on_notice: Callable[[dict[str, Any]], None],
        clock: Clock | None = None,
    ) -> None:
        self.state = state
        self.clock: Clock = clock or SystemClock()
        self.store = SqliteStore(state.database, durability=durability)
        self.catalog = Catalog()
        self.workers = WorkerManager(
            self.store, state.database, durability, self.store.secret_values, on_notice
        )
        self.controller = ServerController(
            self.store, self.clock, Limits(), self.catalog, self.workers
        )
        self._changing = asyncio.Lock()
        self.deployer = Deployer(
            state, self.store, self.workers, self.catalog, self.clock, self._changing
        )
        self._loop_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.store.open()
        # This process owns the database: no worker of an earlier server is alive any more.
        await self.store.release_dead_claims()
        await refresh(self.store, self.catalog)
        await asyncio.to_thread(self._remove_stray_bundles)
        await self.reconcile()
        self._loop_task = asyncio.create_task(self._keep_right(), name="wf serve workers")

    async def stop(self) -> None:
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        await self.workers.stop_all()
        await self.store.close()

    async def _keep_right(self) -> None:
        while True:
            await asyncio.sleep(RECONCILE_SECONDS)
            try:
                await self.workers.replace_dead()
                await self.reconcile()
            except Exception as exc:  # the loop must outlive any one bad round
                log.error("cannot manage the workers: %s", exc)

    async def reconcile(self) -> None:
        """Start the workers that are missing, unload the versions nobody needs any more."""
        async with self._changing:
            unfinished = await self.store.count_unfinished_by_version()
            active = self.catalog.active
            for version_id in list(self.catalog.versions):
                needed = (active is not None and version_id == active.id) or unfinished.get(
                    version_id, 0
                ) > 0
                running = version_id in self.workers.workers
                if needed and not running:
                    await self._start_worker(version_id)
                elif not needed:
                    await self._unload(version_id)

    def _remove_stray_bundles(self) -> None:
        """A deploy cut short by a crash may leave a staging folder, or a bundle that was
        never activated: neither is any version's code."""
        known = set(self.catalog.versions)
        for folder in self.state.bundles.iterdir():
            if folder.name not in known:
                shutil.rmtree(folder, ignore_errors=True)

    async def _start_worker(self, version_id: str) -> None:
        bundle = self.state.bundle(version_id)
        if not bundle.is_dir():
            log.error("version %s has instances but its bundle is gone (%s)", version_id, bundle)
            return
        try:
            worker = await self.workers.load(version_id, bundle)
            await self.workers.start(worker)
        except (ServeError, asyncio.TimeoutError) as exc:
            log.error("cannot start the worker of version %s: %s", version_id, exc)

    async def _unload(self, version_id: str) -> None:
        worker = self.workers.workers.get(version_id)
        if worker is not None:
            await self.workers.stop(worker)
        await asyncio.to_thread(shutil.rmtree, self.state.bundle(version_id), True)
        await self.store.mark_unloaded(version_id, self.clock.now())
        await refresh(self.store, self.catalog)
        log.info("unloaded version %s: no instance needs it any more", version_id)

    async def secrets_changed(self) -> None:
        """Restart every worker (a fresh one first, then the old one stops) so env is current."""
        async with self._changing:
            for version_id, old in list(self.workers.workers.items()):
                try:
                    fresh = await self.workers.load(version_id, old.bundle)
                    await self.workers.start(fresh)  # stops the old one
                except (ServeError, asyncio.TimeoutError) as exc:
                    log.error("cannot restart the worker of version %s: %s", version_id, exc)
