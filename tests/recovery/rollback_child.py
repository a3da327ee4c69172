"""A child process for the rollback crash test: one saga instance on one SQLite file.

    python tests/recovery/rollback_child.py DB MARKER

Creates instance "saga" (unless it exists) of a workflow whose steps ``s0`` … ``s3`` each
register a rollback handler, then a step that fails for good. Runs until the instance finished,
prints ``done`` and exits 0. The test SIGKILLs it at any moment and starts it again.

Every body appends a tab-separated line to MARKER, fsynced before it goes on::

    fwd <step> <pid>         a forward step's body ran
    begin <step> <pid>       a rollback handler began
    end <step> <pid>         a rollback handler is about to return
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any

from wf import RollbackContext, WorkflowEntrypoint
from wf.engine import Engine, EngineSettings, WorkflowSpec
from wf.engine.store.sqlite import SqliteStore

STEPS = 4
HANDLER_SECONDS = 0.15  # long enough for kills to land inside handlers
FINISHED = ("complete", "errored", "terminated")


def mark(marker: str, *fields: str) -> None:
    with open(marker, "a") as out:
        out.write("\t".join([*fields, str(os.getpid())]) + "\n")
        out.flush()
        os.fsync(out.fileno())


class Saga(WorkflowEntrypoint):
    async def run(self, event: Any, step: Any) -> None:
        marker = self.env.MARKER

        async def undo(context: RollbackContext) -> None:
            name = context.ctx.step_name
            mark(marker, "begin", name)
            await asyncio.sleep(HANDLER_SECONDS)
            mark(marker, "end", name)

        for k in range(STEPS):
            name = f"s{k}"
            await step.do(
                name,
                lambda name=name: mark(marker, "fwd", name),
                rollback=undo,
                rollback_config={"retries": {"limit": 50, "delay": 0.01, "backoff": "constant"}},
            )

        def fail() -> None:
            raise RuntimeError("payment declined")

        await step.do("pay", {"retries": {"limit": 0}}, fail)


async def main(db: Path, marker: Path) -> int:
    engine = Engine(
        SqliteStore(db, durability="fsync"),
        [WorkflowSpec("saga", Saga, "SAGA")],
        vars={"MARKER": str(marker)},
        settings=EngineSettings(poll_interval=0.05),
    )
    await engine.start()
    try:
        print(f"started {time.time()!r}", flush=True)
        await engine.create_batch("saga", [{"id": "saga"}])  # skipped once it exists
        while (await engine.status("saga", "saga"))["status"] not in FINISHED:
            await asyncio.sleep(0.02)
    finally:
        await engine.stop()
    print("done", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(Path(sys.argv[1]), Path(sys.argv[2]))))
