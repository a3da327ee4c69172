"""``TestInstance``: one instance as a test sees it — its controls, and waits for its progress
that move a test's clock as they go."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from wf.engine.model import FINISHED, Status
from wf.errors import StepError
from wf.testing.errors import InstanceFailed, StatusUnreachable, TestKitError, WaitTimedOut
from wf.testing.history import History, HistoryStep
from wf.testing.timeline import timeline

if TYPE_CHECKING:
    from wf.testing.env import WorkflowTestEnv

FINAL = frozenset(status.value for status in FINISHED)
STATUSES = frozenset(status.value for status in Status)
DEFAULT_TIMEOUT = 10.0


class TestInstance:
    """An instance of a workflow in a ``WorkflowTestEnv`` (from ``env.create``,
    ``env.instance`` or ``env.instances``). Every wait takes ``timeout`` in real seconds; while
    it waits, an env in ``time="auto"`` skips to the next timer whenever the engine only waits."""

    __test__ = False

    def __init__(self, env: WorkflowTestEnv, workflow: str, instance_id: str) -> None:
        self.env = env
        self.workflow = workflow
        self.id = instance_id

    def __repr__(self) -> str:
        return f"<TestInstance {self.workflow}/{self.id}>"

    # ---- reads -----------------------------------------------------------------------------
    async def status(self) -> dict[str, Any]:
        """``{"status", "error", "output"}``, as the binding's ``status()`` gives it."""
        return await self.env.engine.status(self.workflow, self.id)

    async def details(self) -> dict[str, Any]:
        """The instance as ``GET …/instances/{id}`` shows it (steps, attempts, times)."""
        return await self.env.engine.details(self.workflow, self.id)

    async def history(self) -> History:
        """Its full history (as ``wf instances export`` writes it, but with the outputs of
        ``sensitive="output"`` steps: a test may check them)."""
        document = await self.env.engine.history(self.workflow, self.id, redact=False)
        return History.from_json(document)

    async def steps(self) -> list[HistoryStep]:
        """The recorded steps, in the order they began, each with its attempts."""
        return list((await self.history()).steps)

    async def timeline(self) -> str:
        """Its steps as a few lines of text (what failed waits show)."""
        return timeline(await self.details())

    def calls(self, step: str, *, index: int | None = None) -> int:
        """How many attempts of ``step`` began in this instance, mocked or real."""
        return self.env.calls(self.workflow, step, index=index, instance_id=self.id)

    # ---- waits -----------------------------------------------------------------------------
    async def result(self, timeout: float = DEFAULT_TIMEOUT) -> Any:
        """Wait until it finishes and return its output; raise ``InstanceFailed`` if it errored
        or was terminated."""
        found = await self._until(lambda s: s["status"] in FINAL, timeout, "to finish")
        if found["status"] == Status.COMPLETE.value:
            return found["output"]
        raise InstanceFailed(await self.timeline(), found["status"], found.get("error"))

    async def wait_for_status(
        self, status: str, timeout: float = DEFAULT_TIMEOUT
    ) -> dict[str, Any]:
        """Wait until the instance's status is ``status`` and return ``status()``. Raises
        ``StatusUnreachable`` at once when it finished with another status."""
        if status not in STATUSES:
            raise TestKitError(
                f'unknown status "{status}"; use one of {", ".join(sorted(STATUSES))}'
            )
        found = await self._until(
            lambda s: s["status"] == status or s["status"] in FINAL, timeout, f'to be "{status}"'
        )
        if found["status"] != status:
            raise StatusUnreachable(
                f'{self.workflow}/{self.id} can no longer be "{status}": it is '
                f'"{found["status"]}"\n{await self.timeline()}'
            )
        return found

    async def wait_for_step(
        self, name: str, index: int = 1, timeout: float = DEFAULT_TIMEOUT
    ) -> HistoryStep:
        """Wait until the ``index``-th step named ``name`` (1-based) has finished, succeeded or
        failed, and return it. Raises ``StatusUnreachable`` if the instance finished without."""
        found: HistoryStep | None = None

        async def done() -> bool:
            nonlocal found
            found = _finished_step(await self.steps(), name, index)
            if found is not None:
                return True
            return (await self.status())["status"] in FINAL

        if not await self.env.run_until(done, timeout):
            raise WaitTimedOut(
                f'{self.workflow}/{self.id}: step "{name}" (occurrence {index}) did not finish '
                f"within {timeout:g} s\n{await self.timeline()}"
            )
        if found is None:
            raise StatusUnreachable(
                f'{self.workflow}/{self.id} finished without step "{name}" (occurrence {index})'
                f" finishing\n{await self.timeline()}"
            )
        return found

    async def step_result(self, name: str, index: int = 1, timeout: float = DEFAULT_TIMEOUT) -> Any:
        """The output of the ``index``-th step named ``name`` once it finished (a wait's event
        payload; None for a sleep); raises its ``StepError`` if it failed."""
        step = await self.wait_for_step(name, index, timeout)
        if step.state == "failed":
            error = step.error or {"name": "Error", "message": "the step failed"}
            raise StepError(name, error["name"], error["message"], max(1, len(step.attempts)))
        return step.output

    async def _until(self, wanted: Any, timeout: float, what: str) -> dict[str, Any]:
        last: dict[str, Any] = {}

        async def done() -> bool:
            nonlocal last
            last = await self.status()
            return bool(wanted(last))

        if not await self.env.run_until(done, timeout):
            raise WaitTimedOut(
                f"{self.workflow}/{self.id} did not get {what} within {timeout:g} s (it is "
                f'"{last.get("status")}")\n{await self.timeline()}'
            )
        return last

    # ---- controls --------------------------------------------------------------------------
    async def send_event(self, type: str, payload: Any = None) -> None:
        """Send an event, as ``POST …/events/{type}`` does."""
        await self.env.engine.send_event(self.workflow, self.id, type, payload)

    async def pause(self) -> None:
        """Pause it (it stops at its next step boundary: ``wait_for_status("paused")``)."""
        await self.env.engine.pause(self.workflow, self.id)

    async def resume(self) -> None:
        """Resume it after a pause."""
        await self.env.engine.resume(self.workflow, self.id)

    async def terminate(self, rollback: bool = False) -> None:
        """Terminate it: it stops for good (``result()`` raises ``InstanceFailed``);
        ``rollback=True`` runs its rollback handlers first."""
        await self.env.engine.terminate(self.workflow, self.id, rollback=rollback)

    async def restart(self, from_step: Any = None, params: Any = None) -> None:
        """Run it again from the start (its history discarded), or ``from_step``
        (``{"name", "count"?, "type"?}``: earlier steps stay cached); ``params``: new params."""
        await self.env.engine.restart(self.workflow, self.id, from_step, params)

    async def delete(self) -> None:
        """Delete it and everything stored about it (a running instance stops at once)."""
        await self.env.engine.delete(self.workflow, self.id)


def _finished_step(steps: list[HistoryStep], name: str, index: int) -> HistoryStep | None:
    """The ``index``-th step named ``name``, if it finished: a ``step.do`` first, then a wait,
    then a sleep (each kind counts its own occurrences)."""
    for kind in ("do", "wait", "sleep"):
        for step in steps:
            if step.kind == kind and step.name == name and step.count == index:
                return step if step.state != "running" else None
    return None
