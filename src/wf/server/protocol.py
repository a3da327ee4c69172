"""What the server and its worker processes say to each other: one JSON object per line.

Server → worker (stdin): first the ``WorkerConfig``, then ``{"op": "start"}`` once the version is
to run, then controls: ``{"op": "poke"}``, ``{"op": "change", "pk", "change", "event_type"}``,
``{"op": "deleted", "workflow"}``, ``{"op": "active", "version", "workflows"}`` (what new
instances get), ``{"op": "stop", "cause"}`` (stop gracefully; the cause, shutdown or restart, is
what an attempt cut short says). End of input without a stop means the server died: the worker
stops at once.

Worker → server (a pipe of its own, so a workflow's ``print`` goes to the terminal, not into the
conversation): ``{"loaded": [workflows]}`` or ``{"error": "file:line: ..."}`` after
importing the bundle, ``{"started": true}`` once its engine runs, ``{"notice": {...}}`` for each
engine notice, and ``{"relay": {...}}`` for a change a workflow made through a binding, which the
server passes on to the worker that holds the instance.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class WorkerConfig:
    database: str  # the SQLite file its server owns, or the PostgreSQL URL the nodes share
    bundle: str
    version_id: str
    owner: str
    durability: str = "fsync"
    secrets: dict[str, str] = field(default_factory=dict)
    active_version: str | None = None
    lease: float | None = None  # wf serve --lease; None: the bundle's [engine] lease

    def to_line(self) -> bytes:
        return encode(asdict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WorkerConfig:
        return cls(**data)


def encode(message: dict[str, Any]) -> bytes:
    return (json.dumps(message, separators=(",", ":"), ensure_ascii=False) + "\n").encode()


def decode(line: bytes) -> dict[str, Any]:
    message = json.loads(line)
    if not isinstance(message, dict):
        raise ValueError("a message must be a JSON object")
    return message
