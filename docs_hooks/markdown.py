"""Small Markdown helpers shared by the generators."""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def cell(value: object) -> str:
    """Text safe inside a Markdown table cell: one line, pipes escaped (but in `code`, where
    the table extension does not split and a backslash would show)."""
    parts = " ".join(str(value).split()).split("`")
    return "`".join(part if i % 2 else part.replace("|", "\\|") for i, part in enumerate(parts))


def text(value: object) -> str:
    """Prose for Markdown: ``<``, ``>`` and ``&`` escaped (help texts say ``<id>``)."""
    return str(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def code(text: object) -> str:
    """Inline code that survives backticks in the text."""
    value = str(text)
    fence = "``" if "`" in value else "`"
    pad = " " if fence == "``" else ""
    return f"{fence}{pad}{value}{pad}{fence}"


def table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines.extend("| " + " | ".join(cell(value) for value in row) + " |" for row in rows)
    return "\n".join(lines)


def size(value: float) -> str:
    """A byte count as people read it: 1 MiB, 64 KiB, 7,900 bytes."""
    for unit, factor in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if value >= factor and value % factor == 0:
            return f"{int(value // factor):,} {unit}"
    return f"{int(value):,} bytes"


def duration(seconds: float) -> str:
    """A number of seconds as people read it: 365 days, 30 seconds, 1 hour."""
    for unit, factor in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= factor and seconds % factor == 0:
            count = int(seconds // factor)
            return f"{count:,} {unit}{'' if count == 1 else 's'}"
    count_text = f"{seconds:g}"
    return f"{count_text} second{'' if seconds == 1 else 's'}"
