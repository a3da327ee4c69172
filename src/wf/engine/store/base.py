"""The ``Store`` protocol: everything the engine needs from a database.

It is shaped for several worker processes sharing one database (PostgreSQL later): an instance
is run only by the process that *claimed* it, the claim carries a lease that its holder renews,
and a claim whose lease lapsed is taken over. Every write a runner makes carries the ``epoch`` it
got with its claim; the store refuses (returns ``False``) a write whose epoch is stale, so a
runner that lost its claim (terminated, restarted, taken over) can never mix its writes into
someone else's run.

Writes a runner makes return a :class:`PendingWrite`: they are applied in the order they were
submitted by this process; awaiting one waits until it is committed. Not awaiting one is allowed
where durability is not needed before going on (a status flip, a sleep's start).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator, Mapping, Sequence
from typing import Any, Literal, Protocol

from wf.engine.counters import WriteStats
from wf.engine.flow import FlowControl
from wf.engine.model import (
    AttemptRecord,
    ClaimRound,
    ErrorInfo,
    EventRecord,
    History,
    InstanceRow,
    NewInstance,
    RestartFrom,
    Status,
    StepRecord,
    StepState,
    VersionRow,
)
from wf.engine.store.stats_sql import StatsRows

# A message between the processes sharing a database: (topic, payload). See ``ServerStore.publish``.
Listener = Callable[[str, dict[str, Any]], None]


class PendingWrite(Protocol):
    """**Protocol:** a submitted write; ``await`` it to wait for durability and get its result."""

    def __await__(self) -> Generator[Any, None, bool]: ...


class Store(Protocol):
    """**Protocol:** the engine's view of a database. See the module docstring for the rules."""

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    @property
    def write_stats(self) -> WriteStats | None:
        """This process's writer's figures (commits, writes per commit, commit time), None
        while the store is closed or read-only."""
        ...

    # ---- instances --------------------------------------------------------------------------
    async def create_instances(
        self, new: Sequence[NewInstance], *, skip_existing: bool
    ) -> list[InstanceRow]:
        """Insert and commit; raise ``InstanceAlreadyExists`` unless ``skip_existing``."""
        ...

    async def get_instance(self, workflow: str, instance_id: str) -> InstanceRow | None: ...

    async def latest_instance(self, workflow: str) -> InstanceRow | None: ...

    async def list_instances(
        self,
        workflow: str,
        *,
        status: Status | None,
        offset: int,
        limit: int,
        newest_first: bool,
        id_prefix: str | None = None,
        since: float | None = None,
        until: float | None = None,
    ) -> tuple[list[InstanceRow], int]:
        """A page of a workflow's instances and how many match in all: newest (or oldest)
        first, or by id when ``id_prefix`` is given (ids starting with it); created from
        ``since`` (inclusive) until ``until`` (exclusive). Every filter is answered from an
        index (see ``wf.engine.store.listing``)."""
        ...

    async def newest_pk(self, workflow: str) -> int:
        """The highest pk among a workflow's instances (0: none); a new instance gets a pk
        above every existing one."""
        ...

    async def list_after(
        self, workflow: str, statuses: Sequence[Status], after_pk: int, upto_pk: int, limit: int
    ) -> list[InstanceRow]:
        """Up to ``limit`` of a workflow's instances in one of ``statuses`` whose pk is above
        ``after_pk`` and at most ``upto_pk``, in pk order: a keyset walk that misses none that
        stays in them while others change status."""
        ...

    async def count_statuses(self, workflow: str) -> dict[str, int]: ...

    async def read_stats(self, workflows: Sequence[str], since: float) -> StatsRows:
        """What ``wf stats`` summarises over the window from ``since`` (see
        ``wf.engine.store.stats_sql``): status counts, finished instances, ended attempts."""
        ...

    async def workflow_times(
        self, workflow: str
    ) -> tuple[float | None, float | None, float | None]:
        """(oldest creation, newest creation, latest modification) among a workflow's
        instances."""
        ...

    async def load_history(self, pk: int) -> History: ...

    async def children(self, pk: int) -> list[InstanceRow]:
        """The instances whose parent is instance ``pk`` (its ``run_workflow`` steps), oldest
        first."""
        ...

    async def load_events(self, pk: int) -> list[EventRecord]:
        """Every event sent to the instance's current run, consumed or not, oldest first."""
        ...

    async def delete_workflow(self, workflow: str) -> int: ...

    # ---- claims and timers ------------------------------------------------------------------
    async def claim_ready(
        self,
        owner: str,
        now: float,
        limit: int,
        workflows: Sequence[str],
        lease: float,
        version: str | None = None,
        suspects: int = 0,
        flows: Mapping[str, FlowControl] | None = None,
    ) -> ClaimRound:
        """Claim up to ``limit`` ready instances of ``workflows`` (of ``version`` only, if
        given): woken or recovered ones first, then queued ones, higher priority first, then
        oldest first. Leases last ``lease`` seconds of wall-clock time. At most ``suspects``
        instances that were running when their process died are among them; one that killed
        it too often is errored. A workflow in ``flows`` is claimed within its limits, counted
        over every process on the database (``wf.engine.store.flow_sql``)."""
        ...

    async def next_wake_at(
        self,
        workflows: Sequence[str],
        version: str | None = None,
        flows: Mapping[str, FlowControl] | None = None,
        now: float = 0.0,
    ) -> float | None:
        """The earliest timer of an unclaimed waiting instance of ``workflows`` (and version),
        or the earliest time a rate-limited workflow of ``flows`` with queued instances may
        start one again (its window counted back from ``now``)."""
        ...

    async def renew_leases(self, owner: str, lease: float) -> dict[int, tuple[Status, int]]:
        """Extend this owner's leases; return what it still holds: pk → (status, epoch)."""
        ...

    async def release_claims(self, owner: str, crashed: bool = False, now: float = 0.0) -> int:
        """Free the claims of one owner, known to be dead (a worker process that exited);
        ``crashed``: it died on its own, so its instances become suspects, to run again one at
        a time after a pause (from ``now``) that grows with each crash."""
        ...

    async def upgrade(self, pk: int, version: str, now: float) -> InstanceRow:
        """Move an unfinished instance to ``version``; whoever ran it loses its claim."""
        ...

    async def count_unfinished_by_version(self, workflow: str | None = None) -> dict[str, int]:
        """Unfinished instances per version (of one workflow, or of all)."""
        ...

    async def release_dead_claims(self, crashed: bool = False, now: float = 0.0) -> int:
        """Free the claims of processes known to be dead; ``crashed``: the previous process
        died on its own (not a graceful stop, not a kill of the whole server)."""
        ...

    async def purge_finished(self, before: float) -> int:
        """Purge instances finished before ``before``, but those with a retention of their own."""
        ...

    async def purge_by_own_retention(self, now: float) -> int:
        """Purge instances whose own retention (``create(retention=...)``) has passed."""
        ...

    async def delete_instances(self, pks: Sequence[int]) -> list[int]:
        """Delete instances with their histories, in one commit; return the pks that existed.
        Whoever ran one loses its claim (its writes are fenced: the row is gone)."""
        ...

    # ---- controls (from the API or a binding) -----------------------------------------------
    async def pause(self, pk: int, now: float) -> InstanceRow: ...

    async def resume(self, pk: int, now: float) -> InstanceRow: ...

    async def terminate(
        self, pk: int, now: float, source: str, rollback: str | None = None
    ) -> InstanceRow:
        """Terminate now; with ``rollback`` (JSON of the rollback phase to begin), an instance
        that ran a do step goes back to ``running``, unclaimed and ready, with ``termination``
        and that phase set: its next life runs its rollback handlers, then ends it
        ``terminated``. An instance already rolling back is returned unchanged (same epoch)."""
        ...

    async def restart(
        self,
        pk: int,
        now: float,
        rehome: str | None = None,
        *,
        from_step: RestartFrom | None = None,
        params: str | None = None,
        record: str | None = None,
    ) -> InstanceRow:
        """Start over, or from ``from_step`` (earlier steps stay; an unknown step raises
        ``CannotRestart`` and changes nothing), with ``params`` if given, in one commit. An
        instance of an unloaded version moves to ``rehome`` (or is refused). ``record`` (JSON)
        is kept as the instance's latest restart."""
        ...

    async def send_event(
        self, pk: int, event_type: str, payload: str, now: float
    ) -> tuple[InstanceRow, EventRecord]: ...

    # ---- a runner's writes, fenced by (pk, epoch) -------------------------------------------
    def set_status(
        self, pk: int, epoch: int, status: Status, now: float, wake_at: float | None = None
    ) -> PendingWrite:
        """Flip between running and waiting; never overrides a pause or a finish."""
        ...

    def start_step(self, pk: int, epoch: int, step: StepRecord) -> PendingWrite:
        """Insert a sleep's or a wait's row (durably: it holds a timer)."""
        ...

    def update_step_timer(
        self, pk: int, epoch: int, step: StepRecord, *, started: float | None = None
    ) -> PendingWrite:
        """Store a step's ``wake_at`` (and ``duration``, and a new start when given)."""
        ...

    def start_attempt(
        self, pk: int, epoch: int, step: StepRecord, attempt: AttemptRecord, *, first: bool = False
    ) -> PendingWrite:
        """Record an attempt's start (``first``: insert the step's row too). It may be *lazy*:
        on disk before its waiter goes on as far as a crash of the process goes, fsynced with the
        next durable write (the attempt's outcome at the latest) or within a second."""
        ...

    def end_attempt(
        self,
        pk: int,
        epoch: int,
        step: StepRecord,
        attempt: AttemptRecord,
        finish: StepState | None = None,
    ) -> PendingWrite:
        """Record an attempt's end with the step's next ``wake_at`` (retry time); with ``finish``,
        end the step too (``step.output`` / ``step.error``, ``step.ended``), in the same commit."""
        ...

    def end_step(self, pk: int, epoch: int, step: StepRecord, state: StepState) -> PendingWrite:
        """Finish a step with the ``output`` / ``error`` / ``ended`` set on ``step``."""
        ...

    def consume_event(
        self, pk: int, epoch: int, step: StepRecord, now: float
    ) -> Awaitable[EventRecord | Literal[False, "pausing"] | None]:
        """Hand the oldest buffered event of ``step.event_type`` to this wait, and finish it;
        ``None`` when none is buffered, ``False`` when fenced, ``PAUSING`` (and nothing
        consumed) while a pause is acknowledged."""
        ...

    def hibernate(
        self,
        pk: int,
        epoch: int,
        wake_at: float | None,
        now: float,
        event_types: Sequence[str] = (),
        children: Sequence[int] = (),
    ) -> PendingWrite:
        """Give up the claim; the instance waits (``wake_at``) with nothing in memory. If an event
        of one of ``event_types`` is already buffered, or one of the instances ``children`` (pks)
        has finished or is gone, it wakes at once instead."""
        ...

    def start_child(
        self, pk: int, epoch: int, step: StepRecord, child: NewInstance
    ) -> Awaitable[InstanceRow | Literal[False] | None]:
        """Create ``child`` (whose ``parent`` is this instance) and insert ``step`` (a
        ``run_workflow`` step naming it) in one commit: the child's row; ``False`` when fenced;
        ``None``, writing nothing, when the child's id is taken. A child that ends, or is
        deleted unfinished, wakes its hibernated parent (``wake_at``) in the same commit."""
        ...

    def set_rollback(self, pk: int, epoch: int, state: str) -> PendingWrite:
        """Store the instance's rollback phase (JSON; see ``wf.engine.rollback``)."""
        ...

    def release(self, pk: int, epoch: int) -> PendingWrite:
        """Give up the claim without changing the status (the process is stopping)."""
        ...

    def reach_pause(self, pk: int, epoch: int, now: float) -> PendingWrite:
        """``waitingForPause`` becomes ``paused`` at a step boundary; the claim is given up
        either way (after a racing resume the instance stays ``running``, to be reclaimed)."""
        ...

    def finish(
        self,
        pk: int,
        epoch: int,
        status: Status,
        now: float,
        output: str | None,
        error: ErrorInfo | None,
    ) -> PendingWrite: ...

    # ---- cron schedules ------------------------------------------------------------------------
    async def last_firing(self, workflow: str, cron: str) -> float | None:
        """Up to when ``cron`` of ``workflow`` has fired (None: never seen)."""
        ...

    async def record_firing(self, workflow: str, cron: str, fired: float) -> None:
        """``cron`` of ``workflow`` fired (or was first seen) at ``fired``; never moves back."""
        ...


class ServerStore(Store, Protocol):
    """**Protocol:** what ``wf serve`` keeps beside the instances, for one node or a cluster of
    nodes sharing the database: deployed versions and their bundles, secrets, settings (the API
    token's hash), and messages between the nodes."""

    async def list_versions(self) -> list[VersionRow]: ...

    async def activate_version(
        self,
        version_id: str,
        created: float,
        workflows: list[dict[str, Any]],
        files: int,
        size: int,
        retention: float | None = None,
    ) -> VersionRow:
        """Insert (or reload) a version and make it the only active one."""
        ...

    async def try_unload(self, version_id: str, now: float) -> bool:
        """Mark a version unloaded (and forget its bundle) if no unfinished instance needs it,
        decided in one transaction with the count."""
        ...

    async def purge_by_version_retention(self, now: float, default: float) -> int: ...

    async def put_bundle(self, version_id: str, data: bytes) -> None: ...

    async def get_bundle(self, version_id: str) -> bytes | None: ...

    async def put_secret(self, name: str, value: str, now: float) -> None: ...

    async def delete_secret(self, name: str) -> bool: ...

    async def list_secrets(self) -> list[tuple[str, float]]: ...

    async def secret_values(self) -> dict[str, str]: ...

    async def get_setting(self, name: str) -> str | None: ...

    async def put_setting(self, name: str, value: str, *, only_if_missing: bool = False) -> bool:
        """Store a setting; with ``only_if_missing``, only if none is stored (True: written)."""
        ...

    async def live_owners(self) -> list[str]:
        """The owners (worker processes, on any node) whose lease is live now, by the database's
        clock: an idle owner counts too. ``wf serve`` names its owners ``<node>/<worker>``, so
        this also says how many nodes share the database."""
        ...

    def publish(self, topic: str, payload: dict[str, Any]) -> None:
        """Tell every process listening on this database, after the next commit (coalesced;
        never inside a write transaction). A store only one process tree uses drops it."""
        ...

    def listen(self, callback: Listener) -> None:
        """Have ``callback(topic, payload)`` called, on this event loop, for every message any
        process publishes (this one's included) from now on, until the store closes."""
        ...
