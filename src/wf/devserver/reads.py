"""Reading a project's instances without running its code.

While the workflow module does not load there is no engine (it needs the workflow classes), yet
a user fixing it wants to see what ran. A ``StoreReader`` answers the read routes from the
project's database instead: the same controller methods and store queries as the engine's, so
the answers have the same shapes. Its store takes no lock (a SQLite file is opened read-only;
PostgreSQL lets every process in), so it never waits for (or holds up) the child that runs the
engine, and it can read beside that child too.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from wf.devserver.database import reading_store
from wf.engine.clock import SystemClock
from wf.engine.controller import Controller, NobodyToTell
from wf.engine.limits import DEFAULT_LIMITS
from wf.engine.store.base import Store
from wf.project import Project, ProjectError


@runtime_checkable
class _KnowsWorkflows(Protocol):
    async def workflows_with_instances(self) -> list[str]: ...


class StoreReader(Controller):
    """The read half of a controller over a read-only store; nothing runs, nothing is written."""

    def __init__(self, store: Store, workflows: list[str]) -> None:
        super().__init__(store, SystemClock(), DEFAULT_LIMITS)
        self.notifier = NobodyToTell()
        self._workflows = workflows

    def workflow_names(self) -> list[str]:
        return list(self._workflows)

    def new_instance_version(self, workflow: str) -> str:
        raise ProjectError("nothing can be created while the project does not load")


async def open_reader(project: Project, location: str | None = None) -> StoreReader:
    """A reader of ``project``'s database (at ``location``, else where wf.toml says). Its
    workflows are wf.toml's, then any other workflow with instances on record (renamed or
    removed from wf.toml, their history is still there)."""
    store = reading_store(location or project.store_location())
    await store.open()
    try:
        recorded = (
            await store.workflows_with_instances() if isinstance(store, _KnowsWorkflows) else []
        )
    except BaseException:
        await store.close()
        raise
    names = [w.name for w in project.workflows]
    names.extend(name for name in recorded if name not in names)
    return StoreReader(store, names)
