"""The history export's JSON (format "wf-history") from records built by hand: every field of
every kind of step, the events, and the instance around them."""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime, timezone

from wf.engine.history_json import history_json
from wf.engine.model import (
    AttemptRecord,
    EventRecord,
    History,
    InstanceRow,
    Status,
    StepKind,
    StepRecord,
    StepState,
)

T0 = datetime(2026, 12, 3, 10, 0, tzinfo=timezone.utc).timestamp()


def at(seconds: float) -> str:
    """The ISO form of T0 + seconds, written out independently of the code under test."""
    stamp = datetime.fromtimestamp(T0 + seconds, tz=timezone.utc)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"


def row(**changes: object) -> InstanceRow:
    base = InstanceRow(
        pk=7,
        workflow="checkout",
        id="cart-1",
        status=Status.COMPLETE,
        params='{"cartId":"cart-1"}',
        trigger="cli",
        version_id="v-abc",
        created=T0,
        modified=T0 + 500,
        started=T0 + 0.25,
        ended=T0 + 400,
        output='{"shipped":true}',
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


CONFIG = {"retries": {"limit": 5, "delay": 10.0, "backoff": "exponential"}, "timeout": 600.0}
BOOM = {"name": "ConnectionError", "message": "smtp down"}
TIMED_OUT = {"name": "WorkflowTimeoutError", "message": 'waited 1 hour for an event of type "x"'}


def full_history() -> History:
    charge = StepRecord(
        "charge card",
        1,
        StepKind.DO,
        T0 + 1,
        StepState.SUCCEEDED,
        ended=T0 + 12.5,
        output='{"paymentId":"p1"}',
        config=CONFIG,
        attempts=[
            AttemptRecord(1, T0 + 1, T0 + 2, False, BOOM),
            AttemptRecord(2, T0 + 12, T0 + 12.5, True, None, uncounted=True),
        ],
    )
    cool = StepRecord(
        "cool off",
        1,
        StepKind.SLEEP,
        T0 + 13,
        StepState.SUCCEEDED,
        ended=T0 + 113,
        wake_at=T0 + 113,
        duration=100.0,
    )
    shipped = StepRecord(
        "shipped",
        1,
        StepKind.WAIT,
        T0 + 114,
        StepState.SUCCEEDED,
        ended=T0 + 120,
        output='{"carrier":"DHL"}',
        wake_at=T0 + 114 + 86400,
        duration=86400.0,
        event_type="shipped",
        event_time=T0 + 119.001,
    )
    late = StepRecord(
        "shipped",
        2,
        StepKind.WAIT,
        T0 + 121,
        StepState.FAILED,
        ended=T0 + 3721,
        error=TIMED_OUT,
        wake_at=T0 + 3721,
        duration=3600.0,
        event_type="x",
    )
    receipt = StepRecord(
        "send receipt",
        1,
        StepKind.DO,
        T0 + 3722,
        StepState.FAILED,
        ended=T0 + 3723,
        error=BOOM,
        config=CONFIG,
        non_retryable=True,
        attempts=[AttemptRecord(1, T0 + 3722, T0 + 3723, False, BOOM)],
    )
    return History([charge, cool, shipped, late, receipt])


EVENTS = [
    EventRecord(3, "shipped", '{"carrier":"DHL"}', T0 + 119.001, ("shipped", 1)),
    EventRecord(9, "extra", '[1,null,"two"]', T0 + 130, None),
]


def test_an_instance_with_every_kind_of_step_and_its_events() -> None:
    got = history_json(row(), full_history(), EVENTS)
    assert got == {
        "format": "wf-history",
        "format_version": 1,
        "workflow": "checkout",
        "id": "cart-1",
        "version": "v-abc",
        "status": "complete",
        "trigger": "cli",
        "params": {"cartId": "cart-1"},
        "created": at(0),
        "start": at(0.25),
        "end": at(400),
        "output": {"shipped": True},
        "error": None,
        "rollback": None,
        "steps": [
            {
                "kind": "do",
                "name": "charge card",
                "count": 1,
                "state": "succeeded",
                "start": at(1),
                "end": at(12.5),
                "output": {"paymentId": "p1"},
                "error": None,
                "config": CONFIG,
                "attempts": [
                    {
                        "number": 1,
                        "start": at(1),
                        "end": at(2),
                        "success": False,
                        "error": BOOM,
                        "uncounted": False,
                    },
                    {
                        "number": 2,
                        "start": at(12),
                        "end": at(12.5),
                        "success": True,
                        "error": None,
                        "uncounted": True,
                    },
                ],
            },
            {
                "kind": "sleep",
                "name": "cool off",
                "count": 1,
                "state": "succeeded",
                "start": at(13),
                "end": at(113),
                "duration": 100.0,
                "wake_at": at(113),
            },
            {
                "kind": "wait",
                "name": "shipped",
                "count": 1,
                "state": "succeeded",
                "start": at(114),
                "end": at(120),
                "event_type": "shipped",
                "timeout": 86400.0,
                "wake_at": at(114 + 86400),
                "output": {"carrier": "DHL"},
                "event_time": at(119.001),
                "error": None,
            },
            {
                "kind": "wait",
                "name": "shipped",
                "count": 2,
                "state": "failed",
                "start": at(121),
                "end": at(3721),
                "event_type": "x",
                "timeout": 3600.0,
                "wake_at": at(3721),
                "output": None,
                "event_time": None,
                "error": TIMED_OUT,
            },
            {
                "kind": "do",
                "name": "send receipt",
                "count": 1,
                "state": "failed",
                "start": at(3722),
                "end": at(3723),
                "output": None,
                "error": BOOM,
                "config": CONFIG,
                "attempts": [
                    {
                        "number": 1,
                        "start": at(3722),
                        "end": at(3723),
                        "success": False,
                        "error": BOOM,
                        "uncounted": False,
                    }
                ],
            },
        ],
        "events": [
            {
                "type": "shipped",
                "payload": {"carrier": "DHL"},
                "received": at(119.001),
                "consumed_by": "shipped-1",
            },
            {
                "type": "extra",
                "payload": [1, None, "two"],
                "received": at(130),
                "consumed_by": None,
            },
        ],
    }
    assert json.loads(json.dumps(got)) == got  # plain JSON all the way down


def test_an_unfinished_instance_and_its_running_steps() -> None:
    running = History(
        [
            StepRecord("fetch", 1, StepKind.DO, T0 + 1, attempts=[AttemptRecord(1, T0 + 1)]),
            StepRecord("nap", 1, StepKind.SLEEP, T0 + 2, wake_at=T0 + 60),  # a sleep_until
            StepRecord("go", 1, StepKind.WAIT, T0 + 3, wake_at=T0 + 63, duration=60.0),
        ]
    )
    queued = row(status=Status.WAITING, ended=None, output=None, started=T0 + 0.5)
    got = history_json(queued, running, [])
    assert (got["status"], got["end"], got["output"], got["events"]) == ("waiting", None, None, [])
    do, nap, wait = got["steps"]
    assert (do["state"], do["end"], do["output"], do["config"]) == ("running", None, None, None)
    assert do["attempts"] == [
        {
            "number": 1,
            "start": at(1),
            "end": None,
            "success": None,
            "error": None,
            "uncounted": False,
        }
    ]
    assert (nap["state"], nap["duration"], nap["wake_at"]) == ("running", None, at(60))
    assert (wait["state"], wait["timeout"], wait["wake_at"], wait["event_time"]) == (
        "running",
        60.0,
        at(63),
        None,
    )


def test_an_errored_instance_keeps_its_error_and_params_of_any_json_shape() -> None:
    error = {"name": "StepError", "message": "send receipt failed"}
    got = history_json(
        row(status=Status.ERRORED, output=None, error=error, params="[]"), History(), []
    )
    assert (got["status"], got["error"], got["output"], got["params"]) == (
        "errored",
        error,
        None,
        [],
    )
    assert got["steps"] == []
