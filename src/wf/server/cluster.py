"""Messages between the nodes of a cluster: what one node changed that the others must act on.

Topics (published through the store after its next commit, so never inside a write; every
payload carries the ``node`` that sent it, and a node ignores its own):

* ``versions``: a deploy or an unload; every node reconciles its workers at once.
* ``secrets``: a secret was put or deleted; every node restarts its workers.
* ``change`` {pk, owner, version, change, event_type}: a control or an event reached an instance
  whose holder is not on the sending node; the holder's node tells its worker.
* ``created`` {version}: new instances; the version's workers on every node look for work.
* ``deleted`` {workflow}: a workflow's instances were deleted; their lives end everywhere.
* ``token``: the API token was rotated; every node rereads its hash.
* ``signout`` {session}: a dashboard session was signed out; every node refuses it from now on.

A SQLite store drops every message (one node, nothing to tell); polling is the fallback anyway.
"""

from __future__ import annotations

import logging
import socket
import uuid
from collections.abc import Callable
from typing import Any

from wf.engine.store.base import ServerStore

log = logging.getLogger("wf.server")

Handler = Callable[[dict[str, Any]], None]


def new_node_id() -> str:
    """Random per start: a node that restarts is a new node (its old workers' leases lapse)."""
    host = socket.gethostname().split(".")[0] or "host"
    return f"node-{host}-{uuid.uuid4().hex[:8]}"


class Bus:
    def __init__(self, store: ServerStore, node: str) -> None:
        self.store = store
        self.node = node
        self._handlers: dict[str, Handler] = {}

    def publish(self, topic: str, **payload: Any) -> None:
        self.store.publish(topic, {**payload, "node": self.node})

    def on(self, topic: str, handler: Handler) -> None:
        self._handlers[topic] = handler

    def listen(self) -> None:
        self.store.listen(self._receive)

    def _receive(self, topic: str, payload: dict[str, Any]) -> None:
        if payload.get("node") == self.node:
            return  # this node acted already
        handler = self._handlers.get(topic)
        if handler is None:
            return
        try:
            handler(payload)
        except Exception:  # a malformed message must not stop the listener
            log.exception("cannot handle a %s message from %s", topic, payload.get("node"))
