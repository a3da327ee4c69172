"""`wf trigger` (being built)."""

from __future__ import annotations

import typer


def trigger() -> None:
    """Not built yet."""
    typer.echo("wf trigger: not built yet", err=True)
    raise typer.Exit(1)
