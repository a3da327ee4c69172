"""Messages between the processes sharing a PostgreSQL database (``publish``/``listen``).

Never ``NOTIFY`` inside a write transaction: it takes a database-wide lock held through the
commit, so every notifying commit of the cluster would queue behind the others. ``Outbox``
collects messages, coalesces repeats, and the writer sends them after its commit with one
statement (``pg_notify`` over an array). ``Inbox`` has its own autocommit connection that
``LISTEN``s and calls the callbacks on the event loop; it reconnects by itself. A message lost
while the database is away is fine: polling stays the fallback.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import psycopg

from wf.engine.store.base import Listener
from wf.engine.store.pg_connect import Conn, Link

log = logging.getLogger("wf.store")

CHANNEL = "wf"
MAX_PAYLOAD = 7900  # PostgreSQL refuses a notification of 8000 bytes or more


class Outbox:
    def __init__(self) -> None:
        self.messages: dict[str, None] = {}  # ordered, and a repeat is sent once

    def add(self, topic: str, payload: dict[str, Any]) -> bool:
        """Queue a message; False if it is too big to send."""
        text = json.dumps({"topic": topic, "payload": payload}, separators=(",", ":"))
        if len(text.encode()) > MAX_PAYLOAD:
            log.error("a %s message of %d bytes is too big to publish", topic, len(text))
            return False
        self.messages[text] = None
        return True

    async def send(self, conn: Conn) -> bool:
        """Queue the sending of what is waiting (the writer commits it, between its batches);
        False if there was nothing."""
        if not self.messages:
            return False
        texts = list(self.messages)
        self.messages.clear()
        await conn.execute("SELECT pg_notify(%s, p) FROM unnest(%s::text[]) AS p", (CHANNEL, texts))
        return True


class Inbox:
    """One ``LISTEN`` connection; ``callbacks`` are called with (topic, payload)."""

    def __init__(self, link: Link) -> None:
        self.link = link
        self.callbacks: list[Listener] = []
        self._task: asyncio.Task[None] | None = None
        self.listening = asyncio.Event()  # set while LISTEN is in effect

    def add(self, callback: Listener) -> None:
        self.callbacks.append(callback)
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="wf postgres listener")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        await self.link.close()

    async def _run(self) -> None:
        while True:
            try:
                conn = await self.link.wait()
            except psycopg.Error:
                return
            except Exception:  # the store closed
                return
            try:
                await conn.execute(f"LISTEN {CHANNEL}")
                self.listening.set()
                async for note in conn.notifies():
                    self._deliver(note.payload)
            except (psycopg.Error, OSError) as exc:
                self.listening.clear()
                await self.link.lost(exc)

    def _deliver(self, text: str) -> None:
        try:
            message = json.loads(text)
            topic, payload = str(message["topic"]), dict(message["payload"])
        except (ValueError, KeyError, TypeError):
            log.debug("ignored a message that is not wf's: %r", text[:100])
            return
        for callback in list(self.callbacks):
            try:
                callback(topic, payload)
            except Exception:
                log.exception("a %s message's listener failed", topic)
