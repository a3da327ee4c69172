"""Database URLs: which store they name, and never a password shown."""

from __future__ import annotations

import pytest

from wf.engine.store.urls import is_postgres, redact, scrub


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://u:secret@h:5432/db", "postgresql://u:***@h:5432/db"),
        ("postgres://u@h/db", "postgres://u@h/db"),
        ("postgresql://h/db", "postgresql://h/db"),
        (
            "postgresql://u:p%40ss@h/db?sslmode=require&password=x",
            "postgresql://u:***@h/db?sslmode=require&password=***",
        ),
        ("postgresql://u:sec@ret@h/db", "postgresql://u:***@h/db"),
        ("host=h password=secret dbname=x", "host=h password=*** dbname=x"),
        ("/tmp/x.db", "/tmp/x.db"),
    ],
)
def test_redact_hides_every_password(url: str, shown: str) -> None:
    assert redact(url) == shown


def test_which_urls_are_postgres() -> None:
    assert is_postgres("postgresql://h/db") and is_postgres("POSTGRES://h/db")
    assert not is_postgres("sqlite:///x.db") and not is_postgres("/x/postgres://")


def test_scrub_removes_a_password_a_driver_quoted() -> None:
    url = "postgresql://u:sec%ret@127.0.0.1:1/db"
    message = 'invalid percent-encoded token: "sec%ret"'
    assert scrub(message, url) == 'invalid percent-encoded token: "***"'


def test_scrub_removes_decoded_and_query_passwords() -> None:
    url = "postgresql://u:p%40ss@h/db?password=hunter2"
    assert scrub("p@ss then p%40ss then hunter2", url) == "*** then *** then ***"


def test_scrub_leaves_words_that_merely_contain_a_short_password() -> None:
    url = "postgresql://u:a@127.0.0.1:1/x"
    assert scrub("failed: a connection", url) == "failed: *** connection"
    assert scrub("cannot parse", url) == "cannot parse"
