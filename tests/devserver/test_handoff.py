"""Handing kept-alive connections from one server to the next (``wf.devserver.handoff``), in one
process: two aiohttp servers on one listener, a real client connection moved between them.

These pin the aiohttp internals the hand-over relies on (which connection waits for a request),
so an aiohttp upgrade that changes them fails here."""

from __future__ import annotations

import asyncio
import http.client
import os
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiohttp import web

from wf.devserver import handoff


def app_named(name: str, gate: asyncio.Event | None = None) -> web.Application:
    async def who(request: web.Request) -> web.Response:
        if gate is not None:
            await gate.wait()
        return web.json_response({"server": name})

    app = web.Application()
    app.router.add_get("/who", who)
    return app


@asynccontextmanager
async def serving(app: web.Application, listener: socket.socket) -> AsyncIterator[web.Server]:
    runner = handoff.HandoffRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    site = web.SockSite(runner, listener)  # closed by the site
    await site.start()
    assert runner.server is not None
    try:
        yield runner.server
    finally:
        await runner.cleanup()


def listener() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    return sock


async def ask(connection: http.client.HTTPConnection) -> str:
    def call() -> str:
        connection.request("GET", "/who")
        response = connection.getresponse()
        body = response.read().decode()
        assert response.status == 200, body
        assert response.getheader("Connection", "keep-alive").lower() != "close"
        return body

    return await asyncio.to_thread(call)


async def test_a_connection_at_rest_moves_to_the_next_server_unnoticed() -> None:
    shared = listener()
    port = shared.getsockname()[1]
    send, receive = handoff.pair()
    old_listener = socket.socket(fileno=os.dup(shared.fileno()))
    async with serving(app_named("old"), old_listener) as old:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        assert '"old"' in await ask(connection)
        first_socket = connection.sock

        inbox = handoff.Inbox(receive)
        async with serving(app_named("new"), shared) as new:
            inbox.serve(handoff.adopter(new))
            successor = handoff.Successor(send)
            left = await handoff.hand_over(old, successor, seconds=5)
            assert left == 0
            successor.close()
            await asyncio.wait_for(inbox.closed.wait(), 5)

            assert '"new"' in await ask(connection)
            assert connection.sock is first_socket  # the same TCP connection throughout
            connection.close()


async def test_a_connection_with_a_request_in_progress_is_answered_before_it_moves() -> None:
    shared = listener()
    port = shared.getsockname()[1]
    send, receive = handoff.pair()
    gate = asyncio.Event()
    old_listener = socket.socket(fileno=os.dup(shared.fileno()))
    async with serving(app_named("old", gate), old_listener) as old:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        answer = asyncio.create_task(ask(connection))
        while not any(True for _ in old.connections):
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
        handlers = [h for h in old.connections if isinstance(h, handoff.HandoffHandler)]
        assert handlers and not handlers[0].at_rest()  # its request is being handled

        inbox = handoff.Inbox(receive)
        async with serving(app_named("new"), shared) as new:
            inbox.serve(handoff.adopter(new))
            successor = handoff.Successor(send)
            moving = asyncio.create_task(handoff.hand_over(old, successor, seconds=5))
            await asyncio.sleep(0.1)
            assert not moving.done()  # it waits for the answer
            gate.set()
            assert '"old"' in await answer
            assert await moving == 0
            successor.close()
            assert '"new"' in await ask(connection)
            connection.close()
