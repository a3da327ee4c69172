"""One dev-server child: load the project, recover its instances, serve on the inherited socket.

Every reload is a fresh child, so every reload exercises crash recovery. A project that fails to
load still gets a child: it serves the load error (naming file and line) until the next change.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import os
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

from aiohttp import web

from wf.devserver.state import ServerState
from wf.engine.engine import Engine
from wf.engine.runner import Notice
from wf.engine.store.sqlite import SqliteStore
from wf.errors import StoreLocked, WfError
from wf.project import (
    Project,
    ProjectError,
    load_project,
    load_workflows,
    read_dev_vars,
)

log = logging.getLogger("wf.server")

LOCK_WAIT_SECONDS = 30.0  # how long a new child waits for the old one to let go of the database
STOP_GRACE_SECONDS = 3.0  # running step attempts get this long to finish on a reload
HEARTBEAT_SECONDS = 1.0
DRAIN_SECONDS = 10.0  # accepted connections get this long to be served before a reload closes them


@dataclass(frozen=True)
class ChildOptions:
    """What the supervisor tells a child (as JSON on its command line)."""

    config_path: str
    listen_fd: int
    parent_fd: int  # read end of a pipe: EOF means the supervisor is gone
    host: str
    port: int
    heartbeat_fd: int = -1  # write end of a pipe: a byte a second while the event loop is free
    generation: int = 0
    changes: list[str] = field(default_factory=list)
    after_crash: bool = False  # the previous child died on its own (or hung and was killed)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ChildOptions:
        return cls(**json.loads(text))


class Reporter(Protocol):
    """How a child talks to the terminal (the CLI renders it; the server stays rich-free)."""

    def ready(self, state: ServerState, url: str, state_dir: str, first: bool) -> None: ...

    def reloaded(self, changes: list[str]) -> None: ...

    def notice(self, notice: Notice) -> None: ...

    def error(self, message: str) -> None: ...

    def info(self, message: str) -> None: ...


@dataclass
class _Loaded:
    project: Project | None
    state: ServerState
    engine: Engine | None = None


def _load(options: ChildOptions, reporter: Reporter) -> _Loaded:
    config = Path(options.config_path)
    base = ServerState(
        project_name=config.parent.name,
        bound_host=options.host,
        port=options.port,
        # Beyond loopback the Host names are the machine's own: only the Origin check stays.
        host_check=is_loopback(options.host),
    )
    try:
        project = load_project(config)
    except ProjectError as exc:
        base.load_error = str(exc)
        return _Loaded(None, base)
    base.project_name = project.name
    base.workflows = project.workflows
    try:
        _private_folder(project.state_dir)
        engine = project_engine(project, on_notice=reporter.notice)
    except WfError as exc:
        base.load_error = str(exc)
        return _Loaded(project, base)
    except Exception as exc:  # an unexpected problem still leaves a server that says what
        base.load_error = f"{project.main_label}: {type(exc).__name__}: {exc}"
        return _Loaded(project, base)
    base.version_id = engine.version_id
    return _Loaded(project, base, engine)


def project_engine(project: Project, on_notice: Callable[[Notice], None] | None = None) -> Engine:
    """The engine ``wf dev`` runs a project on: its workflows (imported now), vars and
    ``.dev.vars`` secrets, ``[engine]`` settings, and the version id of its sources."""
    return Engine(
        SqliteStore(project.database, durability=project.engine.durability),
        load_workflows(project),
        vars={**project.vars, **read_dev_vars(project)},
        settings=project.engine_settings(),
        version_id=project.version_id(),
        on_notice=on_notice,
    )


def _private_folder(folder: Path) -> None:
    """The state folder holds the database (params, outputs, events): this user's only."""
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        folder.chmod(0o700)
    except OSError as exc:
        raise ProjectError(f"cannot prepare the state folder {folder}: {exc.strerror}") from None


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


async def _start_engine(
    engine: Engine, stopping: asyncio.Event, after_crash: bool, first: bool
) -> str | None:
    """Start the engine, waiting while the previous child still holds the database. A child
    told to stop meanwhile (a newer change superseded it) gives up instead of taking over. The
    first child has no predecessor to wait for: a lock held then is another wf's."""
    deadline = time.monotonic() + (0.0 if first else LOCK_WAIT_SECONDS)
    while not stopping.is_set():
        try:
            await engine.start(after_crash)
            return None
        except StoreLocked as exc:
            if time.monotonic() > deadline:
                return str(exc)
            await asyncio.sleep(0.02)
        except WfError as exc:
            return str(exc)
        except Exception as exc:
            return f"cannot start the engine: {type(exc).__name__}: {exc}"
    return "stopped before the engine started"


def _beat(fd: int) -> None:
    """Tell the supervisor, once a second, that the event loop is free. If user code blocks it
    (an endless loop in run(), say), the beats stop and the supervisor starts a new child."""
    if fd < 0:
        return
    with contextlib.suppress(OSError):  # a full pipe: the supervisor reads late, fine
        os.set_blocking(fd, False)
        os.write(fd, b".")
    asyncio.get_running_loop().call_later(HEARTBEAT_SECONDS, _beat, fd)


def _watch_parent(fd: int, stop: Callable[[], None]) -> None:
    """Stop when the supervisor dies (its end of the pipe closes), even by SIGKILL."""
    loop = asyncio.get_running_loop()

    def readable() -> None:
        try:
            data = os.read(fd, 1024)
        except OSError:
            data = b""
        if not data:
            loop.remove_reader(fd)
            stop()

    loop.add_reader(fd, readable)


async def serve(options: ChildOptions, reporter: Reporter) -> int:
    from wf.devserver.api import create_app

    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    _watch_parent(options.parent_fd, stopping.set)

    loaded = _load(options, reporter)
    state = loaded.state
    engine = loaded.engine
    if engine is not None:
        problem = await _start_engine(
            engine, stopping, options.after_crash, first=options.generation == 0
        )
        if problem is None:
            state.engine = engine
        else:
            state.load_error = problem
            engine = None
    if stopping.is_set():  # superseded by a newer child before it could serve
        if engine is not None:
            await engine.stop()
        return 0
    if state.load_error:
        reporter.error(state.load_error)

    sock = socket.socket(fileno=options.listen_fd)
    app = create_app(state)
    app.on_response_prepare.append(_close_connections)
    runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=5.0)
    await runner.setup()
    site = web.SockSite(runner, sock)
    await site.start()
    _beat(options.heartbeat_fd)
    url = f"http://{_display_host(options.host)}:{options.port}"
    state_dir = str(loaded.project.state_dir) if loaded.project else ""
    if options.generation == 0 or not options.changes:
        reporter.ready(state, url, state_dir, first=options.generation == 0)
    else:
        reporter.reloaded(options.changes)
    try:
        await stopping.wait()
    finally:
        # Stop accepting (the next child takes new connections from the shared backlog), then
        # let every connection already accepted send its one request and get its answer (there
        # is no keep-alive, so each closes after that). A connection closed unanswered, its
        # request unread, is a reset for its client.
        await stop_accepting(site, sock)
        await _drain_connections(runner)
        await runner.cleanup()
        if engine is not None:
            await engine.stop(grace=STOP_GRACE_SECONDS)
    return 0


async def stop_accepting(site: web.SockSite, listener: socket.socket) -> None:
    """Stop taking connections from the shared listener, keeping every connection accepted so
    far. asyncio makes the transport of a connection it has accepted in a task of its own, a
    loop turn later, and a server closed before that drops the connection. So the accepting
    stops first, and the server is closed once those tasks have run."""
    asyncio.get_running_loop().remove_reader(listener.fileno())
    await asyncio.sleep(0)
    await site.stop()
    await asyncio.sleep(0)  # their protocols are told (aiohttp counts them from then on)


async def _drain_connections(runner: web.AppRunner) -> None:
    server = runner.server
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DRAIN_SECONDS
    while server is not None and server.connections and loop.time() < deadline:
        await asyncio.sleep(0.01)


async def _close_connections(request: web.Request, response: web.StreamResponse) -> None:
    # No keep-alive: a reload must never leave a client holding a connection to a child that
    # is going away. Each request is a new connection, queued by the kernel while children swap.
    response.force_close()


def _display_host(host: str) -> str:
    if host in ("0.0.0.0", "::", ""):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host
