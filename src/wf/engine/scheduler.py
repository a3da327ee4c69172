"""Which instances run when: the concurrency limit, timers, leases, retention, recovery on start."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from wf.engine.model import Claim, InstanceRow, Status, StepKey
from wf.engine.runner import Life, Notice, StopCause, run_life

if TYPE_CHECKING:
    from wf.engine.engine import Engine, WorkflowSpec

log = logging.getLogger("wf.engine")

CLAIM_BATCH = 256


class Slots:
    """The concurrency limit. Lives coming back from a wait get a free slot before new instances
    (Cloudflare gives instances waking from sleep priority over queued ones)."""

    def __init__(self, limit: int, on_free: Callable[[], None]) -> None:
        self.limit = limit
        self.used = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._on_free = on_free

    def reserve(self, wanted: int) -> int:
        """Take up to ``wanted`` slots for new lives, if no waking life is waiting for one."""
        if self._waiters:
            return 0
        granted = max(0, min(wanted, self.limit - self.used))
        self.used += granted
        return granted

    def unreserve(self, count: int) -> None:
        """Give back reserved slots: to lives waiting for one first (without waking the claim
        loop, which would only reserve them again)."""
        for _ in range(count):
            self._hand_over_or_free()

    def _hand_over_or_free(self) -> bool:
        while self._waiters:
            future = self._waiters.popleft()
            if not future.done():
                future.set_result(None)  # handed over: ``used`` stays the same
                return False
        self.used -= 1
        return True

    async def acquire(self) -> None:
        if self.used < self.limit and not self._waiters:
            self.used += 1
            return
        future = asyncio.get_running_loop().create_future()
        self._waiters.append(future)
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.release()  # the slot was handed over just as we were cancelled
            else:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(future)
            raise

    def release(self) -> None:
        if self._hand_over_or_free():
            self._on_free()


class Scheduler:
    """Claims ready instances while there are free slots and runs a life for each."""

    def __init__(
        self, engine: Engine, specs: Mapping[str, WorkflowSpec], owner: str | None = None
    ) -> None:
        self.engine = engine
        self.specs = specs
        self.owner = owner or f"{uuid.uuid4()}"
        self.lives: dict[int, Life] = {}
        self._life_tasks: set[asyncio.Task[None]] = set()
        self._tasks: list[asyncio.Task[Any]] = []
        self._wakeup = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = False
        self.draining = False  # stopping: no new step attempt may start
        # Steps whose attempt a refused database write cut short: not counted when retried.
        self.store_failures: dict[int, set[StepKey]] = {}
        # Counts claim rounds (twice each: as one begins and once it claimed), to tell old lives
        # from new ones and renewals that overlapped a round.
        self._generation = 0
        self._claiming = False  # a claim round awaits the store
        # Until when (monotonic) this process's claims are surely its own: the lease from the
        # last renewal that went through, counted from when it was sent. (Not from a claim: on
        # SQLite a claim renews only the instances it claims.)
        self._lease_sure_until = 0.0
        self._renewal: asyncio.Future[None] | None = None  # a renewal asked for by a life
        # Instances whose life the test kit killed: their claims stay as a dead process's would.
        self.killed: set[int] = set()
        self._claims_idle = False  # the claim loop waits for a poke or a timer

    # ---- lifecycle ----------------------------------------------------------------------------
    async def start(self, after_crash: bool = False) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = self.draining = False
        self._wakeup = asyncio.Event()
        store = self.engine.store
        if self.engine.owns_store:
            # Claims held by dead processes are freed, so their instances run again here.
            released = await store.release_dead_claims(after_crash, self.engine.clock.now())
            if released:
                log.info("recovered %d instance(s) left running by a previous process", released)
        self._tasks = [
            asyncio.create_task(self._claim_loop(), name="wf scheduler"),
            asyncio.create_task(self._lease_loop(), name="wf leases"),
        ]
        if self.engine.owns_store:
            self._tasks.append(asyncio.create_task(self._retention_loop(), name="wf retention"))

    async def stop(self, grace: float = 0.0, cause: StopCause | None = None) -> None:
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if grace > 0:
            await self._drain(grace)
        for life in list(self.lives.values()):
            life.end("stop", cause=cause)
        if self._life_tasks:
            await asyncio.gather(*self._life_tasks, return_exceptions=True)
        if self._renewal is not None:  # one a life asked for, and nobody waits for now
            self._renewal.cancel()
            await asyncio.gather(self._renewal, return_exceptions=True)

    async def _drain(self, grace: float) -> None:
        """Let running attempts finish (new ones wait at the gate) for up to ``grace`` seconds."""
        self.draining = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        while loop.time() < deadline and any(life.running_ops for life in self.lives.values()):
            await asyncio.sleep(0.02)

    @property
    def version(self) -> str | None:
        """The only version this scheduler claims instances of, when the engine is pinned."""
        return self.engine.version_id if self.engine.pinned else None

    def poke(self) -> None:
        """Look for work now. Safe to call from any thread."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._wakeup.set()
        else:
            loop.call_soon_threadsafe(self._wakeup.set)

    def on_loop(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` on the engine's loop (now, if we are on it)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            fn()
        else:
            loop.call_soon_threadsafe(fn)

    def quiet(self) -> bool:
        """Whether nothing happens here until a timer fires or someone acts: no claim round is
        under way or asked for, and every life only waits (the test kit's clock moves only
        then, as Temporal's time-skipping does)."""
        if not self._claims_idle or self._wakeup.is_set():
            return False
        firings = self.engine.firings
        if firings is not None and not firings.idle:  # a cron firing is being made
            return False
        if len(self._life_tasks) != len(self.lives):  # a life is writing how it ended
            return False
        return all(life.blocked() for life in self.lives.values())

    # ---- the loops ----------------------------------------------------------------------------
    async def _claim_loop(self) -> None:
        engine = self.engine
        slots = engine.slots
        names = list(self.specs)
        flows = {name: spec.flow for name, spec in self.specs.items() if spec.flow.active}
        while not self._stopping:
            self._wakeup.clear()
            wanted = slots.reserve(CLAIM_BATCH)
            claims: list[Claim] = []
            wake_at: float | None = None
            try:
                if wanted:
                    # A round under way: a renewal answered meanwhile may already hold what it
                    # claims, with no life yet, and must not give it back.
                    self._generation += 1
                    self._claiming = True
                    try:
                        claimed = await engine.store.claim_ready(
                            self.owner,
                            engine.clock.now(),
                            wanted,
                            names,
                            engine.settings.lease,
                            self.version,
                            # Suspects (running when a process died) run one at a time.
                            0 if any(life.suspect for life in self.lives.values()) else 1,
                            flows,
                        )
                        claims = claimed.claims
                    finally:
                        self._claiming = False
                        slots.unreserve(wanted - len(claims))
                    self._crash_errored(claimed.crashed)
                    self._generation += 1
                    for claim in claims:
                        self._start(claim)
                    if claims and len(claims) == wanted:
                        continue
                    wake_at = await engine.store.next_wake_at(
                        names, self.version, flows, engine.clock.now()
                    )
                    if claimed.contended:
                        # Another process was claiming a flow-controlled workflow: look again
                        # once it is done (jittered, so two processes do not collide again).
                        await asyncio.sleep(random.uniform(0.02, 0.1))
                        continue
            except Exception as exc:  # the loop must outlive any one bad round
                log.error("cannot claim instances: %s", exc)
                await asyncio.sleep(min(1.0, engine.settings.poll_interval))
                continue
            waiters: list[asyncio.Future[Any]] = [asyncio.ensure_future(self._wakeup.wait())]
            if wake_at is not None:
                waiters.append(asyncio.ensure_future(engine.clock.sleep_until(wake_at)))
            self._claims_idle = True
            try:
                await asyncio.wait(
                    waiters,
                    timeout=engine.settings.poll_interval,
                    return_when=asyncio.FIRST_COMPLETED,
                )
            finally:
                self._claims_idle = False
                for waiter in waiters:
                    waiter.cancel()

    def _crash_errored(self, rows: list[InstanceRow]) -> None:
        """Say which instances were errored for killing their process again and again."""
        engine = self.engine
        for row in rows:
            detail = {"error": row.error, "crashes": row.crashes}
            engine.emit(Notice("errored", row.workflow, row.id, None, detail, engine.clock.now()))

    def _start(self, claim: Claim) -> None:
        spec = self.specs[claim.row.workflow]
        if claim.fresh:  # queued (created, restarted) until now
            self.engine.counters.claim_lag.observe(
                max(0.0, self.engine.clock.now() - claim.row.queued)
            )
        # Registered before its task runs, so a control arriving meanwhile finds the life.
        life = Life(self.engine, claim, spec, self._generation)
        self.lives[claim.row.pk] = life
        task = asyncio.create_task(
            run_life(self.engine, life), name=f"wf life {claim.row.workflow}/{claim.row.id}"
        )
        self._life_tasks.add(task)
        task.add_done_callback(self._life_done)

    def _life_done(self, task: asyncio.Task[None]) -> None:
        self._life_tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("a life ended with an engine error", exc_info=task.exception())
        self.poke()

    def _lease_renewed(self, sent: float) -> None:
        self._lease_sure_until = max(self._lease_sure_until, sent + self.engine.settings.lease)

    def lease_sure(self) -> bool:
        """Whether this process's claims are surely still its own (any thread may ask)."""
        return time.monotonic() < self._lease_sure_until

    async def confirm_lease(self, life: Life) -> None:
        """Before a step body begins: make sure ``life``'s claim is still this process's. After a
        pause longer than the lease (the process was frozen, the database was away), another
        process may have taken the instance over and finished the step already: renew first
        (which ends every life whose claim was taken). Nothing to do while the lease is fresh."""
        while not self.lease_sure():
            if self._renewal is None or self._renewal.done():
                self._renewal = asyncio.ensure_future(self._renew())
            await asyncio.shield(self._renewal)
            life.check_alive()
            if not self.lease_sure():
                await asyncio.sleep(min(0.1, self.engine.settings.poll_interval))  # it failed

    async def _lease_loop(self) -> None:
        interval = max(0.05, self.engine.settings.lease / 3)
        while True:
            await asyncio.sleep(interval)
            await self._renew()

    async def _renew(self) -> None:
        """Renew this process's leases. A life whose claim was taken away (terminated or
        restarted elsewhere) ends; a pause asked for elsewhere is honoured; a claim with no life
        (its life ended without managing to give it back) is given back now."""
        engine = self.engine
        generation = self._generation  # lives claimed later are newer than this renewal
        sent = time.monotonic()
        try:
            held = await engine.store.renew_leases(self.owner, engine.settings.lease)
        except Exception as exc:
            log.error("cannot renew leases: %s", exc)
            return
        self._lease_renewed(sent)
        for pk, (status, epoch) in held.items():
            life = self.lives.get(pk)
            if life is None:
                # Not claimed since the renewal (nor killed by the test kit: a dead process's).
                if generation == self._generation and not self._claiming and pk not in self.killed:
                    engine.store.release(pk, epoch)
            elif life.generation <= generation and status is Status.WAITING_FOR_PAUSE:
                life.request_pause()
        for pk, life in list(self.lives.items()):
            if life.generation > generation:
                continue
            status_epoch = held.get(pk)
            if (status_epoch is None or status_epoch[1] != life.epoch) and not life.has_ended:
                life.end("fenced")

    async def _retention_loop(self) -> None:
        engine = self.engine
        retention = engine.settings.retention_seconds

        async def purge() -> int:
            now = engine.clock.now()
            # Instances that set their own retention first, then the others by the engine's.
            own = await engine.store.purge_by_own_retention(now)
            return own + await engine.store.purge_finished(now - retention)

        await purge_forever(purge)


async def purge_forever(purge: Callable[[], Awaitable[int]]) -> None:
    """Purge instances past their retention (``purge`` does, and says how many), now and every
    hour."""
    while True:
        try:
            purged = await purge()
            if purged:
                log.info("purged %d finished instance(s) past retention", purged)
        except Exception as exc:
            log.error("cannot purge old instances: %s", exc)
        await asyncio.sleep(3600)
