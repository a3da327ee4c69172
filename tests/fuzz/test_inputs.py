"""Property tests of what users write: durations, identifiers, step configs, params, step names.

Each input either is accepted as documented or is refused with ``ValidationError`` whose
message is one line; no other exception ever escapes. Params go through the real engine on a
real SQLite file (``live_api``): what is accepted round-trips, what is refused is not written.
"""

from __future__ import annotations

import itertools
import math
import re
import unicodedata
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from tests.fuzz.helpers import LiveApi, fuzz, one_line, wait_until
from tests.fuzz.strategies import identifiers, json_values, unicode_text
from wf import RetryConfig, StepConfig
from wf.durations import format_duration, to_seconds
from wf.engine import codec
from wf.engine.config import BACKOFFS, MAX_RETRIES, resolve, retry_delay, to_json
from wf.engine.limits import DEFAULT_LIMITS, check_identifier, check_step_name
from wf.engine.model import ResolvedConfig
from wf.errors import InstanceNotFound, ValidationError

# The contract's pattern, anchored at the very end (Python's "$" also matches before a "\n").
IDENTIFIER = re.compile(r"[a-zA-Z0-9_][a-zA-Z0-9\-_]*\Z", re.ASCII)
UNIT_SECONDS = {
    **dict.fromkeys(("ms", "millisecond", "milliseconds"), 0.001),
    **dict.fromkeys(("s", "sec", "secs", "second", "seconds"), 1.0),
    **dict.fromkeys(("m", "min", "mins", "minute", "minutes"), 60.0),
    **dict.fromkeys(("h", "hr", "hrs", "hour", "hours"), 3600.0),
    **dict.fromkeys(("d", "day", "days"), 86400.0),
    **dict.fromkeys(("w", "week", "weeks"), 7 * 86400.0),
    **dict.fromkeys(("month", "months"), 30 * 86400.0),
    **dict.fromkeys(("y", "year", "years"), 365.25 * 86400.0),
}
UNITS = tuple(UNIT_SECONDS)

# ---- durations -------------------------------------------------------------------------------

numbers = st.one_of(
    st.integers(),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.floats(),
)
duration_strings = st.one_of(
    unicode_text(),
    st.builds(
        lambda number, space, unit, pad: f"{pad}{number}{space}{unit}{pad}",
        st.one_of(
            st.integers(min_value=0).map(str),
            st.floats(min_value=0, allow_nan=False, allow_infinity=False).map(repr),
            st.sampled_from(("1e400", ".5", "5.", "-1", "9" * 400, "٣", "１", "1_000", "0x10")),
        ),
        st.sampled_from(("", " ", "  ", "\t", "\n", "\u00a0")),
        st.one_of(st.sampled_from(UNITS), st.sampled_from(UNITS).map(str.upper), unicode_text(8)),
        st.sampled_from(("", " ", "\n")),
    ),
)
timedeltas = st.timedeltas(min_value=timedelta.min, max_value=timedelta.max)
anything = st.one_of(
    st.none(),
    st.booleans(),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.just(object()),
    st.binary(max_size=8),
    st.complex_numbers(),
)
durations = st.one_of(numbers, duration_strings, timedeltas, anything)


@fuzz(600)
@given(value=durations)
def test_a_duration_is_a_finite_non_negative_float_or_a_validation_error(value: Any) -> None:
    try:
        seconds = to_seconds(value, "timeout")
    except ValidationError:
        return
    assert type(seconds) is float
    assert math.isfinite(seconds) and seconds >= 0


@fuzz(300)
@given(value=durations)
def test_duration_errors_are_one_line(value: Any) -> None:
    try:
        to_seconds(value, "timeout")
    except ValidationError as exc:
        assert one_line(str(exc)), str(exc)
        assert "timeout" in str(exc)
    except Exception:  # the test above reports any other exception
        pass


@fuzz(300)
@given(
    number=st.one_of(
        st.integers(min_value=0, max_value=10**9),
        st.decimals(min_value=0, max_value=10**6, places=3).map(float),
    ),
    unit=st.sampled_from(UNITS),
    case=st.sampled_from((str.lower, str.upper, str.title)),
    space=st.sampled_from(("", " ", "  ", "\t")),
)
def test_a_number_and_a_unit_is_that_many_seconds(
    number: float, unit: str, case: Any, space: str
) -> None:
    text = f"{space}{number}{space}{case(unit)}{space}"
    assert math.isclose(to_seconds(text), float(number) * UNIT_SECONDS[unit], rel_tol=1e-12)


@fuzz(400)
@given(seconds=st.floats(min_value=0, max_value=1e15, allow_nan=False))
def test_format_duration_parses_back_to_about_the_same_value(seconds: float) -> None:
    text = format_duration(seconds)
    assert one_line(text)
    back = to_seconds(text)
    # two decimals of the unit shown: at most 0.5 % off, or half a microsecond below 1 ms
    assert math.isclose(back, seconds, rel_tol=0.006, abs_tol=1e-6), (seconds, text, back)


# ---- identifiers: instance ids, workflow names, event types ---------------------------------

identifier_candidates = st.one_of(
    identifiers(max_size=300),
    unicode_text(),
    st.text(alphabet="aZ09_-\n\x00 .é", max_size=12),
    st.sampled_from(("a\n", "_", "-a", "a-", "٣", "ａ", "İ", "K", "ß", "a\u200b", "a\x00")),
    anything,
    numbers,
)


@fuzz(800)
@given(
    value=identifier_candidates,
    what=st.sampled_from(("instance id", "workflow name", "event type")),
    limit=st.sampled_from((DEFAULT_LIMITS.workflow_name_length, DEFAULT_LIMITS.id_length, 1, 7)),
)
def test_identifiers_accept_exactly_the_pattern_up_to_the_limit(
    value: Any, what: str, limit: int
) -> None:
    valid = isinstance(value, str) and 0 < len(value) <= limit and bool(IDENTIFIER.match(value))
    try:
        result = check_identifier(value, what, limit)
    except ValidationError as exc:
        assert not valid, f"{value!r} was refused: {exc}"
        assert what in str(exc)
    else:
        assert valid, f"{value!r} was accepted"
        assert result == value


@fuzz(300)
@given(value=identifier_candidates)
def test_identifier_errors_are_one_line(value: Any) -> None:
    try:
        check_identifier(value, "instance id", DEFAULT_LIMITS.id_length)
    except ValidationError as exc:
        assert one_line(str(exc)), str(exc)


# ---- step config -----------------------------------------------------------------------------

config_values = st.one_of(durations, st.sampled_from(BACKOFFS), st.integers(-5, MAX_RETRIES + 5))


def _mapping(keys: tuple[str, ...]) -> st.SearchStrategy[dict[Any, Any]]:
    return st.dictionaries(
        st.one_of(st.sampled_from(keys), st.text(max_size=6), st.integers(), st.none()),
        config_values,
        max_size=4,
    )


retry_forms = st.one_of(
    st.none(),
    _mapping(("limit", "delay", "backoff")),
    st.builds(RetryConfig, limit=config_values, delay=config_values, backoff=config_values),
    anything,
)


@dataclass
class OtherConfig:  # any dataclass is read as a mapping of its fields
    retries: Any = None
    timeout: Any = "1 minute"


step_configs = st.one_of(
    st.none(),
    st.dictionaries(
        st.one_of(st.sampled_from(("retries", "timeout")), st.text(max_size=6), st.integers()),
        st.one_of(retry_forms, config_values),
        max_size=3,
    ),
    st.builds(StepConfig, retries=retry_forms, timeout=config_values),
    st.builds(OtherConfig, retries=retry_forms, timeout=config_values),
    anything,
    st.just(StepConfig),  # the class itself, not an instance
)


@fuzz(800)
@given(config=step_configs)
def test_any_step_config_resolves_or_is_a_validation_error(config: Any) -> None:
    try:
        resolved = resolve("charge card", config)
    except ValidationError as exc:
        assert one_line(str(exc)), str(exc)
        assert "charge card" in str(exc)
        return
    assert isinstance(resolved, ResolvedConfig)
    assert type(resolved.limit) is int and 0 <= resolved.limit <= MAX_RETRIES
    assert math.isfinite(resolved.delay) and resolved.delay >= 0
    assert resolved.backoff in BACKOFFS
    assert math.isfinite(resolved.timeout) and resolved.timeout > 0
    for attempts in (1, 2, 64, 10_000):
        delay = retry_delay(resolved, attempts)
        assert math.isfinite(delay) and delay >= 0
    shown = to_json(resolved)
    assert to_seconds(shown["timeout"]) > 0
    assert to_seconds(shown["retries"]["delay"]) >= 0


# ---- params: the codec and engine.create -----------------------------------------------------


def _normalised(value: Any) -> Any:
    """JSON's view of a value (the codec turns tuples into lists)."""
    if isinstance(value, (list, tuple)):
        return [_normalised(v) for v in value]
    if isinstance(value, dict):
        return {k: _normalised(v) for k, v in value.items()}
    return value


@fuzz(500)
@given(value=json_values(max_leaves=40))
def test_any_json_value_round_trips_through_the_codec(value: Any) -> None:
    text = codec.encode_payload(value, "params", DEFAULT_LIMITS.payload_bytes)
    assert codec.decode(text) == _normalised(value)
    assert codec.encoded_size(text) <= DEFAULT_LIMITS.payload_bytes


class Unserialisable:
    pass


def _circular() -> list[Any]:
    loop: list[Any] = []
    loop.append(loop)
    return loop


not_json_leaves = st.one_of(
    st.sampled_from((math.nan, math.inf, -math.inf)),
    st.builds(set),
    st.binary(min_size=1, max_size=4),
    st.complex_numbers(),
    st.builds(Unserialisable),
    st.builds(_circular),
    st.just({(1, 2): "tuple key"}),
    st.integers(min_value=10**4400, max_value=10**4500),  # beyond Python's int-to-text limit
    st.sampled_from(("\ud800", "a\udfff", "\udbff")),  # lone surrogates: not encodable
)
not_json = st.recursive(
    not_json_leaves,
    lambda children: st.one_of(
        st.lists(children, min_size=1, max_size=2),
        st.dictionaries(st.text(max_size=3), children, min_size=1, max_size=2),
    ),
    max_leaves=3,
)


@fuzz(300)
@given(value=not_json)
def test_what_is_not_json_is_a_validation_error(value: Any) -> None:
    with pytest.raises(ValidationError) as refused:
        codec.encode_payload(value, "params", DEFAULT_LIMITS.payload_bytes)
    assert str(refused.value).startswith("params")
    assert one_line(str(refused.value))


@fuzz(300)
@given(value=json_values(), limit=st.integers(min_value=0, max_value=64))
def test_oversized_params_are_a_validation_error_naming_the_limit(value: Any, limit: int) -> None:
    size = codec.encoded_size(codec.encode(value))
    try:
        codec.encode_payload(value, "event payload", limit)
    except ValidationError as exc:
        assert size > limit
        assert f"the limit is {limit} bytes" in str(exc)
    else:
        assert size <= limit


_ids = itertools.count()


def _new_id() -> str:
    return f"p{next(_ids)}"


async def _create_and_read(api: LiveApi, instance_id: str, params: Any) -> dict[str, Any]:
    await api.engine.create("napper", instance_id, params)
    return await api.engine.details("napper", instance_id)


@fuzz(150)
@given(params=json_values(max_leaves=30))
def test_engine_create_stores_any_json_params_as_given(live_api: LiveApi, params: Any) -> None:
    instance_id = _new_id()
    details = live_api.run(_create_and_read(live_api, instance_id, params))
    expected = {} if params is None else _normalised(params)
    assert details["params"] == expected


async def _refused(api: LiveApi, workflow: str, instance_id: str, params: Any) -> str:
    _, before = await api.engine.list_instances(workflow, per_page=1)
    with pytest.raises(ValidationError) as refused:
        await api.engine.create(workflow, instance_id, params)
    with pytest.raises(InstanceNotFound):
        await api.engine.status(workflow, instance_id)
    _, after = await api.engine.list_instances(workflow, per_page=1)
    assert after == before  # nothing written
    return str(refused.value)


@fuzz(100)
@given(params=not_json)
def test_engine_create_refuses_what_is_not_json_and_writes_nothing(
    live_api: LiveApi, params: Any
) -> None:
    message = live_api.run(_refused(live_api, "napper", _new_id(), params))
    assert one_line(message) and "params" in message


@pytest.mark.parametrize("extra", [2, 1000, 400_000])
def test_engine_create_refuses_oversized_params_and_writes_nothing(
    live_api: LiveApi, extra: int
) -> None:
    limit = DEFAULT_LIMITS.payload_bytes
    # "é" is two bytes: the limit is in bytes of UTF-8, not characters
    params = {"blob": "é" * ((limit - 11) // 2) + "x" * extra}
    assert codec.encoded_size(codec.encode(params)) > limit
    message = live_api.run(_refused(live_api, "quick", _new_id(), params))
    assert f"the limit is {limit} bytes" in message


@fuzz(60)
@given(instance_id=identifier_candidates)
def test_engine_create_refuses_bad_ids_and_writes_nothing(
    live_api: LiveApi, instance_id: Any
) -> None:
    valid = isinstance(instance_id, str) and 0 < len(instance_id) <= DEFAULT_LIMITS.id_length
    assume(instance_id is not None and not (valid and IDENTIFIER.match(instance_id)))

    async def attempt() -> None:
        _, before = await live_api.engine.list_instances("napper", per_page=1)
        with pytest.raises(ValidationError):
            await live_api.engine.create("napper", instance_id, {})
        _, after = await live_api.engine.list_instances("napper", per_page=1)
        assert after == before

    live_api.run(attempt())


# ---- step names ------------------------------------------------------------------------------

C0_AND_DEL = re.compile(r"[\x00-\x1f\x7f-\x9f]")  # C0, DEL and C1: refused
step_name_candidates = st.one_of(
    unicode_text(max_size=300),
    st.text(st.characters(codec="utf-8", categories=("Cc", "Zl", "Zp", "Mn", "So")), max_size=8),
    st.builds(
        lambda c, n: c * n,
        st.sampled_from(("a", "é", "😀", "\u0301", "\n")),
        st.sampled_from((255, 256, 257, 5000)),
    ),
    st.sampled_from(("\ud800", "a\udfff b")),  # lone surrogates: SQLite cannot store them
    anything,
)


def _step_name_ok(value: Any) -> bool:
    return (
        isinstance(value, str)
        and 0 < len(value) <= DEFAULT_LIMITS.step_name_length
        and not C0_AND_DEL.search(value)
        and not any(unicodedata.category(c) == "Cs" for c in value)
    )


@fuzz(800)
@given(name=step_name_candidates)
def test_step_names_are_checked(name: Any) -> None:
    try:
        check_step_name(name)
    except ValidationError as exc:
        assert not _step_name_ok(name), f"{name!r} was refused: {exc}"
    else:
        assert _step_name_ok(name), f"{name!r} was accepted"


@fuzz(300)
@given(name=step_name_candidates)
def test_step_name_errors_are_one_line(name: Any) -> None:
    try:
        check_step_name(name)
    except ValidationError as exc:
        assert one_line(str(exc)), str(exc)


@pytest.mark.parametrize("name", ["\x85", "a\x9fb", "\x80"])
def test_step_names_refuse_c1_control_characters(name: str) -> None:
    """U+0080..U+009F are control characters too (U+0085 ends a line in many renderers)."""
    with pytest.raises(ValidationError):
        check_step_name(name)


@fuzz(80)
@given(name=step_name_candidates.filter(lambda v: isinstance(v, str)))
def test_step_names_through_the_engine(live_api: LiveApi, name: str) -> None:
    """A step name the engine accepts is recorded as given; any other one fails the instance
    with ValidationError (never another error, never a crash)."""
    instance_id = _new_id()
    live_api.run(
        live_api.engine.create("named", instance_id, {"codepoints": [ord(c) for c in name]})
    )
    status = _wait_finished(live_api, "named", instance_id, timeout=10)
    if _step_name_ok(name):
        assert status["status"] == "complete", status
        assert status["output"] == {"ran": name}
        details = live_api.run(live_api.engine.details("named", instance_id))
        assert [s["name"] for s in details["steps"]] == [f"{name}-1"]
    else:
        assert status["status"] == "errored", status
        assert status["error"]["name"] == "ValidationError", status


def _wait_finished(api: LiveApi, workflow: str, instance_id: str, timeout: float) -> Any:
    seen: list[dict[str, Any]] = []

    def finished() -> dict[str, Any] | None:
        seen.append(api.run(api.engine.status(workflow, instance_id)))
        return seen[-1] if seen[-1]["status"] in ("complete", "errored", "terminated") else None

    try:
        return wait_until(finished, timeout=timeout)
    except AssertionError:
        raise AssertionError(f"{workflow}/{instance_id} did not finish: {seen[-1]}") from None


# ---- outputs that cannot be stored -----------------------------------------------------------


@pytest.mark.parametrize("source", ["step", "run"])
@pytest.mark.parametrize("text", ["plain é 😀 \u2028", "a\udfffb"])
def test_outputs_that_cannot_be_stored_fail_the_instance(
    live_api: LiveApi, source: str, text: str
) -> None:
    """A step (or run()) returning a lone surrogate cannot be stored as UTF-8 JSON: the step fails
    at once with StepOutputError (retrying cannot help) and the instance ends errored; it never
    stays running."""
    instance_id = _new_id()
    params = {"codepoints": [ord(c) for c in text], "from": source}
    live_api.run(live_api.engine.create("emit", instance_id, params))
    status = _wait_finished(live_api, "emit", instance_id, timeout=10)
    storable = not any(unicodedata.category(c) == "Cs" for c in text)
    if storable:
        assert status == {"status": "complete", "error": None, "output": text, "rollback": None}
        return
    assert status["status"] == "errored", status
    if source == "step":
        details = live_api.run(live_api.engine.details("emit", instance_id))
        (step,) = details["steps"]
        assert step["error"]["name"] == "StepOutputError", step
        assert len(step["attempts"]) == 1, step
    assert one_line(status["error"]["message"]), status
