"""``env``: the bindings a workflow (or any other code) uses to start and steer instances."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, overload

from wf.engine.model import Trigger

if TYPE_CHECKING:
    from wf.engine.controller import Controller


class Env:
    """One attribute per workflow binding (``env.PURCHASE``), plus ``[vars]`` and secrets."""

    def __init__(self, values: Mapping[str, Any]) -> None:
        self.__dict__.update(values)

    def __getattr__(self, name: str) -> Any:
        known = ", ".join(sorted(self.__dict__)) or "nothing"
        raise AttributeError(f"env has no binding or var named {name!r}; it has {known}")

    def __contains__(self, name: str) -> bool:
        return name in self.__dict__

    def __repr__(self) -> str:
        return f"Env({', '.join(sorted(self.__dict__))})"


class WorkflowInstance:
    """A handle on one instance; every method goes to the engine (and its store)."""

    def __init__(self, engine: Controller, workflow: str, instance_id: str) -> None:
        self._engine = engine
        self.workflow_name = workflow
        self.id = instance_id

    async def status(self) -> dict[str, Any]:
        """``{"status": ..., "error": {"name", "message"} | None, "output": ..., "rollback":
        {"outcome": "complete" | "failed", "error": ... | None} | None}``."""
        return await self._engine.status(self.workflow_name, self.id)

    async def pause(self) -> None:
        await self._engine.pause(self.workflow_name, self.id)

    async def resume(self) -> None:
        await self._engine.resume(self.workflow_name, self.id)

    async def terminate(self, rollback: bool = False) -> None:
        """Stop it for good; ``rollback=True`` runs its rollback handlers first (it reports
        ``running`` meanwhile, then ``terminated``)."""
        await self._engine.terminate(
            self.workflow_name, self.id, Trigger.BINDING.value, rollback=rollback
        )

    async def restart(self, from_step: Any = None, *, params: Any = None) -> None:
        """Start over, or from ``from_step={"name": ..., "count": 1, "type": "do"}`` (count and
        type optional): earlier steps stay cached, that step and every later one run again.
        ``params`` (beyond Cloudflare): new params for the restarted run."""
        await self._engine.restart(self.workflow_name, self.id, from_step, params)

    async def delete(self) -> None:
        """Delete the instance and its history; a running one stops without rollbacks."""
        await self._engine.delete(self.workflow_name, self.id)

    async def send_event(self, type: str, payload: Any = None) -> None:
        await self._engine.send_event(self.workflow_name, self.id, type, payload)

    def __repr__(self) -> str:
        return f"WorkflowInstance({self.workflow_name!r}, {self.id!r})"


class WorkflowBinding:
    """``env.MY_WORKFLOW``: create and get instances of one workflow."""

    def __init__(self, engine: Controller, workflow: str) -> None:
        self._engine = engine
        self.workflow_name = workflow

    async def create(
        self,
        id: str | None = None,
        params: Any = None,
        *,
        retention: Any = None,
        priority: int | None = None,
    ) -> WorkflowInstance:
        """``retention={"success_retention": "7 days", "error_retention": "30 days"}``;
        ``priority``: higher is claimed first among ready instances (default 0)."""
        return await self._engine.create(
            self.workflow_name, id, params, Trigger.BINDING.value, retention, priority
        )

    @overload
    async def create_batch(self, items: Sequence[Mapping[str, Any]]) -> list[WorkflowInstance]: ...

    @overload
    async def create_batch(self, items: Mapping[str, Any]) -> dict[str, Any]: ...

    async def create_batch(
        self, items: Sequence[Mapping[str, Any]] | Mapping[str, Any]
    ) -> list[WorkflowInstance] | dict[str, Any]:
        """A list of ``{id, params}``: the instances created (existing ids are skipped). Or the
        object form, ``{"count": N, "params": ...}`` or ``{"instances": [...]}``: returns
        ``{"created": [instances], "errors": [{"index", "id", "code", "message"}]}``, where an
        id that exists (or comes twice) is an error."""
        if isinstance(items, Mapping):
            created, errors = await self._engine.create_many(
                self.workflow_name, items, Trigger.BINDING.value
            )
            return {"created": created, "errors": errors}
        return await self._engine.create_batch(self.workflow_name, items, Trigger.BINDING.value)

    async def delete_batch(self, ids: Sequence[str]) -> dict[str, Any]:
        """Delete up to 100 instances: ``{"deleted": [{"id"}], "errors": [{"id", "code",
        "message"}]}``."""
        return await self._engine.delete_batch(self.workflow_name, ids)

    async def get(self, id: str) -> WorkflowInstance:
        return await self._engine.get(self.workflow_name, id)

    def __repr__(self) -> str:
        return f"WorkflowBinding({self.workflow_name!r})"
