"""The instance page's step timeline: the data of ``wf instances describe``'s Gantt, for HTML.

The terminal's timeline (``wf.cli.render.Timeline``) draws with rich, which the dashboard does
not load; this computes the same rows from the same instance details: every step on one axis
from the instance's start to its end (or now), a ``do`` step's attempts as separate segments
with the retry waits between them, sleeps and event waits as bars of their own, a bar that is
still running open-ended to now, and the same marks (glyph and legend) for each kind.
Positions are fractions of the axis (0 to 1); the template turns them into SVG.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from wf.durations import short_duration


@dataclass(frozen=True)
class Mark:
    glyph: str
    legend: str


# The terminal's marks: the page shows the glyph in the legend and each bar's tooltip.
MARKS = {
    "ok": Mark("█", "success"),
    "failed": Mark("▓", "failed attempt"),
    "running": Mark("▒", "running"),
    "retry": Mark("─", "retry wait"),
    "sleep": Mark("┈", "sleep"),
    "sleeping": Mark("┈", "sleep"),
    "wait": Mark("╌", "waiting for event"),
    "waiting": Mark("╌", "waiting for event"),
    "wait_failed": Mark("╌", "waiting for event"),
    "terminated": Mark("✕", "terminated"),
}
LEGEND_ORDER = ("ok", "failed", "running", "retry", "sleep", "wait", "terminated")
LEGEND_OF = {"sleeping": "sleep", "waiting": "wait", "wait_failed": "wait"}


@dataclass(frozen=True)
class Segment:
    kind: str  # a key of MARKS
    start: float  # fraction of the axis
    end: float
    title: str  # what a tooltip says about it

    @property
    def glyph(self) -> str:
        return MARKS[self.kind].glyph


@dataclass(frozen=True)
class Row:
    label: str
    type: str  # the step's type in the details (step, rollback, sleep, waitForEvent, termination)
    segments: tuple[Segment, ...]
    status: str  # "✓ 1.2 s, 2 attempts", "… until 13:55:31Z"
    tone: str  # ok, bad or pending: the colour of the status
    open: bool  # still running: its bar reaches now


@dataclass(frozen=True)
class Timeline:
    begin: str  # ISO times of the axis' ends
    end: str
    ended: bool
    total: str  # the axis' length, "1.2 s"
    rows: tuple[Row, ...]
    legend: tuple[tuple[str, Mark], ...]  # the marks used, in the terminal's order


def parse_time(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value[:-1] + "+00:00" if value.endswith("Z") else value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=timezone.utc)


def _clock(moment: datetime, reference: datetime) -> str:
    """``13:55:31Z``, with the date when not on ``reference``'s day (times are in UTC)."""
    if moment.date() != reference.date():
        return moment.strftime("%Y-%m-%d %H:%M:%SZ")
    return moment.strftime("%H:%M:%SZ")


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _outcome(success: object) -> str:
    return "running" if success is None else "ok" if success else "failed"


def _bounds(details: dict[str, Any], now: datetime) -> tuple[datetime, datetime] | None:
    """The axis: from the first start to the last end (or now, while it runs)."""
    steps = details.get("steps") or []
    starts = [parse_time(details.get("start"))] + [parse_time(s.get("start")) for s in steps]
    begin = min((s for s in starts if s is not None), default=None)
    if begin is None:
        return None
    ends: list[datetime | None] = [parse_time(details.get("end")) or now, begin]
    for step in steps:
        ends.append(parse_time(step.get("end")))
        ends.extend(parse_time(a.get("end")) for a in step.get("attempts") or [])
    return begin, max(e for e in ends if e is not None)


class _Builder:
    def __init__(self, details: dict[str, Any], begin: datetime, end: datetime) -> None:
        self.details = details
        self.begin = begin
        self.origin, self.stop = begin.timestamp(), end.timestamp()
        self.span = max(self.stop - self.origin, 1e-3)
        self.ended = parse_time(details.get("end")) is not None

    def build(self) -> Timeline:
        rows = tuple(row for step in self.details.get("steps") or [] if (row := self.row(step)))
        used = {LEGEND_OF.get(s.kind, s.kind) for row in rows for s in row.segments}
        return Timeline(
            begin=_iso(self.begin),
            end=_iso(datetime.fromtimestamp(self.stop, timezone.utc)),
            ended=self.ended,
            total=short_duration(self.stop - self.origin),
            rows=rows,
            legend=tuple((key, MARKS[key]) for key in LEGEND_ORDER if key in used),
        )

    def segment(self, first: float, last: float, kind: str, title: str) -> Segment:
        def at(moment: float) -> float:
            return min(max((moment - self.origin) / self.span, 0.0), 1.0)

        return Segment(kind, at(first), at(last), title)

    def row(self, step: dict[str, Any]) -> Row | None:
        kind = step.get("type") or ""
        if kind == "termination":
            trigger = step.get("trigger") or {}
            source = "wf CLI" if trigger.get("via") == "cli" else trigger.get("source") or "api"
            cross = self.segment(self.stop, self.stop, "terminated", f"terminated by {source}")
            return Row("terminated", kind, (cross,), f"by {source}", "bad", False)
        start = parse_time(step.get("start"))
        if start is None:
            return None
        finish = parse_time(step.get("end"))
        first, last = start.timestamp(), finish.timestamp() if finish else self.stop
        label = str(step.get("name", ""))
        if kind in ("step", "rollback"):
            return self.do_row(label + (" ↩" if kind == "rollback" else ""), step, first, last)
        took = short_duration(last - first)
        if kind == "sleep":
            if step.get("finished") or finish is not None:
                mark, status, tone = "sleep", f"✓ {took}", "ok"
            elif self.ended:
                mark, status, tone = "sleeping", "… unfinished", "pending"
            else:
                mark, status, tone = "sleeping", self.until(step.get("wake_at")), "pending"
        else:
            error = step.get("error")
            if error:
                name = error.get("name") if isinstance(error, dict) else error
                mark, status, tone = "wait_failed", f"✗ {name}", "bad"
            elif step.get("finished"):
                what = "child" if kind == "runWorkflow" else "event"
                mark, status, tone = "wait", f"✓ {what} after {took}", "ok"
            elif kind == "runWorkflow":
                word = "unfinished" if self.ended else "for its child"
                mark, status, tone = "waiting", f"… {word}", "pending"
            else:
                event = step.get("event_type") or "event"
                word = "unfinished" if self.ended else f'for "{event}"'
                mark, status, tone = "waiting", f"… {word}", "pending"
        bar = self.segment(first, last, mark, f"{MARKS[mark].legend}, {took}")
        still = finish is None and not self.ended
        return Row(label, kind, (bar,), status, tone, still)

    def until(self, when: object) -> str:
        moment = parse_time(when)
        return "…" if moment is None else f"… until {_clock(moment, self.begin)}"

    def do_row(self, label: str, step: dict[str, Any], first: float, last: float) -> Row:
        segments: list[Segment] = []
        attempts = [a for a in step.get("attempts") or [] if parse_time(a.get("start"))]
        previous_end: float | None = None
        for number, attempt in enumerate(attempts, start=1):
            began = parse_time(attempt.get("start"))
            assert began is not None
            finish = parse_time(attempt.get("end"))
            a_first, a_last = began.timestamp(), finish.timestamp() if finish else self.stop
            if previous_end is not None and a_first > previous_end:
                gap = short_duration(a_first - previous_end)
                segments.append(self.segment(previous_end, a_first, "retry", f"retry wait, {gap}"))
            outcome = _outcome(attempt.get("success"))
            took = short_duration(a_last - a_first)
            title = f"attempt {number}: {MARKS[outcome].legend}, {took}"
            segments.append(self.segment(a_first, a_last, outcome, title))
            previous_end = a_last
        success = step.get("success")
        waiting_retry = success is None and bool(attempts) and attempts[-1].get("success") is False
        if waiting_retry and previous_end is not None and previous_end < self.stop:
            segments.append(self.segment(previous_end, self.stop, "retry", "retry wait"))
        if not segments:
            outcome = _outcome(success)
            title = f"{MARKS[outcome].legend}, {short_duration(last - first)}"
            segments.append(self.segment(first, last, outcome, title))
        count = len(attempts)
        tries = f", {count} attempts" if count > 1 else ""
        if success is True:
            status, tone = f"✓ {short_duration(last - first)}{tries}", "ok"
        elif success is False:
            status, tone = f"✗ {short_duration(last - first)}{tries}", "bad"
        elif self.ended:
            status, tone = f"… unfinished{tries}", "pending"
        elif waiting_retry:
            retry = parse_time(step.get("retries_at"))
            at = f" at {_clock(retry, self.begin)}" if retry else ""
            status, tone = f"… retry {count + 1}{at}", "pending"
        else:
            status, tone = f"▶ attempt {max(count, 1)}", "pending"
        still = success is None and not self.ended
        return Row(label, str(step.get("type")), tuple(segments), status, tone, still)


def timeline(details: dict[str, Any], now: datetime | None = None) -> Timeline | None:
    """The timeline of an instance's details; None before it started."""
    bounds = _bounds(details, now or datetime.now(timezone.utc))
    return None if bounds is None else _Builder(details, *bounds).build()
