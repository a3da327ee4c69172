"""Does what a command printed agree with what the page shows under it?

Shown lines must appear in the output in order and next to each other, compared with runs of
spaces collapsed (table widths follow the data) and blank lines ignored. ``...`` inside a line
matches any text (ids, times); a line that is only ``...`` matches any number of lines. Output
may go on after the last shown line.
"""

from __future__ import annotations

import functools
import re

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
ELLIPSIS = "..."


def normalise(line: str) -> str:
    return " ".join(ANSI.sub("", line).split())


def _pattern(shown: str) -> re.Pattern[str]:
    parts = [re.escape(part) for part in normalise(shown).split(ELLIPSIS)]
    return re.compile("^" + ".*".join(parts) + "$")


def mismatch(shown: list[str], printed: str) -> str | None:
    """None when the output agrees; else which shown line was not found, and the output."""
    wanted = [normalise(line) for line in shown if line.strip()]
    got = [normalise(line) for line in printed.splitlines() if line.strip()]
    if not wanted or _matches(wanted, got):
        return None
    return (
        "the output does not show what the page does.\n--- page shows\n"
        + "\n".join(wanted)
        + "\n--- command printed\n"
        + "\n".join(got)
    )


def _matches(wanted: list[str], got: list[str]) -> bool:
    patterns = [None if line == ELLIPSIS else _pattern(line) for line in wanted]

    # Remembered: with many "..." lines, retrying every split again would take exponential time.
    @functools.cache
    def match(w: int, g: int, anchored: bool) -> bool:
        """wanted[w:] against got[g:]; anchored means wanted[w] must be got[g]."""
        if w == len(wanted):
            return True
        pattern = patterns[w]
        if pattern is None:
            return match(w + 1, g, False)
        starts = [g] if anchored else range(g, len(got))
        return any(
            start < len(got) and pattern.match(got[start]) and match(w + 1, start + 1, True)
            for start in starts
        )

    return match(0, 0, True)
