"""A child process for the crash and recovery tests: runs workflows on one SQLite file.

    python tests/crash_child.py MODE DB MARKER [options]

The tests start it with ``sys.executable``, SIGKILL it whenever they like and start it again on
the same files; everything it knows comes from the database. It prints ``started <epoch>`` once
the engine has started (recovery included) and ``done`` before it exits 0.

Modes (each runs its instances until they are all finished, then exits 0):

``crash``    the crash-test workflow ``crashy``; ``--create R`` first creates round R's
             ``--instances`` instances. Sends each instance the event its ``approval`` step waits
             for once that wait has lasted a moment.
``sleep``    ``sleeper``: a step, ``step.sleep("nap", --seconds)``, a step returning when it ran.
``queue``    ``queued`` with concurrency 1: ``--instances`` instances of one slow step each;
             a body does not end while the file MARKER.hold exists (a test holds it there
             until it has killed the process).
``suicide``  ``doomed``: a step (retries limit 1) whose body SIGKILLs its own process. Prints
             the engine's notices: ``notice <kind> <step> <detail as JSON>``.
``hold``     open the store and hold it until killed (never exits by itself).
``open``     open the store and close it: prints ``opened`` (exit 0), or ``locked <error name>:
             <message>`` (exit 3) when another process holds it.

Every step body appends tab-separated lines to MARKER (fsynced before it goes on)::

    run <instance> <step display name> <attempt> <token>    as the body starts
    ret <instance> <step display name> <attempt> <token>    as it returns the token
    err <instance> <step display name> <attempt> <token>    as it raises a planned failure
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from wf import StepContext, WorkflowEntrypoint
from wf.engine import Engine, EngineSettings, Notice, WorkflowSpec
from wf.engine.store.sqlite import SqliteStore
from wf.errors import InvalidTransition, StoreError

FINISHED = ("complete", "errored", "terminated")

# Crash test: kills count as attempts, so the limits are far above anything a test reaches.
RETRY: dict[str, Any] = {
    "retries": {"limit": 1000, "delay": 0.01, "backoff": "constant"},
    "timeout": "1 minute",
}
FLAKY: dict[str, Any] = {
    "retries": {"limit": 1000, "delay": 0.02, "backoff": "constant"},
    "timeout": "1 minute",
}
FLAKY_FAILURES = 2  # "flaky" fails its attempts 1 and 2 on purpose
SHORT_NAP = 0.02  # below the crash child's hibernation horizon
LONG_NAP = 0.25  # above it: the instance hibernates
HIBERNATE_AFTER = 0.05
EVENT_TYPE = "approve"
EVENT_AFTER = 0.15  # the child sends the event once a wait has lasted this long
PARTS = 3
TALLIES = 2

# Every do step of a crashy instance, by display name, with the output key run() puts it under.
CRASHY_DO_STEPS = (
    "fetch-1",
    "transform-1",
    "flaky-1",
    *(f"part {k}-1" for k in range(PARTS)),
    *(f"tally-{k + 1}" for k in range(TALLIES)),
)
CRASHY_STEPS = (*CRASHY_DO_STEPS, "short nap-1", "long nap-1", "approval-1")


def event_payload(instance_id: str) -> dict[str, str]:
    return {"approved": instance_id}


# ---- marker file --------------------------------------------------------------------------------
def note(marker: str, kind: str, instance: str, ctx: StepContext, token: str) -> None:
    line = f"{kind}\t{instance}\t{ctx.step_name}-{ctx.count}\t{ctx.attempt}\t{token}\n"
    fd = os.open(marker, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def sync_body(marker: str, instance: str, fail_first: int = 0) -> Callable[[StepContext], str]:
    """A body run in a worker thread: marks its start, works 5-60 ms, returns a fresh token."""

    def body(ctx: StepContext) -> str:
        token = uuid.uuid4().hex
        note(marker, "run", instance, ctx, token)
        time.sleep(random.uniform(0.005, 0.06))
        if ctx.attempt <= fail_first:
            note(marker, "err", instance, ctx, token)
            raise ConnectionError(f"planned failure of attempt {ctx.attempt}")
        note(marker, "ret", instance, ctx, token)
        return token

    return body


def async_body(marker: str, instance: str) -> Callable[[StepContext], Awaitable[str]]:
    """The same on the event loop."""

    async def body(ctx: StepContext) -> str:
        token = uuid.uuid4().hex
        note(marker, "run", instance, ctx, token)
        await asyncio.sleep(random.uniform(0.005, 0.06))
        note(marker, "ret", instance, ctx, token)
        return token

    return body


# ---- workflows ----------------------------------------------------------------------------------
class Crashy(WorkflowEntrypoint):
    """Steps in threads and on the loop, sleeps on both sides of the hibernation horizon, planned
    failures with short retry delays, parallel steps, an event, and a name used twice."""

    async def run(self, event: Any, step: Any) -> Any:
        marker: str = self.env.MARKER
        me: str = event.instance_id
        out: dict[str, Any] = {"n": event.payload["n"]}
        out["fetch"] = await step.do("fetch", RETRY, sync_body(marker, me))
        await step.sleep("short nap", SHORT_NAP)
        out["transform"] = await step.do("transform", RETRY, async_body(marker, me))
        out["flaky"] = await step.do("flaky", FLAKY, sync_body(marker, me, FLAKY_FAILURES))
        await step.sleep("long nap", LONG_NAP)
        parts = await asyncio.gather(
            *(step.do(f"part {k}", RETRY, async_body(marker, me)) for k in range(PARTS))
        )
        out["parts"] = list(parts)
        got = await step.wait_for_event("approval", type=EVENT_TYPE, timeout="10 minutes")
        out["event"] = got.payload
        out["tally"] = [
            await step.do("tally", RETRY, sync_body(marker, me)) for _ in range(TALLIES)
        ]
        return out


class Sleeper(WorkflowEntrypoint):
    async def run(self, event: Any, step: Any) -> Any:
        marker: str = self.env.MARKER
        before = await step.do("before", sync_body(marker, event.instance_id))
        await step.sleep("nap", event.payload["seconds"])
        after = await step.do("after", lambda: time.time())
        return {"before": before, "after": after}


class Queued(WorkflowEntrypoint):
    async def run(self, event: Any, step: Any) -> Any:
        marker: str = self.env.MARKER
        me: str = event.instance_id

        def work(ctx: StepContext) -> str:
            token = uuid.uuid4().hex
            note(marker, "run", me, ctx, token)
            hold = Path(marker + ".hold")
            while hold.exists():
                time.sleep(0.01)
            time.sleep(0.15)
            note(marker, "ret", me, ctx, token)
            return token

        return {"n": event.payload["n"], "work": await step.do("work", RETRY, work)}


class Doomed(WorkflowEntrypoint):
    async def run(self, event: Any, step: Any) -> Any:
        marker: str = self.env.MARKER
        me: str = event.instance_id
        first = await step.do("first", sync_body(marker, me))

        def suicide(ctx: StepContext) -> None:
            note(marker, "run", me, ctx, "-")
            os.kill(os.getpid(), signal.SIGKILL)

        await step.do("doomed", {"retries": {"limit": 1, "delay": 0}}, suicide)
        return first


SPECS = {
    "crash": WorkflowSpec("crashy", Crashy, "CRASHY"),
    "sleep": WorkflowSpec("sleeper", Sleeper, "SLEEPER"),
    "queue": WorkflowSpec("queued", Queued, "QUEUED"),
    "suicide": WorkflowSpec("doomed", Doomed, "DOOMED"),
}


# ---- driving ------------------------------------------------------------------------------------
def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


async def _send_due_events(engine: Engine, workflow: str, instance_id: str, sent: set[str]) -> None:
    if instance_id in sent:
        return
    details = await engine.details(workflow, instance_id)
    for step in details["steps"]:
        waiting = step["type"] == "waitForEvent" and not step["finished"]
        if waiting and time.time() - _epoch(step["start"]) >= EVENT_AFTER:
            # InvalidTransition: an event an earlier process sent has finished the instance.
            with contextlib.suppress(InvalidTransition):
                await engine.send_event(
                    workflow, instance_id, EVENT_TYPE, event_payload(instance_id)
                )
            sent.add(instance_id)


async def _run_until_finished(engine: Engine, workflow: str, send_events: bool) -> None:
    sent: set[str] = set()
    while True:
        rows, _ = await engine.list_instances(workflow, per_page=1000)
        unfinished = [row for row in rows if row.status.value not in FINISHED]
        if not unfinished:
            return
        if send_events:
            for row in unfinished:
                await _send_due_events(engine, workflow, row.id, sent)
        await asyncio.sleep(0.02)


def _print_notice(notice: Notice) -> None:
    detail = json.dumps(notice.detail, sort_keys=True, default=str)
    print(f"notice\t{notice.kind}\t{notice.step}\t{detail}", flush=True)


async def main(args: argparse.Namespace) -> int:
    if args.mode == "open":
        store = SqliteStore(args.db, durability=args.durability)
        try:
            await store.open()
        except StoreError as exc:
            print(f"locked {type(exc).__name__}: {exc}", flush=True)
            return 3
        await store.close()
        print("opened", flush=True)
        return 0
    settings: dict[str, Any] = {"poll_interval": 0.1}
    if args.hibernate_after is not None:
        settings["hibernate_after"] = args.hibernate_after
    if args.mode == "crash":
        settings["hibernate_after"] = HIBERNATE_AFTER
    if args.mode == "queue":
        settings["concurrency"] = 1
    spec = SPECS.get(args.mode, SPECS["crash"])
    engine = Engine(
        SqliteStore(args.db, durability=args.durability),
        [spec],
        vars={"MARKER": str(args.marker)},
        settings=EngineSettings(**settings),
        on_notice=_print_notice if args.mode == "suicide" else None,
    )
    await engine.start()
    try:
        print(f"started {time.time()!r}", flush=True)
        if args.mode == "hold":
            await asyncio.Event().wait()  # until killed
        if args.mode == "crash" and args.create is not None:
            items = [
                {"id": f"r{args.create}-i{i}", "params": {"n": i, "round": args.create}}
                for i in range(args.instances)
            ]
            await engine.create_batch(spec.name, items)
        elif args.mode == "queue":
            items = [{"id": f"q{i}", "params": {"n": i}} for i in range(args.instances)]
            await engine.create_batch(spec.name, items)
        elif args.mode == "sleep":
            await engine.create_batch(spec.name, [{"id": "s", "params": {"seconds": args.seconds}}])
        elif args.mode == "suicide":
            await engine.create_batch(spec.name, [{"id": "d"}])
        await _run_until_finished(engine, spec.name, send_events=args.mode == "crash")
    finally:
        await engine.stop()
    print("done", flush=True)
    return 0


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=["crash", "sleep", "queue", "suicide", "hold", "open"])
    parser.add_argument("db", type=Path)
    parser.add_argument("marker", type=Path)
    parser.add_argument("--durability", choices=["fsync", "os"], default="fsync")
    parser.add_argument("--create", type=int, default=None, help="crash: round to create")
    parser.add_argument("--instances", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=1.5, help="sleep: length of the nap")
    parser.add_argument("--hibernate-after", type=float, default=None)
    parser.add_argument("--seed", type=int, default=None, help="seeds the bodies' work times")
    return parser.parse_args(argv)


if __name__ == "__main__":
    arguments = parse(sys.argv[1:])
    if arguments.seed is not None:
        random.seed(arguments.seed)
    sys.exit(asyncio.run(main(arguments)))
