"""What the HTTP app serves: a running engine, or the reason the project could not load."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web

from wf.engine.controller import Controller
from wf.project import WorkflowConfig

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from wf.devserver.security import TokenCheck


@dataclass
class ServerState:
    project_name: str
    workflows: tuple[WorkflowConfig, ...] = ()
    engine: Controller | None = None
    load_error: str | None = None  # one line naming file and line, when the project is broken
    # Without an engine the read routes answer from the store (see reads.py), or with read_error.
    reader: Controller | None = None
    read_error: str | None = None
    version_id: str | None = None
    bound_host: str = "127.0.0.1"
    port: int = 8787
    token: str | None = None  # wf serve requires it
    token_check: TokenCheck | None = None  # ... or one this accepts (a cluster keeps its hash)
    extra_hosts: tuple[str, ...] = field(default_factory=tuple)
    host_check: bool = True  # off when wf serve listens beyond loopback (the token guards it)
    serve: bool = False  # wf serve: deploys, versions, secrets and upgrades are served too
    # wf serve: which node answered, and how many the cluster has (added to /api/health).
    node_status: Callable[[], Awaitable[dict[str, Any]]] | None = None
    # Cloudflare's paths (wf.devserver.cloudflare_paths): the one account id served, or any.
    account_id: str | None = None
    # When this server loaded its code: a workflow's dates before it has any instance.
    started: float = field(default_factory=time.time)


# Where an app keeps its ServerState (every handler and middleware reads it from there).
STATE_KEY = web.AppKey("wf_state", ServerState)
