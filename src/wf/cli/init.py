"""`wf init` (being built)."""

from __future__ import annotations

import typer


def init() -> None:
    """Not built yet."""
    typer.echo("wf init: not built yet", err=True)
    raise typer.Exit(1)
