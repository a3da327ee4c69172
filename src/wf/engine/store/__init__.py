"""Stores: the ``Store`` protocol and its backends, picked by URL and imported lazily."""

from __future__ import annotations

from pathlib import Path

from wf.engine.store.base import Store
from wf.engine.store.urls import is_postgres
from wf.errors import StoreError


def open_store(url: str | Path, *, durability: str = "fsync") -> Store:
    """``sqlite:///path/to/db`` or a plain path: the embedded SQLite store; ``postgresql://``
    (or ``postgres://``): the PostgreSQL store, whose driver is imported only then."""
    text = str(url)
    if is_postgres(text):
        try:
            from wf.engine.store.postgres import PostgresStore
        except ImportError as exc:
            if (exc.name or "").split(".")[0] != "psycopg":
                raise
            raise StoreError('PostgreSQL needs psycopg: pip install "wf[postgres]"') from None
        return PostgresStore(text, durability=durability)
    if text.startswith("sqlite:///"):
        text = text[len("sqlite:///") :]
    elif "://" in text:
        scheme = text.split("://", 1)[0]
        raise StoreError(
            f'unsupported store URL scheme "{scheme}"; use sqlite:///path, postgresql://... '
            "or a path"
        )
    from wf.engine.store.sqlite import SqliteStore

    return SqliteStore(text, durability=durability)
