"""User code misbehaving under ``wf dev``: BaseExceptions, ``os._exit``, a blocked event loop and
a ``run()`` that never yields. The server must stay up or come back by itself within seconds, the
offender must end errored with a clear message after a bounded number of tries, and the other
instances must complete.
"""

from __future__ import annotations

import functools
import re
import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.helpers import wait_until
from tests.faults.helpers import Dev, child_pids, running, write_project

pytestmark = pytest.mark.slow

SOURCE = """
import os
import sys
import time

from wf import WorkflowEntrypoint


def fault(kind):
    if kind == "sys.exit":
        sys.exit("sys.exit from user code")
    if kind == "SystemExit":
        raise SystemExit("SystemExit from user code")
    if kind == "KeyboardInterrupt":
        raise KeyboardInterrupt("KeyboardInterrupt from user code")
    if kind == "GeneratorExit":
        raise GeneratorExit("GeneratorExit from user code")
    if kind == "os._exit":
        os._exit(1)
    if kind == "block":
        time.sleep(5)  # in an async def step: the whole event loop stops for five seconds
        return "unblocked"
    if kind == "spin":
        while True:  # never awaits: nothing else runs in this process again
            pass
    raise AssertionError(kind)


class Faulty(WorkflowEntrypoint):
    async def run(self, event, step):
        where, kind = event.payload["where"], event.payload["kind"]
        await step.do("before", lambda: "fine")
        if where == "run":
            return fault(kind)
        retries = {"limit": event.payload.get("retries", 1), "delay": 0}
        if where == "sync step":
            return await step.do("faulty", {"retries": retries}, lambda: fault(kind))

        async def body():
            return fault(kind)

        return await step.do("faulty", {"retries": retries}, body)


class Good(WorkflowEntrypoint):
    async def run(self, event, step):
        one = await step.do("one", lambda: 1)
        await step.sleep("breathe", event.payload.get("sleep", 0.2) if event.payload else 0.2)
        return await step.do("two", lambda: one + 1)
"""

WORKFLOWS = (("faulty", "Faulty"), ("good", "Good"))


def project(tmp_path: Path) -> Path:
    return write_project(tmp_path / "proj", SOURCE, WORKFLOWS, durability="os")


def create(dev: Dev, workflow: str, instance_id: str, params: Any = None) -> None:
    """Create an instance; a connection cut by a crashing child is tried again (a 400 with code
    10405, instance already exists, then means the first try had landed)."""
    deadline = time.monotonic() + 60
    tried = False
    while True:
        try:
            status, body = dev.create(workflow, instance_id, params, timeout=60)
        except OSError:
            if time.monotonic() > deadline:
                raise
            tried = True
            time.sleep(0.2)
            continue
        break
    landed_before = tried and status == 400 and body["errors"][0]["code"] == 10405
    assert status == 201 or landed_before, (status, body, dev.tail())


def assert_goods_complete(dev: Dev, ids: list[str], timeout: float = 60) -> None:
    for instance_id in ids:
        details = dev.finished("good", instance_id, timeout=timeout)
        assert details["status"] == "complete", (instance_id, details["error"], dev.tail())
        assert details["output"] == 2


def assert_crash_error(details: dict[str, Any], dev: Dev) -> None:
    assert details["status"] == "errored", (details["status"], details["error"], dev.tail())
    error = details["error"]
    assert error["name"] == "WorkflowInternalError", error
    assert re.search(r"crash|died|killed|hung|stopped answering|unresponsive", error["message"]), (
        error
    )
    assert "\n" not in error["message"], error


def printed(dev: Dev, text: str) -> bool:
    return text in dev.output()


def restarts(dev: Dev) -> int:
    """How many times the supervisor said it restarted its child."""
    return len(re.findall(r"restarting it", dev.output()))


def test_base_exceptions_from_user_code_do_not_stop_the_server(tmp_path: Path) -> None:
    offenders = {
        "sync-sys-exit": ("sync step", "sys.exit", "SystemExit", "sys.exit from user code"),
        "async-keyboard": (
            "async step",
            "KeyboardInterrupt",
            "KeyboardInterrupt",
            "KeyboardInterrupt from user code",
        ),
        "run-system-exit": ("run", "SystemExit", "SystemExit", "SystemExit from user code"),
        "async-generator-exit": (
            "async step",
            "GeneratorExit",
            "GeneratorExit",
            "GeneratorExit from user code",
        ),
        "sync-keyboard": (
            "sync step",
            "KeyboardInterrupt",
            "KeyboardInterrupt",
            "KeyboardInterrupt from user code",
        ),
    }
    with running(Dev(project(tmp_path))) as dev:
        children = child_pids(dev.pid)
        for n in range(3):
            create(dev, "good", f"good-{n}")
        for instance_id, (where, kind, _, _) in offenders.items():
            create(dev, "faulty", instance_id, {"where": where, "kind": kind})
        create(dev, "good", "good-3")
        for instance_id, (_, _, name, message) in offenders.items():
            details = dev.finished("faulty", instance_id, timeout=60)
            assert details["status"] == "errored", (instance_id, details["error"], dev.tail())
            assert details["error"]["name"] == name, (instance_id, details["error"])
            assert message in details["error"]["message"], (instance_id, details["error"])
        assert_goods_complete(dev, [f"good-{n}" for n in range(4)])
        # The process serving them never died: a SystemExit in user code is the user's error.
        assert child_pids(dev.pid) == children, dev.tail()
        assert restarts(dev) == 0, dev.tail()
        create(dev, "good", "good-after")
        assert_goods_complete(dev, ["good-after"])


def test_a_blocked_event_loop_recovers_by_itself(tmp_path: Path) -> None:
    with running(Dev(project(tmp_path))) as dev:
        for n in range(3):
            create(dev, "good", f"good-{n}", {"sleep": 3})  # sleeping in memory across the block
        wait_until(
            lambda: dev.instance("good", "good-2")["status"] in ("running", "waiting"),
            what="good-2 to start",
        )
        create(dev, "faulty", "blocker", {"where": "async step", "kind": "block"})
        # The API answers again within seconds (after the block, or after a restart).
        wait_until(dev.healthy, timeout=30, what=f"the API to answer again: {dev.tail()}")
        create(dev, "good", "good-after")
        assert_goods_complete(dev, [f"good-{n}" for n in range(3)] + ["good-after"], timeout=90)
        blocker = dev.finished("faulty", "blocker", timeout=90)
        if blocker["status"] == "complete":
            assert blocker["output"] == "unblocked"
        else:  # judged hung and restarted each time: then it must say so, after a few lives
            assert_crash_error(blocker, dev)


@pytest.mark.timeout(240)
def test_crash_loops_end_errored_and_the_server_recovers_by_itself(tmp_path: Path) -> None:
    """Two offenders in one server (their crash loops overlap, which keeps the test short):
    a step that calls ``os._exit(1)`` (the supervisor sees its child exit) and a ``run()`` that
    spins forever (the supervisor's watchdog sees its child stop answering). Each must end
    errored after a bounded number of lives, the server must come back by itself every time,
    and the other instances must complete."""
    with running(Dev(project(tmp_path))) as dev:
        for n in range(2):
            create(dev, "good", f"good-{n}")
        assert_goods_complete(dev, ["good-0", "good-1"])
        create(dev, "good", "good-2", {"sleep": 2})
        # A large retry limit: the engine, not the step's policy, must stop the crash loop.
        create(dev, "faulty", "exiter", {"where": "sync step", "kind": "os._exit", "retries": 50})
        create(dev, "faulty", "spinner", {"where": "run", "kind": "spin"})
        create(dev, "good", "good-3", {"sleep": 1})
        for offender in ("exiter", "spinner"):
            assert_crash_error(dev.finished("faulty", offender, timeout=180), dev)
            said = f"faulty/{offender} 💥 errored: killed its process 5 times in a row"
            wait_until(functools.partial(printed, dev, said), what=f"the terminal to say: {said}")
        wait_until(dev.healthy, timeout=30, what=f"the server to answer again: {dev.tail()}")
        assert_goods_complete(dev, ["good-2", "good-3"])
        create(dev, "good", "good-after")
        assert_goods_complete(dev, ["good-after"])
        seen = restarts(dev)
        assert 2 <= seen <= 20, dev.tail(80)
        # And it stays put: no more restarts once the offenders are errored.
        create(dev, "good", "good-last")
        assert_goods_complete(dev, ["good-last"])
        assert restarts(dev) == seen, dev.tail()
