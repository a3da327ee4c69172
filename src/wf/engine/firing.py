"""Firing cron schedules: at each firing time (on the engine's clock) one instance is created,
its id derived from the cron and the time (``wf.engine.cron``), so that a firing is never
doubled, whoever else fires it (a restarted process, another node on the same database).

Up to when each schedule has fired is kept in the store. A schedule seen for the first time
fires from then on; firings missed while nothing ran (or the process was frozen) are made up
once, as the latest of them, when the loop next looks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from wf.engine.cron import Cron
from wf.errors import StoreUnavailable

if TYPE_CHECKING:
    from wf.engine.controller import Controller

log = logging.getLogger("wf.engine")

RETRY_SECONDS = 5.0  # after a round that failed (the database away, say)


@dataclass(frozen=True)
class Schedule:
    """One cron schedule of one workflow."""

    workflow: str
    cron: Cron


def schedules_of(workflows: Sequence[tuple[str, Sequence[str]]]) -> list[Schedule]:
    """Schedules of (workflow, cron expressions) pairs whose expressions were checked already."""
    return [Schedule(name, Cron(expression)) for name, crons in workflows for expression in crons]


class Firings:
    """Fires the schedules ``plan()`` returns through ``controller``, until stopped. ``replan()``
    when what ``plan()`` returns changed (a deploy activated another version)."""

    def __init__(self, controller: Controller, plan: Callable[[], Sequence[Schedule]]) -> None:
        self.controller = controller
        self.plan = plan
        self.idle = True  # waiting for the next firing time (the test kit's clock may move)
        self._fired_up_to: dict[tuple[str, str], float] = {}
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.idle = False
        self._changed = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name="wf cron schedules")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.idle = True

    def replan(self) -> None:
        """Look at ``plan()`` again now (call on the loop the firings run on)."""
        self._changed.set()

    async def _run(self) -> None:
        clock = self.controller.clock
        while True:
            self._changed.clear()
            try:
                wake = await self.fire_due()
            except StoreUnavailable:  # the store says once when it goes and once when it is back
                wake = clock.now() + RETRY_SECONDS
            except Exception as exc:  # the loop must outlive any one bad round
                log.error("cannot fire cron schedules: %s", exc)
                wake = clock.now() + RETRY_SECONDS
            await self._sleep_until(wake)

    async def fire_due(self) -> float | None:
        """Fire what is due now; return when the next firing is due (None: nothing planned)."""
        store, clock = self.controller.store, self.controller.clock
        wake: float | None = None
        for schedule in self.plan():
            key = (schedule.workflow, schedule.cron.expression)
            now = clock.now()
            last = self._fired_up_to.get(key)
            if last is None:
                last = await store.last_firing(*key)
                if last is None:  # a new schedule fires from now on, not for the past
                    await store.record_firing(*key, now)
                    last = now
            due = schedule.cron.due(last, now)
            if due is not None:
                await self._fire(schedule, due)
                last = due
            self._fired_up_to[key] = last
            upcoming = schedule.cron.next_after(last)
            if upcoming is not None and (wake is None or upcoming < wake):
                wake = upcoming
        return wake

    async def _fire(self, schedule: Schedule, due: float) -> None:
        # The instance first, then the record: a crash between the two makes the next process
        # fire the same time again, which finds the instance there and skips it.
        await self.controller.create_scheduled(
            schedule.workflow, schedule.cron, due, schedule.cron.next_after(due)
        )
        await self.controller.store.record_firing(schedule.workflow, schedule.cron.expression, due)

    async def _sleep_until(self, wake: float | None) -> None:
        waiters: list[asyncio.Future[Any]] = [asyncio.ensure_future(self._changed.wait())]
        if wake is not None:
            waiters.append(asyncio.ensure_future(self.controller.clock.sleep_until(wake)))
        try:
            await asyncio.sleep(0)  # the timer is set (a test's clock sees it) before we say idle
            self.idle = True
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self.idle = False
            for waiter in waiters:
                waiter.cancel()
