"""The API token of ``wf serve``: where it comes from, and how a request's token is checked.

* ``WF_API_TOKEN`` set: that token (an operator's secret, the same on every node). wf never stores
  it and cannot rotate it.
* Otherwise, on SQLite: the token file in the state folder (0600), as a single node always had.
* Otherwise, on PostgreSQL: the first node creates one, prints it once and stores only its sha256
  (setting ``api_token_sha256``); every node checks requests against that hash, rereading it on a
  ``token`` message, every few seconds, and, at most once a second, when a token does not match
  (another node may have rotated it).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import os
import secrets
import time

from wf.engine.store.base import ServerStore
from wf.errors import StoreError
from wf.server.state import TOKEN_BYTES, ServeError

HASH_SETTING = "api_token_sha256"
ENV = "WF_API_TOKEN"
REREAD_SECONDS = 1.0
FOLLOW_SECONDS = 5.0


class StoredTokenHash:
    """The cluster's token, known by its sha256 in the database."""

    def __init__(self, store: ServerStore, digest: str) -> None:
        self.store = store
        self.digest = digest
        self._read_at = time.monotonic()

    async def matches(self, supplied: bytes) -> bool:
        given = hashlib.sha256(supplied).hexdigest()
        if hmac.compare_digest(given, self.digest):
            return True
        # Perhaps rotated on another node and its message missed; a flood of wrong tokens costs
        # the database one read a second.
        if time.monotonic() - self._read_at < REREAD_SECONDS:
            return False
        await self.reread()
        return hmac.compare_digest(given, self.digest)

    async def follow(self) -> None:
        """Reread the hash every few seconds, for good: a rotation whose message this node
        missed still takes the old token away here (a wrong token alone never rereads it)."""
        while True:
            await asyncio.sleep(FOLLOW_SECONDS)
            with contextlib.suppress(StoreError):
                await self.reread()

    async def reread(self) -> None:
        self._read_at = time.monotonic()
        stored = await self.store.get_setting(HASH_SETTING)
        if stored:
            self.digest = stored


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def from_environment() -> str | None:
    token = os.environ.get(ENV, "").strip()
    return token or None


def refuse_rotation_of_env_token() -> None:
    raise ServeError(
        f"the API token comes from {ENV}; change it there (on every node): --rotate-token "
        "replaces a token wf serve made"
    )


async def cluster_token(store: ServerStore, rotate: bool) -> tuple[StoredTokenHash, str | None]:
    """The token of nodes sharing a PostgreSQL database (WF_API_TOKEN unset): its check, and the
    token itself when this node made it (to print once). The caller publishes ``token`` after a
    rotation, so the other nodes reread the hash at once."""
    if rotate:
        token = new_token()
        await store.put_setting(HASH_SETTING, digest(token))
        return StoredTokenHash(store, digest(token)), token
    stored = await store.get_setting(HASH_SETTING)
    if stored is None:
        token = new_token()
        if await store.put_setting(HASH_SETTING, digest(token), only_if_missing=True):
            return StoredTokenHash(store, digest(token)), token
        # Another node starting at the same time stored its own first: that one is the token.
        stored = await store.get_setting(HASH_SETTING)
        if stored is None:
            raise ServeError("the database lost the API token's hash just after it was stored")
    return StoredTokenHash(store, stored), None
