"""The WHERE and ORDER BY of a page of instances, shared by both stores.

Each filter maps to an index: a workflow's instances by creation (``instances_listing``), one
status of them (``instances_by_status``), and an id prefix as a range on ``(workflow, id)``
(SQLite's unique index; PostgreSQL's ``instances_id_prefix``, in byte order whatever the
database's collation). An id search is ordered by id, so its index gives the page and an exact
id comes first.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from wf.engine.model import Status

# Past every code point: a prefix ending in it has no successor by one character.
_LAST = 0x10FFFF
_SURROGATES = range(0xD800, 0xE000)


@dataclass(frozen=True)
class InstanceFilter:
    """Which instances of a workflow a page shows. ``since`` is inclusive and ``until``
    exclusive (creation times, epoch seconds); ``id_prefix`` matches ids starting with it."""

    status: Status | None = None
    id_prefix: str | None = None
    since: float | None = None
    until: float | None = None


def prefix_end(prefix: str) -> str | None:
    """The least string greater than every string starting with ``prefix`` (code point
    order, which is UTF-8's byte order), or None when there is none."""
    text = prefix
    while text:
        code = ord(text[-1]) + 1
        if code in _SURROGATES:
            code = _SURROGATES.stop
        if code <= _LAST:
            return text[:-1] + chr(code)
        text = text[:-1]
    return None


def where_clause(
    workflow: str, chosen: InstanceFilter, mark: str, id_column: str = "id"
) -> tuple[str, tuple[Any, ...]]:
    """``(sql, args)`` of the WHERE for ``chosen``; ``mark`` is the driver's placeholder and
    ``id_column`` how the id is compared (PostgreSQL compares it in byte order)."""
    parts = [f"workflow = {mark}"]
    args: list[Any] = [workflow]
    if chosen.status is not None:
        parts.append(f"status = {mark}")
        args.append(chosen.status.value)
    if chosen.id_prefix:
        parts.append(f"{id_column} >= {mark}")
        args.append(chosen.id_prefix)
        end = prefix_end(chosen.id_prefix)
        if end is not None:
            parts.append(f"{id_column} < {mark}")
            args.append(end)
    if chosen.since is not None:
        parts.append(f"created >= {mark}")
        args.append(chosen.since)
    if chosen.until is not None:
        parts.append(f"created < {mark}")
        args.append(chosen.until)
    return " AND ".join(parts), tuple(args)


def order_clause(chosen: InstanceFilter, newest_first: bool, id_column: str = "id") -> str:
    if chosen.id_prefix:
        return id_column  # unique within a workflow
    order = "DESC" if newest_first else "ASC"
    return f"created {order}, pk {order}"
