"""SIGINT and SIGTERM ask an asyncio server process to stop, and are ignored once it is done."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable, Iterator

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def stop_on_signals(stop: Callable[[], None]) -> Iterator[None]:
    """Call ``stop`` on SIGINT or SIGTERM while the block runs; ignore both after it.

    A second signal is common (Ctrl-C reaches a whole process group, then a parent sends SIGTERM)
    and may come while asyncio closes: it closes its wake-up socket before it forgets its signal
    handlers, and a signal between the two prints a traceback about a bad file descriptor."""
    loop = asyncio.get_running_loop()
    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, stop)
    try:
        yield
    finally:
        for sig in STOP_SIGNALS:
            loop.remove_signal_handler(sig)
            signal.signal(sig, signal.SIG_IGN)
