"""The instances page's filters, read from its query string and written back into links.

Every view is a link: status, id prefix (``q``), created range (``since`` / ``until``) and page
are all in the URL, and every link the page makes (status strip, pager, bulk form, live
refresh) keeps them. Times without an offset are UTC, as the dashboard shows them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import quote, urlencode

from wf.devserver.envelope import BAD_REQUEST, ApiError
from wf.engine.model import Status

STATUSES = tuple(s.value for s in Status)
MAX_SEARCH = 256  # longer than any id (firing ids included)

_STAMP = re.compile(
    r"(?P<date>\d{4}-\d{2}-\d{2})"
    r"(?:[T ](?P<minute>\d{2}:\d{2})(?P<second>:\d{2}(?P<fraction>\.\d{1,6})?)?)?"
    r"(?P<zone>Z|[+-]\d{2}:\d{2})?"
)
_TIME_USAGE = (
    "a date (2024-05-01) or a date and time (2024-05-01T09:30), UTC unless an offset is given"
)


def _bad(message: str) -> ApiError:
    return ApiError(400, BAD_REQUEST, message)


def parse_time(raw: str, name: str, *, end: bool) -> float | None:
    """Epoch seconds of a ``since`` (its start) or ``until`` (``end``: just past it, so that
    "until 09:30" takes in all of that minute and "until 2024-05-01" all of that day)."""
    text = raw.strip()
    if not text:
        return None
    found = _STAMP.fullmatch(text)
    if found is None:
        raise _bad(f'{name} must be {_TIME_USAGE}; got "{text[:40]}"')
    zone = found["zone"] or "+00:00"
    local = text[: found.start("zone")] if found["zone"] else text
    try:
        moment = datetime.fromisoformat(local.replace(" ", "T") + zone.replace("Z", "+00:00"))
    except ValueError as exc:
        raise _bad(f'{name} is not a real date or time ("{text[:40]}"): {exc}') from None
    if found["fraction"]:
        step = timedelta(microseconds=1)
    elif found["second"]:
        step = timedelta(seconds=1)
    elif found["minute"]:
        step = timedelta(minutes=1)
    else:
        step = timedelta(days=1)
    try:
        seconds = (moment + step if end else moment).timestamp()
        datetime.fromtimestamp(seconds, timezone.utc)  # the page shows it again
    except (OverflowError, ValueError):  # the calendar's ends (years 1 and 9999)
        raise _bad(f'{name} is out of range ("{text[:40]}")') from None
    return seconds


def input_value(seconds: float | None, *, end: bool) -> str:
    """A parsed time as a ``datetime-local`` input shows it (UTC); for ``until``, the last
    moment it takes in, which parses back to the same bound."""
    if seconds is None:
        return ""
    moment = datetime.fromtimestamp(seconds, timezone.utc)
    if moment.second == 0 and moment.microsecond == 0:
        shown = moment - timedelta(minutes=1) if end else moment
        return shown.strftime("%Y-%m-%dT%H:%M")
    if moment.microsecond == 0:
        shown = moment - timedelta(seconds=1) if end else moment
        return shown.strftime("%Y-%m-%dT%H:%M:%S")
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f")


def _page_number(raw: str | None) -> int:
    text = (raw or "").strip()
    if text.isascii() and text.isdigit() and 0 < len(text) <= 9:
        return max(int(text), 1)
    return 1


@dataclass(frozen=True)
class ListFilters:
    """What the instances page shows; the texts are kept as given, for the URL."""

    status: str = ""
    search: str = ""
    since_text: str = ""
    until_text: str = ""
    page: int = 1
    since: float | None = None
    until: float | None = None

    @classmethod
    def parse(cls, query: Any) -> ListFilters:
        """From a query string (a mapping); bad values raise a 400 ``ApiError`` that says so."""
        status = str(query.get("status", "")).strip()
        if status and status not in STATUSES:
            shown = ", ".join(STATUSES)
            raise _bad(f'unknown status "{status[:40]}"; use one of {shown}')
        search = str(query.get("q", "")).strip()
        if len(search) > MAX_SEARCH:
            raise _bad(f"the id search is {len(search)} characters; the limit is {MAX_SEARCH}")
        since_text = str(query.get("since", "")).strip()
        until_text = str(query.get("until", "")).strip()
        since = parse_time(since_text, "since", end=False)
        until = parse_time(until_text, "until", end=True)
        if since is not None and until is not None and since >= until:
            raise _bad(
                f'the created range is empty: since "{since_text}" is not before until '
                f'"{until_text}"'
            )
        page = _page_number(query.get("page"))
        return cls(status, search, since_text, until_text, page, since, until)

    def query(self, **changes: Any) -> dict[str, str]:
        """The query string's fields (those set), with ``changes``; page 1 is left out."""
        chosen = replace(self, **changes) if changes else self
        fields = {
            "status": chosen.status,
            "q": chosen.search,
            "since": chosen.since_text,
            "until": chosen.until_text,
            "page": "" if chosen.page == 1 else str(chosen.page),
        }
        return {k: v for k, v in fields.items() if v}

    def link(self, workflow: str, **changes: Any) -> str:
        """This view (with ``changes``) of ``workflow``'s instances, as a URL."""
        kept = self.query(**changes)
        return f"/w/{quote(workflow, safe='')}" + (f"?{urlencode(kept)}" if kept else "")

    @property
    def any(self) -> bool:
        return bool(self.status or self.search or self.since_text or self.until_text)
