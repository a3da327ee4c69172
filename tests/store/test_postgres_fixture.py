"""The tests' PostgreSQL: a fresh database per test, reachable, empty and writable."""

from __future__ import annotations

import psycopg


def test_a_fresh_database_is_empty_and_writable(pg_url: str) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        tables = conn.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchone()
        assert tables == (0,)
        conn.execute("CREATE TABLE t (x int)")
        conn.execute("INSERT INTO t VALUES (1)")
        assert conn.execute("SELECT x FROM t").fetchall() == [(1,)]


def test_each_test_gets_its_own_database(pg_url: str) -> None:
    with psycopg.connect(pg_url) as conn:
        row = conn.execute("SELECT to_regclass('public.t')").fetchone()
        assert row == (None,)  # the previous test's table is not here
