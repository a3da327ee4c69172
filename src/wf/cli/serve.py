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
) -> None:
    """Serve deployed versions (token-authenticated, no reload)."""
    from wf.cli import render
    from wf.cli.database import chosen_database
    from wf.cli.exit import fail
    from wf.cli.notices import NoticePrinter
    from wf.engine.runner import Notice
    from wf.server.main import Reporter, ServeOptions
    from wf.server.main import serve as run_server

    try:
        chosen = chosen_database(database)
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
        host=host, port=port, state_dir=state, rotate_token=rotate_token, database=chosen
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
