"""A worker process of ``wf serve``: it runs the instances of one deployed version.

``python -m wf.server.worker <reply fd>``; it talks to its server over stdin and the reply pipe
(``wf.server.protocol``). It first imports the bundle and reports what it found, so a bundle that
does not import is refused before anything changes; it starts its engine only when told to.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, get_args

from wf.devserver import tracing
from wf.devserver.logs import configure
from wf.devserver.signals import stop_on_signals
from wf.engine.engine import Engine, EngineSettings, LocalNotifier, WorkflowSpec
from wf.engine.model import InstanceRow
from wf.engine.runner import Notice, StopCause
from wf.errors import WfError
from wf.project import Project, load_project, load_workflows
from wf.server.database import Database
from wf.server.protocol import WorkerConfig, decode, encode

log = logging.getLogger("wf.worker")

STOP_GRACE_SECONDS = 5.0
CONFIG_LIMIT = 1 << 26  # the first message carries every secret
NOTICE_TEXT_LIMIT = 2000  # the server only shows notices: long texts are cut

_REPLY_FD = 1  # set from the command line: the pipe back to the server (stdout stays the user's)


def _say(message: dict[str, Any]) -> None:
    data = encode(message)
    while data:
        written = os.write(_REPLY_FD, data)
        data = data[written:]


HEARTBEAT_SECONDS = 1.0


def _beat(engine: Engine) -> None:
    """A beat a second while the event loop is free: a worker whose user code blocks it goes
    silent, and its server replaces it. Each carries the engine's figures (its server's
    /metrics adds them up)."""
    _say({"beat": True, "stats": engine.stats_snapshot()})
    asyncio.get_running_loop().call_later(HEARTBEAT_SECONDS, _beat, engine)


def _cut(value: Any) -> Any:
    if isinstance(value, str) and len(value) > NOTICE_TEXT_LIMIT:
        return value[:NOTICE_TEXT_LIMIT] + "…"
    if isinstance(value, dict):
        return {k: _cut(v) for k, v in value.items()}
    return value


def _notice(notice: Notice) -> None:
    _say({"notice": _cut(asdict(notice))})


class WorkerEngine(Engine):
    """An engine pinned to one version, whose new instances (made through bindings) go to the
    active version, and whose changes reach whichever worker holds the instance."""

    def __init__(self, config: WorkerConfig, specs: Sequence[WorkflowSpec], **kwargs: Any) -> None:
        super().__init__(
            Database(config.database).open_for_worker(config.durability),
            specs,
            version_id=config.version_id,
            on_notice=_notice,
            pinned=True,
            owns_store=False,
            owner=config.owner,
            **kwargs,
        )
        self.active_version = config.active_version
        self.active_workflows: list[str] = []
        self.notifier = RelayNotifier(self)

    def new_instance_version(self, workflow: str) -> str:
        if self.active_version is not None and workflow in self.active_workflows:
            return self.active_version
        return self.version_id


class RelayNotifier(LocalNotifier):
    def created(self, workflow: str, version_id: str) -> None:
        super().created(workflow, version_id)
        if version_id != self.engine.version_id:
            _say({"relay": {"created": True, "version": version_id}})

    def changed(self, row: InstanceRow, change: str, event_type: str | None = None) -> None:
        super().changed(row, change, event_type)
        if row.owner != self.engine.scheduler.owner:
            _say(
                {
                    "relay": {
                        "owner": row.owner,
                        "version": row.version_id,
                        "pk": row.pk,
                        "change": change,
                        "event_type": event_type,
                    }
                }
            )


def load(config: WorkerConfig) -> WorkerEngine:
    """Import the bundle and build (not start) the engine for its version."""
    project = load_project(Path(config.bundle) / "wf.toml")
    specs = load_workflows(project)
    os.chdir(config.bundle)  # relative paths in a workflow mean its project folder
    return WorkerEngine(
        config,
        specs,
        vars={**project.vars, **config.secrets},
        settings=_settings(project, config),
        tracer=tracing.from_environment(),
    )


def _settings(project: Project, config: WorkerConfig) -> EngineSettings:
    settings = project.engine_settings()
    return settings if config.lease is None else replace(settings, lease=config.lease)


async def _lines(loop: asyncio.AbstractEventLoop) -> asyncio.StreamReader:
    reader = asyncio.StreamReader(limit=CONFIG_LIMIT)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


async def main() -> int:
    stopping = asyncio.Event()
    with stop_on_signals(stopping.set):
        return await _main(stopping)


async def _main(stopping: asyncio.Event) -> int:
    loop = asyncio.get_running_loop()
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
    while True:  # wait for "start"; the active version may be told first
        command = await reader.readline()
        if not command:
            return 0
        message = decode(command)
        if message.get("op") == "start":
            break
        if message.get("op") == "active":
            _set_active(engine, message)
        elif message.get("op") == "stop":
            return 0
    try:
        await engine.start()
    except WfError as exc:
        _say({"error": str(exc)})
        return 1
    _say({"started": True})
    _beat(engine)
    order = _StopOrder()
    listening = asyncio.ensure_future(_listen(reader, engine, stopping, order))
    try:
        await stopping.wait()
    finally:
        listening.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listening
        # Told to stop: running attempts may finish. The server died: stop now, the next
        # server's workers take the instances over (and fence whatever this one writes).
        grace = STOP_GRACE_SECONDS if order.told else 0.0
        await engine.stop(grace=grace, cause=order.cause)
        _say({"stats": engine.stats_snapshot()})  # the last figures, counted after this one
    return 0


@dataclass
class _StopOrder:
    """Whether the server told this worker to stop (else it died), and why."""

    told: bool = False
    cause: StopCause | None = None


async def _listen(
    reader: asyncio.StreamReader,
    engine: WorkerEngine,
    stopping: asyncio.Event,
    order: _StopOrder,
) -> None:
    notifier = engine.notifier
    assert isinstance(notifier, LocalNotifier)
    while True:
        line = await reader.readline()
        if not line:
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
        elif op == "active":
            _set_active(engine, message)
        elif op == "stop":
            cause = message.get("cause")
            order.told = True
            order.cause = cause if cause in get_args(StopCause) else None
            stopping.set()
            return


def _set_active(engine: WorkerEngine, message: dict[str, Any]) -> None:
    engine.active_version = message.get("version")
    engine.active_workflows = [str(w) for w in message.get("workflows") or ()]


def run() -> None:
    global _REPLY_FD
    _REPLY_FD = int(sys.argv[1])
    configure("wf worker")
    try:
        code = asyncio.run(main())
    except KeyboardInterrupt:
        code = 0
    sys.exit(code)


if __name__ == "__main__":
    run()
