"""``wf stats``'s Rich view of ``GET /api/stats``, compared with a golden file."""

from __future__ import annotations

from datetime import timezone
from typing import Any

from tests.cli.test_render import check_golden, rendered
from wf.cli import render

STATS: dict[str, Any] = {
    "since": "2025-01-01T11:00:00.000Z",
    "until": "2025-01-01T12:00:00.000Z",
    "window_seconds": 3600,
    "workflows": [
        {
            "workflow": "purchase",
            "counts": {
                "queued": 1,
                "running": 2,
                "paused": 0,
                "waiting": 3,
                "waitingForPause": 0,
                "errored": 2,
                "terminated": 0,
                "complete": 40,
            },
            "finished": {"total": 42, "complete": 40, "errored": 2, "terminated": 0},
            "throughput_per_minute": 0.7,
            "duration_ms": {"count": 42, "p50_ms": 812.4, "p95_ms": 2450.0, "p99_ms": 61000.0},
            "attempts": {"total": 130, "failed": 9, "wall_ms": 98000.5, "cpu_ms": None},
            "slowest_steps": [
                {
                    "step": "charge card",
                    "attempts": 45,
                    "p50_ms": 350.0,
                    "p95_ms": 1800.2,
                    "max_ms": 4100.0,
                    "cpu_p95_ms": None,
                },
                {
                    "step": "load cart",
                    "attempts": 42,
                    "p50_ms": 3.1,
                    "p95_ms": 12.0,
                    "max_ms": 30.0,
                    "cpu_p95_ms": 2.5,
                },
            ],
            "failing_steps": [
                {
                    "step": "charge card",
                    "failures": 7,
                    "attempts": 45,
                    "last_error": {"name": "ConnectionError", "message": "bank\x1b[31m down"},
                    "last_failed": "2025-01-01T11:58:00.000Z",
                },
                {
                    "step": "send receipt",
                    "failures": 2,
                    "attempts": 42,
                    "last_error": {"name": "SMTPError", "message": "mailbox full"},
                    "last_failed": "2025-01-01T11:30:00.000Z",
                },
            ],
        },
        {
            "workflow": "refund",
            "counts": dict.fromkeys(render.STATUS_NAMES, 0),
            "finished": {"total": 0, "complete": 0, "errored": 0, "terminated": 0},
            "throughput_per_minute": 0,
            "duration_ms": {"count": 0, "p50_ms": None, "p95_ms": None, "p99_ms": None},
            "attempts": {"total": 0, "failed": 0, "wall_ms": 0, "cpu_ms": None},
            "slowest_steps": [],
            "failing_steps": [],
        },
    ],
}


def test_stats_view() -> None:
    text = rendered(render.stats_view(STATS, "1h", tz=timezone.utc))
    check_golden("stats", text)
    assert "\x1b" not in text  # an error's control characters are shown escaped


def test_no_workflows() -> None:
    empty = {**STATS, "workflows": []}
    assert rendered(render.stats_view(empty, "1h")) == "No workflows.\n"


def test_a_window_of_nothing_is_a_usage_error_before_any_request() -> None:
    from typer.testing import CliRunner

    from wf.cli.main import app

    # No server listens at this URL: the window is refused before any request is made.
    for since in ("soon", "0 seconds", "0m"):
        result = CliRunner().invoke(app, ["stats", "--since", since, "--url", "http://127.0.0.1:9"])
        assert result.exit_code == 2, (since, result.output)
        assert result.output.count("\n") == 1 and result.output.startswith("wf: ")
