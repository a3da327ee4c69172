"""``WorkflowTestEnv``: a whole wf engine inside a test, on a throwaway database, with a clock the
test controls, mocks for steps and events, crash injection, and a determinism check (every
finished instance is replayed against the same code when the env closes)."""

from __future__ import annotations

import dataclasses
import re
import shutil
import sys
import tempfile
import uuid
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from types import ModuleType, TracebackType
from typing import Any

from wf.durations import Duration, to_seconds
from wf.engine import codec
from wf.engine.bindings import Env
from wf.engine.engine import Engine, EngineSettings, WorkflowSpec
from wf.engine.entrypoint import WorkflowEntrypoint
from wf.engine.limits import check_identifier
from wf.engine.model import InstanceRow
from wf.engine.runner import Notice
from wf.engine.scheduler import Scheduler
from wf.engine.store import open_store
from wf.errors import NonDeterminismError, WfError
from wf.testing.clock import TIME_MODES, TestClock, TimeMode
from wf.testing.errors import TestKitError
from wf.testing.history import History
from wf.testing.instance import DEFAULT_TIMEOUT, TestInstance
from wf.testing.mocks import Mocks, Selector
from wf.testing.replay import replay

_MISSING: Any = object()
# Finished instances the env replays when it closes (terminated ones stopped part-way).
_REPLAYED_STATUSES = ("complete", "errored")


class WorkflowTestEnv:
    """A wf engine for one test.

    ``project``: a folder with a ``wf.toml`` (or the file itself): its main module's workflows,
    its ``[vars]`` and ``.dev.vars`` (``vars`` given here win). A main module the test imported
    already (from the same file) is used as it is, not imported again, so what a test patches in
    it (a path, a client) is what the workflows see. Or ``workflows={"name": Class}`` (the
    binding of each is its name in upper case, ``-`` as ``_``) with ``vars``.

    ``time``: ``"auto"`` (default) skips to the next timer whenever the test waits on the env
    and every instance only waits (on a sleep, a retry delay or a wait's timeout) with no step
    body running; ``"manual"`` moves only on ``await env.advance(...)``; ``"real"`` is the wall
    clock. ``strict``: a ``step.do`` without a mock fails its instance, naming the step.
    ``replay_on_exit``: when the env closes, replay every instance that finished against the
    same code (a ``wf.NonDeterminismError`` fails the test). ``database``: a PostgreSQL URL or
    a SQLite path (default: a SQLite file in a temporary folder, removed on close).
    ``schedules``: fire the project's cron schedules on the env's clock (off by default: in
    auto time every skip would fire them, creating instances the test did not ask for).

    Use it as ``async with WorkflowTestEnv(...) as env:``.
    """

    __test__ = False

    def __init__(
        self,
        project: str | Path | None = None,
        *,
        workflows: Mapping[str, type[WorkflowEntrypoint]] | None = None,
        vars: Mapping[str, Any] | None = None,
        time: TimeMode = "auto",
        strict: bool = False,
        replay_on_exit: bool = True,
        database: str | Path | None = None,
        schedules: bool = False,
    ) -> None:
        if (project is None) == (workflows is None):
            raise TestKitError("give WorkflowTestEnv a project folder or workflows={name: Class}")
        if time not in TIME_MODES:
            raise TestKitError(f"time must be one of {', '.join(TIME_MODES)}, got {time!r}")
        self._project_path = None if project is None else Path(project)
        self._given_workflows = dict(workflows or {})
        self._given_vars = dict(vars or {})
        self.time = TestClock(time)
        self.strict = strict
        self.replay_on_exit = replay_on_exit
        self._database = None if database is None else str(database)
        self._schedules = schedules
        self._tempdir: str | None = None
        self.mocks = Mocks(strict, self._deliver_event)
        self.specs: list[WorkflowSpec] = []
        self._vars: dict[str, Any] = {}
        self._settings = EngineSettings()
        self._engine: Engine | None = None
        self._progress = 0
        self.notices: list[Notice] = []

    # ---- lifecycle ---------------------------------------------------------------------------
    async def __aenter__(self) -> WorkflowTestEnv:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close(check_replay=exc is None)

    async def start(self) -> None:
        """Load the workflows and start the engine (``async with`` does this)."""
        if self._engine is not None:
            raise TestKitError("this WorkflowTestEnv is started already")
        self._load()
        if self._database is None:
            self._tempdir = tempfile.mkdtemp(prefix="wf-test-")
            self._database = str(Path(self._tempdir) / "wf.db")
        self._engine = self._new_engine()
        await self._engine.start()

    async def close(self, check_replay: bool = True) -> None:
        """Stop the engine, replay what finished (unless ``check_replay`` is False) and remove
        the temporary database. Raises ``wf.NonDeterminismError`` for the first instance whose
        replay does not match."""
        engine, self._engine = self._engine, None
        if engine is None:
            return
        try:
            histories: list[History] = []
            if check_replay and self.replay_on_exit:
                histories = await self._finished_histories(engine)
            # No life runs from here, but the store stays open while the replays run: a run()
            # that uses a binding outside its steps (``self.env.OTHER.get(id)``) does so again
            # on replay, as it does on every replay in production.
            await engine.scheduler.stop()
            for history in histories:
                await self._replay(engine, history)
        finally:
            try:
                if engine.scheduler.lives:  # stopping failed part-way: leave no task behind
                    await engine.scheduler.stop()
            finally:
                await engine.store.close()
            if self._tempdir is not None:
                shutil.rmtree(self._tempdir, ignore_errors=True)
                self._tempdir = None

    async def restart_engine(self) -> None:
        """Stop the engine and start a new one on the same database, as after a crash when an
        instance was killed (``crash_after``): its recovery runs as it would in a new ``wf
        serve`` process (which starts with ``after_crash`` False: the crash is not counted
        against the instance, and it runs again at once).

        With a ``crash_after`` still armed, the engine first settles (no time moves), so an
        instance created just before gets to its crash instead of being stopped short of it
        and crashing in the new engine, where nothing would recover it."""
        engine = self.engine
        if self.mocks.crashes_armed():
            await self.settle()
        await engine.stop()
        self._engine = self._new_engine()
        await self._engine.start()

    @property
    def engine(self) -> Engine:
        """The running engine (a new one after ``restart_engine``)."""
        if self._engine is None:
            raise TestKitError("the WorkflowTestEnv is not started: use `async with`")
        return self._engine

    @property
    def bindings(self) -> Env:
        """What workflows see as ``self.env``: the vars and a binding per workflow."""
        return self.engine.env

    # ---- instances ---------------------------------------------------------------------------
    async def create(
        self,
        workflow: str,
        params: Any = None,
        *,
        id: str | None = None,
        crash_after: str | tuple[str, int] | None = None,
    ) -> TestInstance:
        """Create an instance (as a binding does). ``crash_after="step"`` (or ``("step", n)``
        for the n-th of that name) kills its life right after that step's outcome is durable,
        as a SIGKILL of the process would; ``await env.restart_engine()`` recovers it."""
        engine = self.engine
        if crash_after is not None:
            if id is None:
                id = str(uuid.uuid4())
            name, index = _crash_point(crash_after)
            self.mocks.crash_after(Selector(engine.workflow(workflow), name, index, id))
        handle = await engine.create(workflow, id=id, params=params)
        return TestInstance(self, handle.workflow_name, handle.id)

    def instance(self, workflow: str, instance_id: str) -> TestInstance:
        """A handle on an instance by id (one a workflow created through a binding, say)."""
        return TestInstance(self, self.engine.workflow(workflow), instance_id)

    async def instances(self, workflow: str, status: str | None = None) -> list[TestInstance]:
        """Every instance of ``workflow`` (oldest first), optionally only those in ``status``."""
        rows = await _all_rows(self.engine, workflow, status)
        return [TestInstance(self, row.workflow, row.id) for row in rows]

    # ---- mocks -------------------------------------------------------------------------------
    def mock_step(
        self,
        workflow: str,
        step: str,
        *,
        result: Any = _MISSING,
        error: BaseException | type[BaseException] | None = None,
        times: int | None = None,
        index: int | None = None,
        instance_id: str | None = None,
    ) -> None:
        """Answer attempts of ``step.do(step, …)`` without running its body: with ``result``
        (stored through the real codec and limits) or by raising ``error`` (an instance, or a
        class to instantiate). ``times``: only the first that many attempts of each step it
        matches (counted per instance and per occurrence of the name); without it, every
        attempt. ``index``: only the index-th step of that name (1-based); ``instance_id``:
        only in that instance. Mocked errors and forced timeouts
        answer attempts in the order they were given, before a mocked result."""
        selector = self._selector(workflow, step, index, instance_id)
        times = _times(times)
        if (result is _MISSING) == (error is None):
            raise TestKitError(f"mock_step({workflow!r}, {step!r}): give result= or error=")
        if error is not None:
            self.mocks.add_error(selector, error, times)
        else:
            self.mocks.add_result(selector, result, times)

    def force_step_timeout(
        self,
        workflow: str,
        step: str,
        *,
        times: int | None = None,
        index: int | None = None,
        instance_id: str | None = None,
    ) -> None:
        """Attempts of ``step`` fail as if their time ran out (``WorkflowTimeoutError``),
        without running the body: the first ``times`` of them, or every one."""
        self.mocks.add_timeout(self._selector(workflow, step, index, instance_id), _times(times))

    def mock_event(
        self, workflow: str, type: str, payload: Any = None, *, instance_id: str | None = None
    ) -> None:
        """Deliver an event of ``type`` to each instance of ``workflow`` (or only
        ``instance_id``) when it begins waiting for one, through the real ``send_event``. A
        type or payload that ``send_event`` would refuse is refused here, as it would be to the
        sender (not later, as the waiting instance's error)."""
        engine = self.engine
        engine.workflow(workflow)
        check_identifier(type, "event type", engine.limits.id_length)
        codec.encode_payload(payload, "event payload", engine.limits.payload_bytes)
        self.mocks.add_event(workflow, type, payload, instance_id)

    def mock_event_timeout(
        self,
        workflow: str,
        step: str,
        *,
        index: int | None = None,
        instance_id: str | None = None,
    ) -> None:
        """The wait ``step`` times out as soon as it begins (its ``StepError`` is raised)."""
        self.mocks.add_event_timeout(self._selector(workflow, step, index, instance_id))

    def disable_sleeps(self, workflow: str, names: list[str] | None = None) -> None:
        """Sleeps of ``workflow`` (all, or those named) end at once, whatever the clock."""
        self.engine.workflow(workflow)
        self.mocks.skip_sleeps(workflow, None if names is None else frozenset(names))

    def disable_retry_delays(self, workflow: str, names: list[str] | None = None) -> None:
        """Failed attempts of ``workflow``'s steps (all, or those named) are retried at once;
        the retries still happen and count."""
        self.engine.workflow(workflow)
        self.mocks.skip_retry_delays(workflow, None if names is None else frozenset(names))

    def calls(
        self,
        workflow: str,
        step: str,
        *,
        index: int | None = None,
        instance_id: str | None = None,
    ) -> int:
        """How many attempts of ``step.do(step, …)`` began, mocked or real, in every instance of
        ``workflow`` (or only ``instance_id``; only the ``index``-th step of that name)."""
        return self.mocks.count(self._selector(workflow, step, index, instance_id))

    # ---- time --------------------------------------------------------------------------------
    def now(self) -> datetime:
        """The env's clock."""
        return datetime.fromtimestamp(self.time.now(), tz=timezone.utc)

    async def advance(self, duration: Duration) -> None:
        """Move the clock forward (``"2 days"``, seconds or a ``timedelta``): every timer on the
        way fires in order, and what it wakes runs before the next. Returns once the engine is
        quiet again."""
        if self.time.mode == "real":
            raise TestKitError('advance() needs time="manual" or time="auto", not "real"')
        seconds = to_seconds(duration, "advance")
        if seconds < 0:
            raise TestKitError("advance() cannot go back in time")
        await self.time.advance(seconds, self._scheduler, self._progressed)

    async def settle(self) -> None:
        """Wait until the engine has nothing to do but wait (no time moves)."""
        await self.time.settle(self._scheduler, self._progressed)

    async def run_until(
        self, done: Callable[[], Awaitable[bool]], timeout: float = DEFAULT_TIMEOUT
    ) -> bool:
        """Wait until ``done()`` is true, moving time as the env's mode says; False if
        ``timeout`` real seconds passed first."""
        return await self.time.until(done, self._scheduler, self._progressed, timeout)

    # ---- internals ---------------------------------------------------------------------------
    def _load(self) -> None:
        if self._project_path is None:
            self.specs = [
                WorkflowSpec(name, cls, _binding_name(name))
                for name, cls in self._given_workflows.items()
            ]
            self._vars = self._given_vars
            return
        from wf.project import (
            CONFIG_NAME,
            import_main,
            load_project,
            load_workflows,
            read_dev_vars,
        )

        path = self._project_path
        config = path / CONFIG_NAME if path.is_dir() else path
        if not config.is_file():
            raise TestKitError(f"no {CONFIG_NAME} at {config}")
        try:
            project = load_project(config)
            module = _loaded_module(project.main) or import_main(project)
            self.specs = load_workflows(project, module)
            if not self._schedules:
                self.specs = [dataclasses.replace(spec, schedules=()) for spec in self.specs]
            self._vars = {**project.vars, **read_dev_vars(project), **self._given_vars}
        except WfError as exc:
            raise TestKitError(str(exc)) from None
        self._settings = EngineSettings(
            concurrency=project.engine.concurrency, retention=project.engine.retention
        )

    def _new_engine(self) -> Engine:
        assert self._database is not None
        return Engine(
            open_store(self._database, durability="os"),
            self.specs,
            vars=self._vars,
            clock=self.time.clock,
            settings=self._settings,
            on_notice=self._noticed,
            interceptor=self.mocks,
        )

    def _noticed(self, notice: Notice) -> None:
        self._progress += 1
        if notice.kind == "restarted":
            self.mocks.restarted(notice.workflow, notice.instance_id)
        self.notices.append(notice)

    def _progressed(self) -> int:
        return self._progress

    def _scheduler(self) -> Scheduler:
        return self.engine.scheduler

    def _selector(
        self, workflow: str, step: str, index: int | None, instance_id: str | None
    ) -> Selector:
        name = self.engine.workflow(workflow)
        _check_count("index", index)
        return Selector(name, step, index, instance_id)

    async def _deliver_event(
        self, workflow: str, instance_id: str, event_type: str, payload: Any
    ) -> None:
        await self.engine.send_event(workflow, instance_id, event_type, payload)

    async def _finished_histories(self, engine: Engine) -> list[History]:
        found = []
        for spec in self.specs:
            for status in _REPLAYED_STATUSES:
                for row in await _all_rows(engine, spec.name, status):
                    document = await engine.history(spec.name, row.id, redact=False)
                    found.append(History.from_json(document))
        return found

    async def _replay(self, engine: Engine, history: History) -> None:
        spec = next(s for s in self.specs if s.name == history.workflow)
        try:
            await replay(spec.cls, history, env=engine.env)
        except NonDeterminismError as exc:
            raise NonDeterminismError(
                f"replay of {history.workflow}/{history.id} at the end of the test: {exc}",
                index=exc.index,
                expected=exc.expected,
                got=exc.got,
            ) from None


async def _all_rows(engine: Engine, workflow: str, status: str | None) -> list[InstanceRow]:
    found: list[InstanceRow] = []
    page = 1
    while True:
        rows, total = await engine.list_instances(
            workflow, status=status, page=page, per_page=1000, newest_first=False
        )
        found.extend(rows)
        if len(found) >= total or not rows:
            return found
        page += 1


def _crash_point(value: object) -> tuple[str, int]:
    """``crash_after``'s step: a name (its first occurrence) or ``(name, n)``."""
    if isinstance(value, str):
        return value, 1
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], str):
        _check_count("index", value[1])
        return value[0], value[1]
    raise TestKitError(f'crash_after takes a step name or ("name", n), got {value!r}')


def _times(times: int | None) -> int | None:
    _check_count("times", times)
    return times


def _check_count(what: str, value: object) -> None:
    """``value`` comes from a user's test: check what the types promise."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise TestKitError(f"{what} must be a whole number from 1, got {value!r}")


def _binding_name(workflow: str) -> str | None:
    name = re.sub(r"\W", "_", workflow).upper()
    return name if name.isidentifier() else None


def _loaded_module(main: Path) -> ModuleType | None:
    """The project's main module if a test imported it already (one class per workflow)."""
    module = sys.modules.get(main.stem)
    file = getattr(module, "__file__", None)
    if module is not None and file is not None and Path(file).resolve() == main.resolve():
        return module
    return None
