"""Where a user says the database is: checked and made absolute before anything connects to it.

A user names a database with ``--database``, ``WF_DATABASE_URL`` or wf.toml's ``[engine]
database``: a PostgreSQL URL (``postgresql://…`` or ``postgres://…``), or a SQLite file as a path
or ``sqlite:///path``. Pure string work, like ``urls``: no driver is imported.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

from wf.engine.store.urls import is_postgres, redact
from wf.errors import quote

SQLITE_PREFIX = "sqlite:///"
URL_FORM = "postgresql://user:password@host:5432/database"
EXPECTED = "a postgresql:// URL, or the path of a SQLite file (or sqlite:///path)"
_BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
# libpq's "host=... dbname=..." form: taken for a file name it would make a stray SQLite file.
_KEYWORDS = re.compile(r"\s*(host|hostaddr|port|dbname|user|password|service)\s*=", re.IGNORECASE)


class BadLocation(ValueError):
    """What is wrong with a database location, as a phrase to follow where it was given
    (``--database``, ``engine.database``); any password in it already hidden."""


def database_location(text: str, base: Path) -> str:
    """A PostgreSQL URL as given, or a SQLite file's absolute path (a relative one is taken from
    ``base``: the project's folder for wf.toml, the current folder for an option)."""
    if not text.strip():
        raise BadLocation(f"is empty; expected {EXPECTED}")
    sqlite_url = text.lower().startswith(SQLITE_PREFIX)
    shown = quote(text if sqlite_url else redact(text), 120)
    if not text.isprintable():
        raise BadLocation(f"{shown} has a control character in it")
    if is_postgres(text):
        return _postgres(text, shown)
    if _KEYWORDS.match(text):
        raise BadLocation(f"{shown} is a key=value connection string; write it as {URL_FORM}")
    if sqlite_url:
        text = text[len(SQLITE_PREFIX) :]
        if not text:
            raise BadLocation(f"{shown} names no file; expected sqlite:///path/to/wf.db")
    elif "://" in text:
        scheme = text.split("://", 1)[0]
        raise BadLocation(f'{shown} uses the scheme "{scheme}"; expected {EXPECTED}')
    path = (base / Path(text).expanduser()).resolve()
    if path.is_dir():
        raise BadLocation(f"{shown} is a folder; name the database file in it (say wf.db)")
    return str(path)


def _postgres(url: str, shown: str) -> str:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - parsed on access: a bad port raises here
    except ValueError as exc:
        raise BadLocation(f"{shown} is not a valid PostgreSQL URL ({exc})") from None
    if parts.fragment:
        raise BadLocation(f"{shown} has a #fragment, which PostgreSQL URLs do not take")
    if _BAD_PERCENT.search(url):
        # Said here: libpq's own message quotes the token, which may be the password.
        raise BadLocation(
            f"{shown} has a % that does not start an escape such as %25 (write a % in a "
            "password as %25)"
        )
    return url
