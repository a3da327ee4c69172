"""``wf serve``: the long-running server that runs what ``wf deploy`` sends it."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Annotated, Any

import typer

from wf.errors import WfError


def serve(
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[
        int, typer.Option("--port", help="Port to listen on.", min=0, max=65535)
    ] = 8788,
    state: Annotated[
        Path, typer.Option("--state", help="Folder for the database, bundles and token.")
    ] = Path(".wf-serve"),
    rotate_token: Annotated[
        bool,
        typer.Option("--rotate-token", help="Replace the API token (printed once), then serve."),
    ] = False,
    database: Annotated[
        str | None,
        typer.Option(
            "--database",
            show_default=False,
            help="Database to run on: a postgresql://user:password@host/db URL (every node of a "
            "cluster names the same) or a SQLite file (default: $WF_DATABASE_URL, else the "
            "state folder's wf.db).",
        ),
    ] = None,
    lease: Annotated[
        str | None,
        typer.Option(
            "--lease",
            show_default=False,
            help="How long a dead node keeps its instances before another node takes them over, "
            'e.g. "10 seconds" or 10 (default: each version\'s [engine] lease, else 30 seconds).',
        ),
    ] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            "--metrics-port",
            show_default=False,
            min=0,
            max=65535,
            help="Also serve GET /metrics without the token on 127.0.0.1 at this port "
            "(on the main port it needs the token).",
        ),
    ] = None,
    account_id: Annotated[
        str | None,
        typer.Option(
            "--account-id",
            show_default=False,
            help="The account id Cloudflare's clients must name in /client/v4/accounts/<id>/ "
            "(CLOUDFLARE_ACCOUNT_ID for wrangler); default: any.",
        ),
    ] = None,
    no_metrics: Annotated[
        bool,
        typer.Option("--no-metrics", help="Do not serve GET /metrics (nor count for it)."),
    ] = False,
) -> None:
    """Serve deployed versions (token-authenticated, no reload)."""
    from wf.cli import render
    from wf.cli.database import chosen_database
    from wf.cli.exit import fail
    from wf.cli.notices import NoticePrinter
    from wf.devserver.metrics import metrics_wanted
    from wf.engine.runner import Notice
    from wf.server.main import Reporter, ServeOptions
    from wf.server.main import serve as run_server

    try:
        chosen = chosen_database(database)
        lease_seconds = None if lease is None else _lease(lease)
    except WfError as exc:
        fail(str(exc))

    notices = NoticePrinter()

    def on_notice(data: dict[str, Any]) -> None:
        with contextlib.suppress(TypeError):  # a notice of another shape: not worth a traceback
            notices.notice(Notice(**data))

    reporter = Reporter(
        token=render.print_token,
        ready=lambda url, root, cluster: render.print_serving(url, str(root), cluster),
        warning=render.print_warning,
        notice=on_notice,
    )
    from wf.devserver.logs import configure

    configure("wf serve")
    options = ServeOptions(
        host=host,
        port=port,
        state_dir=state,
        rotate_token=rotate_token,
        database=chosen,
        lease=lease_seconds,
        metrics=not no_metrics and metrics_wanted(),
        metrics_port=metrics_port,
        account_id=account_id,
    )
    try:
        code = asyncio.run(run_server(options, reporter))
    except KeyboardInterrupt:
        code = 0
    except WfError as exc:
        fail(str(exc))  # one line, whatever the database's driver said
    finally:
        notices.flush()  # what the last iteration of the loop told
    raise typer.Exit(code)


def _lease(text: str) -> float:
    """``--lease``: a duration ("10 seconds", "2m") or a number of seconds, within the bounds
    wf.toml's ``[engine] lease`` has."""
    from wf.cli.exit import CliError
    from wf.durations import to_seconds
    from wf.project import MAX_LEASE, MIN_LEASE

    try:
        seconds = float(text)
    except ValueError:
        try:
            seconds = to_seconds(text, "--lease")
        except WfError as exc:
            raise CliError(f"--lease: {exc}") from None
    if not MIN_LEASE <= seconds <= MAX_LEASE:
        raise CliError(f"--lease must be from 1 second to 1 hour, got {text}")
    return seconds
