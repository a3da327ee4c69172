"""A process for the child-workflow crash test: parents that each run one child, on SQLite.

    python -m tests.children.proc DB ROUND PARENTS

It creates round ROUND's parents ``r<ROUND>p0`` .. ``r<ROUND>p<PARENTS-1>`` (those that exist
already are skipped), runs until every parent of every round has finished, prints ``done`` and
exits 0. The test SIGKILLs it at random
moments and starts it again on the same file; everything it knows comes from the database.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from wf import WorkflowEntrypoint
from wf.engine import Engine, EngineSettings, WorkflowSpec
from wf.engine.store.sqlite import SqliteStore


class Child(WorkflowEntrypoint):
    async def run(self, event, step):
        await step.sleep(
            "settle", 0.6
        )  # outlasts the test's kill delay (up to 0.4 s), so kills land
        return {"square": await step.do("square", lambda: event.payload["n"] ** 2)}


class Parent(WorkflowEntrypoint):
    async def run(self, event, step):
        n = await step.do("pick", lambda: event.payload["n"])
        got = await step.run_workflow("child", {"n": n})
        return {"child": got, "after": await step.do("after", lambda: n + 1)}


async def main(db: Path, round_number: int, parents: int) -> None:
    engine = Engine(
        SqliteStore(db, durability="fsync"),
        [WorkflowSpec("parent", Parent), WorkflowSpec("child", Child)],
        settings=EngineSettings(hibernate_after=0.02, poll_interval=0.1),
    )
    await engine.start()  # no suspects: a kill here is the test's, not the code's
    try:
        await engine.create_batch(
            "parent", [{"id": f"r{round_number}p{i}", "params": {"n": i}} for i in range(parents)]
        )
        # Only now: the test's kill comes after this line, and this round's parents must exist
        # (on a loaded machine a kill could land before create_batch, losing the round).
        print("started", flush=True)
        while True:
            rows, _ = await engine.list_instances("parent", per_page=1000)
            if all(row.status.finished for row in rows):
                break
            await asyncio.sleep(0.02)
    finally:
        await engine.stop()
    print("done", flush=True)


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])))
