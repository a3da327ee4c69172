"""Time in a test: ``auto`` skips to the next timer whenever the engine only waits and the test
waits on it, ``manual`` moves only on ``advance``, ``real`` is the wall clock."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Literal

from wf.engine.clock import ManualClock, SystemClock
from wf.engine.scheduler import Scheduler

TimeMode = Literal["auto", "manual", "real"]
TIME_MODES: tuple[TimeMode, ...] = ("auto", "manual", "real")

# How long the engine must stay quiet (real seconds) before time moves: longer than a life's
# settling delay (runner.SETTLE_SECONDS), so what a wake-up leads to has begun.
QUIET_FOR = 0.008
POLL = 0.002


class TestClock:
    """The clock of one test env, and the rule that moves it."""

    __test__ = False

    def __init__(self, mode: TimeMode, start: float | None = None) -> None:
        self.mode = mode
        self.manual: ManualClock | None = None
        if mode == "real":
            self.clock: ManualClock | SystemClock = SystemClock()
        else:
            self.manual = ManualClock(time.time() if start is None else start)
            self.clock = self.manual

    def now(self) -> float:
        return self.clock.now()

    async def until(
        self,
        done: Callable[[], Awaitable[bool]],
        scheduler: Callable[[], Scheduler],
        progress: Callable[[], int],
        timeout: float,
    ) -> bool:
        """Wait (at most ``timeout`` real seconds) until ``done()``; in auto mode, move the clock
        to the next timer each time the engine is quiet meanwhile. False if time ran out."""
        deadline = time.monotonic() + timeout
        while True:
            if await done():
                return True
            if time.monotonic() > deadline:
                return False
            if self.mode == "auto" and await self.quiet(scheduler, progress):
                if await done():  # what the engine did before it fell quiet may be enough
                    return True
                self.skip_to_next_timer()
            await asyncio.sleep(POLL)

    def skip_to_next_timer(self) -> bool:
        """Move to the earliest pending timer; False if there is none."""
        assert self.manual is not None
        wake = self.manual.next_wake
        if wake is None:
            return False
        self.manual.set(wake)
        return True

    async def advance(
        self, seconds: float, scheduler: Callable[[], Scheduler], progress: Callable[[], int]
    ) -> None:
        """Move ``seconds`` forward, timer by timer: each timer on the way fires at its own time
        and what it wakes runs (until the engine is quiet again) before the next one fires."""
        assert self.manual is not None
        target = self.manual.now() + seconds
        while True:
            await self.settle(scheduler, progress)
            wake = self.manual.next_wake
            if wake is None or wake > target:
                break
            self.manual.set(wake)
        self.manual.set(target)
        await self.settle(scheduler, progress)

    async def settle(
        self, scheduler: Callable[[], Scheduler], progress: Callable[[], int], limit: float = 30.0
    ) -> None:
        """Wait until the engine is quiet (at most ``limit`` real seconds: a step body that runs
        longer keeps running while time moves)."""
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline and not await self.quiet(scheduler, progress):
            await asyncio.sleep(POLL)

    @staticmethod
    async def quiet(scheduler: Callable[[], Scheduler], progress: Callable[[], int]) -> bool:
        """Whether the engine stays quiet for ``QUIET_FOR``, with no progress meanwhile."""
        for _ in range(5):  # let whatever a timer just woke take its first turns
            await asyncio.sleep(0)
        before = progress()
        if not scheduler().quiet():
            return False
        await asyncio.sleep(QUIET_FOR)
        return scheduler().quiet() and progress() == before
