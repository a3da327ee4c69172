"""``wf serve``: open the state folder and the database, make sure there is a token, start the
runtime, serve. Many nodes may share one PostgreSQL database (a cluster); see ``runtime`` and
``cluster``."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from wf.devserver import handoff
from wf.devserver.api import create_app
from wf.devserver.child import is_loopback
from wf.devserver.metrics import install as install_metrics
from wf.devserver.signals import stop_on_signals
from wf.devserver.state import ServerState
from wf.devserver.subscribe import close_streams
from wf.engine.runner import Notice
from wf.server import tokens
from wf.server.dashboard import install_dashboard
from wf.server.database import Database
from wf.server.metrics import metrics_listener, serve_metrics, token_guard
from wf.server.routes import add_serve_routes
from wf.server.runtime import Runtime
from wf.server.state import ServeError, StateDir

STOP_SECONDS = 10.0  # a request in progress gets this long to be answered when the server stops


@dataclass(frozen=True)
class ServeOptions:
    host: str = "127.0.0.1"
    port: int = 8788
    state_dir: Path = Path(".wf-serve")
    rotate_token: bool = False
    durability: str = "fsync"
    database: str | None = None  # a PostgreSQL URL; None: wf.db in the state folder
    # How long a worker's claims outlive its last renewal; None: each bundle's [engine] lease.
    lease: float | None = None
    metrics: bool = True  # GET /metrics (with the token)
    metrics_port: int | None = None  # and on 127.0.0.1 at this port, without it
    account_id: str | None = None  # the one Cloudflare's paths accept; None: any


class Reporter:
    """How the server talks to its terminal (the CLI renders it with rich)."""

    def __init__(
        self,
        token: Callable[[str, str, bool], None],
        ready: Callable[[str, Path, str | None], None],
        warning: Callable[[str], None],
        notice: Callable[[dict[str, Any]], None],
    ) -> None:
        self.token = token
        self.ready = ready
        self.warning = warning
        self.notice = notice


def _token(state: StateDir, rotate: bool, reporter: Reporter) -> str:
    token = state.read_token()
    if token is None or rotate:
        token = state.new_token()
        reporter.token(token, str(state.token_file), rotate)
    return token


async def _authentication(
    runtime: Runtime, state: StateDir, rotate: bool, reporter: Reporter
) -> tuple[str | None, tokens.StoredTokenHash | None]:
    """(the token, or how to check one): WF_API_TOKEN, else the token file of a SQLite node,
    else the hash the nodes of a cluster share."""
    from_env = tokens.from_environment()
    if from_env is not None:
        if rotate:
            tokens.refuse_rotation_of_env_token()
        return from_env, None
    if not runtime.database.clustered:
        return _token(state, rotate, reporter), None
    check, made = await tokens.cluster_token(runtime.store, rotate)
    if made is not None:
        reporter.token(made, "the database, as its sha256 only", rotate)
    if rotate:
        runtime.bus.publish("token")
    runtime.bus.on("token", lambda _: runtime.chore(check.reread()))
    runtime.chore(check.follow())
    return None, check


async def serve(options: ServeOptions, reporter: Reporter) -> int:
    state = StateDir(options.state_dir.resolve())
    state.prepare()
    database = Database(options.database or str(state.database))
    metrics = serve_metrics() if options.metrics else None

    def controller_notice(notice: Notice) -> None:
        """What the API did here (queued, paused, terminated...): printed as wf dev does."""
        reporter.notice(asdict(notice))
        if metrics is not None:
            metrics.observe(notice)

    runtime = Runtime(
        state,
        options.durability,
        reporter.notice if metrics is None else _both(metrics.observe_dict, reporter.notice),
        database=database,
        lease=options.lease,
        on_controller_notice=controller_notice,
    )
    if metrics is not None:
        metrics.watch(runtime)
    # On SQLite this takes the database lock: a second server stops here, token untouched.
    await runtime.start()
    try:
        token, token_check = await _authentication(runtime, state, options.rotate_token, reporter)
    except BaseException:
        await runtime.stop()
        raise
    loopback = is_loopback(options.host)
    if not loopback:
        reporter.warning(
            f"listening on {options.host}: requests are not encrypted; put a reverse proxy with "
            "TLS in front"
        )
    stopping = asyncio.Event()
    with stop_on_signals(stopping.set):
        try:
            server_state = ServerState(
                project_name="wf serve",
                engine=runtime.controller,
                bound_host=options.host,
                port=options.port,
                token=token,
                token_check=token_check,
                host_check=loopback,
                serve=True,
                node_status=runtime.node_status,
                account_id=options.account_id,
            )
            app = create_app(server_state)
            if metrics is not None:
                install_metrics(app, metrics, token_guard(server_state))
            add_serve_routes(app, runtime)
            await install_dashboard(app, server_state, runtime)
            closing = handoff.Closing()
            closing.install(app)
            # wf dev's runner: malformed requests answered in the envelope, and each connection
            # knows whether a request is in progress on it, for a clean stop.
            runner = handoff.HandoffRunner(
                app, handle_signals=False, access_log=None, shutdown_timeout=STOP_SECONDS
            )
            await runner.setup()
            try:
                site = web.TCPSite(runner, options.host, options.port)
                await site.start()
            except OSError as exc:
                await runner.cleanup()
                raise ServeError(
                    f"cannot listen on {options.host}:{options.port}: {exc.strerror}"
                ) from None
            metrics_runner = None
            if metrics is not None and options.metrics_port is not None:
                try:
                    metrics_runner = await metrics_listener(metrics, options.metrics_port)
                except ServeError:
                    await runner.cleanup()
                    raise
            cluster = f"node {runtime.node} on {database.shown}" if database.clustered else None
            reporter.ready(f"http://{_shown(options.host)}:{options.port}", state.root, cluster)
            try:
                await stopping.wait()
            finally:
                runtime.stop_supervising()  # a worker stopping now must not be "replaced"
                # Idle connections end now; a request in progress is answered first (aiohttp's own
                # shutdown would drop the rest of its body), saying that the connection ends too.
                await site.stop()
                close_streams(app)  # event streams end now rather than hold the stop up
                assert runner.server is not None
                await handoff.close_all(runner.server, closing, STOP_SECONDS)
                await runner.cleanup()
                if metrics_runner is not None:
                    await metrics_runner.cleanup()
        finally:
            await runtime.stop()
    return 0


def _both(
    first: Callable[[dict[str, Any]], None], second: Callable[[dict[str, Any]], None]
) -> Callable[[dict[str, Any]], None]:
    def both(notice: dict[str, Any]) -> None:
        first(notice)
        second(notice)

    return both


def _shown(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host
