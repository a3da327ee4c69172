"""The server's worker processes: one per version that may still run instances.

Workers run in sessions of their own, so a Ctrl-C meant for the server does not reach them: the
server stops them itself, gracefully. A worker whose server dies sees its input end and stops at
once (its writes are fenced anyway once the next server's workers claim).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import logging
import os
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from wf.engine.counters import Totals
from wf.engine.runner import StopCause
from wf.engine.store.base import ServerStore
from wf.server.cluster import Bus
from wf.server.database import Database
from wf.server.protocol import WorkerConfig, decode, encode
from wf.server.state import ServeError

log = logging.getLogger("wf.server")

LOAD_TIMEOUT = 120.0  # importing a bundle (a check before a deploy is accepted)
STOP_TIMEOUT = 15.0  # a worker's graceful stop, then SIGKILL
RELEASE_TIMEOUT = 5.0  # giving back what a gone worker held (else its lease frees it)
LINE_LIMIT = 1 << 24  # one message from a worker; longer ones are skipped, never fatal
STDERR_LINES = 20  # kept from each worker, to explain a worker that dies while loading
WATCHDOG_SECONDS = 8.0  # a started worker silent this long is hung


class Worker:
    """One worker process and the pipes to it."""

    def __init__(self, version_id: str, bundle: Path, node: str) -> None:
        self.version_id = version_id
        self.bundle = bundle
        # The node in the name: who holds a claim, and how many nodes there are, show in the
        # database.
        self.owner = f"{node}/worker-{uuid.uuid4().hex[:12]}"
        self.process: asyncio.subprocess.Process | None = None
        self.workflows: list[str] = []
        self.started = False
        self.stopping = False
        self.stderr_tail: collections.deque[str] = collections.deque(maxlen=STDERR_LINES)
        self.tasks: list[asyncio.Task[None]] = []
        self.loaded: asyncio.Future[list[str]] | None = None
        self.running: asyncio.Future[None] | None = None
        self.last_beat: float | None = None
        self.stats: dict[str, Any] = {}  # its engine's figures, as of its last beat

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.returncode is None

    def send(self, message: dict[str, Any]) -> None:
        process = self.process
        if process is None or process.stdin is None or not self.alive:
            return
        # If it just died, the supervision takes over.
        with contextlib.suppress(ConnectionError, RuntimeError):
            process.stdin.write(encode(message))

    def fail(self, problem: ServeError) -> None:
        for future in (self.loaded, self.running):
            if future is not None and not future.done():
                future.set_exception(problem)
                future.exception()  # whoever waits gets it; nobody else must log it


class WorkerManager:
    def __init__(
        self,
        store: ServerStore,
        state_root: Path,
        database: Database,
        durability: str,
        secrets: Callable[[], Awaitable[dict[str, str]]],
        on_notice: Callable[[dict[str, Any]], None],
        *,
        bus: Bus,
        lease: float | None = None,
    ) -> None:
        self.store = store
        self.state_root = state_root
        self.database = database
        self.durability = durability
        self.bus = bus  # to the other nodes sharing the database (none on SQLite)
        self.lease = lease
        self._secrets = secrets
        self._on_notice = on_notice
        self.active_version: str | None = None  # what new instances get, told to every worker
        self.active_workflows: list[str] = []
        self.workers: dict[str, Worker] = {}
        self._by_owner: dict[str, Worker] = {}
        self._closing = False
        self._retired = Totals()  # the counters of workers gone (what /metrics still counts)

    # ---- spawning -------------------------------------------------------------------------------
    async def load(self, version_id: str, bundle: Path) -> Worker:
        """Start a worker for a version and wait until it has imported the bundle. Raises
        ``ServeError`` with the import error (file and line) when it cannot; the process is
        gone then, whatever happened (a cancelled deploy included)."""
        worker = Worker(version_id, bundle, self.bus.node)
        try:
            await self._spawn(worker)
            config = WorkerConfig(
                database=self.database.url,
                bundle=str(bundle),
                version_id=version_id,
                owner=worker.owner,
                durability=self.durability,
                secrets=await self._secrets(),
                active_version=self.active_version,
                lease=self.lease,
            )
            worker.send(dataclasses.asdict(config))
            worker.send(
                {"op": "active", "version": self.active_version, "workflows": self.active_workflows}
            )
            assert worker.loaded is not None
            try:
                worker.workflows = await asyncio.wait_for(
                    asyncio.shield(worker.loaded), LOAD_TIMEOUT
                )
            except asyncio.TimeoutError:
                raise ServeError(
                    f"importing the bundle took longer than {LOAD_TIMEOUT:.0f} s"
                ) from None
        except BaseException:
            await self._kill(worker)
            raise
        return worker

    async def _spawn(self, worker: Worker) -> None:
        read_end, write_end = os.pipe()
        try:
            worker.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "wf.server.worker",
                str(write_end),
                stdin=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                pass_fds=(write_end,),
                # Not the bundle: its files must not shadow modules wf imports at start.
                cwd=self.state_root,
                start_new_session=True,
            )
        except BaseException:
            os.close(read_end)
            raise
        finally:
            os.close(write_end)
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=LINE_LIMIT)
        await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(read_end, "rb", buffering=0)
        )
        worker.loaded = loop.create_future()
        worker.running = loop.create_future()
        worker.tasks = [
            asyncio.ensure_future(self._read(worker, reader)),
            asyncio.ensure_future(self._relay_stderr(worker)),
        ]

    async def start(self, worker: Worker) -> None:
        """Let a loaded worker run its version's instances; it replaces any older one."""
        try:
            worker.send({"op": "start"})
            assert worker.running is not None
            await asyncio.wait_for(asyncio.shield(worker.running), LOAD_TIMEOUT)
        except BaseException:
            await self._kill(worker)
            raise
        worker.started = True
        old = self.workers.get(worker.version_id)
        self.workers[worker.version_id] = worker
        self._by_owner[worker.owner] = worker
        if old is not None and old is not worker:
            await self.stop(old, cause="restart")

    async def _read(self, worker: Worker, reader: asyncio.StreamReader) -> None:
        while True:
            try:
                line = await reader.readline()
            except ValueError:  # a line over the limit: skip it, keep listening
                with contextlib.suppress(ValueError, asyncio.LimitOverrunError):
                    await reader.readuntil(b"\n")
                continue
            if not line:
                break
            try:
                self._handle(worker, decode(line))
            except Exception:  # a bad message, or a failing printer: never stop reading
                log.exception("cannot handle a message from the worker of %s", worker.version_id)
        tail = " | ".join(worker.stderr_tail)
        worker.fail(
            ServeError(
                "the worker process exited before it was ready" + (f": {tail}" if tail else "")
            )
        )

    def _handle(self, worker: Worker, message: dict[str, Any]) -> None:
        if "stats" in message and isinstance(message["stats"], dict):
            worker.stats = message["stats"]
        if "beat" in message:
            worker.last_beat = time.monotonic()
        elif "notice" in message:
            self._on_notice(message["notice"])
        elif "relay" in message:  # a change made through a binding inside a workflow
            relay = message["relay"]
            if relay.get("created"):
                self.created(str(relay["version"]))
            else:
                self.change(
                    relay.get("owner"),
                    str(relay["version"]),
                    int(relay["pk"]),
                    str(relay["change"]),
                    relay.get("event_type"),
                )
        elif "loaded" in message and worker.loaded and not worker.loaded.done():
            worker.loaded.set_result([str(name) for name in message["loaded"]])
        elif "started" in message and worker.running and not worker.running.done():
            worker.running.set_result(None)
        elif "error" in message:
            worker.fail(ServeError(str(message["error"])))

    async def _relay_stderr(self, worker: Worker) -> None:
        """What a worker writes on stderr (a workflow's tracebacks and warnings) goes to the
        server's stderr; the last lines explain a worker that dies while loading."""
        process = worker.process
        if process is None or process.stderr is None:
            return
        while True:
            line = await process.stderr.readline()
            if not line:
                return
            text = line.decode(errors="replace").rstrip()
            worker.stderr_tail.append(text)
            print(f"[{worker.version_id[:8]}] {text}", file=sys.stderr, flush=True)

    # ---- stopping -------------------------------------------------------------------------------
    async def stop(self, worker: Worker, cause: StopCause | None = None) -> None:
        """Stop a worker gracefully (its running attempts may finish), then forget it. An
        attempt it cuts short says the ``cause``."""
        worker.stopping = True
        if self.workers.get(worker.version_id) is worker:
            del self.workers[worker.version_id]
        process = worker.process
        if process is not None and process.returncode is None:
            worker.send({"op": "stop", "cause": cause})
            if process.stdin is not None:
                process.stdin.close()
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
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
        await self._forget(worker)

    async def _forget(self, worker: Worker, crashed: bool = False) -> None:
        self._by_owner.pop(worker.owner, None)
        for task in worker.tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(task, 5)
        if worker.stats:  # its counters go on counting; its gauges (lives in memory) end
            self._retired.add({**worker.stats, "lives": 0, "waiting_lives": 0, "slots_used": 0})
            worker.stats = {}
        if worker.started:
            # Whatever it still held runs again in another worker. Not waited for long: with the
            # database away the write would wait for it, and the claims lapse with the lease.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(
                    self.store.release_claims(worker.owner, crashed, time.time()), RELEASE_TIMEOUT
                )

    def stats(self) -> Totals:
        """Every worker's figures added up, those of workers gone included."""
        totals = Totals().add(self._retired.snapshot())
        for worker in list(self._by_owner.values()):
            totals.add(worker.stats)
        return totals

    async def stop_all(self) -> None:
        self._closing = True
        workers = list(self.workers.values())
        await asyncio.gather(*(self.stop(w, cause="shutdown") for w in workers))

    async def forget_dead(self) -> list[str]:
        """Forget every started worker that died on its own, or went silent (user code blocking
        its event loop: it is killed); its claims are freed, what it ran becomes suspect.
        Returns their versions, for the runtime to start again."""
        dead = []
        now = time.monotonic()
        for worker in list(self.workers.values()):
            silent = worker.last_beat is not None and now - worker.last_beat > WATCHDOG_SECONDS
            if worker.alive and silent and worker.process is not None:
                log.error(
                    "the worker of version %s stopped answering for %.0f s (is a step or run() "
                    "blocking its event loop?); replacing it",
                    worker.version_id,
                    WATCHDOG_SECONDS,
                )
                worker.process.kill()
                await worker.process.wait()
        for version_id, worker in list(self.workers.items()):
            if worker.alive or worker.stopping or self._closing:
                continue
            code = worker.process.returncode if worker.process else None
            log.error("the worker of version %s exited (code %s); restarting it", version_id, code)
            del self.workers[version_id]
            await self._forget(worker, crashed=True)
            dead.append(version_id)
        return dead

    # ---- talking to workers ---------------------------------------------------------------------
    def poke(self, version_id: str) -> None:
        worker = self.workers.get(version_id)
        if worker is not None:
            worker.send({"op": "poke"})

    def created(self, version_id: str) -> None:
        """New instances of a version: its workers here and on every other node look for work."""
        self.poke(version_id)
        self.bus.publish("created", version=version_id)

    def change(
        self,
        owner: str | None,
        version_id: str,
        pk: int,
        change: str,
        event: str | None,
        *,
        relay: bool = True,
    ) -> None:
        """A committed change to instance ``pk``: its holder acts on it, and the version's runner
        looks for work (a resumed or woken instance may be claimable now). ``relay``: a holder on
        another node (or no runner for it here) hears of it through the database."""
        message = {"op": "change", "pk": pk, "change": change, "event_type": event}
        holder = self._by_owner.get(owner) if owner else None
        if holder is not None:
            holder.send(message)
        runner = self.workers.get(version_id)
        if runner is not None and runner is not holder:
            runner.send({"op": "poke"})
        if relay and holder is None and (owner is not None or runner is None):
            self.bus.publish(
                "change",
                pk=pk,
                owner=owner,
                version=version_id,
                change=change,
                event_type=event,
            )

    def workflow_deleted(self, workflow: str) -> None:
        self.broadcast({"op": "deleted", "workflow": workflow})
        self.bus.publish("deleted", workflow=workflow)

    def broadcast(self, message: dict[str, Any]) -> None:
        for worker in list(self.workers.values()):
            worker.send(message)

    def set_active(self, version_id: str | None, workflows: list[str]) -> None:
        self.active_version = version_id
        self.active_workflows = workflows
        self.broadcast({"op": "active", "version": version_id, "workflows": workflows})
