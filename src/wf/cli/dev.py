"""`wf dev` (being built)."""

from __future__ import annotations

import typer


def dev() -> None:
    """Not built yet."""
    typer.echo("wf dev: not built yet", err=True)
    raise typer.Exit(1)
