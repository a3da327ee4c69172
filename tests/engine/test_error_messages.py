"""Errors as recorded and shown: always text, whatever the exception's ``__str__`` does, and cut
to ``MESSAGE_LIMIT`` characters wherever they are stored or announced."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import Harness, wait_for, wait_status
from wf import NonRetryableError, StepError, WorkflowEntrypoint
from wf.engine import WorkflowSpec

MESSAGE_LIMIT = 16 * 1024  # what wf keeps of an error message (wf.errors.MESSAGE_LIMIT)
NO_RETRIES = {"retries": {"limit": 0, "delay": 0}}


class StrRaises(Exception):
    def __str__(self) -> str:
        raise RuntimeError("__str__ failed")


class StrNotText(Exception):
    def __str__(self) -> Any:
        return 42


class StrSubclass(str):
    def __len__(self) -> int:
        raise RuntimeError("a str subclass that misbehaves")


class StrOddText(Exception):
    def __str__(self) -> str:
        return StrSubclass("odd but text")


@pytest.mark.parametrize(
    ("raised", "name", "message"),
    [
        (StrRaises, "StrRaises", "StrRaises"),
        (StrNotText, "StrNotText", "StrNotText"),
        (StrOddText, "StrOddText", "odd but text"),
    ],
)
async def test_run_raising_an_exception_whose_str_fails_errors_the_instance(
    harness: Harness, raised: type[Exception], name: str, message: str
) -> None:
    # It used to stay "running" for good: run() was replayed every lease period, uncounted.
    class Flow(WorkflowEntrypoint):
        async def run(self, event, step):
            raise raised()

    engine = await harness.start([WorkflowSpec("flow", Flow)])
    inst = await engine.create("flow")
    status = await wait_status(engine, "flow", inst.id)
    assert status["status"] == "errored"
    assert status["error"] == {"name": name, "message": message}
    # The notice follows the commit a moment later (the status may be read in between).
    errored = await wait_for(lambda: [n for n in harness.notices if n.kind == "errored"])
    assert [n.detail["error"] for n in errored] == [{"name": name, "message": message}]


async def test_a_step_raising_an_exception_whose_str_fails_records_its_class_name(
    harness: Harness,
) -> None:
    caught: list[StepError] = []

    class Flow(WorkflowEntrypoint):
        async def run(self, event, step):
            def body() -> None:
                raise StrRaises()

            try:
                await step.do("s", NO_RETRIES, body)
            except StepError as exc:
                caught.append(exc)
            await step.do("t", NO_RETRIES, body)

    engine = await harness.start([WorkflowSpec("flow", Flow)])
    inst = await engine.create("flow")
    status = await wait_status(engine, "flow", inst.id)
    assert status["error"] == {"name": "StrRaises", "message": "StrRaises"}
    assert [(e.error_name, e.message) for e in caught] == [("StrRaises", "StrRaises")]
    steps = (await engine.details("flow", inst.id))["steps"]
    assert [s["error"] for s in steps] == [{"name": "StrRaises", "message": "StrRaises"}] * 2
    assert [a["error"]["name"] for s in steps for a in s["attempts"]] == ["StrRaises"] * 2


class Unprintable:
    def __repr__(self) -> str:
        raise ValueError("no repr either")

    __str__ = __repr__


@pytest.mark.parametrize(
    ("raise_it", "error"),
    [
        (
            lambda: NonRetryableError(b"bytes"),  # type: ignore[arg-type]
            {"name": "NonRetryableError", "message": "b'bytes'"},
        ),
        (
            lambda: NonRetryableError(Unprintable()),  # type: ignore[arg-type]
            {"name": "NonRetryableError", "message": "Unprintable"},
        ),
        (
            lambda: NonRetryableError("why", name=Unprintable()),  # type: ignore[arg-type]
            {"name": "NonRetryableError", "message": "why"},
        ),
        (
            lambda: SystemExit(Unprintable()),
            {"name": "SystemExit", "message": "sys.exit(Unprintable) was called"},
        ),
        (
            lambda: KeyboardInterrupt(Unprintable()),
            {"name": "KeyboardInterrupt", "message": "KeyboardInterrupt"},
        ),
    ],
)
async def test_odd_exceptions_in_steps_are_recorded_as_text(
    harness: Harness, raise_it: Any, error: dict[str, str]
) -> None:
    class Flow(WorkflowEntrypoint):
        async def run(self, event, step):
            def body() -> None:
                raise raise_it()

            await step.do("s", NO_RETRIES, body)

    engine = await harness.start([WorkflowSpec("flow", Flow)])
    inst = await engine.create("flow")
    status = await wait_status(engine, "flow", inst.id)
    assert status["error"] == error
    step = (await engine.details("flow", inst.id))["steps"][0]
    assert step["error"] == error
    assert step["attempts"][0]["error"] == error


def _assert_cut(message: str, length: int) -> None:
    assert len(message) == MESSAGE_LIMIT
    assert message.startswith("x" * 1000)
    assert message.endswith(f" … [truncated, {length:,} characters in all]")


async def test_a_huge_error_message_is_cut_everywhere_it_is_recorded(harness: Harness) -> None:
    length = 2_000_000

    class Flow(WorkflowEntrypoint):
        async def run(self, event, step):
            def body() -> None:
                raise ValueError("x" * length)

            await step.do("s", NO_RETRIES, body)

    engine = await harness.start([WorkflowSpec("flow", Flow)])
    inst = await engine.create("flow")
    status = await wait_status(engine, "flow", inst.id)
    _assert_cut(status["error"]["message"], length)
    step = (await engine.details("flow", inst.id))["steps"][0]
    _assert_cut(step["error"]["message"], length)
    _assert_cut(step["attempts"][0]["error"]["message"], length)
    failures = [n for n in harness.notices if n.kind in ("step_failed", "errored")]
    assert len(failures) == 2
    for notice in failures:
        _assert_cut(notice.detail["error"]["message"], length)
    stored = harness.query(
        "SELECT max(length(error)) FROM steps UNION ALL SELECT max(length(error)) FROM "
        "attempts UNION ALL SELECT max(length(error)) FROM instances"
    )
    assert all(MESSAGE_LIMIT < size < MESSAGE_LIMIT + 100 for (size,) in stored)


async def test_a_huge_message_raised_from_run_and_by_non_retryable_error_is_cut(
    harness: Harness,
) -> None:
    class Flow(WorkflowEntrypoint):
        async def run(self, event, step):
            if event.payload["where"] == "step":

                def body() -> None:
                    raise NonRetryableError("x" * 100_000, name="N" * 1000)

                await step.do("s", body)
            raise RuntimeError("x" * 100_000)

    engine = await harness.start([WorkflowSpec("flow", Flow)])
    in_run = await engine.create("flow", params={"where": "run"})
    in_step = await engine.create("flow", params={"where": "step"})
    _assert_cut((await wait_status(engine, "flow", in_run.id))["error"]["message"], 100_000)
    error = (await wait_status(engine, "flow", in_step.id))["error"]
    _assert_cut(error["message"], 100_000)
    assert error["name"].startswith("NNN")
    assert error["name"].endswith(" … [truncated, 1,000 characters in all]")
    assert len(error["name"]) == 256


class ItemsRaise(dict[str, Any]):
    def items(self) -> Any:
        raise RuntimeError("no items today")


async def test_run_returning_a_value_that_raises_while_encoded_errors_the_instance(
    harness: Harness,
) -> None:
    # Like a failing __str__, this used to escape the end of the life and leave it running.
    class Flow(WorkflowEntrypoint):
        async def run(self, event, step):
            return ItemsRaise(a=1)

    engine = await harness.start([WorkflowSpec("flow", Flow)])
    inst = await engine.create("flow")
    status = await wait_status(engine, "flow", inst.id)
    assert status["error"] == {
        "name": "TypeError",
        "message": "run() returned a value that cannot be stored as JSON: reading it raised "
        "RuntimeError: no items today",
    }
