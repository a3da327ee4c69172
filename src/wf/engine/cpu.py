"""The CPU time a step body uses (Cloudflare bills CPU, not wall time; describe shows both).

A ``def`` body runs in a worker thread: its thread's CPU time around the call is exact
(``threads.Job.cpu``, ``time.thread_time``). An ``async def`` body shares its thread with the
event loop and every other instance, so ``Metered`` drives its coroutine itself and adds up the
time of each of its resumptions only: what other tasks run while it awaits is not counted, nor
what a thread it hands work to (``asyncio.to_thread``) spends. Each resumption is timed with
``perf_counter``, not ``thread_time``: the thread's CPU clock is a system call (about 1.5 µs
here, twice per resumption, against a whole step's 100 µs), the wall clock is not. The two agree
while the body computes; a body that blocks the loop in a system call (``time.sleep``, blocking
I/O) is counted for that time too, which is the time it held every other instance up.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Generator
from typing import Any, TypeVar

T = TypeVar("T")

_clock = time.perf_counter  # see above: what an async body's resumptions are timed with


class CpuMeter:
    """CPU seconds counted for one attempt."""

    __slots__ = ("ended", "seconds")

    def __init__(self) -> None:
        self.seconds = 0.0
        self.ended = False  # the body ran to its end (a timed-out thread's time is unknown)

    @property
    def measured(self) -> float | None:
        return self.seconds if self.ended else None


class Metered(Awaitable[T]):
    """``await Metered(body, meter)`` awaits ``body``, adding the CPU time of each of its steps
    (from one resumption to its next suspension) to ``meter``."""

    __slots__ = ("_body", "_meter")

    def __init__(self, body: Awaitable[T], meter: CpuMeter) -> None:
        self._body = body
        self._meter = meter

    def __await__(self) -> Generator[Any, Any, T]:
        inner = self._body.__await__()
        meter = self._meter
        sent: Any = None
        thrown: BaseException | None = None
        while True:
            began = _clock()
            try:
                yielded = inner.send(sent) if thrown is None else inner.throw(thrown)
            except StopIteration as stop:
                meter.seconds += _clock() - began
                meter.ended = True
                result: T = stop.value
                return result
            except BaseException:
                meter.seconds += _clock() - began
                meter.ended = True
                raise
            meter.seconds += _clock() - began
            try:
                sent, thrown = (yield yielded), None
            except GeneratorExit:
                close = getattr(inner, "close", None)
                if close is not None:
                    close()
                raise
            except BaseException as exc:  # a cancellation: the body decides what it means
                sent, thrown = None, exc
