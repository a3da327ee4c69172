"""The stores a ``wf dev`` child opens on its project's database, SQLite or PostgreSQL.

Beside the engine's own store, a child may need a second view of the same database: the standby
of a reload, answering while the previous child still holds a SQLite file, and the reader of a
project whose module does not load. A SQLite file admits one owner, so those views join it
without its lock (``shared``) or only read it (``read_only``). PostgreSQL lets every process in at
once (the claims' epochs keep their runs apart), so there a second view is simply another store.
"""

from __future__ import annotations

from wf.engine.store import open_store
from wf.engine.store.base import Store
from wf.engine.store.sqlite import SqliteStore
from wf.engine.store.urls import is_postgres


def engine_store(location: str, durability: str) -> Store:
    """The store a child's engine runs on (``location``: a checked URL or absolute path)."""
    return open_store(location, durability=durability)


def joined_store(location: str, durability: str) -> Store:
    """A store to answer through while another process owns the database (a reload's standby):
    it writes, but takes no lock and applies no migrations."""
    if is_postgres(location):
        return open_store(location, durability=durability)
    return SqliteStore(location, durability=durability, shared=True)


def reading_store(location: str) -> Store:
    """A store to read the history through without running anything (a broken module)."""
    if is_postgres(location):
        return open_store(location)
    return SqliteStore(location, read_only=True)


def held_elsewhere(store: Store) -> bool:
    """Whether another process owns the engine's database now, so that its engine cannot start
    yet: a SQLite file another child still holds. A PostgreSQL database is never held."""
    return isinstance(store, SqliteStore) and store.held_elsewhere()
