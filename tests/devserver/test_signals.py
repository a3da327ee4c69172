"""SIGINT and SIGTERM stop a server process once, and are ignored after it has stopped: a
second signal while asyncio closes its loop used to print a traceback (a wake-up socket
already closed), which the fuzz test of ``wf dev`` caught in CI."""

from __future__ import annotations

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import asyncio, os, signal
    from wf.devserver.signals import stop_on_signals

    async def main():
        stopped = asyncio.Event()
        with stop_on_signals(stopped.set):
            os.kill(os.getpid(), signal.SIGTERM)
            await asyncio.wait_for(stopped.wait(), 10)
        print("stopped once")
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGTERM):
            os.kill(os.getpid(), sig)  # after the stop: ignored, even as the loop closes
            await asyncio.sleep(0)

    asyncio.run(main())
    os.kill(os.getpid(), signal.SIGTERM)
    print("still here")
    """
)


def test_signals_stop_once_and_are_ignored_after() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["stopped", "once", "still", "here"]
    assert done.stderr == ""
