"""The test kit's answers to the engine's questions (``wf.engine.intercept``): mocked step
results and errors, forced timeouts, skipped sleeps and retry delays, mocked events, crash
points, and a count of every attempt (the spies)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from wf.engine.intercept import Answer, ForcedTimeout, MockedError, MockedResult, StepCall
from wf.engine.model import StepKind
from wf.errors import NonRetryableError
from wf.testing.errors import TestKitError

SendEvent = Callable[[str, str, str, Any], Awaitable[None]]


@dataclass(frozen=True)
class Selector:
    """Which steps a mock answers: a workflow's steps of one name, optionally only the
    ``index``-th of that name (1-based) and only in one instance."""

    workflow: str
    name: str
    index: int | None = None
    instance_id: str | None = None

    def matches(self, call: StepCall) -> bool:
        return (
            call.workflow == self.workflow
            and call.name == self.name
            and (self.index is None or call.count == self.index)
            and (self.instance_id is None or call.instance_id == self.instance_id)
        )

    def __str__(self) -> str:
        shown = f'step "{self.name}"'
        if self.index is not None:
            shown += f" (occurrence {self.index})"
        shown += f' of workflow "{self.workflow}"'
        if self.instance_id is not None:
            shown += f' in instance "{self.instance_id}"'
        return shown


@dataclass
class _StepMock:
    selector: Selector
    answer: Answer | Callable[[], Answer]
    times: int | None  # None: every attempt
    used: Counter[tuple[str, int]] = field(default_factory=Counter)  # (instance, count) -> n

    def take(self, call: StepCall) -> Answer | None:
        key = (call.instance_id, call.count)
        if self.times is not None and self.used[key] >= self.times:
            return None
        self.used[key] += 1
        return self.answer() if callable(self.answer) else self.answer


@dataclass
class _EventMock:
    workflow: str
    event_type: str
    payload: Any
    instance_id: str | None
    delivered: set[str] = field(default_factory=set)  # instances that got it (this run)


class Mocks:
    """Everything a ``WorkflowTestEnv`` was told to stand in for, and what happened."""

    def __init__(self, strict: bool, send_event: SendEvent) -> None:
        self.strict = strict
        self._send_event = send_event
        self._failures: list[_StepMock] = []  # mocked errors and forced timeouts, in order
        self._results: list[_StepMock] = []
        self._events: list[_EventMock] = []
        self._event_timeouts: list[Selector] = []
        self._sleeps: list[tuple[str, frozenset[str] | None]] = []
        self._retry_delays: list[tuple[str, frozenset[str] | None]] = []
        self._crashes: list[Selector] = []
        self.calls: Counter[tuple[str, str, str, int]] = Counter()  # (wf, instance, name, count)

    # ---- what a test says ---------------------------------------------------------------------
    def add_result(self, selector: Selector, value: Any, times: int | None) -> None:
        for existing in self._results:
            if existing.selector == selector:
                raise TestKitError(f"{selector} is mocked twice: give its result once")
        self._results.append(_StepMock(selector, MockedResult(value), times))

    def add_error(self, selector: Selector, error: BaseException | type, times: int | None) -> None:
        if isinstance(error, type):
            if not issubclass(error, BaseException):
                raise TestKitError(f"error= must be an exception, got {error.__name__}")
            exc_type = error
            try:  # made anew for each attempt: a class that needs arguments fails here, once
                exc_type()
            except Exception:
                raise TestKitError(
                    f"error={exc_type.__name__} cannot be made without arguments: give an "
                    f"instance, error={exc_type.__name__}(...)"
                ) from None
            self._failures.append(_StepMock(selector, lambda: MockedError(exc_type()), times))
            return
        if not isinstance(error, BaseException):
            raise TestKitError(f"error= must be an exception, got {type(error).__name__}")
        self._failures.append(_StepMock(selector, MockedError(error), times))

    def add_timeout(self, selector: Selector, times: int | None) -> None:
        self._failures.append(_StepMock(selector, ForcedTimeout(), times))

    def add_event(
        self, workflow: str, event_type: str, payload: Any, instance_id: str | None
    ) -> None:
        self._events.append(_EventMock(workflow, event_type, payload, instance_id))

    def add_event_timeout(self, selector: Selector) -> None:
        self._event_timeouts.append(selector)

    def skip_sleeps(self, workflow: str, names: frozenset[str] | None) -> None:
        self._sleeps.append((workflow, names))

    def skip_retry_delays(self, workflow: str, names: frozenset[str] | None) -> None:
        self._retry_delays.append((workflow, names))

    def restarted(self, workflow: str, instance_id: str) -> None:
        """The instance starts over (its consumed events are gone): its new run's waits get the
        mocked events again, and ``times=`` mocks answer its new attempts afresh."""
        for mock in self._events:
            if mock.workflow == workflow:
                mock.delivered.discard(instance_id)
        for step_mock in (*self._failures, *self._results):
            if step_mock.selector.workflow == workflow:
                for key in [key for key in step_mock.used if key[0] == instance_id]:
                    del step_mock.used[key]

    def crash_after(self, selector: Selector) -> None:
        self._crashes.append(selector)

    def count(self, selector: Selector) -> int:
        return sum(
            n
            for (workflow, instance, name, count), n in self.calls.items()
            if selector.matches(StepCall(workflow, instance, StepKind.DO, name, count))
        )

    # ---- the engine's questions (wf.engine.intercept.Interceptor) -----------------------------
    def attempt(self, call: StepCall, number: int) -> Answer | None:
        if call.kind is StepKind.ROLLBACK:  # a rollback handler is the code under test: it runs
            return None
        self.calls[call.workflow, call.instance_id, call.name, call.count] += 1
        for mocks in (self._failures, self._results):
            for mock in mocks:
                if mock.selector.matches(call):
                    answer = mock.take(call)
                    if answer is not None:
                        return answer
        if self.strict:
            return MockedError(
                NonRetryableError(
                    f'step "{call.name}" (occurrence {call.count}) of workflow '
                    f'"{call.workflow}" has no mock, and the test env is strict: mock it with '
                    f'env.mock_step("{call.workflow}", "{call.name}", result=...)'
                )
            )
        return None

    def skip_sleep(self, call: StepCall) -> bool:
        return _listed(self._sleeps, call)

    def skip_retry_delay(self, call: StepCall) -> bool:
        return _listed(self._retry_delays, call)

    async def wait_begins(self, call: StepCall, event_type: str) -> Literal["timeout"] | None:
        if any(selector.matches(call) for selector in self._event_timeouts):
            return "timeout"
        for mock in self._events:
            if (
                mock.workflow == call.workflow
                and mock.event_type == event_type
                and mock.instance_id in (None, call.instance_id)
                and call.instance_id not in mock.delivered
            ):
                mock.delivered.add(call.instance_id)
                await self._send_event(call.workflow, call.instance_id, event_type, mock.payload)
                break
        return None

    def crashes_armed(self) -> bool:
        return bool(self._crashes)

    def kill_after(self, call: StepCall) -> bool:
        for selector in self._crashes:
            if selector.matches(call):
                self._crashes.remove(selector)  # once: the recovered life goes on
                return True
        return False


def _listed(entries: list[tuple[str, frozenset[str] | None]], call: StepCall) -> bool:
    return any(
        workflow == call.workflow and (names is None or call.name in names)
        for workflow, names in entries
    )
