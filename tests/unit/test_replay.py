"""wf.engine.replay: step identities on replay, and what step.do does next for each history."""

from __future__ import annotations

from typing import Any

import pytest

from wf.engine.model import (
    AttemptRecord,
    ErrorInfo,
    ResolvedConfig,
    StepKind,
    StepRecord,
    StepState,
)
from wf.engine.replay import (
    INTERRUPTED,
    Attempt,
    Cached,
    CachedError,
    CloseInterrupted,
    GiveUp,
    Identities,
    WaitRetry,
    plan_do,
)
from wf.errors import StepLimitExceeded

DO, SLEEP, WAIT = StepKind.DO, StepKind.SLEEP, StepKind.WAIT
CONFIG = ResolvedConfig(limit=2, delay=10.0, backoff="exponential", timeout=600.0)
BOOM: ErrorInfo = {"name": "ValueError", "message": "boom"}
BANG: ErrorInfo = {"name": "KeyError", "message": "bang"}


def record(name: str, count: int, kind: StepKind = DO, **fields: Any) -> StepRecord:
    return StepRecord(name, count, kind, 0.0, **fields)


def failed(number: int, ended: float, error: ErrorInfo | None = BOOM) -> AttemptRecord:
    return AttemptRecord(number, ended - 1.0, ended, False, error)


# ---- identities --------------------------------------------------------------------------------


def test_counts_are_per_name_in_call_order() -> None:
    ids = Identities({}, step_limit=100)
    assert [ids.next(n, DO)[0] for n in ("a", "b", "a", "a", "c", "b")] == [1, 1, 2, 3, 1, 2]


def test_counts_are_per_kind_as_on_cloudflare() -> None:
    ids = Identities({}, step_limit=100)
    assert ids.next("x", DO) == (1, None)
    assert ids.next("x", SLEEP) == (1, None)
    assert ids.next("x", WAIT) == (1, None)
    assert ids.next("x", DO) == (2, None)
    assert ids.next("x", SLEEP) == (2, None)


def test_display_names() -> None:
    assert record("fetch user", 1).display_name == "fetch user-1"
    assert record("x-1", 2, SLEEP).display_name == "x-1-2"
    assert record("a", 3).key == (DO, "a", 3)
    assert record("a", 3, WAIT).key == (WAIT, "a", 3)


def test_recorded_steps_are_handed_back_by_identity() -> None:
    first = record("a", 1)
    nap = record("a", 1, SLEEP)
    second = record("b", 1, WAIT)
    ids = Identities({r.key: r for r in (first, nap, second)}, step_limit=100)
    assert ids.next("a", DO) == (1, first)
    assert ids.next("b", WAIT) == (1, second)
    assert ids.next("a", SLEEP) == (1, nap)
    assert ids.next("a", DO) == (2, None)  # past the history: a new step


@pytest.mark.parametrize("recorded", [DO, SLEEP, WAIT])
@pytest.mark.parametrize("called", [DO, SLEEP, WAIT])
def test_a_record_is_only_ever_handed_to_a_call_of_its_kind(
    recorded: StepKind, called: StepKind
) -> None:
    step = record("s", 1, recorded)
    ids = Identities({step.key: step}, step_limit=100)
    assert ids.next("s", called) == (1, step if called is recorded else None)


def test_step_limit_counts_do_and_wait() -> None:
    ids = Identities({}, step_limit=3)
    ids.next("a", DO)
    ids.next("b", WAIT)
    ids.next("a", DO)
    with pytest.raises(StepLimitExceeded) as info:
        ids.next("c", DO)
    assert "limit of 3 steps" in str(info.value)
    assert "limits.steps" in str(info.value)
    assert not isinstance(info.value, Exception)


def test_sleeps_do_not_count_toward_the_step_limit() -> None:
    ids = Identities({}, step_limit=2)
    for _ in range(50):
        ids.next("nap", SLEEP)
    ids.next("a", DO)
    ids.next("nap", SLEEP)
    ids.next("b", WAIT)
    ids.next("nap", SLEEP)
    with pytest.raises(StepLimitExceeded):
        ids.next("c", WAIT)


def test_step_limit_applies_to_replayed_steps_too() -> None:
    history = {(DO, "a", n): record("a", n) for n in (1, 2)}
    ids = Identities(history, step_limit=1)
    ids.next("a", DO)
    with pytest.raises(StepLimitExceeded):
        ids.next("a", DO)


# ---- plan_do -----------------------------------------------------------------------------------


def test_no_record_means_a_first_attempt() -> None:
    assert plan_do(None, CONFIG, now=100.0) == Attempt(1)


def test_a_record_without_attempts_means_a_first_attempt() -> None:
    assert plan_do(record("s", 1), CONFIG, now=100.0) == Attempt(1)


def test_cached_success() -> None:
    done = record(
        "s",
        1,
        state=StepState.SUCCEEDED,
        output='{"a":1}',
        attempts=[AttemptRecord(1, 1.0, 2.0, True)],
    )
    assert plan_do(done, CONFIG, now=100.0) == Cached('{"a":1}')


def test_cached_success_of_none() -> None:
    done = record("s", 1, state=StepState.SUCCEEDED, attempts=[AttemptRecord(1, 1.0, 2.0, True)])
    assert plan_do(done, CONFIG, now=100.0) == Cached(None)


def test_cached_failure_uses_the_step_error_and_counts_attempts() -> None:
    gone = record(
        "s",
        1,
        state=StepState.FAILED,
        error=BANG,
        attempts=[failed(1, 5.0), failed(2, 20.0), failed(3, 50.0)],
    )
    assert plan_do(gone, CONFIG, now=100.0) == CachedError(BANG, 3)


def test_cached_failure_falls_back_to_the_last_attempt_error() -> None:
    gone = record("s", 1, state=StepState.FAILED, attempts=[failed(1, 5.0, BANG)])
    assert plan_do(gone, CONFIG, now=100.0) == CachedError(BANG, 1)


def test_cached_failure_without_any_error_is_an_interruption() -> None:
    gone = record("s", 1, state=StepState.FAILED, attempts=[failed(1, 5.0, None)])
    assert plan_do(gone, CONFIG, now=100.0) == CachedError(INTERRUPTED, 1)


def test_an_attempt_that_never_ended_is_closed_as_interrupted() -> None:
    running = record("s", 1, attempts=[AttemptRecord(1, 5.0)])
    assert plan_do(running, CONFIG, now=100.0) == CloseInterrupted(1)


def test_an_interrupted_later_attempt_is_closed_even_past_the_limit() -> None:
    running = record("s", 1, attempts=[failed(1, 5.0), failed(2, 20.0), AttemptRecord(3, 50.0)])
    assert plan_do(running, CONFIG, now=100.0) == CloseInterrupted(3)


def test_waits_for_the_computed_retry_time() -> None:
    # One failed attempt ended at 100: exponential backoff waits 10 s.
    step = record("s", 1, attempts=[failed(1, 100.0)])
    assert plan_do(step, CONFIG, now=105.0) == WaitRetry(110.0)


def test_computed_retry_time_grows_with_the_attempts() -> None:
    step = record("s", 1, attempts=[failed(1, 90.0), failed(2, 100.0)])
    assert plan_do(step, CONFIG, now=105.0) == WaitRetry(120.0)  # 10 * 2^1
    linear = ResolvedConfig(5, 10.0, "linear", 600.0)
    assert plan_do(step, linear, now=105.0) == WaitRetry(120.0)  # 10 * 2
    constant = ResolvedConfig(5, 10.0, "constant", 600.0)
    assert plan_do(step, constant, now=105.0) == WaitRetry(110.0)


def test_a_recorded_retry_time_wins_over_the_computed_one() -> None:
    step = record("s", 1, wake_at=200.0, attempts=[failed(1, 100.0)])
    assert plan_do(step, CONFIG, now=150.0) == WaitRetry(200.0)
    assert plan_do(step, CONFIG, now=200.0) == Attempt(2)


def test_a_due_retry_is_the_next_attempt() -> None:
    step = record("s", 1, attempts=[failed(1, 100.0)])
    assert plan_do(step, CONFIG, now=110.0) == Attempt(2)
    assert plan_do(step, CONFIG, now=1000.0) == Attempt(2)
    step = record("s", 1, attempts=[failed(1, 90.0), failed(2, 100.0)])
    assert plan_do(step, CONFIG, now=120.0) == Attempt(3)


def test_the_last_allowed_attempt_is_still_made() -> None:
    # limit 2 means two retries after the first attempt: three attempts in all.
    step = record("s", 1, attempts=[failed(1, 90.0), failed(2, 100.0)])
    assert plan_do(step, CONFIG, now=1000.0) == Attempt(3)


def test_exhausted_retries_give_up_with_the_last_error() -> None:
    step = record("s", 1, attempts=[failed(1, 5.0, BOOM), failed(2, 20.0), failed(3, 50.0, BANG)])
    assert plan_do(step, CONFIG, now=1000.0) == GiveUp(BANG, 3)


def test_limit_zero_gives_up_after_one_attempt() -> None:
    no_retries = ResolvedConfig(0, 10.0, "exponential", 600.0)
    step = record("s", 1, attempts=[failed(1, 5.0)])
    assert plan_do(step, no_retries, now=1000.0) == GiveUp(BOOM, 1)


def test_exhausted_without_an_error_gives_up_as_interrupted() -> None:
    step = record("s", 1, attempts=[failed(n, 10.0 * n, None) for n in (1, 2, 3)])
    assert plan_do(step, CONFIG, now=1000.0) == GiveUp(INTERRUPTED, 3)


def test_non_retryable_gives_up_at_once() -> None:
    step = record("s", 1, non_retryable=True, attempts=[failed(1, 100.0, BANG)])
    generous = ResolvedConfig(10, 10.0, "exponential", 600.0)
    assert plan_do(step, generous, now=100.0) == GiveUp(BANG, 1)


def test_interrupted_error_is_an_internal_error() -> None:
    assert INTERRUPTED["name"] == "WorkflowInternalError"
    assert INTERRUPTED["message"]
