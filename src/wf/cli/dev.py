"""``wf dev``: the hot-reloading local server."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from wf.errors import WfError


def dev(
    port: Annotated[
        int | None, typer.Option("--port", help="Port to listen on (default: [dev].port, 8787).")
    ] = None,
    host: Annotated[
        str | None,
        typer.Option("--host", help="Address to bind (default: [dev].host, 127.0.0.1)."),
    ] = None,
    database: Annotated[
        str | None,
        typer.Option(
            "--database",
            show_default=False,
            help="Database to run on: a postgresql://user:password@host/db URL or a SQLite file "
            "(default: $WF_DATABASE_URL, else [engine].database, else .wf/wf.db).",
        ),
    ] = None,
    no_metrics: Annotated[
        bool,
        typer.Option("--no-metrics", help="Do not serve GET /metrics (nor count for it)."),
    ] = False,
) -> None:
    """Run the project locally with hot reload.

    Every change to a source or to wf.toml starts a fresh server process, which recovers every
    instance and goes on serving on the same socket.
    """
    from wf.cli.database import check_reachable, chosen_database
    from wf.devserver.supervisor import Supervisor, child_command
    from wf.project import DevConfig, Project, ProjectError, find_config, load_project

    config = find_config()
    if config is None:
        _fail(f"no wf.toml in {Path.cwd()} or its parents; create a project with `wf init`")
    if port is not None and not 0 <= port <= 65535:
        _fail(f"--port must be from 0 to 65535, got {port}")
    try:
        chosen = chosen_database(database)
    except WfError as exc:
        _fail(str(exc))
    dev_config = DevConfig()
    project: Project | None = None
    # A broken wf.toml does not stop the server: it starts and shows the problem until fixed.
    with contextlib.suppress(ProjectError):
        project = load_project(config)
        dev_config = project.dev
    try:
        # A PostgreSQL server that cannot be used is said now, in one line, not served as an error.
        check_reachable(project.store_location(chosen) if project else chosen or "")
    except WfError as exc:
        _fail(str(exc))
    bind_host = host or dev_config.host
    from wf.devserver.child import is_loopback

    if not is_loopback(bind_host):
        typer.echo(
            f"wf: warning: listening on {bind_host}: anyone who can reach this machine can drive "
            "this server (wf dev has no token); use it only on a network you trust",
            err=True,
        )
    if no_metrics:
        import os

        from wf.devserver.metrics import NO_METRICS_VARIABLE

        os.environ[NO_METRICS_VARIABLE] = "1"  # the children read it
    supervisor = Supervisor(
        config_path=config,
        host=bind_host,
        port=dev_config.port if port is None else port,
        state_dir=dev_config.state_dir,
        child_command=child_command(),
        say=lambda message: typer.echo(f"wf: {message}", err=True),
        database=chosen,
    )
    try:
        code = supervisor.run()
    except WfError as exc:
        _fail(str(exc))
    raise typer.Exit(code)


def _fail(message: str) -> NoReturn:
    from wf.cli.exit import fail

    fail(message)
