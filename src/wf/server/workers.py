"""The server's worker processes: one per version that may still run instances.

A worker that dies is replaced (its claims are freed first, so its instances continue in the new
one); a version that is no longer active and has no unfinished instance left is unloaded.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from wf.engine.store.sqlite import SqliteStore
from wf.server.protocol import WorkerConfig, decode, encode
from wf.server.state import ServeError

log = logging.getLogger("wf.server")

LOAD_TIMEOUT = 120.0  # importing a bundle (a check before a deploy is accepted)
STOP_TIMEOUT = 15.0  # a worker's graceful stop, then SIGKILL
RESTART_BACKOFF = 1.0


class Worker:
    """One worker process and the pipes to it."""

    def __init__(self, version_id: str, bundle: Path) -> None:
        self.version_id = version_id
        self.bundle = bundle
        self.owner = f"worker-{uuid.uuid4()}"
        self.process: asyncio.subprocess.Process | None = None
        self.workflows: list[str] = []
        self.started = False
        self.stopping = False
        self._replies: asyncio.StreamReader | None = None
        self._reading: asyncio.Task[None] | None = None
        self._loaded: asyncio.Future[list[str]] | None = None
        self._running: asyncio.Future[None] | None = None

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.returncode is None

    def send(self, message: dict[str, Any]) -> None:
        process = self.process
        if process is None or process.stdin is None or not self.alive:
            return
        # If it just died, the supervisor takes over.
        with contextlib.suppress(ConnectionError, RuntimeError):
            process.stdin.write(encode(message))


class WorkerManager:
    def __init__(
        self,
        store: SqliteStore,
        database: Path,
        durability: str,
        secrets: Callable[[], Any],
        on_notice: Callable[[dict[str, Any]], None],
    ) -> None:
        self.store = store
        self.database = database
        self.durability = durability
        self._secrets = secrets
        self._on_notice = on_notice
        self.workers: dict[str, Worker] = {}
        self._by_owner: dict[str, Worker] = {}
        self._closing = False

    # ---- spawning -------------------------------------------------------------------------------
    async def load(self, version_id: str, bundle: Path) -> Worker:
        """Start a worker for a version and wait until it has imported the bundle. Raises
        ``ServeError`` with the import error (file and line) when it cannot."""
        worker = Worker(version_id, bundle)
        read_end, write_end = os.pipe()
        try:
            worker.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "wf.server.worker",
                str(write_end),
                stdin=asyncio.subprocess.PIPE,
                pass_fds=(write_end,),
                cwd=bundle,
            )
        finally:
            os.close(write_end)
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=1 << 22)
        await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(read_end, "rb", buffering=0)
        )
        worker._replies = reader
        worker._loaded = loop.create_future()
        worker._running = loop.create_future()
        worker._reading = asyncio.ensure_future(self._read(worker))
        secrets = await self._secrets()
        config = WorkerConfig(
            database=str(self.database),
            bundle=str(bundle),
            version_id=version_id,
            owner=worker.owner,
            durability=self.durability,
            secrets=secrets,
        )
        worker.send(dataclasses.asdict(config))
        try:
            worker.workflows = await asyncio.wait_for(asyncio.shield(worker._loaded), LOAD_TIMEOUT)
        except asyncio.TimeoutError:
            await self._kill(worker)
            raise ServeError(
                f"importing the bundle took longer than {LOAD_TIMEOUT:.0f} s"
            ) from None
        except ServeError:
            await self._kill(worker)
            raise
        return worker

    async def start(self, worker: Worker) -> None:
        """Let a loaded worker run its version's instances."""
        worker.send({"op": "start"})
        assert worker._running is not None
        await asyncio.wait_for(asyncio.shield(worker._running), LOAD_TIMEOUT)
        worker.started = True
        old = self.workers.get(worker.version_id)
        self.workers[worker.version_id] = worker
        self._by_owner[worker.owner] = worker
        if old is not None and old is not worker:
            await self.stop(old)

    async def _read(self, worker: Worker) -> None:
        reader = worker._replies
        assert reader is not None and worker._loaded is not None and worker._running is not None
        try:
            while True:
                line = await reader.readline()
                if not line:
                    break
                try:
                    message = decode(line)
                except ValueError:
                    continue
                if "notice" in message:
                    self._on_notice(message["notice"])
                elif "loaded" in message and not worker._loaded.done():
                    worker._loaded.set_result(list(message["loaded"]))
                elif "started" in message and not worker._running.done():
                    worker._running.set_result(None)
                elif "error" in message:
                    problem = ServeError(str(message["error"]))
                    for future in (worker._loaded, worker._running):
                        if not future.done():
                            future.set_exception(problem)
                            future.exception()  # whoever waits gets it; nobody else must log it
        finally:
            ended = ServeError("the worker process exited before it was ready")
            for future in (worker._loaded, worker._running):
                if not future.done():
                    future.set_exception(ended)
                    future.exception()  # retrieved: nobody may be waiting any more

    # ---- stopping -------------------------------------------------------------------------------
    async def stop(self, worker: Worker) -> None:
        """Stop a worker gracefully (its running attempts may finish), then forget it."""
        worker.stopping = True
        if self.workers.get(worker.version_id) is worker:
            del self.workers[worker.version_id]
        process = worker.process
        if process is not None and process.returncode is None:
            if process.stdin is not None:
                process.stdin.close()  # end of input: the worker stops
            try:
                await asyncio.wait_for(process.wait(), STOP_TIMEOUT)
            except asyncio.TimeoutError:
                process.kill()
                await process.wait()
        await self._forget(worker)

    async def _kill(self, worker: Worker) -> None:
        worker.stopping = True
        process = worker.process
        if process is not None and process.returncode is None:
            process.kill()
            await process.wait()
        await self._forget(worker)

    async def _forget(self, worker: Worker) -> None:
        self._by_owner.pop(worker.owner, None)
        if worker._reading is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(worker._reading, 5)
        if worker.started:
            # Whatever it still held runs again in another worker.
            with contextlib.suppress(Exception):
                await self.store.release_claims(worker.owner)

    async def stop_all(self) -> None:
        self._closing = True
        await asyncio.gather(*(self.stop(w) for w in list(self.workers.values())))

    # ---- supervision ----------------------------------------------------------------------------
    async def replace_dead(self) -> list[str]:
        """Restart every started worker that died on its own; return their versions."""
        replaced = []
        for version_id, worker in list(self.workers.items()):
            if worker.alive or worker.stopping or self._closing:
                continue
            code = worker.process.returncode if worker.process else None
            log.error("the worker of version %s exited (code %s); restarting it", version_id, code)
            del self.workers[version_id]
            await self._forget(worker)
            await asyncio.sleep(RESTART_BACKOFF)
            try:
                fresh = await self.load(version_id, worker.bundle)
                await self.start(fresh)
            except (ServeError, asyncio.TimeoutError) as exc:
                log.error("cannot restart the worker of version %s: %s", version_id, exc)
                continue
            replaced.append(version_id)
        return replaced

    # ---- talking to workers ---------------------------------------------------------------------
    def poke(self, version_id: str) -> None:
        worker = self.workers.get(version_id)
        if worker is not None:
            worker.send({"op": "poke"})

    def change(
        self, owner: str | None, version_id: str, pk: int, change: str, event: str | None
    ) -> None:
        message = {"op": "change", "pk": pk, "change": change, "event_type": event}
        holder = self._by_owner.get(owner) if owner else None
        if holder is not None:
            holder.send(message)
        runner = self.workers.get(version_id)
        if runner is not None and runner is not holder:
            runner.send({"op": "poke"})

    def broadcast(self, message: dict[str, Any]) -> None:
        for worker in list(self.workers.values()):
            worker.send(message)
