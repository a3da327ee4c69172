"""``wf serve``'s metrics: the API's notices and the workers' (relayed), the figures of this
node's writer and workers, and the database's statuses. ``/metrics`` on the main port needs the
API token; ``--metrics-port`` serves it on 127.0.0.1 without one, for a local scraper."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from wf.devserver.envelope import UNAUTHORIZED, ApiError
from wf.devserver.metrics import Guard, Metrics, install, statuses_of
from wf.devserver.security import bearer, token_accepted
from wf.devserver.state import ServerState
from wf.engine.counters import Totals, snapshot
from wf.server.state import ServeError

if TYPE_CHECKING:
    from wf.server.runtime import Runtime


class ServeMetrics(Metrics):
    """Metrics whose runtime is known once it exists (it takes the notice observers first)."""

    def __init__(self) -> None:
        self._runtime: Runtime | None = None
        super().__init__(self._statuses_now, self._figures_now)

    def watch(self, runtime: Runtime) -> None:
        self._runtime = runtime

    async def _statuses_now(self) -> dict[str, dict[str, int]]:
        runtime = self._runtime
        if runtime is None:
            return {}
        return await statuses_of(runtime.controller.workflow_names, runtime.store.count_statuses)

    def _figures_now(self) -> Totals | None:
        runtime = self._runtime
        if runtime is None:
            return None
        own = snapshot(None, runtime.store.write_stats)  # the API's writes (creations, controls)
        return runtime.workers.stats().add(own)


def serve_metrics() -> ServeMetrics:
    return ServeMetrics()


def token_guard(state: ServerState) -> Guard:
    """The API token, as ``Authorization: Bearer``: a dashboard session does not do (the
    dashboard's own paths let sessions through; a scraper has none)."""

    async def guard(request: web.Request) -> None:
        supplied = bearer(request.headers.get("Authorization"))
        if supplied is None or not await token_accepted(supplied, state):
            raise ApiError(
                401,
                UNAUTHORIZED,
                "GET /metrics needs the API token: send Authorization: Bearer <token> (or "
                "scrape the --metrics-port listener on 127.0.0.1)",
                headers={"WWW-Authenticate": "Bearer"},
            )

    return guard


async def metrics_listener(metrics: Metrics, port: int) -> web.AppRunner:
    """``GET /metrics`` alone, on 127.0.0.1:``port``, without a token."""
    app = web.Application()
    install(app, metrics)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", port).start()
    except OSError as exc:
        await runner.cleanup()
        raise ServeError(f"cannot listen on 127.0.0.1:{port} for metrics: {exc.strerror}") from None
    return runner
