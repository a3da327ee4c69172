"""``wf dev``: the hot-reloading local server."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Annotated

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
) -> None:
    """Run the project locally with hot reload.

    Every change to a source or to wf.toml starts a fresh server process, which recovers every
    instance and goes on serving on the same socket.
    """
    from wf.devserver.supervisor import Supervisor, child_command
    from wf.project import DevConfig, ProjectError, find_config, load_project

    config = find_config()
    if config is None:
        _fail(f"no wf.toml in {Path.cwd()} or its parents; create a project with `wf init`")
    assert config is not None
    dev_config = DevConfig()
    # A broken wf.toml does not stop the server: it starts and shows the problem until fixed.
    with contextlib.suppress(ProjectError):
        dev_config = load_project(config).dev
    if port is not None and not 0 <= port <= 65535:
        _fail(f"--port must be from 0 to 65535, got {port}")
    bind_host = host or dev_config.host
    from wf.devserver.child import is_loopback

    if not is_loopback(bind_host):
        typer.echo(
            f"wf: warning: listening on {bind_host}: anyone who can reach this machine can drive "
            "this server (wf dev has no token); use it only on a network you trust",
            err=True,
        )
    supervisor = Supervisor(
        config_path=config,
        host=bind_host,
        port=dev_config.port if port is None else port,
        state_dir=dev_config.state_dir,
        child_command=child_command(),
        say=lambda message: typer.echo(f"wf: {message}", err=True),
    )
    try:
        code = supervisor.run()
    except WfError as exc:
        _fail(str(exc))
    raise typer.Exit(code)


def _fail(message: str) -> None:
    typer.echo(f"wf: {message}", err=True)
    raise typer.Exit(1)
