"""The server's view of instances: the versions deployed to it decide which workflows exist and
which version a new instance runs on; changes reach the worker that runs the instance."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from wf.engine.clock import Clock
from wf.engine.controller import Controller
from wf.engine.flow import NO_FLOW, FlowControl
from wf.engine.limits import Limits
from wf.engine.model import InstanceRow, VersionRow
from wf.engine.retention import NO_RETENTION, Retention, parse_retention
from wf.engine.runner import Notice
from wf.engine.store.base import ServerStore
from wf.errors import WorkflowNotFound
from wf.server.workers import WorkerManager


@dataclass
class Catalog:
    """What is deployed: the active version, the versions still loaded (their bundles on disk),
    and every version ever deployed (their workflows' instances stay readable)."""

    active: VersionRow | None = None
    versions: dict[str, VersionRow] = field(default_factory=dict)  # loaded
    known: list[VersionRow] = field(default_factory=list)  # all, newest first

    def active_workflows(self) -> list[str]:
        return [w["name"] for w in self.active.workflows] if self.active else []

    def all_workflows(self) -> list[str]:
        names = self.active_workflows()
        for version in self.known:
            names.extend(w["name"] for w in version.workflows if w["name"] not in names)
        return names

    def _newest_entry(self, name: str) -> dict[str, Any] | None:
        """A workflow's wf.toml entry in the newest version that has it."""
        for version in [self.active, *self.known]:
            for workflow in version.workflows if version else ():
                if workflow["name"] == name:
                    return workflow
        return None

    def describe(self, name: str) -> tuple[str | None, str]:
        """(binding, class name) of a workflow in the newest version that has it."""
        entry = self._newest_entry(name)
        return (entry["binding"], entry["class_name"]) if entry else (None, "")

    def script_name(self, name: str) -> str | None:
        """The project name of the newest version that has the workflow (None: deployed before
        versions kept it)."""
        entry = self._newest_entry(name)
        return entry.get("script_name") if entry else None

    def schedules(self, name: str) -> tuple[str, ...]:
        """The cron schedules of a workflow in the active version (older versions' do not fire)."""
        for workflow in self.active.workflows if self.active else ():
            if workflow["name"] == name:
                return tuple(workflow.get("schedules", ()))
        return ()

    def active_schedules(self) -> list[tuple[str, tuple[str, ...]]]:
        """(workflow, cron expressions) of the active version, for the firing loop."""
        return [(name, self.schedules(name)) for name in self.active_workflows()]

    def bindings(self) -> dict[str, str]:
        """Binding name → workflow, over the loaded versions (a secret must not take one)."""
        return {w["binding"]: w["name"] for v in self.versions.values() for w in v.workflows}


class ServerController(Controller):
    def __init__(
        self,
        store: ServerStore,
        clock: Clock,
        limits: Limits,
        catalog: Catalog,
        workers: WorkerManager,
        on_notice: Callable[[Notice], None] | None = None,
    ) -> None:
        """``on_notice``: what the API does here (creations, terminations), for the terminal
        and the metrics; what the workers do reaches the server as their messages."""
        super().__init__(store, clock, limits, on_notice)
        self.catalog = catalog
        self.notifier = WorkerNotifier(workers)

    def workflow_names(self) -> list[str]:
        # Workflows of older versions stay visible: their instances are still there.
        return self.catalog.all_workflows()

    def current_version(self) -> str | None:
        return self.catalog.active.id if self.catalog.active else None

    def describe_workflow(self, name: str) -> tuple[str | None, str]:
        return self.catalog.describe(name)

    def workflow_schedules(self, name: str) -> tuple[str, ...]:
        return self.catalog.schedules(name)

    def script_name(self, workflow: str) -> str | None:
        return self.catalog.script_name(workflow)

    def new_instance_version(self, workflow: str) -> str:
        active = self.catalog.active
        if active is None:
            raise WorkflowNotFound("nothing is deployed to this server yet; run wf deploy")
        if workflow not in self.catalog.active_workflows():
            known = ", ".join(self.catalog.active_workflows()) or "none"
            raise WorkflowNotFound(
                f'workflow "{workflow}" is not in the active version {active.id}; '
                f"its workflows: {known}"
            )
        return active.id

    def restart_home(self, row: InstanceRow) -> str | None:
        """A restarted instance whose version was unloaded (nothing needed that code any more)
        starts again on the active version, decided in the restart's own transaction."""
        active = self.catalog.active
        if active is not None and row.workflow in self.catalog.active_workflows():
            return active.id
        return None

    def default_retention(self, workflow: str) -> Retention:
        """From the active version's wf.toml (new instances run on it)."""
        active = self.catalog.active
        for entry in active.workflows if active else ():
            if entry["name"] == workflow:
                return parse_retention(entry.get("default_retention"))
        return NO_RETENTION

    def flow_control(self, workflow: str) -> FlowControl:
        """From the active version's wf.toml (new instances run on it)."""
        active = self.catalog.active
        for entry in active.workflows if active else ():
            if entry["name"] == workflow:
                return FlowControl.from_json(entry.get("flow"))
        return NO_FLOW


class WorkerNotifier:
    """Changes reach the worker that holds the instance: on this node through its pipe, on
    another node through the database (``wf.server.cluster``)."""

    def __init__(self, workers: WorkerManager) -> None:
        self.workers = workers

    def created(self, workflow: str, version_id: str) -> None:
        self.workers.created(version_id)

    def changed(self, row: InstanceRow, change: str, event_type: str | None = None) -> None:
        self.workers.change(row.owner, row.version_id, row.pk, change, event_type)

    def workflow_deleted(self, workflow: str) -> None:
        self.workers.workflow_deleted(workflow)
