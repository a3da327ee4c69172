"""The workflows wf runs in the benchmark. Imports nothing but ``wf`` and the standard library:
W2-http copies this file into a temporary ``wf dev`` project as its ``main`` module.

W1 runs with an ``async def`` body and, as W1-def, with a ``def`` one; W2-http's workflow has
``def`` bodies, as a user's would. The bench sides learn that an instance finished from the
engine's ``on_notice`` callback (``completed`` notices); the workflows only keep what a notice
cannot tell: W1's per-step times and W3's gate.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any, ClassVar

from wf import WorkflowEntrypoint


async def trivial() -> int:
    """The trivial step: an ``async def`` returning a small value (runs on the event loop)."""
    return 1


def trivial_def() -> int:
    """The same step as a plain ``def``, as most users write them (runs in a worker thread)."""
    return 1


BODIES = {"async": trivial, "def": trivial_def}


class Sequential(WorkflowEntrypoint):
    """W1 (``body`` "async") and W1-def (``body`` "def"): ``n`` sequential trivial steps. Each
    ``step.do`` call is timed as well (for the median and p90 next to the headline figure, the
    whole run's wall time ÷ ``n``)."""

    step_seconds: ClassVar[list[float]] = []

    async def run(self, event: Any, step: Any) -> int:
        n = int(event.payload["n"])
        body = BODIES[event.payload.get("body", "async")]
        times = Sequential.step_seconds
        clock = time.perf_counter
        for i in range(n):
            started = clock()
            await step.do(f"s{i}", body)
            times.append(clock() - started)
        return n


class ThreeSteps(WorkflowEntrypoint):
    """W2: three trivial steps."""

    async def run(self, event: Any, step: Any) -> int:
        await step.do("one", trivial)
        await step.do("two", trivial)
        await step.do("three", trivial)
        return 3


class ThreeDefSteps(WorkflowEntrypoint):
    """W2-http: three trivial steps with ``def`` bodies, like the README's example."""

    async def run(self, event: Any, step: Any) -> int:
        await step.do("one", trivial_def)
        await step.do("two", trivial_def)
        await step.do("three", trivial_def)
        return 3


class Gate:
    """W3's step 2 blocks until the file ``flag`` exists. The process that is to be killed counts
    the instances inside it, and sets ``full`` once ``target`` of them are."""

    flag: ClassVar[str] = ""
    entered: ClassVar[int] = 0
    target: ClassVar[int] = 0
    full: ClassVar[asyncio.Event | None] = None


async def gate() -> int:
    """W3's step 2: returns at once if the flag file exists, else blocks for good (until the
    process is killed)."""
    if os.path.exists(Gate.flag):
        return 2
    Gate.entered += 1
    if Gate.full is not None and Gate.entered >= Gate.target:
        Gate.full.set()
    await asyncio.Event().wait()
    return 2


class Gated(WorkflowEntrypoint):
    """W3: step 1, then a step that blocks until a file appears, then step 3."""

    async def run(self, event: Any, step: Any) -> int:
        await step.do("one", trivial)
        await step.do("gate", gate)
        await step.do("three", trivial)
        return 3


class Nap(WorkflowEntrypoint):
    """W4: sleeps an hour (so it hibernates), then returns."""

    async def run(self, event: Any, step: Any) -> int:
        await step.sleep("nap", "1 hour")
        return 1
