"""One in-process engine whose user code raises a BaseException, in a fresh interpreter.

    python tests/faults/user_code_child.py DB WHERE KIND SYNC

WHERE is "step" or "run", KIND a key of ``BASE_EXCEPTIONS``, SYNC "1" for a plain step function
(run in a worker thread) or "0" for an ``async def`` one. Prints one JSON line: the offender's
status and details and the other instances' statuses, or ``{"escaped": ...}`` when the exception
got out of the engine into the event loop (then the exit code is 3).

A separate process because an escaping ``KeyboardInterrupt`` or ``SystemExit`` would otherwise
end (or derange) the pytest process itself instead of failing one test.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any, NoReturn

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.conftest import Harness, wait_status  # noqa: E402
from wf import WorkflowEntrypoint, WorkflowEvent, WorkflowStep  # noqa: E402
from wf.engine import WorkflowSpec  # noqa: E402

BASE_EXCEPTIONS = {
    # kind: (what the error is named, what its message says)
    "sys.exit('text')": ("SystemExit", "sys.exit from user code"),
    "sys.exit(3)": ("SystemExit", "3"),
    "sys.exit()": ("SystemExit", None),  # no message of its own: the engine must say something
    "SystemExit": ("SystemExit", "SystemExit from user code"),
    "KeyboardInterrupt": ("KeyboardInterrupt", "KeyboardInterrupt from user code"),
    "GeneratorExit": ("GeneratorExit", "GeneratorExit from user code"),
}


def raise_fault(kind: str) -> NoReturn:
    if kind == "sys.exit('text')":
        sys.exit("sys.exit from user code")
    if kind == "sys.exit(3)":
        sys.exit(3)
    if kind == "sys.exit()":
        sys.exit()
    if kind == "SystemExit":
        raise SystemExit("SystemExit from user code")
    if kind == "KeyboardInterrupt":
        raise KeyboardInterrupt("KeyboardInterrupt from user code")
    if kind == "GeneratorExit":
        raise GeneratorExit("GeneratorExit from user code")
    raise AssertionError(kind)


class Faulty(WorkflowEntrypoint):
    """``payload``: where ("step" or "run"), kind (a key of BASE_EXCEPTIONS), sync."""

    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        where, kind, sync = event.payload["where"], event.payload["kind"], event.payload["sync"]
        await step.do("before", lambda: "fine")
        if where == "run":
            raise_fault(kind)

        def sync_body() -> NoReturn:
            raise_fault(kind)

        async def async_body() -> NoReturn:
            raise_fault(kind)

        config = {"retries": {"limit": 1, "delay": 0}}
        await step.do("faulty", config, sync_body if sync else async_body)
        return "unreachable"


class Good(WorkflowEntrypoint):
    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        one = await step.do("one", lambda: 1)
        await step.sleep("breathe", 0.2)

        async def two() -> int:
            return int(one) + 1

        return await step.do("two", two)


SPECS = [WorkflowSpec("faulty", Faulty, "FAULTY"), WorkflowSpec("good", Good, "GOOD")]


async def scenario(db: Path, where: str, kind: str, sync: bool) -> dict[str, Any]:
    harness = Harness(db)
    try:
        engine = await harness.start(SPECS)
        await engine.create("good", "good-before")
        await engine.create("faulty", "offender", {"where": where, "kind": kind, "sync": sync})
        await engine.create("good", "good-beside")
        status = await wait_status(engine, "faulty", "offender")
        details = await engine.details("faulty", "offender")
        goods = {}
        for instance_id in ("good-before", "good-beside"):
            goods[instance_id] = await wait_status(engine, "good", instance_id)
        # The engine is still whole: a new instance runs from start to end.
        await engine.create("good", "good-after")
        goods["good-after"] = await wait_status(engine, "good", "good-after")
        return {"status": status, "details": details, "goods": goods}
    finally:
        await harness.close()


def main(argv: list[str]) -> int:
    db, where, kind, sync = Path(argv[0]), argv[1], argv[2], argv[3] == "1"
    try:
        result = asyncio.run(scenario(db, where, kind, sync))
    except (KeyboardInterrupt, SystemExit, GeneratorExit) as exc:
        print(json.dumps({"escaped": f"{type(exc).__name__}({exc})"}), flush=True)
        return 3
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
