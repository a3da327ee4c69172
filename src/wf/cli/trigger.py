"""``wf trigger NAME [PARAMS_JSON] [--id ID] [--priority N]``: queue a new instance."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from wf.cli.exit import exits, json_argument
from wf.cli.options import JsonOption, TokenOption, UrlOption, make_client, print_json


@exits
def trigger(
    name: Annotated[
        str, typer.Argument(metavar="NAME", help="Name of the workflow.", show_default=False)
    ],
    params: Annotated[
        str | None,
        typer.Argument(
            metavar="PARAMS_JSON",
            help=(
                "Params as a JSON string, @FILE to read them from a file, or - from standard "
                "input; run() gets them as event.payload."
            ),
            show_default=False,
        ),
    ] = None,
    instance_id: Annotated[
        str | None,
        typer.Option("--id", help="Custom instance id (default: a new UUID).", show_default=False),
    ] = None,
    priority: Annotated[
        int | None,
        typer.Option(
            "--priority",
            help="Higher is claimed first among ready instances (default 0).",
            show_default=False,
        ),
    ] = None,
    url: UrlOption = None,
    token: TokenOption = None,
    json_output: JsonOption = False,
) -> None:
    """Trigger a workflow: queue a new instance with the given params."""
    parsed = json_argument(params, "params", plural=True) if params is not None else None
    client = make_client(url, token)
    result = client.create_instance(
        name,
        id=instance_id,
        params=parsed,
        has_params=params is not None,
        trigger="cli",
        priority=priority,
    )
    if json_output:
        print_json(result)
        return
    new_id = result.get("id", instance_id or "?")
    typer.echo(f'🚀 Workflow instance "{new_id}" has been queued successfully')
    # The server named by --url is the one to ask again (WF_URL, the next command reads too).
    elsewhere = f" --url {url}" if url and url != os.environ.get("WF_URL") else ""
    typer.echo(f"   wf instances describe {name} {new_id}{elsewhere}")
