"""What only the PostgreSQL store has: several processes on one database (claims racing, leases
lapsing, migrations at once), one-line errors for a database that cannot be used, and
PostgreSQL restarting under writes."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest

from tests.postgres import TestServer, free_port
from wf.engine.model import AttemptRecord, NewInstance, Status, StepKind, StepRecord
from wf.engine.store import open_store
from wf.engine.store.base import ServerStore
from wf.engine.store.pg_schema import LATEST
from wf.engine.store.postgres import PostgresStore
from wf.errors import StoreError, StoreTooNew, StoreUnavailable

WF = "wf"


def new(instance_id: str) -> NewInstance:
    return NewInstance(WF, instance_id, "{}", "api", "v1", 1000.0)


@pytest.fixture
async def stores(pg_url: str) -> AsyncIterator[list[PostgresStore]]:
    """Two stores on one database, as two processes would have."""
    opened = [PostgresStore(pg_url, durability="os") for _ in range(2)]
    for store in opened:
        await store.open()
        store.takeover_every = 0.0
    try:
        yield opened
    finally:
        for store in opened:
            await store.close()


def query(url: str, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(sql, args)
        return cur.fetchall() if cur.description else []


def as_server_store(url: str) -> ServerStore:
    return PostgresStore(url)  # mypy checks that it has everything wf serve needs


def test_without_psycopg_a_postgres_url_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in [m for m in sys.modules if m.startswith(("psycopg", "wf.engine.store.p"))]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "psycopg", None)
    with pytest.raises(StoreError) as info:
        open_store("postgresql://u:secret@localhost/db")
    assert str(info.value) == 'PostgreSQL needs psycopg: pip install "wf[postgres]"'


async def test_open_store_gives_the_postgres_store_for_its_urls(pg_url: str) -> None:
    for url in (pg_url, pg_url.replace("postgresql://", "postgres://", 1)):
        store = open_store(url)
        assert isinstance(store, PostgresStore)
        await store.open()
        await store.close()


# ---- several processes on one database ---------------------------------------------------------


async def test_two_processes_racing_claims_never_claim_an_instance_twice(
    stores: list[PostgresStore],
) -> None:
    await stores[0].create_instances([new(f"i{n}") for n in range(400)], skip_existing=False)
    claimed: list[list[int]] = [[], []]

    async def claim_all(index: int) -> None:
        store = stores[index]
        while True:
            got = (await store.claim_ready(f"owner{index}", 2000.0, 7, [WF], 30.0)).claims
            if not got:
                return
            claimed[index].extend(c.row.pk for c in got)
            for claim in got:  # finish some at once, as runners would
                if claim.row.pk % 2:
                    store.finish(claim.row.pk, claim.epoch, Status.COMPLETE, 2001.0, "1", None)

    await asyncio.gather(claim_all(0), claim_all(1), claim_all(0), claim_all(1))
    everything = claimed[0] + claimed[1]
    assert len(everything) == len(set(everything)) == 400
    assert claimed[0] and claimed[1]  # both took part
    held = await stores[0].renew_leases("owner0", 30.0)
    assert set(held) == {pk for pk in claimed[0] if not pk % 2}


async def test_a_lapsed_owner_loses_its_instances_and_every_later_write(
    stores: list[PostgresStore],
) -> None:
    frozen, other = stores
    await frozen.create_instances([new("a"), new("b")], skip_existing=False)
    claims = (await frozen.claim_ready("frozen", 1000.0, 10, [WF], 0.3)).claims
    assert len(claims) == 2
    assert (await other.claim_ready("other", 1000.0, 10, [WF], 30.0)).claims == []
    await asyncio.sleep(0.5)  # the lease lapses by the database's clock
    taken = (await other.claim_ready("other", 1000.0, 10, [WF], 30.0)).claims
    assert sorted(c.row.id for c in taken) == ["a", "b"]
    for old, new_claim in zip(
        sorted(claims, key=lambda c: c.row.pk), sorted(taken, key=lambda c: c.row.pk), strict=True
    ):
        assert new_claim.epoch > old.epoch
        step = StepRecord("s", 1, StepKind.DO, 1000.0)
        pk, epoch = old.row.pk, old.epoch
        assert not await frozen.start_attempt(pk, epoch, step, AttemptRecord(1, 1.0), first=True)
        assert not await frozen.hibernate(pk, epoch, 5000.0, 1001.0)
        assert not await frozen.finish(pk, epoch, Status.COMPLETE, 1001.0, "1", None)
        assert await other.finish(pk, new_claim.epoch, Status.COMPLETE, 1002.0, "2", None)
    assert await frozen.renew_leases("frozen", 30.0) == {}
    rows = await other.list_instances(WF, status=None, offset=0, limit=5, newest_first=False)
    assert [(r.status, r.output) for r in rows[0]] == [(Status.COMPLETE, "2")] * 2
    assert (await other.load_history(claims[0].row.pk)).steps == []


async def test_an_owner_whose_connection_died_is_taken_over_before_its_lease_lapses(
    stores: list[PostgresStore], pg_url: str
) -> None:
    dead, other = stores
    await dead.create_instances([new("a")], skip_existing=False)
    [claim] = (await dead.claim_ready("dead", 1000.0, 10, [WF], 60.0)).claims
    # Its process dies: the server sees its writer's connection go.
    [(pid,)] = query(pg_url, "SELECT pid FROM wf.owners WHERE owner = 'dead'")
    query(pg_url, "SELECT pg_terminate_backend(%s)", (pid,))
    for _ in range(100):
        if not query(pg_url, "SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)):
            break
        await asyncio.sleep(0.01)
    [taken] = (await other.claim_ready("other", 1000.0, 10, [WF], 60.0)).claims
    assert taken.row.pk == claim.row.pk and taken.epoch > claim.epoch
    # A live owner keeps its claims: a new process's recovery frees nothing of it.
    assert await other.release_dead_claims(crashed=True, now=1000.0) == 0
    assert await other.renew_leases("other", 60.0) == {taken.row.pk: (Status.RUNNING, taken.epoch)}


async def test_four_processes_opening_a_new_database_at_once_migrate_it_once(
    pg_url: str,
) -> None:
    opened = [PostgresStore(pg_url) for _ in range(4)]
    try:
        await asyncio.gather(*(s.open() for s in opened))
        rows = await asyncio.gather(
            *(
                s.create_instances([new(f"by{n}")], skip_existing=False)
                for n, s in enumerate(opened)
            )
        )
        assert sorted(r[0].id for r in rows) == ["by0", "by1", "by2", "by3"]
    finally:
        for s in opened:
            await s.close()
    assert query(pg_url, "SELECT number FROM wf.migrations ORDER BY 1") == [
        (n,) for n in range(1, LATEST + 1)
    ]


async def test_a_newer_schema_is_refused_in_one_line(pg_url: str) -> None:
    first = PostgresStore(pg_url)
    await first.open()
    await first.close()
    query(pg_url, "INSERT INTO wf.migrations (number) VALUES (%s)", (LATEST + 1,))
    store = PostgresStore(pg_url)
    with pytest.raises(StoreTooNew) as info:
        await store.open()
    await store.close()
    message = str(info.value)
    assert "\n" not in message
    assert f"schema version {LATEST + 1}" in message and "upgrade wf" in message
    assert pg_url.rsplit("/", 1)[1] in message


# ---- databases that cannot be used -------------------------------------------------------------


async def _refusal(url: str) -> str:
    store = open_store(url)
    with pytest.raises(StoreError) as info:
        await store.open()
    await store.close()
    message = str(info.value)
    assert "\n" not in message and "Traceback" not in message
    return message


async def test_a_wrong_password_is_one_line_with_the_password_hidden(
    pg_cluster: TestServer,
) -> None:
    url = pg_cluster.url("postgres", user="secret", password="not-hunter2")
    message = await _refusal(url)
    assert "not-hunter2" not in message
    assert "secret:***@" in message
    assert "password authentication failed" in message


async def test_a_missing_database_is_one_line(pg_cluster: TestServer) -> None:
    message = await _refusal(pg_cluster.url("no_such_db", user="secret", password="hunter2"))
    assert 'database "no_such_db" does not exist' in message
    assert "hunter2" not in message


async def test_an_unreachable_server_is_one_line(pg_cluster: TestServer) -> None:
    port = free_port()
    message = await _refusal(f"postgresql://secret:hunter2@127.0.0.1:{port}/postgres")
    assert f"127.0.0.1:{port}" in message and "hunter2" not in message
    assert "refused" in message.lower()


async def test_an_event_committed_while_its_instance_hibernates_wakes_it(
    stores: list[PostgresStore], pg_url: str
) -> None:
    """An event sent through another node while the holder hibernates the instance: the
    sender's transaction holds the instance's row, so the hibernation waits for it. The cluster
    chaos suite saw the instance sleep on until its wait's timeout (the hibernation's look for
    unconsumed events read the database as it was before it waited); it must wake now."""
    store = stores[0]
    await store.create_instances([new("sleepy")], skip_existing=False)
    [claim] = (await store.claim_ready("holder", 1000.0, 10, [WF], 30.0)).claims
    pk, epoch = claim.row.pk, claim.epoch
    sender = await psycopg.AsyncConnection.connect(pg_url)
    async with sender, sender.transaction():  # what send_event does on another node
        await sender.execute("SELECT 1 FROM wf.instances WHERE pk = %s FOR NO KEY UPDATE", (pk,))
        await sender.execute(
            "INSERT INTO wf.events (instance, type, payload, received) "
            "VALUES (%s, 'go', '{}', 1001.0)",
            (pk,),
        )
        hibernated = asyncio.ensure_future(store.hibernate(pk, epoch, 9999.0, 1002.0, ["go"]))
        for _ in range(500):  # until the hibernation waits for the sender's row lock
            await asyncio.sleep(0.01)
            cur = await sender.execute(
                "SELECT count(*) FROM pg_locks WHERE NOT granted AND pid <> pg_backend_pid()"
            )
            row = await cur.fetchone()
            if row is not None and row[0] > 0:
                break
        else:
            raise AssertionError("the hibernation never waited for the sender")
    assert await hibernated
    assert query(
        pg_url, "SELECT status, owner, wake_at FROM wf.instances WHERE pk = %s", (pk,)
    ) == [("waiting", None, 1002.0)]


# ---- PostgreSQL restarting under writes --------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["fast", "immediate"])
async def test_a_restart_of_postgresql_under_writes_loses_nothing_acknowledged(
    pg_cluster: TestServer, pg_url: str, mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="wf.store")
    if pg_cluster.external:
        pytest.skip("a server given by WF_TEST_DATABASE_URL is not restarted")
    store = PostgresStore(pg_url, durability="fsync")
    await store.open()
    acknowledged: list[str] = []
    unknown: list[str] = []  # the connection died as their commit ran: written or not
    stop = asyncio.Event()
    unavailable_reads = 0

    async def writer(n: int) -> None:
        count = 0
        while not stop.is_set():
            instance_id = f"w{n}-{count}"
            count += 1
            try:
                await store.create_instances([new(instance_id)], skip_existing=False)
            except StoreUnavailable:
                unknown.append(instance_id)
                continue
            acknowledged.append(instance_id)

    async def reader() -> None:
        nonlocal unavailable_reads
        while not stop.is_set():
            try:
                await store.count_statuses(WF)
            except StoreUnavailable:
                unavailable_reads += 1
            await asyncio.sleep(0.005)

    tasks = [asyncio.create_task(writer(n)) for n in range(4)]
    tasks.append(asyncio.create_task(reader()))
    try:
        await asyncio.sleep(0.3)
        before = len(acknowledged)
        await asyncio.to_thread(pg_cluster.restart, mode)
        during = len(acknowledged)
        await asyncio.sleep(0.5)  # writes go on by themselves once the server is back
        stop.set()
        await asyncio.gather(*tasks)
    finally:
        stop.set()
        await store.close()
    assert before > 0 and len(acknowledged) > during  # writing before, and again after
    assert unavailable_reads > 0  # reads during the outage said so at once
    assert len(unknown) <= 4  # at most the commit each writer had in flight
    stored = {r[0] for r in query(pg_url, "SELECT id FROM wf.instances")}
    assert set(acknowledged) <= stored
    assert len(stored - set(acknowledged) - set(unknown)) == 0
    # One line when the outage began and one when it ended, however many writes waited.
    said = [r.getMessage() for r in caplog.records if r.name == "wf.store"]
    assert [m.split(" is ")[1][:11] for m in said] == ["unreachable", "reachable a"], said


@pytest.mark.slow
async def test_messages_arrive_again_after_postgresql_restarts(
    pg_cluster: TestServer, pg_url: str
) -> None:
    if pg_cluster.external:
        pytest.skip("a server given by WF_TEST_DATABASE_URL is not restarted")
    sender, listener = PostgresStore(pg_url), PostgresStore(pg_url)
    await sender.open()
    await listener.open()
    heard: list[dict[str, Any]] = []
    try:
        listener.listen(lambda topic, payload: heard.append(payload))
        await listener.listening()
        await asyncio.to_thread(pg_cluster.restart, "fast")
        for n in range(200):  # until the listener is back: polling covered the gap meanwhile
            sender.publish("change", {"n": n})
            await asyncio.sleep(0.05)
            if heard:
                break
        assert heard and heard[0]["n"] > 0
    finally:
        await sender.close()
        await listener.close()


@pytest.mark.slow
async def test_a_restart_of_postgresql_is_one_line_when_it_starts_and_one_when_it_ends(
    pg_cluster: TestServer, pg_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Every link of the store (writer, both readers, listener) loses its connection; those that
    find out after the writer reconnected must not report an outage of their own (the cluster
    chaos suite saw up to three "unreachable ... reachable again (after 0.0 s)" pairs)."""
    if pg_cluster.external:
        pytest.skip("a server given by WF_TEST_DATABASE_URL is not restarted")
    store = PostgresStore(pg_url, durability="fsync")
    await store.open()
    heard: list[str] = []
    try:
        store.listen(lambda topic, payload: heard.append(topic))
        await store.listening()
        for _ in range(2):  # each reader link holds a connection
            await store.count_statuses(WF)
        await asyncio.to_thread(pg_cluster.restart, "fast")
        await store.create_instances([new("after")], skip_existing=False)  # the writer waits
        for _ in range(2):
            await store.count_statuses(WF)  # the readers find their connections dead
        for _ in range(500):  # and the listener, which listens again
            store.publish("ping", {})
            await asyncio.sleep(0.02)
            if heard:
                break
        assert heard
    finally:
        await store.close()
    said = [r.getMessage() for r in caplog.records if r.name == "wf.store"]
    assert sum("is unreachable" in line for line in said) == 1, said
    assert sum("reachable again" in line for line in said) == 1, said


async def test_a_commit_lost_with_a_crash_of_postgresql_counts_as_not_landed(pg_url: str) -> None:
    """A batch whose connection died during its commit asks whether its transaction landed. After
    a crash (``-m immediate``) the server may come back without that transaction's id at all
    ("transaction ID ... is in the future"): it did not commit, and the batch runs again. (The
    restart test hung on it once: the writer took the answer for a lost connection, for ever.)"""
    store = PostgresStore(pg_url)
    await store.open()
    try:
        assert store._writer is not None
        future = "1000000000"  # an xid this fresh server has not reached (same epoch)
        assert await asyncio.wait_for(store._writer._landed(future), 10) is False
        await store.create_instances([new("after")], skip_existing=False)  # still writes
    finally:
        await store.close()
