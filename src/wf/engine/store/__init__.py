"""Stores: the ``Store`` protocol and its backends, picked by URL and imported lazily."""

from __future__ import annotations

from pathlib import Path

from wf.engine.store.base import Store
from wf.errors import StoreError


def open_store(url: str | Path, *, durability: str = "fsync") -> Store:
    """``sqlite:///path/to/db`` or a plain path: the embedded SQLite store."""
    text = str(url)
    if text.startswith("sqlite:///"):
        text = text[len("sqlite:///") :]
    elif "://" in text:
        scheme = text.split("://", 1)[0]
        raise StoreError(f'unsupported store URL scheme "{scheme}"; use sqlite:///path or a path')
    from wf.engine.store.sqlite import SqliteStore

    return SqliteStore(text, durability=durability)
