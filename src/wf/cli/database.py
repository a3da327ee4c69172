"""Which database ``wf dev`` and ``wf serve`` run on, as the user chose it on the command line.

``--database``, else ``WF_DATABASE_URL``; wf.toml's ``[engine] database`` comes next (``wf dev``
only: ``Project.store_location``), then the SQLite file of the state folder.
"""

from __future__ import annotations

import os
from pathlib import Path

from wf.cli.exit import CliError

VARIABLE = "WF_DATABASE_URL"


def chosen_database(option: str | None) -> str | None:
    """``--database``, else ``WF_DATABASE_URL`` (empty means unset), checked: a PostgreSQL URL as
    is, a SQLite path made absolute from the current folder. None if neither is given."""
    from wf.engine.store.location import BadLocation, database_location

    if option is not None:
        given, where = option, "--database"
    else:
        given, where = os.environ.get(VARIABLE, ""), VARIABLE
        if not given.strip():
            return None
    try:
        return database_location(given, Path.cwd())
    except BadLocation as exc:
        raise CliError(f"{where}: {exc}") from None


def check_reachable(location: str) -> None:
    """Connect to a PostgreSQL database once (creating wf's schema if needed), so that a server
    that cannot be reached, a wrong password or a missing database stops the command with one
    line before it serves anything. A SQLite file is left to the server (it creates it)."""
    import asyncio

    from wf.engine.store import open_store
    from wf.engine.store.urls import is_postgres, redact
    from wf.errors import WfError

    if not is_postgres(location):
        return

    async def connect() -> None:
        store = open_store(location)
        await store.open()
        await store.close()

    try:
        asyncio.run(connect())
    except WfError:
        raise
    except Exception as exc:  # the store says what went wrong; anything else still gets a line
        raise CliError(f"cannot use {redact(location)}: {type(exc).__name__}: {exc}") from None
