"""Everything wf shows in a terminal, and the only module that imports rich.

Renderables build views out of the plain JSON the API returns (instance details, workflow and
instance summaries, engine notices); ``print_*`` functions send them to a console. Tests render
into ``Console(file=StringIO(), width=100, color_system=None)`` and compare exact text.

Text that comes from users (step names, outputs, error messages) is always wrapped in ``Text``,
never parsed as markup, and its control characters are shown escaped.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone, tzinfo
from typing import Any

from rich import box
from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.table import Table
from rich.text import Text

from wf.durations import format_duration, short_duration, to_seconds, trim_decimal
from wf.errors import ValidationError

TRUNCATED = "[...output truncated]"

STATUS_LABELS = {
    "complete": "✅ Completed",
    "errored": "❌ Errored",
    "paused": "⏸️ Paused",
    "queued": "⌛ Queued",
    "running": "▶ Running",
    "terminated": "🚫 Terminated",
    "waiting": "⏰ Waiting",
    "waitingForPause": "⏱️ Waiting for Pause",
}
STATUS_NAMES = {
    "queued": "Queued",
    "running": "Running",
    "paused": "Paused",
    "waiting": "Waiting",
    "waitingForPause": "Waiting for Pause",
    "errored": "Errored",
    "terminated": "Terminated",
    "complete": "Completed",
}
TRIGGER_LABELS = {
    "api": "🌎 API",
    "binding": "🔗 Binding",
    "cron": "⌛ Cron",
    "event": "📩 Event",
}
STEP_TYPE_LABELS = {
    "step": "🎯 Step",
    "sleep": "💤 Sleeping",
    "waitForEvent": "👀 Waiting for event",
    "termination": "🚫 Termination",
    "rollback": "↩️ Rollback",
    "runWorkflow": "🧩 Child workflow",
}
UNKNOWN = "❓ Unknown"

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def status_label(status: object) -> str:
    return STATUS_LABELS.get(status, UNKNOWN) if isinstance(status, str) else UNKNOWN


def trigger_label(trigger: object) -> str:
    """A details' ``trigger`` object as describe shows it: ``🌎 API``, ``🌎 API (wf CLI)``."""
    found = trigger if isinstance(trigger, dict) else {}
    source = found.get("source")
    label = TRIGGER_LABELS.get(source, UNKNOWN) if isinstance(source, str) else UNKNOWN
    return f"{label} (wf CLI)" if found.get("via") == "cli" else label


def step_type_label(step_type: object) -> str:
    return STEP_TYPE_LABELS.get(step_type, UNKNOWN) if isinstance(step_type, str) else UNKNOWN


def success_label(success: object) -> str:
    if success is None:
        return "▶ Running"
    return "✅ Yes" if success else "❌ No"


def attempt_state_label(success: object) -> str:
    if success is None:
        return "🔄 Working"
    return "✅ Success" if success else "❌ Error"


def clean(text: object) -> str:
    """User text made safe for a terminal: control characters (ESC above all) shown escaped."""
    value = text if isinstance(text, str) else str(text)
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], value)


def error_text(error: object) -> str:
    """``Name: message`` from an ``{"name", "message"}`` error (or whatever else came)."""
    if isinstance(error, dict):
        name = error.get("name") or "Error"
        message = error.get("message")
        return clean(f"{name}: {message}" if message else str(name))
    return clean(error)


# ---- times ----------------------------------------------------------------------------------


def parse_time(value: object) -> datetime | None:
    """An ISO 8601 time from the API (``2024-10-15T13:55:31.000Z``), as an aware datetime."""
    if not isinstance(value, str) or not value:
        return None
    text = value[:-1] + "+00:00" if value.endswith("Z") else value
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=timezone.utc)


def _local(moment: datetime, tz: tzinfo | None) -> datetime:
    return moment.astimezone(tz) if tz is not None else moment.astimezone()


def format_date(value: object, tz: tzinfo | None = None) -> str:
    """``10/15/2024, 1:55:31 PM`` (wrangler's ``toLocaleString``) in ``tz`` (default: local)."""
    moment = value if isinstance(value, datetime) else parse_time(value)
    if moment is None:
        return ""
    local = _local(moment, tz)
    hour = local.hour % 12 or 12
    half = "AM" if local.hour < 12 else "PM"
    return (
        f"{local.month}/{local.day}/{local.year}, "
        f"{hour}:{local.minute:02d}:{local.second:02d} {half}"
    )


def format_clock(
    moment: datetime, tz: tzinfo | None = None, *, reference: datetime | None = None
) -> str:
    """``1:55:31 PM``; with the date too when ``moment`` is not on ``reference``'s day."""
    local = _local(moment, tz)
    if reference is not None and _local(reference, tz).date() != local.date():
        return format_date(moment, tz)
    hour = local.hour % 12 or 12
    half = "AM" if local.hour < 12 else "PM"
    return f"{hour}:{local.minute:02d}:{local.second:02d} {half}"


def human_duration(seconds: float) -> str:
    """``42 milliseconds``, ``3.5 seconds``, ``1 minute``: how describe shows durations."""
    return format_duration(max(seconds, 0.0))


def _between(start: object, end: object, now: datetime) -> float | None:
    begin = parse_time(start)
    if begin is None:
        return None
    finish = parse_time(end) or now
    return (finish - begin).total_seconds()


def _relative(moment: datetime, now: datetime) -> str:
    ahead = (moment - now).total_seconds()
    if ahead >= 0.5:
        return f"in {human_duration(ahead)}"
    if ahead <= -0.5:
        return f"{human_duration(-ahead)} ago"
    return "now"


# ---- labelled values ------------------------------------------------------------------------


class Labelled:
    """``Label:`` then the value, values aligned two spaces after the longest label (wrangler's
    ``formatLabelledValues``); long values wrap under themselves. No trailing spaces."""

    def __init__(self, rows: Sequence[tuple[str, Text | str]], indent: int = 0) -> None:
        self.rows = [
            (label, value if isinstance(value, Text) else Text(value)) for label, value in rows
        ]
        self.indent = indent

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        if not self.rows:
            return
        column = max(len(label) for label, _ in self.rows) + 1 + 2
        room = max(options.max_width - self.indent - column, 10)
        pad = " " * self.indent
        for label, value in self.rows:
            lines = value.wrap(console, room, overflow="fold") if value.plain else [Text()]
            for number, line in enumerate(lines):
                head = f"{label}:".ljust(column) if number == 0 else " " * column
                row = Text(pad) + Text(head, style="bold") + line
                row.rstrip()
                yield row


# ---- instance details (``wf instances describe``) -------------------------------------------


def _json_text(value: Any) -> str:
    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    except (TypeError, ValueError):
        return str(value)


def _instance_link(link: dict[str, Any]) -> str:
    """``workflow/id`` of a parent or a child, as ``wf instances describe`` takes them."""
    return f"{clean(str(link.get('workflow')))} {clean(str(link.get('id')))}"


def truncate_output(text: str, limit: int) -> str:
    return text[: max(limit, 0)] + TRUNCATED if len(text) > limit else text


def last_successful_step(details: dict[str, Any]) -> str | None:
    found = None
    for step in details.get("steps") or []:
        kind = step.get("type")
        if (
            (kind == "step" and step.get("success") is True)
            or (kind == "sleep" and step.get("end") is not None)
            or (kind == "waitForEvent" and step.get("finished") and not step.get("error"))
            or (kind == "runWorkflow" and step.get("success") is True)
        ):
            found = step.get("name")
    return clean(found) if found is not None else None


def _instance_rows(
    details: dict[str, Any], instance_id: str, now: datetime, tz: tzinfo | None
) -> list[tuple[str, Text | str]]:
    rows: list[tuple[str, Text | str]] = [
        ("Workflow Name", clean(details.get("workflow", ""))),
        ("Instance Id", clean(details.get("id") or instance_id)),
        ("Version Id", clean(details.get("versionId") or "")),
        ("Status", Text(status_label(details.get("status")), style=_status_style(details))),
        ("Trigger", trigger_label(details.get("trigger"))),
        ("Queued", format_date(details.get("queued") or details.get("created"), tz)),
    ]
    if details.get("success") is not None:
        rows.append(("Success", success_label(details["success"])))
    if details.get("start"):
        rows.append(("Start", format_date(details["start"], tz)))
    if details.get("end"):
        rows.append(("End", format_date(details["end"], tz)))
    duration = _between(details.get("start"), details.get("end"), now)
    if duration is not None:
        rows.append(("Duration", human_duration(duration)))
    last = last_successful_step(details)
    if last is not None:
        rows.append(("Last Successful Step", last))
    if details.get("error"):
        rows.append(("Error", Text(error_text(details["error"]), style="red")))
    rollback = details.get("rollback")
    if isinstance(rollback, dict):
        rows.append(("Rollback", _rollback_text(rollback)))
    rows.extend(_restart_and_retention_rows(details, tz))
    return rows


def _restart_and_retention_rows(
    details: dict[str, Any], tz: tzinfo | None
) -> list[tuple[str, Text | str]]:
    """``Restarted`` (when, from which step, with new params or not) and ``Retention``."""
    rows: list[tuple[str, Text | str]] = []
    restarted = details.get("restarted")
    if isinstance(restarted, dict):
        text = format_date(restarted.get("at"), tz)
        origin = restarted.get("from")
        if isinstance(origin, dict):
            text += (
                f' from step "{clean(str(origin.get("name")))}" '
                f"({clean(str(origin.get('type')))}, count {clean(str(origin.get('count')))})"
            )
        else:
            text += " from the beginning"
        text += ", with new params" if restarted.get("new_params") else ", same params"
        rows.append(("Restarted", text))
    parent = details.get("parent")
    if isinstance(parent, dict):
        rows.append(
            ("Parent", _instance_link(parent) + f" (step {clean(str(parent.get('step')))})")
        )
    retention = details.get("retention")
    if isinstance(retention, dict):
        sides = [
            f"{label} {clean(str(retention[key]))}"
            for key, label in (("success_retention", "success"), ("error_retention", "error"))
            if retention.get(key)
        ]
        rows.append(("Retention", ", ".join(sides)))
    return rows


def _rollback_text(rollback: dict[str, Any]) -> Text:
    """The instance's rollback outcome: complete, or failed with the handler's error."""
    if rollback.get("outcome") == "complete":
        return Text("✅ Complete", style="green")
    text = "❌ Failed"
    if rollback.get("error"):
        text += f": {error_text(rollback['error'])}"
    return Text(text, style="red")


def _status_style(details: dict[str, Any]) -> str:
    return {
        "complete": "green",
        "errored": "red",
        "terminated": "red",
        "running": "yellow",
        "waiting": "yellow",
    }.get(str(details.get("status")), "")


def _step_rows(
    step: dict[str, Any],
    *,
    step_output: bool,
    limit: int,
    now: datetime,
    tz: tzinfo | None,
    ended: bool = False,
) -> list[tuple[str, Text | str]]:
    """A step's labelled values; an instance that ``ended`` waits for nothing any more."""
    kind = step.get("type")
    rows: list[tuple[str, Text | str]] = []
    if kind == "termination":
        rows.append(("Type", step_type_label(kind)))
        rows.append(("Trigger", trigger_label(step.get("trigger"))))
        return rows
    rows.append(("Name", clean(step.get("name", ""))))
    rows.append(("Type", step_type_label(kind)))
    if step.get("start"):
        rows.append(("Start", format_date(step["start"], tz)))
    if step.get("end"):
        rows.append(("End", format_date(step["end"], tz)))
    duration = _between(step.get("start"), step.get("end"), now)
    if duration is not None:
        rows.append(("Duration", human_duration(duration)))
    if kind in ("step", "rollback"):
        success = step.get("success")
        rows.append(("Success", success_label(success)))
        retry_at = _retry_at(step) if success is None and not ended else None
        if retry_at is not None:
            rows.append(("Retries At", f"{format_date(retry_at, tz)} ({_relative(retry_at, now)})"))
    elif kind == "sleep":
        wake = parse_time(step.get("wake_at"))
        if wake is not None and not step.get("finished") and not ended:
            rows.append(("Wakes At", f"{format_date(wake, tz)} ({_relative(wake, now)})"))
    elif kind == "runWorkflow":
        child = step.get("child")
        if isinstance(child, dict) and child.get("id"):
            rows.append(("Child", _instance_link(child)))
        rows.append(("Success", success_label(step.get("success"))))
    elif kind == "waitForEvent":
        if step.get("event_type"):
            rows.append(("Event Type", clean(step["event_type"])))
        deadline = parse_time(step.get("timeout_at"))
        if deadline is not None and not step.get("finished") and not ended:
            rows.append(
                ("Times Out At", f"{format_date(deadline, tz)} ({_relative(deadline, now)})")
            )
    if kind in ("step", "waitForEvent", "runWorkflow") and step_output and _has_output(step):
        text = truncate_output(clean(_json_text(step.get("output"))), limit)
        rows.append(("Output", text))
    error = step.get("error")
    if error and (kind not in ("step", "rollback") or not _error_in_attempts(step, error)):
        rows.append(("Error", Text(error_text(error), style="red")))
    return rows


def _has_output(step: dict[str, Any]) -> bool:
    if step.get("type") == "step":
        return step.get("success") is True or step.get("output") is not None
    return bool(step.get("finished")) and not step.get("error")


def _error_in_attempts(step: dict[str, Any], error: object) -> bool:
    return any(a.get("error") == error for a in step.get("attempts") or [])


def _retry_at(step: dict[str, Any]) -> datetime | None:
    """When a running step tries again: the server's ``retries_at``, else wrangler's guess
    (end of the last failed attempt plus the configured delay)."""
    given = parse_time(step.get("retries_at"))
    if given is not None:
        return given
    attempts = step.get("attempts") or []
    if not attempts or attempts[-1].get("success") is not False:
        return None
    ended = parse_time(attempts[-1].get("end"))
    delay = ((step.get("config") or {}).get("retries") or {}).get("delay")
    if ended is None or delay is None:
        return None
    try:
        seconds = to_seconds(delay)
    except ValidationError:
        return None
    return datetime.fromtimestamp(ended.timestamp() + seconds, tz=timezone.utc)


def attempts_table(
    attempts: Sequence[dict[str, Any]], now: datetime, tz: tzinfo | None = None
) -> Table:
    with_errors = any(a.get("error") for a in attempts)
    with_cpu = any(a.get("cpu") is not None for a in attempts)  # older histories have none
    table = Table(box=box.SQUARE, show_edge=True, header_style="bold", pad_edge=True)
    for column in ("Start", "End", "Duration", *(("CPU",) if with_cpu else ()), "State"):
        table.add_column(column, no_wrap=True)
    if with_errors:
        table.add_column("Error", overflow="fold")
    for attempt in attempts:
        duration = _between(attempt.get("start"), attempt.get("end"), now)
        success = attempt.get("success")
        state = Text(
            attempt_state_label(success),
            style="yellow" if success is None else "green" if success else "red",
        )
        cells: list[Text | str] = [
            format_date(attempt.get("start"), tz),
            format_date(attempt.get("end"), tz) if attempt.get("end") else "",
            human_duration(duration) if duration is not None else "",
            *((_cpu_cell(attempt.get("cpu")),) if with_cpu else ()),
            state,
        ]
        if with_errors:
            error = attempt.get("error")
            cells.append(Text(error_text(error), style="red") if error else "")
        table.add_row(*cells)
    return table


def _cpu_cell(seconds: object) -> str:
    """The CPU time an attempt's body used, beside its wall time (blank: not measured)."""
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        return ""
    return short_duration(seconds)  # "12 ms": short, so the table still fits 100 columns


class _Indented:
    def __init__(self, renderable: RenderableType, indent: int) -> None:
        self.renderable = renderable
        self.indent = indent

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        width = max(options.max_width - self.indent, 10)
        lines = console.render_lines(self.renderable, options.update_width(width), pad=False)
        pad = " " * self.indent
        for line in lines:
            row = Text(pad)
            for segment in line:
                if not segment.control:
                    row.append(segment.text, segment.style)
            row.rstrip()
            yield row


def describe_instance(
    details: dict[str, Any],
    *,
    instance_id: str | None = None,
    latest: bool = False,
    step_output: bool = True,
    truncate_output_limit: int = 5000,
    now: datetime | None = None,
    tz: tzinfo | None = None,
    timeline: bool = True,
) -> Group:
    """The ``wf instances describe`` view: wrangler's layout, then the step timeline."""
    now = now or datetime.now(timezone.utc)
    shown_id = clean(details.get("id") or instance_id or "")
    header = "Describing latest instance:" if latest else f"Describing instance {shown_id}:"
    parts: list[RenderableType] = [
        Text(header),
        Labelled(_instance_rows(details, shown_id, now, tz)),
        Text("Steps:", style="bold"),
    ]
    # Steps left unfinished by an instance that ended stopped with it, not now.
    ended = parse_time(details.get("end"))
    horizon = ended or now
    for step in details.get("steps") or []:
        rows = _step_rows(
            step,
            step_output=step_output,
            limit=truncate_output_limit,
            now=horizon,
            tz=tz,
            ended=ended is not None,
        )
        parts.append(Text())
        parts.append(Labelled(rows, indent=2))
        if step.get("type") in ("step", "rollback") and step.get("attempts"):
            parts.append(_Indented(attempts_table(step["attempts"], horizon, tz), 2))
    if timeline:
        parts.append(Text())
        parts.append(Timeline(details, now=now, tz=tz))
    return Group(*parts)


# ---- the timeline ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Mark:
    glyph: str
    style: str
    legend: str


MARKS = {
    "ok": _Mark("█", "green", "success"),
    "failed": _Mark("▓", "red", "failed attempt"),
    "running": _Mark("▒", "yellow", "running"),
    "retry": _Mark("─", "dim red", "retry wait"),
    "sleep": _Mark("┈", "blue", "sleep"),
    "sleeping": _Mark("┈", "yellow", "sleep"),
    "wait": _Mark("╌", "magenta", "waiting for event"),
    "waiting": _Mark("╌", "yellow", "waiting for event"),
    "wait_failed": _Mark("╌", "red", "waiting for event"),
    "terminated": _Mark("✕", "bold red", "terminated"),
}
_LEGEND_ORDER = ("ok", "failed", "running", "retry", "sleep", "wait", "terminated")
_LEGEND_OF = {
    "sleeping": "sleep",
    "waiting": "wait",
    "wait_failed": "wait",
}


@dataclass
class _Row:
    label: str
    spans: list[tuple[float, float, str]]
    status: Text


class Timeline:
    """Every step on one time axis, from the instance's start to its end (or now).

    Attempts of a step are separate segments (``█`` succeeded, ``▓`` failed, ``▒`` running) with
    the retry waits between them drawn as ``─``; sleeps are ``┈`` and event waits ``╌``; colours
    follow the outcome (green success, red failure, yellow still running). A legend names the
    marks used.
    """

    MIN_BAR = 10
    MAX_LABEL = 24
    MAX_STATUS = 30

    def __init__(
        self, details: dict[str, Any], *, now: datetime | None = None, tz: tzinfo | None = None
    ) -> None:
        self.details = details
        self.now = now or datetime.now(timezone.utc)
        self.tz = tz

    # -- what to draw
    def _bounds(self) -> tuple[datetime, datetime] | None:
        details = self.details
        steps = details.get("steps") or []
        starts = [parse_time(details.get("start"))] + [parse_time(s.get("start")) for s in steps]
        begin = min((s for s in starts if s is not None), default=None)
        if begin is None:
            return None
        ends: list[datetime | None] = [parse_time(details.get("end")) or self.now, begin]
        for step in steps:
            ends.append(parse_time(step.get("end")))
            ends.extend(parse_time(a.get("end")) for a in step.get("attempts") or [])
        return begin, max(e for e in ends if e is not None)

    def _rows(self, begin: datetime, end: datetime, ended: bool) -> list[_Row]:
        rows: list[_Row] = []
        stop = end.timestamp()
        for step in self.details.get("steps") or []:
            kind = step.get("type")
            if kind == "termination":
                trigger = step.get("trigger") or {}
                source = "wf CLI" if trigger.get("via") == "cli" else trigger.get("source")
                source = clean(source or "api")
                rows.append(
                    _Row("terminated", [(stop, stop, "terminated")], Text(f"by {source}", "red"))
                )
                continue
            start = parse_time(step.get("start"))
            if start is None:
                continue
            finish = parse_time(step.get("end"))
            first, last = start.timestamp(), finish.timestamp() if finish else stop
            label = clean(step.get("name", ""))
            if kind in ("step", "rollback"):
                if kind == "rollback":
                    label += " ↩"
                rows.append(self._do_row(label, step, first, last, stop, begin, ended))
                continue
            took = short_duration(last - first)
            if kind == "sleep":
                if step.get("finished") or finish is not None:
                    mark, status = "sleep", Text(f"✓ {took}", "green")
                elif ended:
                    mark, status = "sleeping", Text("… unfinished", "yellow")
                else:
                    mark, status = "sleeping", self._until("until", step.get("wake_at"), begin)
            else:
                error = step.get("error")
                if error:
                    name = error.get("name") if isinstance(error, dict) else error
                    mark, status = "wait_failed", Text(f"✗ {clean(name)}", "red")
                elif step.get("finished"):
                    what = "child" if kind == "runWorkflow" else "event"
                    mark, status = "wait", Text(f"✓ {what} after {took}", "green")
                elif kind == "runWorkflow":
                    word = "unfinished" if ended else "for its child"
                    mark, status = "waiting", Text(f"… {word}", "yellow")
                else:
                    event = clean(step.get("event_type") or "event")
                    word = "unfinished" if ended else f'for "{event}"'
                    mark, status = "waiting", Text(f"… {word}", "yellow")
            rows.append(_Row(label, [(first, last, mark)], status))
        return rows

    def _until(self, word: str, when: object, begin: datetime) -> Text:
        moment = parse_time(when)
        if moment is None:
            return Text("…", "yellow")
        return Text(f"… {word} {format_clock(moment, self.tz, reference=begin)}", "yellow")

    def _do_row(
        self,
        label: str,
        step: dict[str, Any],
        first: float,
        last: float,
        stop: float,
        begin: datetime,
        ended: bool,
    ) -> _Row:
        spans: list[tuple[float, float, str]] = []
        attempts = [a for a in step.get("attempts") or [] if parse_time(a.get("start"))]
        previous_end: float | None = None
        for attempt in attempts:
            start = parse_time(attempt.get("start"))
            assert start is not None
            finish = parse_time(attempt.get("end"))
            a_first, a_last = start.timestamp(), finish.timestamp() if finish else stop
            if previous_end is not None and a_first > previous_end:
                spans.append((previous_end, a_first, "retry"))
            outcome = attempt.get("success")
            spans.append((a_first, a_last, _outcome(outcome)))
            previous_end = a_last
        success = step.get("success")
        waiting_retry = success is None and bool(attempts) and attempts[-1].get("success") is False
        if waiting_retry and previous_end is not None and previous_end < stop:
            spans.append((previous_end, stop, "retry"))
        if not spans:
            spans.append((first, last, _outcome(success)))
        count = len(attempts)
        tries = f", {count} attempts" if count > 1 else ""
        if success is True:
            status = Text(f"✓ {short_duration(last - first)}{tries}", "green")
        elif success is False:
            status = Text(f"✗ {short_duration(last - first)}{tries}", "red")
        elif ended:
            status = Text(f"… unfinished{tries}", "yellow")
        elif waiting_retry:
            retry = _retry_at(step)
            at = f" at {format_clock(retry, self.tz, reference=begin)}" if retry else ""
            status = Text(f"… retry {count + 1}{at}", "yellow")
        else:
            status = Text(f"▶ attempt {max(count, 1)}", "yellow")
        return _Row(label, spans, status)

    # -- drawing
    def _widths(self, rows: Sequence[_Row], width: int) -> tuple[int, int, int]:
        """(label, bar, status) widths: names and outcomes get at most a quarter each."""
        label_w = max(cell_len(r.label) for r in rows)
        label_w = max(min(label_w, self.MAX_LABEL, max(width // 4, 4)), 1)
        status_w = max(r.status.cell_len for r in rows)
        status_w = min(status_w, self.MAX_STATUS, max(width // 4, 0))
        bar_w = width - label_w - 1 - (status_w + 1 if status_w else 0)
        if bar_w < self.MIN_BAR:
            status_w, bar_w = 0, max(width - label_w - 1, self.MIN_BAR)
        return label_w, bar_w, status_w

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        bounds = self._bounds()
        if bounds is None:
            yield Text("Timeline: not started yet", style="bold")
            return
        begin, end = bounds
        ended = parse_time(self.details.get("end")) is not None
        total = (end - begin).total_seconds()
        finish = format_clock(end, self.tz, reference=begin) if ended else "now"
        yield Text.assemble(
            ("Timeline:", "bold"),
            f" {human_duration(total)}, {format_date(begin, self.tz)} → {finish}",
        )
        rows = self._rows(begin, end, ended)
        if not rows:
            yield Text("  no steps yet", style="dim")
            return
        label_w, bar_w, status_w = self._widths(rows, options.max_width)
        origin, span = begin.timestamp(), max(total, 1e-3)
        used: set[str] = set()
        for row in rows:
            cells = _paint(row.spans, origin, span, bar_w)
            used.update(_LEGEND_OF.get(kind, kind) for _, kind in cells if kind)
            line = Text(row.label)
            line.truncate(label_w, overflow="ellipsis", pad=True)
            line.append(" ")
            line.append_text(_cells_text(cells))
            if status_w:
                status = row.status.copy()
                status.truncate(status_w, overflow="ellipsis")
                line.append(" ")
                line.append_text(status)
            line.rstrip()
            yield line
        indent = " " * (label_w + 1)
        yield Text(indent + "├" + "─" * max(bar_w - 2, 0) + "┤", style="dim")
        left = format_clock(begin, self.tz)
        right = f"+{short_duration(total)}" if ended else f"now (+{short_duration(total)})"
        gap = max(bar_w - len(left) - len(right), 1)
        yield Text(indent + left + " " * gap + right, style="dim")
        yield from _legend(used, options.max_width)


def _outcome(success: object) -> str:
    return "running" if success is None else "ok" if success else "failed"


def _paint(
    spans: Iterable[tuple[float, float, str]], origin: float, span: float, width: int
) -> list[tuple[str, str]]:
    """Cells ``(glyph, kind)`` of one row: each span covers at least one cell."""
    cells: list[tuple[str, str]] = [(" ", "")] * width
    # Retry waits first: the attempts around them win the cells they share.
    for start, end, kind in sorted(spans, key=lambda s: s[2] != "retry"):
        first = min(max(int((start - origin) / span * width + 1e-9), 0), width - 1)
        last = min(max(math.ceil((end - origin) / span * width - 1e-9), first + 1), width)
        for column in range(first, last):
            cells[column] = (MARKS[kind].glyph, kind)
    return cells


def _cells_text(cells: Sequence[tuple[str, str]]) -> Text:
    text = Text()
    run, run_kind = "", ""
    for glyph, kind in [*cells, ("", "end")]:
        if kind != run_kind and run:
            text.append(run, style=MARKS[run_kind].style if run_kind else "")
            run = ""
        run, run_kind = run + glyph, kind
    return text


def _legend(used: set[str], width: int) -> Iterable[Text]:
    """The marks used, as many to a line as fit."""
    line = Text()
    for key in _LEGEND_ORDER:
        if key not in used:
            continue
        mark = MARKS[key]
        item = Text.assemble((mark.glyph, mark.style), f" {mark.legend}")
        if line.plain and line.cell_len + 2 + item.cell_len > width:
            yield line
            line = Text()
        if line.plain:
            line.append("  ")
        line.append_text(item)
    if line.plain:
        yield line


# ---- lists and workflows --------------------------------------------------------------------


def instances_table(instances: Sequence[dict[str, Any]], tz: tzinfo | None = None) -> Table:
    """``Instance ID │ Version │ Created │ Modified │ Status`` (wrangler's instances list)."""
    table = Table(box=box.SQUARE, header_style="bold")
    table.add_column("Instance ID", overflow="fold")
    table.add_column("Version", overflow="fold")
    table.add_column("Created", no_wrap=True)
    table.add_column("Modified", no_wrap=True)
    table.add_column("Status", no_wrap=True)
    for instance in instances:
        table.add_row(
            clean(instance.get("id", "")),
            clean(instance.get("version_id") or ""),
            format_date(instance.get("created_on"), tz),
            format_date(instance.get("modified_on"), tz),
            Text(status_label(instance.get("status")), style=_status_style(instance)),
        )
    return table


def _counts(workflow: dict[str, Any]) -> dict[str, int]:
    counts = workflow.get("instances")
    if not isinstance(counts, dict):
        return {}
    return {k: v for k, v in counts.items() if isinstance(v, int) and not isinstance(v, bool)}


def workflows_table(workflows: Sequence[dict[str, Any]]) -> Table:
    """``Name │ Binding │ Class name │ Instances`` and the non-zero counts by status."""
    table = Table(box=box.SQUARE, header_style="bold")
    table.add_column("Name", overflow="fold")
    table.add_column("Binding", overflow="fold")
    table.add_column("Class name", overflow="fold")
    table.add_column("Instances", justify="right", no_wrap=True)
    table.add_column("By status", overflow="fold")
    for workflow in workflows:
        counts = _counts(workflow)
        by_status = ", ".join(
            f"{counts[status]} {STATUS_NAMES[status].lower()}"
            for status in STATUS_NAMES
            if counts.get(status)
        )
        table.add_row(
            clean(workflow.get("name", "")),
            clean(workflow.get("binding") or ""),
            clean(workflow.get("class_name") or ""),
            str(sum(counts.values())),
            by_status,
        )
    return table


def describe_workflow(workflow: dict[str, Any], tz: tzinfo | None = None) -> Group:
    """``wf workflows describe``: labelled values, then ``Instance Status Counts:``."""
    rows: list[tuple[str, Text | str]] = [
        ("Name", clean(workflow.get("name", ""))),
        ("Binding", clean(workflow.get("binding") or "")),
        ("Class Name", clean(workflow.get("class_name") or "")),
        ("Script Name", clean(workflow.get("script_name") or "")),
        ("Version Id", clean(workflow.get("version_id") or "")),
    ]
    if workflow.get("created_on"):
        rows.append(("Created On", format_date(workflow["created_on"], tz)))
    if workflow.get("modified_on"):
        rows.append(("Modified On", format_date(workflow["modified_on"], tz)))
    counts = _counts(workflow)
    count_rows: list[tuple[str, Text | str]] = [
        (name, str(counts.get(status, 0))) for status, name in STATUS_NAMES.items()
    ]
    parts: list[RenderableType] = [
        Labelled(rows),
        Text("Instance Status Counts:", style="bold"),
        Labelled(count_rows, 2),
    ]
    schedules = workflow.get("schedules")
    if isinstance(schedules, list) and schedules:
        parts.append(Text("Schedules (UTC):", style="bold"))
        parts.append(Labelled([_schedule_row(s) for s in schedules], 2))
    return Group(*parts)


def _schedule_row(schedule: object) -> tuple[str, Text | str]:
    """One schedule of ``wf workflows describe``: its cron, then its next firing in UTC and
    what it means in words."""
    found = schedule if isinstance(schedule, dict) else {}
    text = Text("next ")
    moment = parse_time(found.get("next"))
    text.append(_utc(moment.timestamp()) if moment is not None else "never", style="bold")
    if found.get("description"):
        text.append(f"  ({clean(found['description'])})", style="dim")
    return clean(found.get("cron", "?")), text


# ---- wf serve: deploy, versions, secrets -----------------------------------------------------


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def upload_view(files: Sequence[tuple[str, int]], skipped: Sequence[tuple[str, str]] = ()) -> Group:
    """What ``wf deploy`` sends: ``Uploading 3 files (4.2 KiB)…``, then each file and its size,
    then what was left out and why (symlinks, special files)."""
    from wf.bundle import format_size

    total = sum(size for _, size in files)
    header = Text(f"Uploading {_plural(len(files), 'file')} ({format_size(total)})…")
    grid = Table.grid(padding=(0, 2, 0, 0))
    grid.add_column(overflow="fold")
    grid.add_column(justify="right", no_wrap=True)
    for path, size in files:
        grid.add_row(clean(path), Text(format_size(size), style="dim"))
    parts: list[RenderableType] = [header, _Indented(grid, 2)]
    if skipped:
        parts.append(Text(f"Skipped {_plural(len(skipped), 'file')}:", style="yellow"))
        left_out = Table.grid(padding=(0, 2, 0, 0))
        left_out.add_column(overflow="fold")
        left_out.add_column(style="dim")
        for path, reason in skipped:
            left_out.add_row(clean(path), clean(reason))
        parts.append(_Indented(left_out, 2))
    return Group(*parts)


def deployed_workflows_table(workflows: Sequence[dict[str, Any]]) -> Table:
    """``Name │ Binding │ Class name``: the workflows a deployed version activated."""
    table = Table(box=box.SQUARE, header_style="bold")
    table.add_column("Name", overflow="fold")
    table.add_column("Binding", overflow="fold")
    table.add_column("Class name", overflow="fold")
    for workflow in workflows:
        table.add_row(
            clean(workflow.get("name", "")),
            clean(workflow.get("binding") or ""),
            clean(workflow.get("class_name") or ""),
        )
    return table


def deployed_view(result: dict[str, Any]) -> Group:
    """``✨ Deployed version <id>`` and its workflows, or ``Version <id> is already active``."""
    version = clean(result.get("version_id") or "?")
    if result.get("already_active"):
        return Group(Text(f"Version {version} is already active"))
    workflows = [w for w in result.get("workflows") or [] if isinstance(w, dict)]
    parts: list[RenderableType] = [Text(f"✨ Deployed version {version}")]
    if workflows:
        parts.append(deployed_workflows_table(workflows))
    return Group(*parts)


def _yes_no(value: object, yes: str = "Yes") -> Text:
    return Text(yes, style="green") if value is True else Text("No", style="dim")


def versions_table(versions: Sequence[dict[str, Any]], tz: tzinfo | None = None) -> Table:
    """``Version Id │ Created │ Active │ Loaded │ Unfinished`` (newest first, as the API sends)."""
    table = Table(box=box.SQUARE, header_style="bold")
    table.add_column("Version Id", overflow="fold")
    table.add_column("Created", no_wrap=True)
    table.add_column("Active", no_wrap=True)
    table.add_column("Loaded", no_wrap=True)
    table.add_column("Unfinished", justify="right", no_wrap=True)
    for version in versions:
        unfinished = version.get("unfinished")
        table.add_row(
            clean(version.get("id", "")),
            format_date(version.get("created_on"), tz),
            _yes_no(version.get("active"), "✅ Yes"),
            _yes_no(version.get("loaded")),
            str(unfinished) if isinstance(unfinished, int) else "",
        )
    return table


def secrets_table(secrets: Sequence[dict[str, Any]], tz: tzinfo | None = None) -> Table:
    """``Name │ Updated`` (values never leave the server)."""
    table = Table(box=box.SQUARE, header_style="bold")
    table.add_column("Name", overflow="fold")
    table.add_column("Updated", no_wrap=True)
    for secret in secrets:
        table.add_row(clean(secret.get("name", "")), format_date(secret.get("updated_on"), tz))
    return table


# ---- the dev server's terminal --------------------------------------------------------------


def _banner_line(console: Console, label: str, value: Text) -> None:
    """``  ➜ Label:     value``, the values of every line in one column."""
    console.print(Text.assemble("  ➜ ", (label, "bold"), " " * (11 - len(label)), value))


def banner(
    console_or_none: Console | None,
    url: str,
    project: str,
    workflows: list[tuple[str, str, str]],
    state_dir: str,
    version_id: str | None,
    database: str | None = None,
    schedules: list[tuple[str, str, float | None]] | None = None,
) -> None:
    """What ``wf dev`` prints once it listens: where, which workflows, where the state is
    (``database``: the database, when it is not the state folder's SQLite file, its password
    already hidden), and the cron schedules as (workflow, cron, next firing)."""
    console = console_or_none or _console()
    title = Text.assemble(("wf dev", "bold cyan"), "  project ", (f'"{clean(project)}"', "bold"))
    if version_id:
        title.append(f"  version {clean(version_id)}", style="dim")
    console.print(title)
    base = url.rstrip("/")
    _banner_line(console, "Server:", Text(clean(url), "cyan underline"))
    _banner_line(
        console,
        "API:",
        Text.assemble(clean(base + "/api"), ("  (OpenAPI at /api/openapi.json)", "dim")),
    )
    _banner_line(console, "Dashboard:", Text(clean(base + "/"), "cyan underline"))
    _banner_line(console, "State:", Text(clean(state_dir)))
    if database:
        _banner_line(console, "Database:", Text(clean(database)))
    if not workflows:
        console.print(Text("  no workflows", style="yellow"))
        return
    grid = Table.grid(padding=(0, 3, 0, 0))
    grid.add_column(style="bold")
    grid.add_column()
    grid.add_column()
    grid.add_row(
        Text("Workflow", style="dim"), Text("Binding", style="dim"), Text("Class", style="dim")
    )
    for name, binding, class_name in workflows:
        grid.add_row(
            Text(clean(name)), Text(clean(binding), style="magenta"), Text(clean(class_name))
        )
    console.print(_Indented(grid, 4))
    if schedules:
        console.print(Text.assemble("  ➜ ", ("Schedules:", "bold"), " (UTC)"))
        table = Table.grid(padding=(0, 3, 0, 0))
        for name, cron, next_at in schedules:
            table.add_row(
                Text(clean(name), style="bold"),
                Text(clean(cron), style="cyan"),
                Text(f"next {_utc(next_at)}", style="dim"),
            )
        console.print(_Indented(table, 4))


def _utc(epoch: float | None) -> str:
    """A firing time as the schedules' own clock says it: ``2026-07-03 09:00:00 UTC``."""
    if epoch is None:
        return "never"
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _hhmmss(moment: datetime) -> str:
    return moment.strftime("%H:%M:%S")


def _at(epoch: object, now: datetime) -> str:
    """A wall-clock time for a notice: ``12:31:02``, with the date when it is not today."""
    if not isinstance(epoch, (int, float)) or isinstance(epoch, bool) or not math.isfinite(epoch):
        return "?"
    moment = datetime.fromtimestamp(epoch).astimezone()
    if moment.date() != now.date():
        return moment.strftime("%Y-%m-%d %H:%M:%S")
    return _hhmmss(moment)


def _one_line(text: str) -> str:
    return " ".join(text.split()) if "\n" in text or "\r" in text else text


def _quoted(value: object) -> str:
    return f'"{clean(value)}"'


def _number(value: object) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def notice_line(notice: Any, when: datetime | None = None) -> Text:
    """One engine notice (``wf.engine.runner.Notice``) as one styled line for ``wf dev``:
    ``12:01:02 purchase/abc123 ✓ step "send email-1" done in 42 ms``."""
    at = getattr(notice, "at", None)
    if when is None and isinstance(at, (int, float)) and math.isfinite(at):
        when = datetime.fromtimestamp(at)
    now = (when or datetime.now()).astimezone()
    detail: dict[str, Any] = dict(getattr(notice, "detail", None) or {})
    kind = str(getattr(notice, "kind", "?"))
    step = getattr(notice, "step", None)
    line = Text.assemble(
        (_hhmmss(now), "dim"),
        " ",
        (f"{clean(notice.workflow)}/{clean(notice.instance_id)}", "cyan"),
        " ",
    )
    name = _quoted(step) if step is not None else ""
    error = _one_line(error_text(detail["error"])) if detail.get("error") else ""
    if kind == "queued" and detail.get("cron"):
        text = f"⏰ queued by cron {_quoted(detail['cron'])}"
        next_at = _number(detail.get("next"))
        if next_at is not None:
            text += f"; next firing {_at(next_at, now)}"
        line.append(text, style="dim")
    elif kind == "queued":
        source = detail.get("trigger")
        line.append("⌛ queued" + (f" via {clean(source)}" if source else ""), style="dim")
    elif kind == "started":
        line.append("▶ started", style="yellow")
    elif kind == "step_started":
        line.append(f"▸ step {name} started", style="dim")
    elif kind == "woke":
        line.append(f"⏰ {name} woke", style="blue")
    elif kind == "deleted":
        line.append("🗑 deleted", style="red")
    elif kind == "step_done":
        # The attempt that succeeded, then the time since the first (waits, downtime), as
        # describe shows an attempt's duration and the step's.
        text = f"✓ step {name} done"
        ms, total_ms = _number(detail.get("ms")), _number(detail.get("total_ms"))
        if ms is not None:
            text += f" in {short_duration(ms / 1000)}"
        attempt = detail.get("attempt")
        if isinstance(attempt, int) and attempt > 1:
            since = f", {short_duration(total_ms / 1000)} since the first" if total_ms else ""
            text += f" (attempt {attempt}{since})"
        line.append(text, style="green")
    elif kind == "attempt_failed":
        attempt = detail.get("attempt")
        which = f"attempt {attempt} of {name}" if attempt is not None else f"an attempt of {name}"
        delay = detail.get("delay")
        retry = (
            f"retrying in {short_duration(delay)}"
            if isinstance(delay, (int, float)) and not isinstance(delay, bool) and delay > 0
            else "retrying now"
        )
        line.append(f"✗ {which} failed: {error or 'error'}; {retry}", style="red")
    elif kind == "step_failed":
        attempt = detail.get("attempt")
        after = f" after {attempt} attempts" if isinstance(attempt, int) and attempt > 1 else ""
        line.append(f"✗ step {name} failed{after}: {error or 'error'}", style="bold red")
    elif kind == "sleeping":
        line.append(f"💤 {name} sleeping until {_at(detail.get('until'), now)}", style="blue")
    elif kind == "waiting_event":
        text = f"👀 {name} waiting for event {_quoted(detail.get('event_type', '?'))}"
        if detail.get("until") is not None:
            text += f" (until {_at(detail['until'], now)})"
        line.append(text, style="magenta")
    elif kind == "child_started":
        child = f"{clean(detail.get('workflow', '?'))}/{clean(detail.get('id', '?'))}"
        line.append(f"🧩 step {name} started child {child}", style="blue")
    elif kind == "event_sent":
        line.append(f"📤 event {_quoted(detail.get('event_type', '?'))} sent", style="magenta")
    elif kind == "event_received":
        line.append(
            f"📩 {name} received event {_quoted(detail.get('event_type', '?'))}", style="magenta"
        )
    elif kind == "hibernated":
        wake = detail.get("wake_at")
        text = "hibernated" + (f" until {_at(wake, now)}" if wake is not None else "")
        line.append(f"🌙 {text}", style="dim")
    elif kind == "paused":
        line.append("⏸ paused", style="yellow")
    elif kind == "resumed":
        line.append("▶ resumed", style="yellow")
    elif kind == "terminated":
        source = detail.get("source")
        line.append("🚫 terminated" + (f" via {clean(source)}" if source else ""), style="red")
    elif kind == "restarted":
        line.append("🔄 restarted", style="yellow")
    elif kind == "rolling_back":
        source = detail.get("source")
        line.append(
            "↩️ terminating with rollbacks" + (f" via {clean(source)}" if source else ""),
            style="yellow",
        )
    elif kind == "rollback_started":
        steps = detail.get("steps")
        count = f" {_plural(steps, 'step')}" if isinstance(steps, int) and steps > 0 else ""
        line.append(f"↩️ rolling back{count} after: {error or 'error'}", style="yellow")
    elif kind == "rolled_back":
        if detail.get("outcome") == "complete":
            line.append("↩️ rollback complete", style="green")
        else:
            line.append(f"↩️ rollback failed: {error or 'error'}", style="bold red")
    elif kind == "completed":
        line.append("✅ completed", style="bold green")
    elif kind == "errored" and _is_count(detail.get("crashes")):
        line.append(
            f"💥 errored: killed its process {detail['crashes']} times in a row; restart it once "
            "the code is fixed",
            style="bold red",
        )
    elif kind == "errored":
        line.append(f"❌ errored: {error or 'error'}", style="bold red")
    else:
        extra = f" {name}" if name else ""
        line.append(f"{clean(kind)}{extra}", style="dim")
    return line


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


_HELD_NAMES = {"step_done": "steps done", "event_received": "events received"}


def held_line(held: dict[str, int], seconds: float, when: datetime | None = None) -> Text:
    """What a flood of notices left unprinted: ``… 2,310 more in 1 s: 1,540 steps done, 770
    completed (wf instances list shows every instance)``."""
    now = (when or datetime.now()).astimezone()
    total = sum(held.values())
    parts = ", ".join(
        f"{count:,} {_HELD_NAMES.get(kind, clean(kind).replace('_', ' '))}"
        for kind, count in sorted(held.items(), key=lambda item: -item[1])
    )
    return Text.assemble(
        (_hhmmss(now), "dim"),
        " ",
        (
            f"… {total:,} more in {short_duration(seconds)}: {parts} "
            "(wf instances list shows every instance)",
            "dim",
        ),
    )


def print_held(held: dict[str, int], seconds: float) -> None:
    _console().print(held_line(held, seconds), soft_wrap=True)


def print_notices(notices: list[Any]) -> None:
    """Several notices, one line each, in one print: each print costs Rich a look at the
    terminal (is it one, how wide) whatever it prints."""
    if notices:
        lines = Text("\n").join(notice_line(notice) for notice in notices)
        _console().print(lines, soft_wrap=True)


def print_error_line(message: str) -> None:
    """A load error of the project (``workflows.py:12: SyntaxError: ...``) on stderr, in red."""
    _console(stderr=True).print(Text(f"✗ {clean(message)}", style="bold red"), soft_wrap=True)


# ---- printing -------------------------------------------------------------------------------


_consoles: dict[tuple[bool, int], Console] = {}


PIPED_WIDTH = 160


def _console(stderr: bool = False) -> Console:
    """A console on the current stdout (or stderr), made once per stream: the dev server prints
    a line per notice, and a swapped ``sys.stdout`` (typer's CliRunner) gets its own."""
    stream = sys.stderr if stderr else sys.stdout
    key = (stderr, id(stream))
    console = _consoles.get(key)
    if console is None or console.file is not stream:
        if len(_consoles) > 16:
            _consoles.clear()
        console = Console(file=stream, highlight=False, emoji=False, markup=False)
        if not console.is_terminal and "COLUMNS" not in os.environ:
            # Piped or redirected: no terminal to fit, so do not fold ids at 80 columns.
            console.width = PIPED_WIDTH
        _consoles[key] = console
    return console


def show(*renderables: RenderableType) -> None:
    console = _console()
    for renderable in renderables:
        console.print(renderable)


def print_instance(details: dict[str, Any], **options: Any) -> None:
    show(describe_instance(details, **options))


def print_instances(instances: Sequence[dict[str, Any]], page: int) -> None:
    noun = "instance" if len(instances) == 1 else "instances"
    show(Text(f"Showing {len(instances)} {noun} from page {page}:"), instances_table(instances))


def print_workflows(workflows: Sequence[dict[str, Any]], page: int) -> None:
    noun = "workflow" if len(workflows) == 1 else "workflows"
    show(Text(f"Showing {len(workflows)} {noun} from page {page}:"), workflows_table(workflows))


def print_workflow(workflow: dict[str, Any]) -> None:
    show(describe_workflow(workflow))


def print_upload(files: Sequence[tuple[str, int]], skipped: Sequence[tuple[str, str]] = ()) -> None:
    show(upload_view(files, skipped))


def print_deployed(result: dict[str, Any]) -> None:
    show(deployed_view(result))


def print_versions(name: str, versions: Sequence[dict[str, Any]]) -> None:
    count = _plural(len(versions), "version")
    header = f'Showing {count} of workflow "{clean(name)}", newest first:'
    show(Text(header), versions_table(versions))


def print_secrets(secrets: Sequence[dict[str, Any]]) -> None:
    show(Text(f"Showing {_plural(len(secrets), 'secret')}:"), secrets_table(secrets))


def print_info(message: str) -> None:
    """A line of the dev server's own story (``reloaded after changes to workflows.py``)."""
    now = datetime.now().astimezone()
    _console().print(Text.assemble((_hhmmss(now), "dim"), " ", clean(message)), soft_wrap=True)


def print_token(token: str, path: str, rotated: bool) -> None:
    """The API token of ``wf serve``, shown once."""
    what = "new API token" if rotated else "API token"
    _console().print(
        Text.assemble(
            ("🔑 ", ""),
            (f"{what} (shown once; stored in {path}): ", "bold"),
            (token, "bold green"),
        ),
        soft_wrap=True,  # a token must stay on one line to be copied
    )


def print_serving(url: str, state_dir: str, cluster: str | None = None) -> None:
    """``cluster``: which node this is and which database the nodes share (password hidden)."""
    console = _console()
    console.print(Text.assemble(("wf serve", "bold"), "  ", ("➜ ", "green"), url))
    _banner_line(console, "Dashboard:", Text(clean(url.rstrip("/") + "/"), "cyan underline"))
    console.print(Text(f"  state: {state_dir}", style="dim"))
    if cluster:
        console.print(Text(f"  cluster: {clean(cluster)}", style="dim"))
    console.print(
        Text("  deploy with: wf deploy --url " + url + " (token: WF_API_TOKEN)", style="dim")
    )


def print_warning(message: str) -> None:
    _console(stderr=True).print(Text(f"⚠️  {message}", style="yellow"))


# ---- wf stats -----------------------------------------------------------------------------------

NOT_MEASURED = "—"  # a figure with nothing behind it (no attempt yet, CPU time not recorded)


def _ms_text(value: object) -> str:
    number = _number(value)
    return NOT_MEASURED if number is None else short_duration(number / 1000)


def _stat_line(label: str, value: str) -> Text:
    line = Text(f"{label:<11}", style="bold")
    line.append(value)
    return line


def stats_view(stats: dict[str, Any], window: str, tz: tzinfo | None = None) -> Group:
    """``wf stats``: per workflow, its counts, throughput and durations, then its slowest and
    most failing steps (the JSON of ``GET /api/stats``)."""
    since, until = parse_time(stats.get("since")), parse_time(stats.get("until"))
    span = ""
    if since is not None and until is not None:
        span = f" ({format_date(stats.get('since'), tz)} → {format_date(stats.get('until'), tz)})"
    parts: list[RenderableType] = []
    for workflow in stats.get("workflows") or []:
        if parts:
            parts.append(Text(""))
        parts.extend(_workflow_stats(workflow, f"last {window}{span}"))
    if not parts:
        parts.append(Text("No workflows."))
    return Group(*parts)


def _workflow_stats(workflow: dict[str, Any], window: str) -> list[RenderableType]:
    counts = {k: v for k, v in (workflow.get("counts") or {}).items() if _is_count(v)}
    by_status = ", ".join(
        f"{counts[s]} {STATUS_NAMES[s].lower()}" for s in STATUS_NAMES if counts.get(s)
    )
    finished = workflow.get("finished") or {}
    durations = workflow.get("duration_ms") or {}
    attempts = workflow.get("attempts") or {}
    title = Text(f"📊 {clean(workflow.get('workflow', ''))}", style="bold")
    title.append(f" · {window}", style="dim")
    total = sum(counts.values())
    lines: list[RenderableType] = [
        title,
        _stat_line("Instances", f"{total}" + (f" · {by_status}" if by_status else "")),
        _stat_line(
            "Finished",
            f"{finished.get('total', 0)} ({finished.get('complete', 0)} completed, "
            f"{finished.get('errored', 0)} errored, {finished.get('terminated', 0)} terminated)"
            f" · {trim_decimal(float(workflow.get('throughput_per_minute') or 0))}/min",
        ),
        _stat_line(
            "Duration",
            " · ".join(f"p{p} {_ms_text(durations.get(f'p{p}_ms'))}" for p in (50, 95, 99)),
        ),
        _stat_line(
            "Attempts",
            f"{attempts.get('total', 0)} ({attempts.get('failed', 0)} failed) · wall "
            f"{_ms_text(attempts.get('wall_ms'))} · CPU {_ms_text(attempts.get('cpu_ms'))}",
        ),
    ]
    slowest = workflow.get("slowest_steps") or []
    if slowest:
        lines.append(Text("Slowest steps (by p95 of attempt wall time)", style="bold"))
        table = Table(box=box.SQUARE, header_style="bold")
        table.add_column("Step", overflow="fold")
        for heading in ("Attempts", "p50", "p95", "Max", "CPU p95"):
            table.add_column(heading, justify="right", no_wrap=True)
        for step in slowest:
            table.add_row(
                clean(step.get("step", "")),
                str(step.get("attempts", 0)),
                *(_ms_text(step.get(k)) for k in ("p50_ms", "p95_ms", "max_ms", "cpu_p95_ms")),
            )
        lines.append(table)
    failing = workflow.get("failing_steps") or []
    if failing:
        lines.append(Text("Most failing steps", style="bold"))
        table = Table(box=box.SQUARE, header_style="bold")
        table.add_column("Step", overflow="fold")
        table.add_column("Failures", justify="right", no_wrap=True)
        table.add_column("Attempts", justify="right", no_wrap=True)
        table.add_column("Last error", overflow="fold", ratio=1)
        for step in failing:
            table.add_row(
                clean(step.get("step", "")),
                str(step.get("failures", 0)),
                str(step.get("attempts", 0)),
                Text(error_text(step.get("last_error") or "")),
            )
        lines.append(table)
    return lines


def print_stats(stats: dict[str, Any], window: str) -> None:
    show(stats_view(stats, window))
