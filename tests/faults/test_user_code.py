"""User code misbehaving inside one engine (in-process): BaseExceptions from steps and from
``run()``, a blocked event loop, outputs that cannot be stored.

In every case the offender ends with a clear error (name and message), nothing is retried
forever, and the other instances of the same engine carry on.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Harness, wait_status
from tests.faults.user_code_child import BASE_EXCEPTIONS
from wf import WorkflowEntrypoint, WorkflowEvent, WorkflowStep
from wf.engine import Engine, WorkflowSpec

CHILD = Path(__file__).with_name("user_code_child.py")


class Good(WorkflowEntrypoint):
    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        one = await step.do("one", lambda: 1)
        await step.sleep("breathe", 0.2)

        async def two() -> int:
            return int(one) + 1

        return await step.do("two", two)


def step_named(details: dict[str, Any], name: str) -> dict[str, Any]:
    for step in details["steps"]:
        if step["name"] == name:
            return dict(step)
    raise AssertionError(f"no step {name!r} in {[s['name'] for s in details['steps']]}")


async def _goods_complete(engine: Engine, ids: list[str]) -> None:
    for instance_id in ids:
        status = await wait_status(engine, "good", instance_id)
        assert status["status"] == "complete", (instance_id, status)
        assert status["output"] == 2


CASES = [
    pytest.param("step", kind, sync, id=f"{'sync' if sync else 'async'} step-{kind}")
    for kind in BASE_EXCEPTIONS
    for sync in (True, False)
] + [pytest.param("run", kind, False, id=f"run()-{kind}") for kind in BASE_EXCEPTIONS]


@pytest.mark.slow
@pytest.mark.parametrize(("where", "kind", "sync"), CASES)
def test_a_base_exception_from_user_code_errors_only_its_instance(
    tmp_path: Path, where: str, kind: str, sync: bool
) -> None:
    """The engine runs in a child process (user_code_child.py), in-process with the user code
    as ever, so that an exception escaping into the event loop fails this test instead of
    ending pytest."""
    name, message = BASE_EXCEPTIONS[kind]
    child = subprocess.run(
        [sys.executable, str(CHILD), str(tmp_path / "wf.db"), where, kind, "1" if sync else "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    lines = child.stdout.strip().splitlines()
    assert lines, f"the child printed nothing (exit {child.returncode}):\n{child.stderr[-3000:]}"
    result = json.loads(lines[-1])
    assert "escaped" not in result, (
        f"{result['escaped']} raised by user code escaped into the event loop instead of being "
        "recorded as the instance's error"
    )
    assert child.returncode == 0, child.stderr[-3000:]
    status, details = result["status"], result["details"]
    assert status["status"] == "errored", status
    error = status["error"]
    assert error["name"] == name, error
    if message is not None:
        assert message in error["message"], error
    # A message even when the exception has none (sys.exit()): say what happened.
    assert error["message"].strip(), f"{name} recorded with an empty message: {error}"
    assert step_named(details, "before-1")["success"] is True
    if where == "step":
        faulty = step_named(details, "faulty-1")
        assert faulty["success"] is False, faulty
        assert faulty["error"]["name"] == name, faulty
        # Retried by the step's policy (limit 1), not forever; every attempt closed with the error.
        assert 1 <= len(faulty["attempts"]) <= 2, faulty["attempts"]
        for attempt in faulty["attempts"]:
            assert attempt["success"] is False, attempt
            assert attempt["end"] is not None, attempt
            assert attempt["error"]["name"] == name, attempt
    else:
        assert [s["name"] for s in details["steps"]] == ["before-1"]
    # The others finished, and a new one ran from start to end after it.
    for instance_id, good in result["goods"].items():
        assert good["status"] == "complete", (instance_id, good)
        assert good["output"] == 2


class Blocker(WorkflowEntrypoint):
    """An ``async def`` step that blocks the event loop with ``time.sleep``."""

    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        async def block() -> str:
            time.sleep(event.payload["seconds"])
            return "unblocked"

        return await step.do("block", block)


class Sleeper(WorkflowEntrypoint):
    """Sleeps in memory across the block, so its timer comes due while the loop is stuck."""

    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        await step.do("start", lambda: "started")
        await step.sleep("across the block", 0.5)
        return await step.do("end", lambda: "woke")


@pytest.mark.slow
async def test_a_blocked_event_loop_delays_the_others_but_loses_nothing(
    harness: Harness,
) -> None:
    engine = await harness.start(
        [
            WorkflowSpec("blocker", Blocker, "BLOCKER"),
            WorkflowSpec("sleeper", Sleeper, "SLEEPER"),
            WorkflowSpec("good", Good, "GOOD"),
        ]
    )
    for n in range(5):
        await engine.create("sleeper", f"sleeper-{n}")
    await wait_status(engine, "sleeper", "sleeper-4", ("running", "waiting"))
    await engine.create("blocker", "blocker", {"seconds": 3})
    # Everything after the block: the sleepers whose timers came due, and new instances.
    await engine.create("good", "good-after")
    blocker = await wait_status(engine, "blocker", "blocker", timeout=30)
    assert blocker["status"] == "complete", blocker
    assert blocker["output"] == "unblocked"
    for n in range(5):
        sleeper = await wait_status(engine, "sleeper", f"sleeper-{n}", timeout=30)
        assert sleeper["status"] == "complete", sleeper
        assert sleeper["output"] == "woke"
    await _goods_complete(engine, ["good-after"])
    details = await engine.details("blocker", "blocker")
    assert len(step_named(details, "block-1")["attempts"]) == 1  # a slow attempt is not a failure


def cyclic_list() -> list[Any]:
    items: list[Any] = [1]
    items.append(items)
    return items


def cyclic_dict() -> dict[str, Any]:
    mapping: dict[str, Any] = {"a": 1}
    mapping["self"] = {"parent": mapping}
    return mapping


FIFTY_MB = 50 * 1024 * 1024


class BadOutput(WorkflowEntrypoint):
    """``payload``: what (cyclic-list, cyclic-dict, 50MB), where (step or run)."""

    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        what, where = event.payload["what"], event.payload["where"]

        def make() -> Any:
            if what == "cyclic-list":
                return cyclic_list()
            if what == "cyclic-dict":
                return cyclic_dict()
            return "x" * FIFTY_MB

        if where == "run":
            await step.do("before", lambda: "fine")
            return make()
        return await step.do("output", {"retries": {"limit": 1, "delay": 0}}, make)


OUTPUT_CASES = [
    pytest.param(what, where, id=f"{where}-{what}")
    for what in ("cyclic-list", "cyclic-dict", "50MB")
    for where in ("step", "run")
]


@pytest.mark.parametrize(("what", "where"), OUTPUT_CASES)
async def test_an_output_that_cannot_be_stored_errors_its_instance(
    harness: Harness, what: str, where: str
) -> None:
    engine = await harness.start(
        [WorkflowSpec("bad-output", BadOutput, "BAD_OUTPUT"), WorkflowSpec("good", Good, "GOOD")]
    )
    await engine.create("good", "good-before")
    await engine.create("bad-output", "offender", {"what": what, "where": where})
    await engine.create("good", "good-beside")
    status = await wait_status(engine, "bad-output", "offender", timeout=60)
    if what == "50MB" and where == "run" and status["status"] == "complete":
        # Cloudflare limits a step's result to 1 MiB but not run()'s (only the instance's state,
        # 100 MB to 1 GB): storing it is acceptable, as long as it comes back whole.
        assert status["output"] == "x" * FIFTY_MB
        await _goods_complete(engine, ["good-before", "good-beside"])
        return
    assert status["status"] == "errored", {**status, "output": str(status["output"])[:200]}
    error = status["error"]
    assert error["name"], error
    message = error["message"]
    assert "\n" not in message and len(message) < 1000, message[:2000]
    if what.startswith("cyclic"):
        assert "ircular" in message, error
    else:
        # How big, and what the limit is: a 50 MB value is refused, not stored.
        assert "bytes" in message and "limit" in message, error
    details = await engine.details("bad-output", "offender")
    if where == "step":
        output_step = step_named(details, "output-1")
        assert output_step["success"] is False
        if what.startswith("cyclic"):
            assert len(output_step["attempts"]) == 1, "the same value would come back: no retry"
        else:  # too large is a failed attempt, retried as on Cloudflare (it may shrink)
            assert len(output_step["attempts"]) == 2
    await _goods_complete(engine, ["good-before", "good-beside"])
    # Nothing of the 50 MB reached the database.
    size = sum(p.stat().st_size for p in harness.path.parent.glob("wf.db*"))
    assert size < 10 * 1024 * 1024, size
