"""Flow control per workflow (wf.toml ``concurrency``, ``concurrency_key``, ``rate_limit``) and
priorities, on both stores. The limits are checked two ways: by the step bodies (how many run at
once) and by sampling the database continuously (how many instances it holds as running)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

from tests.conftest import Harness, wait_status
from wf import WorkflowEntrypoint
from wf.engine import WorkflowSpec
from wf.engine.flow import FlowControl


class Bodies:
    """Counts the step bodies running at once, overall and per key (thread-safe)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now: Counter[str] = Counter()
        self.most: Counter[str] = Counter()
        self.starts: list[tuple[float, str]] = []

    @contextmanager
    def body(self, key: str = "") -> Iterator[None]:
        with self.lock:
            self.starts.append((time.time(), key))
            for k in ("*", key):
                self.now[k] += 1
                self.most[k] = max(self.most[k], self.now[k])
        try:
            yield
        finally:
            with self.lock:
                for k in ("*", key):
                    self.now[k] -= 1


class Sampler:
    """Samples the database until stopped: the most instances of a workflow it saw running."""

    def __init__(self, harness: Harness, workflow: str) -> None:
        self.harness = harness
        self.sql = (
            "SELECT coalesce(concurrency_key, ''), count(*) FROM instances "
            f"WHERE workflow = '{workflow}' AND status = 'running' AND owner IS NOT NULL "
            "GROUP BY 1"
        )
        self.most: Counter[str] = Counter()
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            rows = self.harness.query(self.sql)
            total = 0
            for key, count in rows:
                self.most[key] = max(self.most[key], count)
                total += count
            self.most["*"] = max(self.most["*"], total)
            self.samples += 1
            time.sleep(0.005)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


async def test_concurrency_holds_at_every_moment(harness: Harness) -> None:
    bodies = Bodies()

    class Slow(WorkflowEntrypoint):
        async def run(self, event, step):
            def work() -> int:
                with bodies.body():
                    time.sleep(0.15)
                return 1

            await step.do("a", work)
            return await step.do("b", work)

    spec = WorkflowSpec("slow", Slow, flow=FlowControl(concurrency=2))
    engine = await harness.start([spec])
    with Sampler(harness, "slow") as sampler:
        ids = [(await engine.create("slow")).id for _ in range(10)]
        for instance_id in ids:
            assert (await wait_status(engine, "slow", instance_id, timeout=30))["output"] == 1
    assert sampler.samples > 20
    assert sampler.most["*"] == 2  # reached, never passed
    assert bodies.most["*"] == 2


async def test_a_waiting_instance_frees_its_slot(harness: Harness) -> None:
    class Waits(WorkflowEntrypoint):
        async def run(self, event, step):
            if event.payload.get("wait"):
                got = await step.wait_for_event("go", type="go", timeout="1 hour")
                return got.payload
            await step.sleep("nap", "0.3 seconds")  # a short sleep leaves memory too
            return await step.do("quick", lambda: "done")

    spec = WorkflowSpec("waits", Waits, flow=FlowControl(concurrency=1))
    engine = await harness.start([spec])
    waiter = await engine.create("waits", params={"wait": True})
    await wait_status(engine, "waits", waiter.id, "waiting")
    others = [(await engine.create("waits")).id for _ in range(3)]
    with Sampler(harness, "waits") as sampler:
        for instance_id in others:
            assert (await wait_status(engine, "waits", instance_id))["output"] == "done"
    assert sampler.most["*"] == 1
    assert (await engine.status("waits", waiter.id))["status"] == "waiting"
    await engine.send_event("waits", waiter.id, "go", {"n": 1})
    assert (await wait_status(engine, "waits", waiter.id))["output"] == {"n": 1}


async def test_concurrency_per_key(harness: Harness) -> None:
    bodies = Bodies()

    class PerCustomer(WorkflowEntrypoint):
        async def run(self, event, step):
            customer = str(event.payload["customer"]["id"])

            def work() -> str:
                with bodies.body(customer):
                    time.sleep(0.15)
                return customer

            return await step.do("work", work)

    flow = FlowControl(concurrency=1, concurrency_key="params.customer.id")
    engine = await harness.start([WorkflowSpec("per", PerCustomer, flow=flow)])
    with Sampler(harness, "per") as sampler:
        ids = [
            (await engine.create("per", params={"customer": {"id": key}})).id
            for key in ("a", "b") * 4
        ]
        for instance_id in ids:
            await wait_status(engine, "per", instance_id, timeout=30)
    assert bodies.most["a"] == bodies.most["b"] == 1
    assert bodies.most["*"] == 2  # the two keys ran side by side
    assert sampler.most["a"] == sampler.most["b"] == 1
    keys = harness.query("SELECT DISTINCT concurrency_key FROM instances ORDER BY 1")
    assert keys == [("a",), ("b",)]


async def test_rate_limit_spaces_the_starts(harness: Harness) -> None:
    bodies = Bodies()

    class Limited(WorkflowEntrypoint):
        async def run(self, event, step):
            def work() -> int:
                with bodies.body():
                    pass
                return 1

            return await step.do("work", work)

    flow = FlowControl(rate_limit=3, rate_period=2.0)
    engine = await harness.start([WorkflowSpec("rated", Limited, flow=flow)], poll_interval=30)
    ids = [(await engine.create("rated")).id for _ in range(7)]
    for instance_id in ids:
        await wait_status(engine, "rated", instance_id, timeout=30)
    started = sorted(s for (s,) in harness.query("SELECT started FROM instances"))
    bodies_started = sorted(t for t, _ in bodies.starts)
    for i in range(len(started) - 3):
        # No window of 2 seconds holds more than 3 starts...
        assert started[i + 3] - started[i] >= 2.0
        assert bodies_started[i + 3] - bodies_started[i] >= 1.9
    # ...and the starts came when the window allowed, not at the next poll (30 s away).
    assert started[-1] - started[0] < 10


async def test_higher_priority_is_claimed_first(harness: Harness) -> None:
    gate = threading.Event()
    order: list[int] = []

    class Ordered(WorkflowEntrypoint):
        async def run(self, event, step):
            def work() -> None:
                if event.payload.get("block"):
                    gate.wait(10)
                order.append(event.payload["p"])

            await step.do("work", work)

    specs = [
        WorkflowSpec("plain", Ordered),
        WorkflowSpec("limited", Ordered, flow=FlowControl(concurrency=1)),
    ]
    # One slot in the process for the plain workflow; the flow limit for the other.
    for name, slots in (("plain", 1), ("limited", 1000)):
        engine = await harness.start(specs, concurrency=slots)
        gate.clear()
        order.clear()
        blocker = await engine.create(name, params={"block": True, "p": 99})
        await wait_status(engine, name, blocker.id, "running")
        ids = [
            (await engine.create(name, params={"p": p}, priority=p)).id for p in (0, 5, -1, 10, 5)
        ]
        await asyncio.sleep(0.2)
        gate.set()
        for instance_id in ids:
            await wait_status(engine, name, instance_id)
        assert order == [99, 10, 5, 5, 0, -1], name
        await harness.stop(engine)


async def test_keys_and_priority_are_stored(harness: Harness) -> None:
    class Noop(WorkflowEntrypoint):
        async def run(self, event, step):
            return None

    flow = FlowControl(
        concurrency=5, concurrency_key="params.c", rate_limit=10, rate_period=1, rate_key="params.r"
    )
    engine = await harness.start([WorkflowSpec("noop", Noop, flow=flow)])
    made = await engine.create("noop", params={"c": 7, "r": "x"}, priority=3)
    row = harness.query(
        f"SELECT concurrency_key, rate_key, priority FROM instances WHERE id = '{made.id}'"
    )
    assert row == [("7", "x", 3)]
