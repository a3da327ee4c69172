"""The helpers' promise about ports: a port from free_port() stays free for the server that asked
for it (other tests and programs share this machine's ports)."""

from __future__ import annotations

import socket

import pytest

from tests.e2e.helpers import free_port


def test_a_free_port_is_kept_for_the_server_it_was_taken_for() -> None:
    port = free_port()
    with socket.socket() as other, pytest.raises(OSError):  # anybody else: in use
        other.bind(("127.0.0.1", port))
    for _ in range(2):  # a server binding as wf dev and wf serve do, and again after a restart
        with socket.socket() as server:
            server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            server.bind(("127.0.0.1", port))
            server.listen()
            with socket.create_connection(("127.0.0.1", port), timeout=5):
                pass
    with pytest.raises(ConnectionRefusedError):  # nothing listens: refused, as a closed port
        socket.create_connection(("127.0.0.1", port), timeout=5)
