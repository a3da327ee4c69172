"""Database URLs: which store one names, and how to show it without its password.

Pure string work (no driver is imported), so the CLI can name a database in a banner or an error
before, or without, connecting to it.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

POSTGRES_SCHEMES = ("postgres", "postgresql")
HIDDEN = "***"

# Key/value connection strings ("host=... password=secret") are accepted by libpq too.
_KEYWORD_PASSWORD = re.compile(r"(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)


def is_postgres(url: str) -> bool:
    scheme, sep, _ = url.partition("://")
    return bool(sep) and scheme.lower() in POSTGRES_SCHEMES


def redact(url: str) -> str:
    """``url`` with any password replaced by ``***`` (in the authority or as a query parameter)."""
    if "://" not in url:
        return _KEYWORD_PASSWORD.sub(lambda m: m.group(1) + HIDDEN, url)
    try:
        parts = urlsplit(url)
    except ValueError:
        return _redact_roughly(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hosts = netloc.rpartition("@")
        user, colon, _password = userinfo.partition(":")
        netloc = f"{user}:{HIDDEN}@{hosts}" if colon else f"{user}@{hosts}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(key.lower() == "password" for key, _ in pairs):
            query = urlencode(
                [(k, HIDDEN if k.lower() == "password" else v) for k, v in pairs], safe="*"
            )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _redact_roughly(url: str) -> str:
    """For a URL too malformed to parse: hide everything between ``://user:`` and ``@``."""
    return re.sub(r"(://[^:/@]*:)[^@]*@", lambda m: m.group(1) + HIDDEN + "@", url)
