"""``wf stats [NAME] [--since 1h]``: a summary per workflow from the running server (``GET
/api/stats``): counts by status, throughput, duration percentiles, slowest and most failing
steps, wall and CPU time."""

from __future__ import annotations

from typing import Annotated

import typer

from wf.cli.exit import error_line, exits
from wf.cli.options import JsonOption, TokenOption, UrlOption, make_client, print_json
from wf.durations import to_seconds
from wf.errors import ValidationError

EXIT_USAGE = 2  # as Typer's usage errors


def _check_since(value: str) -> str:
    """A bad window is one line and exit 2 (not Typer's four-line usage error)."""
    try:
        if not to_seconds(value, "--since") > 0:  # the server refuses an empty window too
            raise ValidationError(f'--since "{value}" is no time at all')
    except ValidationError as exc:
        typer.echo(error_line(f"{exc} (for example 15m, 1h, 7 days)"), err=True)
        raise typer.Exit(EXIT_USAGE) from None
    return value


@exits
def stats(
    name: Annotated[
        str | None,
        typer.Argument(
            metavar="NAME", help="Only this workflow (default: each).", show_default=False
        ),
    ] = None,
    since: Annotated[
        str,
        typer.Option("--since", help="The window: the last 15m, 1h, 7 days…", show_default=True),
    ] = "1h",
    url: UrlOption = None,
    token: TokenOption = None,
    json_output: JsonOption = False,
) -> None:
    """Summarise each workflow over a window: counts, throughput, durations, slow and failing
    steps."""
    since = _check_since(since).strip()
    result = make_client(url, token).stats(name, since)
    if json_output:
        print_json(result)
        return
    from wf.cli import render

    render.print_stats(result, since)
