"""Notices on a server's terminal (``wf dev``'s reporter, ``wf serve``) under load: those of one
loop iteration printed together, at most ``LINES_PER_SECOND`` a second, the rest counted;
failures always printed."""

from __future__ import annotations

import asyncio

import pytest

from wf.cli.devchild import TerminalReporter
from wf.cli.notices import LINES_PER_SECOND, NoticePrinter
from wf.engine.runner import Notice


async def test_a_few_notices_are_printed_in_order_after_the_loop_turns(
    capsys: pytest.CaptureFixture[str],
) -> None:
    reporter = TerminalReporter()
    reporter.notice(Notice("started", "shop", "a1"))
    reporter.notice(Notice("step_done", "shop", "a1", "charge-1", {"attempt": 1, "ms": 3}))
    reporter.notice(Notice("completed", "shop", "a1"))
    assert capsys.readouterr().out == ""  # nothing until the loop turns
    await asyncio.sleep(0)
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(" ", 2)[2] for line in lines] == [
        "▶ started",
        '✓ step "charge-1" done in 3 ms',
        "✅ completed",
    ]


async def test_a_flood_is_counted_not_printed_and_failures_still_show(
    capsys: pytest.CaptureFixture[str],
) -> None:
    reporter = NoticePrinter()
    for i in range(500):
        reporter.notice(Notice("completed", "shop", f"done{i}"))
    reporter.notice(
        Notice("errored", "shop", "broken", None, {"error": {"name": "E", "message": "x"}})
    )
    await asyncio.sleep(0)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == LINES_PER_SECOND + 1
    assert "shop/broken" in lines[-1]
    await asyncio.sleep(1.1)  # the second is over: the count is printed
    (held,) = capsys.readouterr().out.splitlines()
    assert f"… {500 - LINES_PER_SECOND} more in " in held
    assert f": {500 - LINES_PER_SECOND} completed (wf instances list shows every instance)" in held
    await asyncio.sleep(0)
    reporter.notice(Notice("completed", "shop", "later"))
    await asyncio.sleep(0)
    assert "shop/later" in capsys.readouterr().out  # a new second prints again


def test_without_an_event_loop_notices_print_at_once(capsys: pytest.CaptureFixture[str]) -> None:
    reporter = NoticePrinter()
    reporter.notice(Notice("completed", "shop", "now"))
    assert "shop/now ✅ completed" in capsys.readouterr().out
