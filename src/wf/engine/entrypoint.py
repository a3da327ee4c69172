"""The base class users subclass: ``class Purchase(WorkflowEntrypoint): async def run(...)``."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

from wf.engine.model import WorkflowEvent

if TYPE_CHECKING:
    from wf.engine.step import WorkflowStep


log = logging.getLogger("wf.engine")


class ExecutionContext:
    """``self.ctx`` of a workflow, as Cloudflare sets it: ``wait_until(awaitable)`` lets work go
    on in the background after the step that started it (best effort: it is not durable, and is
    lost when the instance leaves memory; durable work belongs in a step); ``props`` is empty."""

    def __init__(self) -> None:
        self.props: dict[str, Any] = {}
        self._background: set[asyncio.Future[Any]] = set()

    def wait_until(self, awaitable: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(awaitable)
        self._background.add(task)  # a strong reference: the loop keeps only a weak one
        task.add_done_callback(self._finished)

    def pass_through_on_exception(self) -> None:
        """Cloudflare's fail-open switch for fetch handlers; nothing to do in a workflow."""

    def _finished(self, task: asyncio.Future[Any]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("a task given to ctx.wait_until failed: %r", task.exception())


class WorkflowEntrypoint:
    """Subclass it and define ``async def run(self, event, step)``.

    ``self.env`` holds the bindings: one attribute per configured workflow binding, plus ``[vars]``
    and secrets; ``self.ctx`` is an ``ExecutionContext``, as on Cloudflare. A fresh object is
    made for every life of an instance, so state kept on ``self`` between steps is lost on
    replay; keep state in step results.
    """

    def __init__(self, ctx: Any = None, env: Any = None) -> None:
        self.ctx = ctx
        self.env = env

    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        raise NotImplementedError(
            f"{type(self).__name__} must define async def run(self, event, step)"
        )
