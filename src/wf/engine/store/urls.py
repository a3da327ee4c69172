"""Database URLs: which store one names, and how to show it without its password.

Pure string work (no driver is imported), so the CLI can name a database in a banner or an error
before, or without, connecting to it.
"""

from __future__ import annotations

import contextlib
import re
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

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


def passwords(url: str) -> set[str]:
    """The password(s) ``url`` carries, as written and percent-decoded (to scrub them from a
    driver's messages, which may quote the text they could not parse)."""
    found: set[str] = set()
    # Where the user info ends is ambiguous in a URL with two "@": take both readings.
    for pattern in (r"://[^:/@]*:([^@]*)@", r"://[^:/@]*:(.*)@"):
        match = re.search(pattern, url)
        if match and match.group(1):
            found.add(match.group(1))
    for m in re.finditer(r"[?&]password=([^&#]*)", url, re.IGNORECASE):
        found.add(m.group(1))
    for m in _KEYWORD_PASSWORD.finditer(url):
        found.add(m.group(2).strip("'"))
    decoded = set()
    for text in found:
        with contextlib.suppress(UnicodeDecodeError):
            decoded.add(unquote(text, errors="strict"))
    return {p for p in found | decoded if p}


def scrub(message: str, url: str) -> str:
    """``message`` with every password of ``url`` replaced by ``***``."""
    for secret in sorted(passwords(url), key=len, reverse=True):
        # Whole tokens only: a short password must not eat the letters of other words.
        message = re.sub(rf"(?<![A-Za-z0-9]){re.escape(secret)}(?![A-Za-z0-9])", HIDDEN, message)
    return message
