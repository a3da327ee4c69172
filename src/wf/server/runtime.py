"""Everything a running ``wf serve`` holds, and the loop that keeps its workers right: the active
version and every version with unfinished instances have a live worker; the others are unloaded.

Every change to the workers (a deploy, a secret, a reconcile round) holds one lock, so none of
them misses what another one did.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
from collections.abc import Callable
from typing import Any

from wf.durations import to_seconds
from wf.engine.clock import Clock, SystemClock
from wf.engine.limits import Limits
from wf.engine.scheduler import purge_forever
from wf.engine.store.sqlite import SqliteStore
from wf.server.controller import Catalog, ServerController
from wf.server.deploys import Deployer, refresh
from wf.server.state import ServeError, StateDir
from wf.server.workers import WorkerManager

log = logging.getLogger("wf.server")

RECONCILE_SECONDS = 1.0
RETENTION = "30 days"  # for a version deployed before versions kept their own


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
            self.store, state.root, state.database, durability, self.store.secret_values, on_notice
        )
        self.controller = ServerController(
            self.store, self.clock, Limits(), self.catalog, self.workers
        )
        self.changing = asyncio.Lock()
        self.deployer = Deployer(
            state, self.store, self.workers, self.catalog, self.clock, self.changing
        )
        self._tasks: list[asyncio.Task[None]] = []
        self._warned: set[str] = set()

    async def start(self) -> None:
        await self.store.open()
        try:
            # This process owns the database: workers of an earlier server stopped when it died.
            await self.store.release_dead_claims()
            await refresh(self.store, self.catalog)
            self.workers.set_active(*self._active())
            await asyncio.to_thread(self._remove_stray_bundles)
            await self.reconcile()
        except BaseException:
            await self.workers.stop_all()
            await self.store.close()
            raise
        self._tasks = [
            asyncio.create_task(self._keep_right(), name="wf serve workers"),
            asyncio.create_task(self._purge_old(), name="wf serve retention"),
        ]

    def stop_supervising(self) -> None:
        """Stop replacing and starting workers (the server is going away)."""
        for task in self._tasks:
            task.cancel()

    async def stop(self) -> None:
        self.stop_supervising()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.workers.stop_all()
        await self.store.close()

    def _active(self) -> tuple[str | None, list[str]]:
        active = self.catalog.active
        return (active.id if active else None), self.catalog.active_workflows()

    async def _keep_right(self) -> None:
        while True:
            await asyncio.sleep(RECONCILE_SECONDS)
            try:
                await self.reconcile()
            except Exception as exc:  # the loop must outlive any one bad round
                log.error("cannot manage the workers: %s", exc)

    async def _purge_old(self) -> None:
        # Each version keeps its finished instances as long as its own wf.toml says.
        default = to_seconds(RETENTION)
        await purge_forever(
            lambda: self.store.purge_by_version_retention(self.clock.now(), default)
        )

    async def reconcile(self) -> None:
        """Replace dead workers, start missing ones, unload the versions nobody needs."""
        async with self.changing:
            await self.workers.forget_dead()
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
        # Decided in one transaction with the count, so a restart racing it cannot strand an
        # instance on a version whose code is gone.
        if not await self.store.try_unload(version_id, self.clock.now()):
            return
        await refresh(self.store, self.catalog)
        worker = self.workers.workers.get(version_id)
        if worker is not None:
            await self.workers.stop(worker)
        await asyncio.to_thread(shutil.rmtree, self.state.bundle(version_id), True)
        log.info("unloaded version %s: no instance needs it any more", version_id)

    def _remove_stray_bundles(self) -> None:
        """A deploy cut short by a crash may leave a staging folder, or a bundle that was never
        activated: neither is any version's code."""
        known = set(self.catalog.versions)
        for folder in self.state.bundles.iterdir():
            if folder.name not in known:
                shutil.rmtree(folder, ignore_errors=True)

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
