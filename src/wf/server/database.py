"""Which database a ``wf serve`` node and its workers use: the SQLite file in its state folder
(one node on one host), or a PostgreSQL URL that any number of nodes share (a cluster).

The server types against ``ServerStore`` only; this module is the one place that knows a SQLite
worker joins its server's file (``shared``: the server holds the lock) while a PostgreSQL worker
opens the database as any other client does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

from wf.engine.store import open_store
from wf.engine.store.base import ServerStore, Store
from wf.engine.store.urls import is_postgres, redact


@dataclass(frozen=True)
class Database:
    url: str  # a PostgreSQL URL, or the path of the SQLite file

    @property
    def clustered(self) -> bool:
        """Whether other nodes may share it: leases, not this process, decide who is alive."""
        return is_postgres(self.url)

    @property
    def shown(self) -> str:
        return redact(self.url)

    def open_for_server(self, durability: str) -> ServerStore:
        if self.clustered:
            # Every store open_store makes implements ServerStore too; its signature says Store.
            return cast(ServerStore, open_store(self.url, durability=durability))
        from wf.engine.store.sqlite import SqliteStore

        return SqliteStore(self.url, durability=durability)

    def open_for_worker(self, durability: str) -> Store:
        if self.clustered:
            return open_store(self.url, durability=durability)
        from wf.engine.store.sqlite import SqliteStore

        return SqliteStore(self.url, durability=durability, shared=True)
