"""Connecting to PostgreSQL: one-line errors naming the redacted URL, and connections that come
back by themselves after the server went away (a restart, a failover, a dropped connection).

``Link`` holds one connection and reconnects it: ``get()`` once (a read: fails at once with
``StoreUnavailable``), ``wait()`` with backoff until it is back (a write: it waits). ``Health``
says once when an outage starts and once when it ends, however many links notice it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

import psycopg
from psycopg.rows import TupleRow

from wf.engine.store.urls import redact, scrub
from wf.errors import StoreError, StoreUnavailable

log = logging.getLogger("wf.store")


class _QuietPipelineExit(logging.Filter):
    """psycopg warns when leaving a pipeline fails after the block raised; here that block's
    error is a lost connection the store already reports (once per outage), so the warning only
    repeats it, in psycopg's words."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("error ignored terminating")


logging.getLogger("psycopg").addFilter(_QuietPipelineExit())

CONNECT_TIMEOUT = 10  # seconds: libpq's connect_timeout
BACKOFF_FIRST, BACKOFF_MAX = 0.05, 2.0
# A transaction left open by a bug (or a frozen process) must not pin the xmin horizon: the
# server ends it. wf never holds one open across user code, so a minute is generous.
SESSION_OPTIONS = "-c idle_in_transaction_session_timeout=60000 -c application_name=wf"

Conn = psycopg.AsyncConnection[TupleRow]


def cause(exc: BaseException) -> str:
    """libpq's message in one line, without its "connection to server ... failed:" preamble."""
    text = str(exc).strip() or type(exc).__name__
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    first = lines[0] if lines else text
    first = first.removeprefix("connection failed: ")
    if "failed: " in first:
        first = first.rsplit("failed: ", 1)[1]
    return first.removeprefix("FATAL:").strip()


def is_disconnect(exc: BaseException, conn: Conn | None) -> bool:
    """Whether ``exc`` means the connection is gone (rather than a statement failing)."""
    if conn is not None and (conn.closed or conn.broken):
        return True
    sqlstate = getattr(exc, "sqlstate", None) or ""
    # 08: connection exceptions; 57P01-57P03: the server shuts down or is starting up.
    return sqlstate.startswith("08") or sqlstate in ("57P01", "57P02", "57P03")


async def connect(url: str) -> Conn:
    """An autocommit connection, or a ``StoreError`` naming the redacted URL and the cause."""
    try:
        return await psycopg.AsyncConnection.connect(
            url, autocommit=True, connect_timeout=CONNECT_TIMEOUT, options=SESSION_OPTIONS
        )
    except psycopg.Error as exc:
        why = scrub(cause(exc), url)
        raise StoreError(f"cannot connect to PostgreSQL at {redact(url)}: {why}") from None


class Health:
    """Whether the database answers; logs one line when that changes."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.where = redact(url)
        self.down_since: float | None = None
        self.recovered_at = float("-inf")  # when the last outage ended (monotonic)

    def cause(self, exc: BaseException) -> str:
        return scrub(cause(exc), self.url)

    def down(self, exc: BaseException) -> None:
        if self.down_since is None:
            self.down_since = time.monotonic()
            log.warning(
                "PostgreSQL at %s is unreachable: %s; waiting for it", self.where, self.cause(exc)
            )

    def up(self) -> None:
        if self.down_since is not None:
            self.recovered_at = time.monotonic()
            took = self.recovered_at - self.down_since
            self.down_since = None
            log.warning("PostgreSQL at %s is reachable again (after %.1f s)", self.where, took)

    def unavailable(self, exc: BaseException | None = None) -> StoreUnavailable:
        why = f": {self.cause(exc)}" if exc is not None else ""
        return StoreUnavailable(
            f"PostgreSQL at {self.where} is unreachable{why}; try again shortly"
        )


class Link:
    """One connection that reconnects when lost. ``setup`` runs on each new connection."""

    def __init__(
        self, url: str, health: Health, setup: Callable[[Conn], Awaitable[None]] | None = None
    ) -> None:
        self.url = url
        self.health = health
        self.setup = setup
        self.conn: Conn | None = None
        self.connected_at = 0.0  # when ``conn`` was made (monotonic)
        self.closed = False
        self._made: list[Conn] = []  # every connection made, closed for sure at the end
        self._backoff = BACKOFF_FIRST
        self._retry_at = 0.0  # a read does not retry a failed connect before this (monotonic)

    async def _connect(self) -> Conn:
        conn = await psycopg.AsyncConnection.connect(
            self.url, autocommit=True, connect_timeout=CONNECT_TIMEOUT, options=SESSION_OPTIONS
        )
        try:
            if self.setup is not None:
                await self.setup(conn)
        except BaseException:
            await conn.close()
            raise
        self.connected_at = time.monotonic()
        self._made = [c for c in self._made if not c.closed]
        self._made.append(conn)
        return conn

    async def get(self) -> Conn:
        """The connection, connecting once if there is none; ``StoreUnavailable`` if it fails."""
        if self.closed:
            raise StoreError("the store is closed")
        if self.conn is not None and not self.conn.closed:
            return self.conn
        if time.monotonic() < self._retry_at:
            raise self.health.unavailable()
        try:
            self.conn = await self._connect()
        except (psycopg.Error, OSError) as exc:
            self._retry_at = time.monotonic() + self._backoff
            self._backoff = min(BACKOFF_MAX, self._backoff * 2)
            self.health.down(exc)
            raise self.health.unavailable(exc) from None
        self._backoff, self._retry_at = BACKOFF_FIRST, 0.0
        self.health.up()
        return self.conn

    async def wait(self) -> Conn:
        """The connection, waiting (reconnecting with backoff) as long as it takes."""
        while True:
            if self.closed:
                raise StoreError("the store is closed")
            if self.conn is not None and not self.conn.closed:
                return self.conn
            try:
                self.conn = await self._connect()
            except (psycopg.Error, OSError) as exc:
                self.health.down(exc)
                await asyncio.sleep(self._backoff)
                self._backoff = min(BACKOFF_MAX, self._backoff * 2)
                continue
            self._backoff = BACKOFF_FIRST
            self.health.up()
            return self.conn

    async def lost(self, exc: BaseException) -> None:
        """The connection failed: drop it (the next ``get``/``wait`` reconnects). A connection
        made before the last outage ended died in that outage, already told (an idle link finds
        out late): it starts no new one, unless reconnecting fails."""
        if self.connected_at >= self.health.recovered_at:
            self.health.down(exc)
        await self.drop()

    async def drop(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            with contextlib.suppress(psycopg.Error, OSError):
                await conn.close()

    async def close(self) -> None:
        self.closed = True
        await self.drop()
        for conn in self._made:  # one a failure left behind without closing it
            with contextlib.suppress(psycopg.Error, OSError):
                await conn.close()
        self._made.clear()
