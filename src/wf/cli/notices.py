"""Engine notices on a server's terminal (``wf dev``, ``wf serve``), printed at a rate a person
can read and a busy server can afford."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

from wf.engine.runner import Notice

# Beyond this many lines a second the terminal gets a count instead: nobody reads a flood, and
# printing it would cost a busy server more than running the instances it tells of. Failures
# are always printed.
LINES_PER_SECOND = 40
ALWAYS_SHOWN = frozenset({"errored", "step_failed", "attempt_failed", "terminated"})


class NoticePrinter:
    """Prints notices once per event-loop iteration, all those of the iteration together, and at
    most ``LINES_PER_SECOND`` a second; the rest are counted, and the count printed when the
    second is over. Without a running event loop, a notice is printed at once."""

    def __init__(self) -> None:
        self._notices: list[Notice] = []
        self._window = 0.0  # when the current second of printing began (monotonic)
        self._shown = 0  # lines printed in it
        self._held: Counter[str] = Counter()  # notices not printed in it, by kind
        self._held_timer: asyncio.TimerHandle | None = None

    def notice(self, notice: Notice) -> None:
        self._notices.append(notice)
        if len(self._notices) > 1:
            return  # a flush is on its way
        try:
            asyncio.get_running_loop().call_soon(self.flush)
        except RuntimeError:  # no event loop in this thread: print it now
            self.flush()

    def flush(self) -> None:
        """Print the notices held so far (or count those over the limit)."""
        from wf.cli import render

        notices, self._notices = self._notices, []
        now = time.monotonic()
        if now - self._window >= 1.0:
            self._print_held()
            self._window, self._shown = now, 0
        shown = []
        for notice in notices:
            if self._shown < LINES_PER_SECOND or notice.kind in ALWAYS_SHOWN:
                shown.append(notice)
                self._shown += 1
            else:
                self._held[notice.kind] += 1
        render.print_notices(shown)
        if self._held and self._held_timer is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # the loop is over: say it now
                self._print_held()
                return
            self._held_timer = loop.call_later(self._window + 1.0 - now, self._second_over)

    def _second_over(self) -> None:
        self._held_timer = None
        self.flush()

    def _print_held(self) -> None:
        from wf.cli import render

        if self._held:
            render.print_held(dict(self._held), time.monotonic() - self._window)
            self._held.clear()
