"""wf.engine.config: step configs as users write them, Cloudflare's defaults, and backoff."""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

import pytest

from wf import RetryConfig, StepConfig
from wf.engine import config
from wf.engine.config import resolve, retry_delay, to_json
from wf.engine.model import ResolvedConfig
from wf.errors import ValidationError

DEFAULTS = ResolvedConfig(limit=5, delay=10.0, backoff="exponential", timeout=600.0)


def test_cloudflare_defaults() -> None:
    assert resolve("s") == DEFAULTS
    assert config.DEFAULT == DEFAULTS


@pytest.mark.parametrize(
    "given",
    [
        None,
        {},
        {"retries": None},
        StepConfig(),
        StepConfig(retries=RetryConfig()),
        StepConfig(retries={}),
        {"retries": {}},
        {"retries": RetryConfig()},
        {"timeout": "10 minutes"},
    ],
)
def test_every_empty_form_gives_the_defaults(given: object) -> None:
    assert resolve("s", given) == DEFAULTS


def test_user_facing_dataclass_defaults_match_the_engine_defaults() -> None:
    retry = RetryConfig()
    assert (retry.limit, retry.backoff) == (config.DEFAULT_LIMIT, config.DEFAULT_BACKOFF)
    assert resolve("s", {"retries": {"delay": retry.delay}}).delay == config.DEFAULT_DELAY
    assert resolve("s", {"timeout": StepConfig().timeout}).timeout == config.DEFAULT_TIMEOUT


@pytest.mark.parametrize(
    ("retries", "expected"),
    [
        ({"limit": 2}, ResolvedConfig(2, 10.0, "exponential", 600.0)),
        ({"limit": 0}, ResolvedConfig(0, 10.0, "exponential", 600.0)),
        ({"delay": "1 second"}, ResolvedConfig(5, 1.0, "exponential", 600.0)),
        ({"delay": 0}, ResolvedConfig(5, 0.0, "exponential", 600.0)),
        ({"delay": timedelta(minutes=1)}, ResolvedConfig(5, 60.0, "exponential", 600.0)),
        ({"backoff": "linear"}, ResolvedConfig(5, 10.0, "linear", 600.0)),
        ({"backoff": "constant", "limit": 1}, ResolvedConfig(1, 10.0, "constant", 600.0)),
    ],
)
def test_partial_retries_merge_over_the_defaults(
    retries: dict[str, Any], expected: ResolvedConfig
) -> None:
    assert resolve("s", {"retries": retries}) == expected
    assert resolve("s", StepConfig(retries=retries)) == expected
    assert resolve("s", retries=retries) == expected


def test_retry_config_dataclass() -> None:
    got = resolve("s", StepConfig(RetryConfig(limit=3, delay="2 seconds", backoff="linear"), 30))
    assert got == ResolvedConfig(3, 2.0, "linear", 30.0)
    # A RetryConfig keeps its own defaults for the fields left out.
    assert resolve("s", StepConfig(retries=RetryConfig(limit=1))) == ResolvedConfig(
        1, 10.0, "exponential", 600.0
    )
    assert resolve("s", {"retries": RetryConfig(backoff="constant")}).backoff == "constant"


@pytest.mark.parametrize(
    ("timeout", "seconds"),
    [(30, 30.0), ("30 seconds", 30.0), (timedelta(hours=1), 3600.0), (0.5, 0.5)],
)
def test_timeout_forms(timeout: object, seconds: float) -> None:
    assert resolve("s", {"timeout": timeout}) == ResolvedConfig(5, 10.0, "exponential", seconds)
    assert resolve("s", timeout=timeout).timeout == seconds


def test_keywords_override_the_config_and_none_keywords_are_ignored() -> None:
    given = {"retries": {"limit": 1}, "timeout": 5}
    assert resolve("s", given, timeout=7) == ResolvedConfig(1, 10.0, "exponential", 7.0)
    assert resolve("s", given, retries={"limit": 2}).limit == 2
    assert resolve("s", given, retries=None, timeout=None) == ResolvedConfig(
        1, 10.0, "exponential", 5.0
    )


def test_the_callers_dict_is_not_changed() -> None:
    given: dict[str, Any] = {"retries": {"limit": 1}}
    resolve("s", given, timeout=7)
    assert given == {"retries": {"limit": 1}}


def test_limits_at_the_edges() -> None:
    assert resolve("s", {"retries": {"limit": config.MAX_RETRIES}}).limit == config.MAX_RETRIES


def _refusal(given: object = None, **keywords: Any) -> str:
    with pytest.raises(ValidationError) as info:
        resolve("fetch user", given, **keywords)
    return str(info.value)


@pytest.mark.parametrize(
    ("given", "key"),
    [
        ({"retry": {"limit": 1}}, '"retry"'),
        ({"timeout": 5, "extra": 1}, '"extra"'),
        ({"retries": {"limt": 1}}, '"limt"'),
        ({"retries": {"limit": 1, "jitter": True}}, '"jitter"'),
    ],
)
def test_unknown_keys_are_refused(given: object, key: str) -> None:
    message = _refusal(given)
    assert 'step "fetch user"' in message
    assert f"unknown key {key}" in message


@pytest.mark.parametrize("limit", [-1, config.MAX_RETRIES + 1, True, False, 1.5, 2.0, "3", None])
def test_bad_limits_are_refused(limit: object) -> None:
    message = _refusal({"retries": {"limit": limit}})
    assert message.startswith('retries.limit of step "fetch user"')
    assert f"0 to {config.MAX_RETRIES}" in message
    assert repr(limit) in message


@pytest.mark.parametrize("backoff", ["quadratic", "Exponential", "", None, 2])
def test_bad_backoffs_are_refused(backoff: object) -> None:
    message = _refusal({"retries": {"backoff": backoff}})
    assert message.startswith('retries.backoff of step "fetch user"')
    assert "constant, linear or exponential" in message
    assert repr(backoff) in message


@pytest.mark.parametrize(
    ("delay", "shown"), [(-1, "-1"), ("soon", '"soon"'), (True, "True"), ("10", '"10"')]
)
def test_bad_delays_are_refused(delay: object, shown: str) -> None:
    message = _refusal({"retries": {"delay": delay}})
    assert message.startswith('retries.delay of step "fetch user"')
    assert shown in message


@pytest.mark.parametrize(
    ("timeout", "shown"),
    [
        (0, "more than zero"),
        ("0 seconds", "more than zero"),
        (timedelta(0), "more than zero"),
        (-1, "-1"),
        ("soon", '"soon"'),
        (True, "True"),
        (float("nan"), "nan"),
    ],
)
def test_bad_timeouts_are_refused(timeout: object, shown: str) -> None:
    message = _refusal({"timeout": timeout})
    assert message.startswith('timeout of step "fetch user"')
    assert shown in message


@pytest.mark.parametrize(("given", "type_name"), [("5 s", "str"), (5, "int"), ([1], "list")])
def test_a_config_that_is_not_a_mapping_is_refused(given: object, type_name: str) -> None:
    message = _refusal(given)
    assert message.startswith('config of step "fetch user"')
    assert f"got {type_name}" in message


@pytest.mark.parametrize(("retries", "type_name"), [(5, "int"), ("fast", "str"), ([1], "list")])
def test_retries_that_are_not_a_mapping_are_refused(retries: object, type_name: str) -> None:
    message = _refusal({"retries": retries})
    assert message.startswith('retries of step "fetch user"')
    assert "RetryConfig" in message
    assert f"got {type_name}" in message


@pytest.mark.parametrize("n", [1, 2, 3, 7])
def test_constant_backoff(n: int) -> None:
    assert retry_delay(ResolvedConfig(5, 3.0, "constant", 600.0), n) == 3.0


@pytest.mark.parametrize("n", [1, 2, 3, 7])
def test_linear_backoff(n: int) -> None:
    assert retry_delay(ResolvedConfig(5, 3.0, "linear", 600.0), n) == 3.0 * n


@pytest.mark.parametrize("n", [1, 2, 3, 7])
def test_exponential_backoff(n: int) -> None:
    assert retry_delay(ResolvedConfig(5, 3.0, "exponential", 600.0), n) == 3.0 * 2 ** (n - 1)


def test_default_backoff_sequence() -> None:
    assert [retry_delay(DEFAULTS, n) for n in range(1, 6)] == [10.0, 20.0, 40.0, 80.0, 160.0]


def test_zero_attempts_counts_as_one() -> None:
    for backoff in config.BACKOFFS:
        cfg = ResolvedConfig(5, 4.0, backoff, 600.0)
        assert retry_delay(cfg, 0) == retry_delay(cfg, 1) == 4.0


@pytest.mark.parametrize("delay", [0.0, 10.0])
def test_exponential_backoff_stays_a_number_up_to_the_retry_limit(delay: float) -> None:
    # limit 10 000 is accepted, so every attempt up to it must get a usable delay: no
    # OverflowError, no infinity (a wake time must be storable and shown as a date).
    cfg = resolve("s", {"retries": {"limit": config.MAX_RETRIES, "delay": delay}})
    previous = 0.0
    for n in (1, 2, 60, 1023, 1024, 1025, 2000, config.MAX_RETRIES + 1):
        value = retry_delay(cfg, n)
        assert math.isfinite(value), (n, value)
        assert value >= previous
        previous = value


def test_to_json_of_the_defaults() -> None:
    assert to_json(DEFAULTS) == {
        "retries": {"limit": 5, "delay": "10 seconds", "backoff": "exponential"},
        "timeout": "10 minutes",
    }


def test_to_json_shows_durations_in_words() -> None:
    assert to_json(ResolvedConfig(2, 0.25, "linear", 90.0)) == {
        "retries": {"limit": 2, "delay": "250 milliseconds", "backoff": "linear"},
        "timeout": "1.5 minutes",
    }


@pytest.mark.parametrize(
    "resolved",
    [DEFAULTS, ResolvedConfig(0, 0.0, "constant", 1.0), ResolvedConfig(3, 2.5, "linear", 90.0)],
)
def test_resolved_configs_resolve_to_themselves(resolved: ResolvedConfig) -> None:
    assert resolve("s", resolved.as_step_config()) == resolved
    # What details show can be fed back as a config.
    assert resolve("s", to_json(resolved)) == resolved
