"""One dev-server child: load the project, recover its instances, serve on the inherited socket.

Every reload is a fresh child, so every reload exercises crash recovery. A project that fails to
load still gets a child: it serves the load error (naming file and line) until the next change,
and, when only the module is broken, what is on record (the read routes answer from the store).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import os
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

from aiohttp import web

from wf.devserver import handoff, tracing
from wf.devserver.database import engine_store, held_elsewhere
from wf.devserver.metrics import Metrics, metrics_wanted, statuses_of, tee
from wf.devserver.reads import open_reader
from wf.devserver.signals import stop_on_signals
from wf.devserver.standby import Standby
from wf.devserver.state import ServerState
from wf.engine.counters import Totals
from wf.engine.engine import Engine
from wf.engine.runner import Notice, StopCause
from wf.engine.store.urls import is_postgres, redact
from wf.errors import StoreLocked, WfError
from wf.project import (
    Project,
    ProjectError,
    load_project,
    load_workflows,
    read_dev_vars,
)

log = logging.getLogger("wf.server")

# How long a new child waits for the old one to let go of the database, beyond the old one's
# reload grace (the supervisor stops the old one by then).
LOCK_WAIT_SECONDS = 30.0
STOP_GRACE_SECONDS = 3.0  # running step attempts get this long to finish on a reload
GRACE_VARIABLE = "WF_DEV_RELOAD_GRACE"  # seconds, instead of STOP_GRACE_SECONDS
HEARTBEAT_SECONDS = 1.0
DRAIN_SECONDS = 10.0  # a request in progress gets this long to be answered before a reload


# The database reaches a child in its environment, never on its command line: ps shows command
# lines to every user, and a PostgreSQL URL may carry a password.
DATABASE_VARIABLE = "WF_DEV_CHILD_DATABASE"


@dataclass(frozen=True)
class ChildOptions:
    """What the supervisor tells a child (as JSON on its command line, but the database)."""

    config_path: str
    listen_fd: int
    control_fd: int  # the supervisor's socket: a successor to hand over to, or EOF (it is gone)
    inbox_fd: int  # connections handed over by the previous child arrive here
    host: str
    port: int
    heartbeat_fd: int = -1  # write end of a pipe: a byte a second while the event loop is free
    generation: int = 0
    changes: list[str] = field(default_factory=list)
    after_crash: bool = False  # the previous child died on its own (or hung and was killed)
    # --database or WF_DATABASE_URL, checked (a URL or an absolute path); None: wf.toml says.
    database: str | None = None

    def to_json(self) -> str:
        """For the child's command line: everything but ``database`` (see ``DATABASE_VARIABLE``)."""
        return json.dumps({k: v for k, v in asdict(self).items() if k != "database"})

    def environment(self, base: Mapping[str, str]) -> dict[str, str]:
        """The child's environment: ``base`` with the database, if one was given."""
        env = {k: v for k, v in base.items() if k != DATABASE_VARIABLE}
        if self.database:
            env[DATABASE_VARIABLE] = self.database
        return env

    @classmethod
    def from_json(cls, text: str, database: str | None = None) -> ChildOptions:
        return cls(**json.loads(text), database=database)


class Reporter(Protocol):
    """How a child talks to the terminal (the CLI renders it; the server stays rich-free)."""

    def ready(
        self, state: ServerState, url: str, state_dir: str, first: bool, database: str | None
    ) -> None:
        """``database``: where the database is, shown (password hidden), unless it is the
        state folder's SQLite file."""

    def reloaded(self, changes: list[str]) -> None: ...

    def notice(self, notice: Notice) -> None: ...

    def error(self, message: str) -> None: ...

    def info(self, message: str) -> None: ...


@dataclass
class _Loaded:
    project: Project | None
    state: ServerState
    engine: Engine | None = None
    database: str | None = None  # where the project's database is, once wf.toml loaded
    metrics: Metrics | None = None  # GET /metrics, unless turned off


def _metrics_of(loaded: _Loaded) -> Metrics | None:
    """This child's metrics: its engine's notices and figures, the database's statuses."""
    if not metrics_wanted():
        return None
    state = loaded.state

    async def statuses() -> dict[str, dict[str, int]]:
        controller = state.engine or state.reader
        if controller is None:
            return {}
        return await statuses_of(controller.workflow_names, controller.store.count_statuses)

    def figures() -> Totals | None:
        engine = loaded.engine
        return None if engine is None else Totals().add(engine.stats_snapshot())

    return Metrics(statuses, figures)


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
        # wf.toml says where the database is: without it there is nothing to read either.
        base.read_error = f"{exc}; instances can be read once wf.toml loads"
        return _Loaded(None, base)
    base.project_name = project.name
    base.workflows = project.workflows
    database = project.store_location(options.database)
    loaded = _Loaded(project, base, database=database)
    loaded.metrics = _metrics_of(loaded)
    observe = loaded.metrics.observe if loaded.metrics is not None else None
    try:
        _private_folder(project.state_dir)
        loaded.engine = project_engine(
            project, on_notice=tee(observe, reporter.notice), database=database
        )
    except WfError as exc:
        base.load_error = str(exc)
        return loaded
    except Exception as exc:  # an unexpected problem still leaves a server that says what
        base.load_error = f"{project.main_label}: {type(exc).__name__}: {exc}"
        return loaded
    base.version_id = loaded.engine.version_id
    return loaded


async def _open_reads(loaded: _Loaded) -> None:
    """A project whose code does not load still has its history: serve it read-only."""
    state = loaded.state
    if loaded.project is None or loaded.engine is not None:
        return
    try:
        state.reader = await open_reader(loaded.project, loaded.database)
    except Exception as exc:  # whatever it is, the server still says what is wrong
        problem = str(exc) if isinstance(exc, WfError) else f"{type(exc).__name__}: {exc}"
        state.read_error = f"{state.load_error}; its instances cannot be read either: {problem}"


async def _close_reads(state: ServerState) -> None:
    if state.reader is not None:
        await state.reader.store.close()
        state.reader = None


def project_engine(
    project: Project,
    on_notice: Callable[[Notice], None] | None = None,
    database: str | None = None,
) -> Engine:
    """The engine ``wf dev`` runs a project on: its database (``database``, else wf.toml's),
    its workflows (imported now), vars and ``.dev.vars`` secrets, ``[engine]`` settings, and
    the version id of its sources."""
    return Engine(
        engine_store(project.store_location(database), project.engine.durability),
        load_workflows(project),
        vars={**project.vars, **read_dev_vars(project)},
        settings=project.engine_settings(),
        version_id=project.version_id(),
        on_notice=on_notice,
        tracer=tracing.from_environment(),
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
    deadline = time.monotonic() + (0.0 if first else LOCK_WAIT_SECONDS + reload_grace())
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
    """Tell the supervisor that the project is loaded (the first beat), then once a second that
    the event loop is free. If user code blocks it (an endless loop in run(), say), the beats
    stop and the supervisor starts a new child."""
    if fd < 0:
        return
    with contextlib.suppress(OSError):  # a full pipe: the supervisor reads late, fine
        os.set_blocking(fd, False)
        os.write(fd, b".")
    asyncio.get_running_loop().call_later(HEARTBEAT_SECONDS, _beat, fd)


def _watch_supervisor(
    control: socket.socket, stop: Callable[[handoff.Successor | None], None]
) -> None:
    """The supervisor's word: a successor's socket means "stop, and hand your connections to the
    next child"; the end of the channel means the supervisor is gone (even by SIGKILL)."""
    loop = asyncio.get_running_loop()
    control.setblocking(False)

    def readable() -> None:
        successor = handoff.receive_successor(control)
        if successor is None:
            try:
                if control.recv(1, socket.MSG_PEEK):
                    return  # not a whole message yet
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                pass
        loop.remove_reader(control.fileno())
        stop(successor)

    loop.add_reader(control.fileno(), readable)


class _Stop:
    """Why and how this child stops: told to hand over (a reload) or just to stop."""

    def __init__(self) -> None:
        self.event = asyncio.Event()
        self.successor: handoff.Successor | None = None

    def __call__(self, successor: handoff.Successor | None = None) -> None:
        if self.event.is_set():
            if successor is not None:
                successor.close()
            return
        self.successor = successor
        self.event.set()

    @property
    def cause(self) -> StopCause:
        return "reload" if self.successor is not None else "shutdown"


async def serve(options: ChildOptions, reporter: Reporter) -> int:
    stop = _Stop()
    with stop_on_signals(stop):
        return await _serve(options, reporter, stop)


async def _serve(options: ChildOptions, reporter: Reporter, stop: _Stop) -> int:
    from wf.dashboard.routes import install as install_dashboard
    from wf.devserver.api import create_app
    from wf.devserver.metrics import install as install_metrics
    from wf.devserver.subscribe import close_streams

    _watch_supervisor(socket.socket(fileno=options.control_fd), stop)
    inbox = handoff.Inbox(socket.socket(fileno=options.inbox_fd))

    loaded = _load(options, reporter)
    await _open_reads(loaded)
    state = loaded.state
    engine = loaded.engine
    first = options.generation == 0
    standby: Standby | None = None
    taking_over: asyncio.Task[None] | None = None
    if engine is not None and not first and held_elsewhere(engine.store):
        # The previous child is finishing its step attempts: answer meanwhile (a reload
        # should not stall the API), and take the engine over as soon as it lets go.
        assert loaded.project is not None and loaded.database is not None
        standby = await Standby.join(
            engine, loaded.database, loaded.project.engine.durability, reporter.notice
        )
    # Loaded: the supervisor may now retire the serving child, which stops accepting and hands
    # this one its connections (and, when it stops, the database).
    _beat(options.heartbeat_fd)
    if engine is not None and standby is None:
        await _take_over(state, engine, stop.event, options.after_crash, first, reporter=None)
    elif engine is not None:
        state.engine = standby
        taking_over = asyncio.create_task(
            _take_over(state, engine, stop.event, options.after_crash, first, reporter)
        )
    await _first_of(inbox.predecessor_stopped, stop.event)
    if stop.event.is_set():  # superseded by a newer child before it could serve
        await _pass_on(inbox, stop.successor)
        await _stop_engine(state, engine, standby, taking_over, 0.0, stop.cause)
        return 0
    if state.load_error:
        reporter.error(state.load_error)

    sock = socket.socket(fileno=options.listen_fd)
    app = create_app(state)
    if loaded.metrics is not None:
        install_metrics(app, loaded.metrics)  # open, as the rest of wf dev's API
    install_dashboard(app)
    closing = handoff.Closing()
    closing.install(app)
    runner = handoff.HandoffRunner(app, handle_signals=False, access_log=None, shutdown_timeout=5.0)
    await runner.setup()
    site = web.SockSite(runner, sock)
    await site.start()
    assert runner.server is not None
    inbox.serve(handoff.adopter(runner.server))
    url = f"http://{_display_host(options.host)}:{options.port}"
    state_dir = str(loaded.project.state_dir) if loaded.project else ""
    if options.generation == 0 or not options.changes:
        reporter.ready(state, url, state_dir, options.generation == 0, _shown_database(loaded))
    elif state.load_error:
        changed = ", ".join(options.changes)
        reporter.info(
            f"reloaded after changes to {changed}, without the project's code: fix the error "
            "above and save (instances wait meanwhile)"
        )
    else:
        reporter.reloaded(options.changes)
    try:
        await stop.event.wait()
    finally:
        await handoff.stop_accepting(site, sock)
        # Event streams never come to rest by themselves: end them so the drain below does not
        # wait on them (their clients reconnect, to the next child).
        close_streams(app)
        if stop.successor is not None:
            # A reload: every open connection goes to the next child once its request in
            # progress (if any) is answered here, so a client keeping it sees nothing.
            stop.successor.stopped_accepting()
            inbox.forward(stop.successor)
            left = await handoff.hand_over(runner.server, stop.successor, DRAIN_SECONDS)
            if left:
                log.warning("%d connection(s) still busy after %.0f s: closed", left, DRAIN_SECONDS)
        else:
            await handoff.close_all(runner.server, closing, DRAIN_SECONDS)
        await _pass_on(inbox, stop.successor)
        await runner.cleanup()
        await _stop_engine(state, engine, standby, taking_over, reload_grace(), stop.cause)
    return 0


async def _first_of(*events: asyncio.Event) -> None:
    waits = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()


async def _take_over(
    state: ServerState,
    engine: Engine,
    stopping: asyncio.Event,
    after_crash: bool,
    first: bool,
    reporter: Reporter | None,
) -> None:
    """Start the engine (waiting for the previous child's lock) and serve the API through it."""
    problem = await _start_engine(engine, stopping, after_crash, first)
    if problem is None:
        state.engine = engine
        return
    if stopping.is_set():
        return  # superseded: the standby answers the requests still in progress here
    state.engine = None
    state.load_error = problem
    if reporter is not None:
        reporter.error(problem)


async def _stop_engine(
    state: ServerState,
    engine: Engine | None,
    standby: Standby | None,
    taking_over: asyncio.Task[None] | None,
    grace: float,
    cause: StopCause,
) -> None:
    if taking_over is not None:
        await taking_over  # returns at once: it gives up when told to stop
    if standby is not None:
        await standby.close()
    if engine is not None and state.engine is engine:
        await engine.stop(grace=grace, cause=cause)
    await _close_reads(state)


def reload_grace() -> float:
    """How long a reload lets running step attempts finish (``WF_DEV_RELOAD_GRACE``, seconds)."""
    try:
        seconds = float(os.environ.get(GRACE_VARIABLE, STOP_GRACE_SECONDS))
    except ValueError:
        return STOP_GRACE_SECONDS
    return seconds if 0 <= seconds <= 3600 else STOP_GRACE_SECONDS


async def _pass_on(inbox: handoff.Inbox, successor: handoff.Successor | None) -> None:
    """Connections handed to this child that it will not serve go on to its successor (or are
    closed, when there is none); then the successor may stop waiting for more."""
    if successor is None:
        inbox.serve(lambda conn, _read: conn.close())
    else:
        inbox.forward(successor)  # again is harmless
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(inbox.closed.wait(), DRAIN_SECONDS)
    if successor is not None:
        successor.close()


def _shown_database(loaded: _Loaded) -> str | None:
    """The database for the banner, unless it is the usual SQLite file in the state folder."""
    project, database = loaded.project, loaded.database
    if project is None or database is None or database == str(project.database):
        return None
    if is_postgres(database):
        return f"{redact(database)} (schema wf)"
    with contextlib.suppress(ValueError):
        return str(Path(database).relative_to(project.root))
    return database


def _display_host(host: str) -> str:
    if host in ("0.0.0.0", "::", ""):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host
