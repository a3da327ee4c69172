"""The API of a reloaded ``wf dev`` child before its engine can start.

On a reload the previous child keeps the database for up to its grace period, so that step
attempts it is running can finish. Meanwhile the new child already answers every request: the
same controller operations, over the store joined without its lock (as ``wf serve``'s workers
join theirs). Nothing runs here; whatever was created, sent or changed is in the database, and
the engine picks it up when it starts a moment later.
"""

from __future__ import annotations

from collections.abc import Callable

from wf.devserver.database import joined_store
from wf.engine.controller import Controller, NobodyToTell
from wf.engine.engine import Engine
from wf.engine.flow import FlowControl
from wf.engine.retention import Retention
from wf.engine.runner import Notice
from wf.engine.store.base import Store
from wf.errors import WfError


class Standby(Controller):
    """The engine's workflows and limits, over the store joined while another process holds it."""

    def __init__(
        self, engine: Engine, store: Store, on_notice: Callable[[Notice], None] | None
    ) -> None:
        super().__init__(store, engine.clock, engine.limits, on_notice)
        self.engine = engine
        self.notifier = NobodyToTell()

    @classmethod
    async def join(
        cls,
        engine: Engine,
        location: str,
        durability: str,
        on_notice: Callable[[Notice], None] | None,
    ) -> Standby | None:
        """Join ``engine``'s database (at ``location``) while another process holds it; None if
        it cannot be joined (not created yet, another schema…): then requests wait for the
        engine."""
        joined = joined_store(location, durability)
        try:
            await joined.open()
        except WfError:
            return None
        return cls(engine, joined, on_notice)

    async def close(self) -> None:
        await self.store.close()

    def workflow_names(self) -> list[str]:
        return self.engine.workflow_names()

    def new_instance_version(self, workflow: str) -> str:
        return self.engine.new_instance_version(workflow)

    def current_version(self) -> str | None:
        return self.engine.current_version()

    def describe_workflow(self, name: str) -> tuple[str | None, str]:
        return self.engine.describe_workflow(name)

    def workflow_schedules(self, name: str) -> tuple[str, ...]:
        return self.engine.workflow_schedules(name)

    def default_retention(self, workflow: str) -> Retention:
        return self.engine.default_retention(workflow)

    def flow_control(self, workflow: str) -> FlowControl:
        return self.engine.flow_control(workflow)
