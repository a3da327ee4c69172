"""Deploying a bundle: check it, unpack it, import it in a fresh worker, and only then activate it.

Any failure leaves everything as it was: the active version, its worker, the bundles on disk.
The bundle's bytes are stored in the database with the version, so every node sharing it (a
cluster on PostgreSQL) fetches them into its own state folder (``fetch_bundle``).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wf.bundle import BundleError, bundle_version_id, extract_bundle
from wf.engine.clock import Clock
from wf.engine.model import VersionRow
from wf.engine.retention import NO_RETENTION
from wf.engine.store.base import ServerStore
from wf.errors import WfError
from wf.project import ProjectError, load_project
from wf.server.controller import Catalog
from wf.server.state import ServeError, StateDir
from wf.server.workers import WorkerManager

log = logging.getLogger("wf.server")


class BundleRejected(WfError):
    """The bundle is malformed or its wf.toml is invalid (nothing changed)."""

    code = "bundle.invalid"


class ImportFailed(WfError):
    """The bundle does not import, or a class_name does not resolve (nothing changed)."""

    code = "bundle.import_failed"


@dataclass(frozen=True)
class Deployed:
    version: VersionRow
    files: int
    size: int
    already_active: bool


class Deployer:
    def __init__(
        self,
        state: StateDir,
        store: ServerStore,
        workers: WorkerManager,
        catalog: Catalog,
        clock: Clock,
        lock: asyncio.Lock,
    ) -> None:
        self.state = state
        self.store = store
        self.workers = workers
        self.catalog = catalog
        self.clock = clock
        # Shared with the runtime: one change to the workers at a time (a deploy, a secret,
        # a reconcile), so none of them misses what another one did.
        self._lock = lock

    async def deploy(self, data: bytes, sha256: str | None = None) -> Deployed:
        if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256.strip().lower():
            raise BundleRejected("the bundle's sha256 does not match X-WF-Bundle-Sha256")
        async with self._lock:
            staging = self.state.bundles / f".staging-{uuid.uuid4().hex}"
            try:
                return await self._deploy(data, staging)
            finally:
                if staging.exists():
                    await asyncio.to_thread(shutil.rmtree, staging, True)

    async def _deploy(self, data: bytes, staging: Path) -> Deployed:
        try:
            files = await asyncio.to_thread(extract_bundle, data, staging)
        except BundleError as exc:
            raise BundleRejected(str(exc)) from None
        size = sum((staging / name).stat().st_size for name in files)
        version_id = await asyncio.to_thread(bundle_version_id, staging)
        try:
            project = load_project(staging / "wf.toml")
        except ProjectError as exc:
            raise BundleRejected(str(exc)) from None
        if not project.main.is_relative_to(staging.resolve()):
            raise BundleRejected(
                f'wf.toml: main "{project.main_label}" is outside the bundle; the module must be '
                "one of the files deployed"
            )
        workflows: list[dict[str, Any]] = [
            {"name": w.name, "binding": w.binding, "class_name": w.class_name}
            | {"script_name": project.name}  # Cloudflare's name for the project deployed
            | ({"schedules": list(w.schedules)} if w.schedules else {})
            for w in project.workflows
        ]
        for entry, workflow in zip(workflows, project.workflows, strict=True):
            if workflow.default_retention != NO_RETENTION:  # seconds, for ServerController
                entry["default_retention"] = workflow.default_retention.as_json()
            if workflow.flow.active:  # for ServerController: new instances' keys
                entry["flow"] = workflow.flow.as_json()
        secrets = await self.store.secret_values()
        for workflow in project.workflows:
            if workflow.binding in secrets:
                raise BundleRejected(
                    f'wf.toml: the binding "{workflow.binding}" of workflow "{workflow.name}" has '
                    "the same name as a secret; rename one (wf secret delete removes a secret)"
                )
        active = self.catalog.active
        if (
            active is not None
            and active.id == version_id
            and version_id in self.workers.workers
            and active.workflows == workflows  # else an older wf recorded less: record it again
        ):
            return Deployed(active, len(files), size, already_active=True)
        target = self.state.bundle(version_id)
        fresh = not target.exists()
        if fresh:
            staging.rename(target)
        running = version_id in self.workers.workers  # it had unfinished instances: keep it
        try:
            worker = await self.workers.load(version_id, target)
            if running:
                await self.workers.stop(worker)
            else:
                # Running before it is active is harmless: it claims only its own instances,
                # and a brand-new version has none yet.
                await self.workers.start(worker)
        except (ServeError, asyncio.TimeoutError) as exc:
            if fresh:
                await asyncio.to_thread(shutil.rmtree, target, True)
            raise ImportFailed(str(exc)) from None
        try:
            # Before the version is active: a node that sees the version finds its bundle.
            await self.store.put_bundle(version_id, data)
            version = await self.store.activate_version(
                version_id,
                self.clock.now(),
                workflows,
                len(files),
                size,
                project.engine_settings().retention_seconds,
            )
        except BaseException:
            if not running:
                await self.workers.stop(worker)
            raise
        # Another node may have unloaded this version between the two (it saw it inactive and
        # unneeded: a rollback) and deleted its bundle; active now, it stays, and so must that.
        if await self.store.get_bundle(version_id) is None:
            await self.store.put_bundle(version_id, data)
        self.workers.bus.publish("versions")
        await refresh(self.store, self.catalog)
        active = self.catalog.active
        self.workers.set_active(active.id if active else None, self.catalog.active_workflows())
        log.info("deployed version %s (%d files)", version_id, len(files))
        return Deployed(version, len(files), size, already_active=False)


async def refresh(store: ServerStore, catalog: Catalog) -> bool:
    """Reread the versions into the catalog (after a deploy or an unload, here or on another
    node); True when the active version changed."""
    versions = await store.list_versions()
    before = catalog.active.id if catalog.active else None
    catalog.known = versions
    catalog.versions = {v.id: v for v in versions if v.unloaded is None}
    catalog.active = next((v for v in versions if v.active), None)
    return (catalog.active.id if catalog.active else None) != before


async def fetch_bundle(state: StateDir, store: ServerStore, version_id: str) -> Path | None:
    """The bundle of a version deployed on another node, unpacked from the database into this
    node's state folder (checked against its version id); None when the database has none."""
    target = state.bundle(version_id)
    if target.is_dir():
        return target
    data = await store.get_bundle(version_id)
    if data is None:
        return None
    staging = state.bundles / f".staging-{uuid.uuid4().hex}"
    try:
        try:
            await asyncio.to_thread(extract_bundle, data, staging)
        except BundleError as exc:
            raise ServeError(
                f"the stored bundle of version {version_id} is unreadable: {exc}"
            ) from None
        found = await asyncio.to_thread(bundle_version_id, staging)
        if found != version_id:
            raise ServeError(
                f"the stored bundle of version {version_id} unpacks as version {found}"
            )
        staging.rename(target)
    finally:
        if staging.exists():
            await asyncio.to_thread(shutil.rmtree, staging, True)
    return target


def deployed_json(deployed: Deployed, iso: Any) -> dict[str, Any]:
    return {
        "version_id": deployed.version.id,
        "created_on": iso(deployed.version.created),
        "workflows": deployed.version.workflows,
        "files": deployed.files,
        "size": deployed.size,
        "already_active": deployed.already_active,
    }
