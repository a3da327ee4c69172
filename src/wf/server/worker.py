"""A worker process of ``wf serve``: it runs the instances of one deployed version.

``python -m wf.server.worker``; it talks to its server over stdin/stdout (``wf.server.protocol``).
It first imports the bundle and reports what it found, so a bundle that does not import is
refused before anything changes; it starts its engine only when the server says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from wf.engine.engine import Engine, LocalNotifier
from wf.engine.runner import Notice
from wf.engine.store.sqlite import SqliteStore
from wf.errors import WfError
from wf.project import load_project, load_workflows
from wf.server.protocol import WorkerConfig, decode, encode

log = logging.getLogger("wf.worker")

STOP_GRACE_SECONDS = 5.0


_REPLY_FD = 1  # set from the command line: the pipe back to the server (stdout stays the user's)


def _say(message: dict[str, Any]) -> None:
    data = encode(message)
    while data:
        written = os.write(_REPLY_FD, data)
        data = data[written:]


def _notice(notice: Notice) -> None:
    _say({"notice": asdict(notice)})


def load(config: WorkerConfig) -> Engine:
    """Import the bundle and build (not start) the engine for its version."""
    project = load_project(Path(config.bundle) / "wf.toml")
    specs = load_workflows(project)
    return Engine(
        SqliteStore(config.database, durability=config.durability, shared=True),
        specs,
        vars={**project.vars, **config.secrets},
        settings=project.engine_settings(),
        version_id=config.version_id,
        on_notice=_notice,
        pinned=True,
        recover=False,
        owner=config.owner,
    )


async def _lines(loop: asyncio.AbstractEventLoop) -> asyncio.StreamReader:
    reader = asyncio.StreamReader(limit=1 << 20)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


async def main() -> int:
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    reader = await _lines(loop)
    first = await reader.readline()
    if not first:
        return 0
    config = WorkerConfig.from_dict(decode(first))
    try:
        engine = load(config)
    except WfError as exc:
        _say({"error": str(exc)})
        return 1
    except Exception as exc:  # whatever the bundle did, say it in one line
        _say({"error": f"{type(exc).__name__}: {exc}"})
        return 1
    _say({"loaded": list(engine.specs)})
    command = await reader.readline()
    if not command or decode(command).get("op") != "start":
        return 0
    try:
        await engine.start()
    except WfError as exc:
        _say({"error": str(exc)})
        return 1
    _say({"started": True})
    notifier = engine.notifier
    assert isinstance(notifier, LocalNotifier)
    listening = asyncio.ensure_future(_listen(reader, notifier, engine, stopping))
    try:
        await stopping.wait()
    finally:
        listening.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listening
        await engine.stop(grace=STOP_GRACE_SECONDS)
    return 0


async def _listen(
    reader: asyncio.StreamReader,
    notifier: LocalNotifier,
    engine: Engine,
    stopping: asyncio.Event,
) -> None:
    while True:
        line = await reader.readline()
        if not line:  # the server is gone: stop too
            stopping.set()
            return
        try:
            message = decode(line)
        except ValueError as exc:
            log.error("bad message from the server: %s", exc)
            continue
        op = message.get("op")
        if op == "poke":
            engine.scheduler.poke()
        elif op == "change":
            notifier.apply(int(message["pk"]), str(message["change"]), message.get("event_type"))
        elif op == "deleted":
            notifier.workflow_deleted(str(message["workflow"]))
        elif op == "stop":
            stopping.set()
            return


def run() -> None:
    global _REPLY_FD
    _REPLY_FD = int(sys.argv[1])
    logging.basicConfig(level=logging.WARNING, format="wf worker: %(message)s", stream=sys.stderr)
    try:
        code = asyncio.run(main())
    except KeyboardInterrupt:
        code = 0
    sys.exit(code)


if __name__ == "__main__":
    run()
