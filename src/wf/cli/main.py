"""The ``wf`` command: one Typer app, one module per command group."""

from __future__ import annotations

import typer

from wf import __version__
from wf.cli import (
    deploy,
    dev,
    init,
    instances,
    secret,
    serve,
    stats,
    trigger,
    versions,
    workflows,
)

app = typer.Typer(
    name="wf",
    help="Durable workflows for Python, in the spirit of Cloudflare Workflows.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,  # plain help: quick to print, no stray "<bool>" beside flags
    pretty_exceptions_enable=False,
)
app.command("init")(init.init)
app.command("dev")(dev.dev)
app.command("trigger")(trigger.trigger)
app.add_typer(workflows.app, name="workflows")
app.add_typer(instances.app, name="instances")
app.command("serve")(serve.serve)
app.command("deploy")(deploy.deploy)
app.add_typer(versions.app, name="versions")
app.add_typer(secret.app, name="secret")
app.command("stats")(stats.stats)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"wf {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Show the version and exit."
    ),
) -> None:
    """Durable workflows for Python, in the spirit of Cloudflare Workflows."""


def main() -> None:
    app()
