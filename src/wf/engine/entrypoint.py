"""The base class users subclass: ``class Purchase(WorkflowEntrypoint): async def run(...)``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from wf.engine.model import WorkflowEvent

if TYPE_CHECKING:
    from wf.engine.step import WorkflowStep


class WorkflowEntrypoint:
    """Subclass it and define ``async def run(self, event, step)``.

    ``self.env`` holds the bindings: one attribute per configured workflow binding, plus ``[vars]``
    and secrets. A fresh object is made for every life of an instance, so state kept on ``self``
    between steps is lost on replay; keep state in step results.
    """

    def __init__(self, ctx: Any = None, env: Any = None) -> None:
        self.ctx = ctx
        self.env = env

    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        raise NotImplementedError(
            f"{type(self).__name__} must define async def run(self, event, step)"
        )
