"""``wf versions list NAME``: the deployed versions that had a workflow (``wf serve``)."""

from __future__ import annotations

from typing import Annotated

import typer

from wf.cli.exit import exits
from wf.cli.options import (
    JsonOption,
    ServeUrlOption,
    TokenOption,
    make_serve_client,
    print_json,
    serve_errors,
)

app = typer.Typer(
    help="List the deployed versions of a workflow (wf serve).",
    no_args_is_help=True,
    rich_markup_mode=None,
)


@app.command("list")
@exits
def list_(
    name: Annotated[
        str, typer.Argument(metavar="NAME", help="Name of the workflow.", show_default=False)
    ],
    url: ServeUrlOption = None,
    token: TokenOption = None,
    json_output: JsonOption = False,
) -> None:
    """List the versions of a workflow, newest first.

    Shows which version is active, which are still loaded, and how many of each version's
    instances have not finished."""
    client = make_serve_client(url, token)
    with serve_errors(client):
        versions = client.versions(name)
    if json_output:
        print_json(versions)
        return
    if not versions:
        typer.echo(f'There are no versions of workflow "{name}". Deploy one with "wf deploy"')
        return
    from wf.cli import render

    render.print_versions(name, versions)
