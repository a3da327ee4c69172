"""Golden-text tests of what wf shows: the describe view, the timeline, tables, dev-server lines.

Rendered at a fixed width without colour, compared exactly with the files in ``golden/``.
Regenerate them after an intended change with ``WF_UPDATE_GOLDEN=1 pytest tests/cli``.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from wf.cli import render
from wf.durations import short_duration
from wf.engine.runner import Notice

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("WF_UPDATE_GOLDEN") == "1"
UTC = timezone.utc


def rendered(renderable: Any, width: int = 100) -> str:
    console = Console(file=StringIO(), width=width, color_system=None)
    console.print(renderable)
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert isinstance(text, str)
    return text


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / f"{name}.txt"
    if UPDATE:
        path.write_text(text, encoding="utf-8")
        return
    assert path.exists(), f"{path} is missing; write it with WF_UPDATE_GOLDEN=1"
    expected = path.read_text(encoding="utf-8")
    assert text == expected, f"{name} differs from {path} (WF_UPDATE_GOLDEN=1 rewrites it)"
    for number, line in enumerate(text.splitlines(), 1):
        assert line == line.rstrip(), f"{name}:{number} ends with spaces"


def t(clock: str) -> str:
    return f"2024-10-15T{clock}Z"


def attempt(
    start: str, end: str | None, success: bool | None, error: Any = None, cpu: float | None = None
) -> dict[str, Any]:
    return {
        "start": t(start),
        "end": t(end) if end else None,
        "success": success,
        "error": error,
        "cpu": cpu,
    }


CONFIG = {
    "retries": {"limit": 2, "delay": "10 seconds", "backoff": "constant"},
    "timeout": "10 minutes",
}
DECLINED = {"name": "ValueError", "message": "card declined"}

ERRORED: dict[str, Any] = {
    "id": "order-42",
    "workflow": "purchase",
    "status": "errored",
    "params": {"sku": "a-1"},
    "trigger": {"source": "api", "via": "cli"},
    "versionId": "3f2a9c1d",
    "created": t("13:55:30.500"),
    "queued": t("13:55:30.500"),
    "start": t("13:55:31.000"),
    "end": t("13:56:31.000"),
    "success": False,
    "error": DECLINED,
    "output": None,
    "step_count": 4,
    "steps": [
        {
            "type": "step",
            "name": "fetch order-1",
            "start": t("13:55:31.000"),
            "end": t("13:55:31.042"),
            "success": True,
            "output": {"sku": "a-1", "qty": 2},
            "error": None,
            "config": CONFIG,
            "attempts": [attempt("13:55:31.000", "13:55:31.042", True, cpu=0.012)],
        },
        {
            "type": "sleep",
            "name": "cool down-1",
            "start": t("13:55:31.050"),
            "end": t("13:55:41.050"),
            "finished": True,
        },
        {
            "type": "waitForEvent",
            "name": "approval-1",
            "start": t("13:55:41.100"),
            "end": t("13:55:50.000"),
            "finished": True,
            "error": None,
            "output": {"approved": True},
            "event_type": "approval",
        },
        {
            "type": "step",
            "name": "charge card-1",
            "start": t("13:55:50.000"),
            "end": t("13:56:31.000"),
            "success": False,
            "output": None,
            "error": DECLINED,
            "config": CONFIG,
            "attempts": [
                attempt("13:55:50.000", "13:55:51.000", False, DECLINED, cpu=0.25),
                attempt("13:56:01.000", "13:56:02.000", False, DECLINED, cpu=0.003),
                attempt("13:56:22.000", "13:56:31.000", False, DECLINED),  # timed out in a thread
            ],
        },
    ],
}

RUNNING: dict[str, Any] = {
    "id": "b7e0c3f2-9a41-4d7e-8c55-2f1e0a9b6d13",
    "workflow": "purchase",
    "status": "running",
    "params": {},
    "trigger": {"source": "api"},
    "versionId": "v1",
    "created": t("09:00:00.000"),
    "queued": t("09:00:00.000"),
    "start": t("09:00:01.000"),
    "end": None,
    "success": None,
    "error": None,
    "output": None,
    "step_count": 4,
    "steps": [
        {
            "type": "step",
            "name": "a step name long enough to be cut in the timeline-1",
            "start": t("09:00:01.000"),
            "end": t("09:00:03.000"),
            "success": True,
            "output": "x" * 300,
            "error": None,
            "config": CONFIG,
            "attempts": [attempt("09:00:01.000", "09:00:03.000", True)],
        },
        {
            "type": "step",
            "name": "[bold]flaky[/bold]-1",
            "start": t("09:00:03.000"),
            "end": None,
            "success": None,
            "output": None,
            "error": None,
            "retries_at": t("09:00:30.000"),
            "config": CONFIG,
            "attempts": [
                attempt(
                    "09:00:03.000",
                    "09:00:05.000",
                    False,
                    {"name": "TimeoutError", "message": "slow\x1b[2J upstream"},
                )
            ],
        },
        {
            "type": "waitForEvent",
            "name": "approval-1",
            "start": t("09:00:05.000"),
            "end": None,
            "finished": False,
            "error": None,
            "output": None,
            "event_type": "approve",
            "timeout_at": t("10:00:05.000"),
        },
        {
            "type": "step",
            "name": "in flight-1",
            "start": t("09:00:06.000"),
            "end": None,
            "success": None,
            "output": None,
            "error": None,
            "config": CONFIG,
            "attempts": [attempt("09:00:06.000", None, None)],
        },
    ],
}
RUNNING_NOW = datetime(2024, 10, 15, 9, 0, 20, tzinfo=UTC)

TERMINATED: dict[str, Any] = {
    **RUNNING,
    "status": "terminated",
    "end": t("09:00:20.000"),
    "success": False,
    "trigger": {"source": "binding"},
    "steps": [
        *RUNNING["steps"][:1],
        {
            "type": "sleep",
            "name": "nap-1",
            "start": t("09:00:03.000"),
            "end": None,
            "finished": False,
            "wake_at": t("10:00:03.000"),
        },
        {"type": "termination", "trigger": {"source": "api", "via": "cli"}},
    ],
}

QUEUED: dict[str, Any] = {
    **RUNNING,
    "id": "later",
    "status": "queued",
    "start": None,
    "trigger": {"source": "event"},
    "steps": [],
    "step_count": 0,
}


# ---- describe ----------------------------------------------------------------------------------


def test_describe_an_errored_instance_with_retries() -> None:
    view = render.describe_instance(ERRORED, now=RUNNING_NOW, tz=UTC)
    check_golden("describe_errored", rendered(view))


def test_describe_a_running_instance_asked_as_latest() -> None:
    view = render.describe_instance(
        RUNNING, latest=True, truncate_output_limit=100, now=RUNNING_NOW, tz=UTC
    )
    text = rendered(view)
    check_golden("describe_running_latest", text)
    assert text.startswith("Describing latest instance:\n")
    assert "[bold]flaky[/bold]-1" in text  # user text is never markup
    assert "\x1b" not in text and "slow\\x1b[2J upstream" in text  # nor terminal control


def test_describe_a_terminated_instance_without_step_output() -> None:
    # Long after the end: what was left unfinished is measured up to the end, not to now.
    later_on = RUNNING_NOW + timedelta(hours=2)
    view = render.describe_instance(TERMINATED, step_output=False, now=later_on, tz=UTC)
    text = rendered(view)
    check_golden("describe_terminated", text)
    assert "Output:" not in text


def test_describe_a_queued_instance() -> None:
    view = render.describe_instance(QUEUED, now=RUNNING_NOW, tz=UTC)
    check_golden("describe_queued", rendered(view))


def test_output_is_cut_at_the_limit() -> None:
    assert render.truncate_output("abcdef", 3) == "abc[...output truncated]"
    assert render.truncate_output("abc", 3) == "abc"
    assert render.truncate_output("abc", 0) == "[...output truncated]"


# ---- the timeline ------------------------------------------------------------------------------


def test_timeline_of_a_finished_instance() -> None:
    check_golden("timeline_errored", rendered(render.Timeline(ERRORED, tz=UTC)))


def test_timeline_of_a_running_instance_narrow() -> None:
    timeline = render.Timeline(RUNNING, now=RUNNING_NOW, tz=UTC)
    check_golden("timeline_running_60", rendered(timeline, width=60))


def test_timeline_of_a_terminated_instance() -> None:
    timeline = render.Timeline(TERMINATED, now=RUNNING_NOW + timedelta(days=1), tz=UTC)
    check_golden("timeline_terminated", rendered(timeline))


def test_timeline_draws_attempts_and_retry_waits_apart() -> None:
    text = rendered(render.Timeline(ERRORED, tz=UTC))
    charge = next(line for line in text.splitlines() if line.startswith("charge card-1"))
    bar = charge[len("charge card-1") :].strip().split(" ")[0]
    # three failed attempts separated by two retry waits
    runs = [run for run in bar.replace("▓", " ▓ ").replace("─", " ─ ").split() if run]
    compact = "".join(r for i, r in enumerate(runs) if i == 0 or r != runs[i - 1])
    assert compact == "▓─▓─▓"


def test_timeline_colours_follow_the_outcome() -> None:
    console = Console(file=StringIO(), width=100, color_system="standard", force_terminal=True)
    console.print(render.Timeline(RUNNING, now=RUNNING_NOW, tz=UTC))
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert "\x1b[32m█" in text  # success: green
    assert "\x1b[31m▓" in text  # failed attempt: red
    assert "\x1b[33m▒" in text  # running attempt: yellow
    assert "\x1b[33m╌" in text  # still waiting for an event: yellow


def test_timeline_before_the_start() -> None:
    assert rendered(render.Timeline(QUEUED)) == "Timeline: not started yet\n"


# ---- tables and workflows ----------------------------------------------------------------------


def test_instances_table() -> None:
    instances = [
        {
            "id": "order-42",
            "status": status,
            "version_id": "3f2a9c1d",
            "workflow": "purchase",
            "created_on": t("13:55:30.500"),
            "modified_on": t("13:56:31.000"),
            "trigger": "api",
        }
        for status in ("complete", "errored", "waitingForPause", "mystery")
    ]
    check_golden("instances_table", rendered(render.instances_table(instances, tz=UTC)))


WORKFLOW: dict[str, Any] = {
    "name": "purchase",
    "binding": "PURCHASE",
    "class_name": "PurchaseWorkflow",
    "script_name": "shop",
    "version_id": "3f2a9c1d",
    "created_on": t("09:00:00.000"),
    "modified_on": t("13:56:31.000"),
    "instances": {
        "queued": 1,
        "running": 0,
        "paused": 0,
        "errored": 2,
        "terminated": 0,
        "complete": 7,
        "waiting": 3,
        "waitingForPause": 0,
    },
}


def test_workflows_table() -> None:
    empty = {**WORKFLOW, "name": "refund", "binding": "REFUND", "instances": {}}
    check_golden("workflows_table", rendered(render.workflows_table([WORKFLOW, empty])))


def test_describe_workflow() -> None:
    check_golden("describe_workflow", rendered(render.describe_workflow(WORKFLOW, tz=UTC)))


# ---- labels and times ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "label"),
    [
        ("complete", "✅ Completed"),
        ("errored", "❌ Errored"),
        ("paused", "⏸️ Paused"),
        ("queued", "⌛ Queued"),
        ("running", "▶ Running"),
        ("terminated", "🚫 Terminated"),
        ("waiting", "⏰ Waiting"),
        ("waitingForPause", "⏱️ Waiting for Pause"),
        ("other", "❓ Unknown"),
        (None, "❓ Unknown"),
    ],
)
def test_status_labels(status: Any, label: str) -> None:
    assert render.status_label(status) == label


def test_other_labels() -> None:
    sources = ("api", "binding", "cron", "event", "x")
    assert [render.trigger_label({"source": s}) for s in sources] == [
        "🌎 API",
        "🔗 Binding",
        "⌛ Cron",
        "📩 Event",
        "❓ Unknown",
    ]
    assert render.trigger_label({"source": "api", "via": "cli"}) == "🌎 API (wf CLI)"
    assert render.trigger_label(None) == render.trigger_label({"source": 3}) == "❓ Unknown"
    assert [
        render.step_type_label(s) for s in ("step", "sleep", "waitForEvent", "termination")
    ] == [
        "🎯 Step",
        "💤 Sleeping",
        "👀 Waiting for event",
        "🚫 Termination",
    ]
    assert [render.attempt_state_label(s) for s in (None, True, False)] == [
        "🔄 Working",
        "✅ Success",
        "❌ Error",
    ]
    assert [render.success_label(s) for s in (None, True, False)] == [
        "▶ Running",
        "✅ Yes",
        "❌ No",
    ]


def test_dates_and_durations() -> None:
    assert render.format_date(t("13:55:31.000"), UTC) == "10/15/2024, 1:55:31 PM"
    assert render.format_date(t("00:05:09.000"), UTC) == "10/15/2024, 12:05:09 AM"
    assert render.format_date(t("12:00:00.000"), UTC) == "10/15/2024, 12:00:00 PM"
    assert render.format_date(None) == ""
    assert render.human_duration(60) == "1 minute"
    assert render.human_duration(0.042) == "42 milliseconds"
    assert [short_duration(s) for s in (0.0424, 20, 90, 5400, 86400 * 2)] == [
        "42 ms",
        "20 s",
        "1.5 min",
        "1.5 h",
        "2 d",
    ]


# ---- the dev server's terminal -----------------------------------------------------------------

WHEN = datetime(2024, 10, 15, 12, 1, 2).astimezone()  # local time, as the dev terminal shows


def later(seconds: float) -> float:
    return (WHEN + timedelta(seconds=seconds)).timestamp()


@pytest.mark.parametrize(
    ("kind", "step", "detail", "text"),
    [
        ("queued", None, {"trigger": "cli"}, "⌛ queued via cli"),
        ("started", None, {}, "▶ started"),
        (
            "step_done",
            "send email-1",
            {"attempt": 1, "ms": 42.4},
            '✓ step "send email-1" done in 42 ms',
        ),
        (
            "step_done",
            "x-1",
            {"attempt": 3, "ms": 1500.0},
            '✓ step "x-1" done in 1.5 s (attempt 3)',
        ),
        (
            "step_done",
            "x-1",
            {"attempt": 2, "ms": 400.0, "total_ms": 14_700.0},
            '✓ step "x-1" done in 400 ms (attempt 2, 14.7 s since the first)',
        ),
        (
            "attempt_failed",
            "x-1",
            {"attempt": 2, "error": {"name": "ValueError", "message": "boom"}, "delay": 20.0},
            '✗ attempt 2 of "x-1" failed: ValueError: boom; retrying in 20 s',
        ),
        (
            "attempt_failed",
            "x-1",
            {"attempt": 1, "error": {"name": "WorkerInterrupted", "message": "lost"}},
            '✗ attempt 1 of "x-1" failed: WorkerInterrupted: lost; retrying now',
        ),
        (
            "step_failed",
            "x-1",
            {"attempt": 3, "error": {"name": "ValueError", "message": "boom"}},
            '✗ step "x-1" failed after 3 attempts: ValueError: boom',
        ),
        ("sleeping", "nap-1", {"until": later(1800)}, '💤 "nap-1" sleeping until 12:31:02'),
        (
            "waiting_event",
            "approval-1",
            {"event_type": "approval", "until": later(3600)},
            '👀 "approval-1" waiting for event "approval" (until 13:01:02)',
        ),
        (
            "child_started",
            "ship-1",
            {"workflow": "ship", "id": "ship-o-1"},
            '🧩 step "ship-1" started child ship/ship-o-1',
        ),
        ("event_sent", None, {"event_type": "approval"}, '📤 event "approval" sent'),
        (
            "event_received",
            "approval-1",
            {"event_type": "approval"},
            '📩 "approval-1" received event "approval"',
        ),
        ("hibernated", None, {"wake_at": later(86400)}, "🌙 hibernated until 2024-10-16 12:01:02"),
        ("paused", None, {}, "⏸ paused"),
        ("resumed", None, {}, "▶ resumed"),
        ("terminated", None, {"source": "api"}, "🚫 terminated via api"),
        ("restarted", None, {}, "🔄 restarted"),
        ("completed", None, {"output": '"ok"'}, "✅ completed"),
        (
            "errored",
            None,
            {"error": {"name": "StepError", "message": "bad\nthing"}},
            "❌ errored: StepError: bad thing",
        ),
        (
            "errored",
            None,
            {"error": {"name": "WorkflowInternalError", "message": "died"}, "crashes": 5},
            "💥 errored: killed its process 5 times in a row; restart it once the code is fixed",
        ),
        ("something_new", "s-1", {}, 'something_new "s-1"'),
    ],
)
def test_notice_lines(kind: str, step: str | None, detail: dict[str, Any], text: str) -> None:
    notice = Notice(kind, "purchase", "abc123", step, detail)
    line = render.notice_line(notice, when=WHEN)
    assert line.plain == f"12:01:02 purchase/abc123 {text}"


def test_print_notice_and_error_lines(capsys: pytest.CaptureFixture[str]) -> None:
    render.print_notices([Notice("completed", "purchase", "abc123")])
    render.print_error_line("workflows.py:12: SyntaxError: invalid syntax")
    render.print_info("reloaded after changes to workflows.py")
    captured = capsys.readouterr()
    assert captured.out.splitlines()[0].endswith(" purchase/abc123 ✅ completed")
    assert captured.out.splitlines()[1].endswith(" reloaded after changes to workflows.py")
    assert captured.err == "✗ workflows.py:12: SyntaxError: invalid syntax\n"


def test_banner() -> None:
    console = Console(file=StringIO(), width=100, color_system=None)
    render.banner(
        console,
        "http://127.0.0.1:8787",
        "shop",
        [("purchase", "PURCHASE", "PurchaseWorkflow"), ("refund", "REFUND", "Refund")],
        ".wf",
        "3f2a9c1d",
    )
    check_golden("banner", console.file.getvalue())  # type: ignore[attr-defined]


def test_serving_banner(capsys: pytest.CaptureFixture[str]) -> None:
    render.print_serving("http://127.0.0.1:8788", "/srv/wf/.wf-serve", "node n1 on postgresql://db")
    text = capsys.readouterr().out
    # The dashboard line has the column wf dev's banner has (``  ➜ Dashboard: ``).
    assert "\n  ➜ Dashboard: http://127.0.0.1:8788/\n" in text
    check_golden("serve_banner", text)
