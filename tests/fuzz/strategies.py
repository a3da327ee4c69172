"""Hypothesis strategies for what users (and attackers) send: odd text, path-like names, JSON."""

from __future__ import annotations

import urllib.parse
from typing import Any

from hypothesis import strategies as st

from wf.engine.limits import ID_PATTERN

# Text that could reach a file system if anything used it as a path.
PATH_LIKE = (
    "..",
    "../..",
    "../../../../etc/passwd",
    "..%2F..%2Fwf.toml",
    "../wf.toml",
    "..\\..\\wf.toml",
    "/etc/passwd",
    "/tmp/wf-fuzz-escape",
    "C:\\Windows\\win.ini",
    ".wf",
    ".wf/wf.db",
    "wf.db",
    ".dev.vars",
    "~",
    "~root",
    "a\x00b",
    "\x00",
    "nul",
    "CON",
    "file:///etc/passwd",
    " ",
    "\t",
    "-rf",
    "*",
    "?",
    "#",
    "%",
    "%00",
    "%2e%2e",
)

# Characters whose percent-encoding is long (3 to 12 bytes each) and some that fool terminals.
LONG_CHARS = ("a", "-", "_", "é", "中", "𝔘", "😀", "\u202e", "\u0301", "\x7f")
URL_BUDGET = 2500  # percent-encoded bytes per parameter: three of them stay under aiohttp's 8 KiB


def _repeat(char: str, count: int) -> str:
    most = max(1, URL_BUDGET // len(urllib.parse.quote(char, safe="")))
    return char * min(count, most)


def unicode_text(max_size: int = 40) -> st.SearchStrategy[str]:
    """Any Unicode text that can be sent as UTF-8 (control characters and NUL included)."""
    return st.text(st.characters(codec="utf-8"), max_size=max_size)


def identifiers(min_size: int = 1, max_size: int = 120) -> st.SearchStrategy[str]:
    """Strings of the identifier pattern, on both sides of the length limits (64, 100)."""
    return st.from_regex(ID_PATTERN, fullmatch=True).filter(
        lambda s: min_size <= len(s) <= max_size
    ) | st.builds(
        lambda head, n: (head + "x" * n)[: max(n, 1)],
        st.sampled_from("aZ0_"),
        st.sampled_from((63, 64, 65, 99, 100, 101, 256)),
    )


def long_text() -> st.SearchStrategy[str]:
    return st.builds(_repeat, st.sampled_from(LONG_CHARS), st.integers(65, 3000))


def path_texts() -> st.SearchStrategy[str]:
    """What a path parameter or a name field may hold: anything, path-like, very long."""
    return st.one_of(
        unicode_text(),
        st.sampled_from(PATH_LIKE),
        identifiers(),
        long_text(),
    )


def json_values(
    text: st.SearchStrategy[str] | None = None, max_leaves: int = 20
) -> st.SearchStrategy[Any]:
    """Any JSON value (as Python: None, bool, int, finite float, str, list, dict)."""
    strings = text if text is not None else unicode_text()
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.integers(min_value=-(10**40), max_value=10**40),
        st.floats(allow_nan=False, allow_infinity=False),
        strings,
    )
    return st.recursive(
        scalars,
        lambda children: st.one_of(
            st.lists(children, max_size=4),
            st.dictionaries(strings, children, max_size=4),
        ),
        max_leaves=max_leaves,
    )
