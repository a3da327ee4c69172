"""Child of ``test_restart_from_crash``: opens the store at ``argv[1]`` (a SQLite file or a
PostgreSQL URL), says ``go``, restarts instance ``argv[2]`` (a pk) from its step ``s-2`` with new
params, and says ``done <seconds the restart took>``. The test kills it somewhere in between."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Any

from wf.engine.model import RestartFrom


def make_store(target: str) -> Any:
    if target.startswith("postgres"):
        from wf.engine.store.postgres import PostgresStore

        return PostgresStore(target, durability="fsync")
    from wf.engine.store.sqlite import SqliteStore

    return SqliteStore(Path(target), durability="fsync")


async def main(target: str, pk: int) -> None:
    store = make_store(target)
    await store.open()
    print("go", flush=True)
    began = time.monotonic()
    await store.restart(
        pk,
        time.time(),
        from_step=RestartFrom("s", 2),
        params='{"new": true}',
        record='{"at": 0, "from": null, "new_params": true}',
    )
    print(f"done {time.monotonic() - began:.6f}", flush=True)
    await store.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
