"""EngineSettings.check and Engine(...) refusing configurations it cannot run."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from wf import WorkflowEntrypoint
from wf.engine import Engine, EngineSettings, Limits, WorkflowSpec
from wf.engine.engine import MAX_STEP_LIMIT
from wf.engine.store.sqlite import SqliteStore
from wf.errors import ValidationError


class Flow(WorkflowEntrypoint):
    async def run(self, event: Any, step: Any) -> Any:
        return None


class Other(WorkflowEntrypoint):
    async def run(self, event: Any, step: Any) -> Any:
        return 1


def build(
    tmp_path: Path,
    workflows: Sequence[WorkflowSpec],
    settings: EngineSettings | None = None,
    vars: dict[str, Any] | None = None,
) -> Engine:
    return Engine(SqliteStore(tmp_path / "wf.db"), workflows, settings=settings, vars=vars)


# ---- EngineSettings ----------------------------------------------------------------------------


def test_defaults_pass() -> None:
    settings = EngineSettings()
    settings.check()
    assert settings.concurrency == 1000
    assert settings.retention_seconds == 7 * 86400.0  # Cloudflare's default


def test_good_values_pass() -> None:
    EngineSettings(
        concurrency=1, retention="1 day", hibernate_after=0, lease=0.5, poll_interval=10
    ).check()
    assert EngineSettings(retention=3600).retention_seconds == 3600.0


def refusal(**fields: Any) -> str:
    with pytest.raises(ValidationError) as info:
        EngineSettings(**fields).check()
    return str(info.value)


@pytest.mark.parametrize("value", [0, -1, -1000])
def test_concurrency_below_one_is_refused(value: int) -> None:
    assert refusal(concurrency=value) == f"concurrency must be at least 1, got {value}"


@pytest.mark.parametrize("value", [True, False, 1.5, 10.0, "10", None])
def test_concurrency_must_be_an_integer(value: object) -> None:
    assert refusal(concurrency=value) == f"concurrency must be an integer, got {value!r}"


@pytest.mark.parametrize("value", [0, "0 seconds", 0.0])
def test_zero_retention_is_refused(value: object) -> None:
    assert refusal(retention=value) == "retention must be longer than zero"


@pytest.mark.parametrize(
    ("value", "shown"), [(-1, "-1"), ("forever", '"forever"'), ("30", '"30"'), (True, "True")]
)
def test_bad_retention_is_refused(value: object, shown: str) -> None:
    message = refusal(retention=value)
    assert message.startswith("retention")
    assert shown in message


@pytest.mark.parametrize(("value", "shown"), [(-1, "-1"), ("soon", '"soon"'), (None, "NoneType")])
def test_bad_hibernate_after_is_refused(value: object, shown: str) -> None:
    message = refusal(hibernate_after=value)
    assert message.startswith("hibernate_after")
    assert shown in message


@pytest.mark.parametrize("name", ["lease", "poll_interval"])
@pytest.mark.parametrize("value", [0, -1, float("nan"), float("inf"), "2", None])
def test_bad_lease_and_poll_interval_are_refused(name: str, value: object) -> None:
    assert refusal(**{name: value}) == (
        f"{name} must be a positive number of seconds, got {value!r}"
    )


@pytest.mark.parametrize("name", ["lease", "poll_interval"])
def test_bools_are_not_numbers_of_seconds(name: str) -> None:
    # As for concurrency and every duration: True is not 1 second.
    assert refusal(**{name: True}) == f"{name} must be a positive number of seconds, got True"


# ---- Engine(...) -------------------------------------------------------------------------------


def test_a_good_engine_is_built_without_touching_the_disk(tmp_path: Path) -> None:
    engine = build(
        tmp_path,
        [
            WorkflowSpec("one", Flow, "ONE"),
            WorkflowSpec("two", Other, "TWO"),
            WorkflowSpec("x", Flow),
        ],
        vars={"API_URL": "http://127.0.0.1"},
    )
    assert set(engine.specs) == {"one", "two", "x"}
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "settings",
    [
        EngineSettings(concurrency=0),
        EngineSettings(retention="0 seconds"),
        EngineSettings(hibernate_after="later"),
        EngineSettings(poll_interval=0),
    ],
)
def test_engine_checks_its_settings(tmp_path: Path, settings: EngineSettings) -> None:
    with pytest.raises(ValidationError):
        build(tmp_path, [WorkflowSpec("one", Flow)], settings)


def test_duplicate_workflow_names_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match=r'^workflow "one" is configured twice$'):
        build(tmp_path, [WorkflowSpec("one", Flow, "A"), WorkflowSpec("one", Other, "B")])


def test_duplicate_bindings_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match=r'^binding "SAME" is used by two workflows$'):
        build(tmp_path, [WorkflowSpec("one", Flow, "SAME"), WorkflowSpec("two", Other, "SAME")])


def test_a_var_named_like_a_binding_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="same name as a workflow binding"):
        build(tmp_path, [WorkflowSpec("one", Flow, "ONE")], vars={"ONE": 1})


class NotAnEntrypoint:
    async def run(self, event: Any, step: Any) -> Any:
        return None


def plain_function() -> None:
    return None


@pytest.mark.parametrize("cls", [NotAnEntrypoint, Flow(), plain_function, "Flow", None])
def test_a_class_that_is_not_a_workflow_entrypoint_is_refused(tmp_path: Path, cls: Any) -> None:
    with pytest.raises(ValidationError) as info:
        build(tmp_path, [WorkflowSpec("one", cls)])
    message = str(info.value)
    assert message.startswith('workflow "one": ')
    assert message.endswith("is not a WorkflowEntrypoint")


class SyncRun(WorkflowEntrypoint):
    def run(self, event: Any, step: Any) -> Any:
        return None


class GeneratorRun(WorkflowEntrypoint):
    async def run(self, event: Any, step: Any) -> Any:
        yield None


@pytest.mark.parametrize("cls", [SyncRun, GeneratorRun])
def test_a_run_that_is_not_async_def_is_refused(tmp_path: Path, cls: Any) -> None:
    with pytest.raises(ValidationError) as info:
        build(tmp_path, [WorkflowSpec("one", cls)])
    assert str(info.value) == (
        f'workflow "one": {cls.__name__}.run must be "async def run(self, event, step)"'
    )


@pytest.mark.parametrize("limit", [0, -1, MAX_STEP_LIMIT + 1])
def test_step_limit_out_of_range_is_refused(tmp_path: Path, limit: int) -> None:
    with pytest.raises(ValidationError) as info:
        build(tmp_path, [WorkflowSpec("one", Flow, step_limit=limit)])
    assert str(info.value) == (
        f'workflow "one": limits.steps must be from 1 to {MAX_STEP_LIMIT}, got {limit}'
    )


@pytest.mark.parametrize("limit", [True, 1.5, 100.0, "100", None])
def test_step_limit_must_be_an_integer(tmp_path: Path, limit: Any) -> None:
    with pytest.raises(ValidationError, match=r'^workflow "one": limits.steps must be an integer$'):
        build(tmp_path, [WorkflowSpec("one", Flow, step_limit=limit)])


@pytest.mark.parametrize("limit", [1, 10_000, MAX_STEP_LIMIT])
def test_step_limits_in_range_are_accepted(tmp_path: Path, limit: int) -> None:
    engine = build(tmp_path, [WorkflowSpec("one", Flow, step_limit=limit)])
    assert engine.specs["one"].step_limit == limit


@pytest.mark.parametrize("name", ["", "has space", "-dash", "x" * 65, "dot.ted"])
def test_bad_workflow_names_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValidationError, match=r"^workflow name"):
        build(tmp_path, [WorkflowSpec(name, Flow)])


def test_workflow_name_length_follows_the_limits(tmp_path: Path) -> None:
    build(tmp_path, [WorkflowSpec("x" * 64, Flow)])
    settings = EngineSettings(limits=Limits(workflow_name_length=4))
    with pytest.raises(ValidationError, match="the limit is 4"):
        build(tmp_path, [WorkflowSpec("abcde", Flow)], settings)


@pytest.mark.parametrize("binding", ["not-an-identifier", "1ST", "", "a b"])
def test_bindings_must_be_identifiers(tmp_path: Path, binding: str) -> None:
    with pytest.raises(ValidationError) as info:
        build(tmp_path, [WorkflowSpec("one", Flow, binding)])
    assert str(info.value) == (
        f'workflow "one": binding "{binding}" is not a valid Python identifier'
    )
