"""What the HTTP app serves: a running engine, or the reason the project could not load."""

from __future__ import annotations

from dataclasses import dataclass, field

from wf.engine.engine import Engine
from wf.project import WorkflowConfig


@dataclass
class ServerState:
    project_name: str
    workflows: tuple[WorkflowConfig, ...] = ()
    engine: Engine | None = None
    load_error: str | None = None  # one line naming file and line, when the project is broken
    version_id: str | None = None
    bound_host: str = "127.0.0.1"
    port: int = 8787
    token: str | None = None  # issue 4: wf serve requires it
    extra_hosts: tuple[str, ...] = field(default_factory=tuple)
