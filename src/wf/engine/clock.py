"""Where the engine gets its time from, so tests (and the user test kit) can skip waiting."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import threading
import time
from typing import Protocol


class Clock(Protocol):
    """**Protocol:** wall-clock time in epoch seconds, and a way to wait for a moment of it."""

    def now(self) -> float: ...

    async def sleep_until(self, when: float) -> None: ...


class SystemClock:
    """The real clock."""

    def now(self) -> float:
        return time.time()

    async def sleep_until(self, when: float) -> None:
        # Sleep in slices so a wall-clock jump (NTP, a suspended laptop) is noticed within a minute.
        while True:
            remaining = when - time.time()
            if remaining <= 0:
                return
            await asyncio.sleep(min(remaining, 60.0))


class ManualClock:
    """A clock that moves only when told to; sleepers wake when ``advance`` passes their time.

    Safe to advance from any thread; each sleeper is woken on its own event loop.
    """

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = start
        self._lock = threading.Lock()
        self._sleepers: list[
            tuple[float, int, asyncio.AbstractEventLoop, asyncio.Future[None]]
        ] = []
        self._order = itertools.count()

    def now(self) -> float:
        return self._now

    async def sleep_until(self, when: float) -> None:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        with self._lock:
            if when <= self._now:
                future.set_result(None)
            else:
                heapq.heappush(self._sleepers, (when, next(self._order), loop, future))
        await future

    def advance(self, seconds: float) -> None:
        self.set(self._now + seconds)

    def set(self, when: float) -> None:
        with self._lock:
            self._now = max(self._now, when)
            due = []
            while self._sleepers and self._sleepers[0][0] <= self._now:
                due.append(heapq.heappop(self._sleepers))
            if len(self._sleepers) > 64:
                live = [s for s in self._sleepers if not s[3].done()]
                if len(live) * 2 < len(self._sleepers):  # forget sleeps cancelled meanwhile
                    heapq.heapify(live)
                    self._sleepers = live
        for _, _, loop, future in due:
            if not loop.is_closed():
                loop.call_soon_threadsafe(_resolve, future)

    @property
    def next_wake(self) -> float | None:
        with self._lock:
            live = [s[0] for s in self._sleepers if not s[3].done()]
        return min(live) if live else None


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


async def sleep_for(clock: Clock, seconds: float) -> None:
    await clock.sleep_until(clock.now() + seconds)
