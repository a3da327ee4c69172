"""Keep-alive across reloads: an old ``wf dev`` child hands its client connections to the next.

The supervisor starts the next child; once it has loaded the project, the serving child stops
accepting (and says so, so that one version of the code answers at a time) and hands each of its
connections over as soon as it is *at rest*: its last response written and no byte of a next
request read. It stops reading the socket and sends the socket itself (``SCM_RIGHTS`` over a
Unix socket) to the new child, which serves whatever the client sends next; bytes that arrive
meanwhile wait in the kernel. A busy client's connection is rarely seen at rest, so one told to
move also goes the moment the next request's first bytes arrive, carrying them along. No
connection is ever closed under a client that may be sending on it, so a reload is invisible
even to a client that never retries a POST.

This leans on aiohttp's request handler internals (which connection is waiting for a request);
``tests/devserver/test_handoff.py`` pins that behaviour so an aiohttp upgrade that changes it
fails CI, not a user.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import struct
from collections.abc import Callable
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from wf.devserver.bad_requests import EnvelopeRequestHandler

log = logging.getLogger("wf.server")


_TAG = b"c"  # a message of one byte carrying one socket: a connection
_STOPPED = b"s"  # a message of one byte alone: the sender no longer accepts connections


class HandoffHandler(EnvelopeRequestHandler):
    """The API's request handler (malformed requests answered in the envelope), keeping track
    of whether it has read a byte of a request it has not answered: aiohttp's parser keeps a
    partly read request to itself, so only a connection without one can move."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.begun = False  # a byte of a request not answered yet has been read
        self._ahead = False  # ...of the next one, before the answer to this one was written
        self._answering: web.BaseRequest | None = None  # the request last answered
        self._answered = False  # its answer is written (its body may still be arriving)
        # Set on a reload: the connection goes there as soon as it is at rest (``hand_over``)
        # or, at the latest, with the first bytes of the next request.
        self.successor: Successor | None = None
        self.prefill = b""  # bytes read by the previous child, handed over with the socket

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        if self.prefill:  # before the transport reads anything (its reader starts a turn later)
            data, self.prefill = self.prefill, b""
            self.data_received(data)

    def data_received(self, data: bytes) -> None:
        if data and self.successor is not None and self.at_rest():
            # A busy client's connection is rarely at rest when looked at: it goes now, with
            # the start of the next request it just sent.
            conn = detach(self)
            if conn is not None:
                self.successor.send(conn, data)
                return
        if data:
            self._classify()
        super().data_received(data)

    def _classify(self) -> None:
        """Whose bytes just came: the body of the request in progress (or of the one just
        answered), or a next request's. A read that holds both the end of one request and the
        start of the next (a client that pipelines) counts as the first's: aiohttp's parser
        cannot be asked where one ended."""
        request, answered = self._current_request, False
        if request is None:
            request, answered = self._answering, self._answered
        if request is None or (answered and request.content.is_eof()):
            self.begun = True  # the first request, or the next one after an answer
        elif request.content.is_eof():
            self._ahead = True  # a pipelined request, sent before this one's answer

    async def finish_response(
        self, request: web.BaseRequest, resp: web.StreamResponse, start_time: float | None
    ) -> tuple[web.StreamResponse, bool]:
        self._answering, self._answered = request, False
        try:
            return await super().finish_response(request, resp, start_time)
        finally:
            # Whatever was read so far is answered, but for the start of a pipelined request.
            self._answered = True
            self.begun, self._ahead = self._ahead, False

    def at_rest(self) -> bool:
        """Waiting for a request of which no byte has been read, on an open plain HTTP socket."""
        waiter = self._waiter
        return (
            waiter is not None
            and not waiter.done()
            and not self._messages
            and not self.begun
            and not self._ahead
            and not self._upgraded
            and self._payload_parser is None
            and not self._force_close
            and not self._close
            and self.transport is not None
            and not self.transport.is_closing()
        )


class HandoffServer(web.Server):
    """aiohttp's server, with a ``HandoffHandler`` for each connection."""

    def __call__(self) -> RequestHandler:
        return HandoffHandler(self, loop=self._loop, **self._kwargs)


class HandoffRunner(web.AppRunner):
    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = HandoffServer  # same state; only the handler class it makes differs
        return server


def detach(handler: HandoffHandler) -> socket.socket | None:
    """Take the client socket away from ``handler`` (which then forgets the connection without
    ending it): the caller owns the returned socket. None if the handler is not at rest."""
    if not handler.at_rest():
        return None
    transport = handler.transport
    assert transport is not None
    raw = transport.get_extra_info("socket")
    if raw is None:
        return None
    transport.pause_reading()  # from here on, what the client sends stays in the kernel
    sock = socket.socket(fileno=os.dup(raw.fileno()))
    # Closing our descriptor does not end the connection while the duplicate lives: the kernel
    # sends FIN only when the last one is closed. ``abort`` drops any queued write (none: at rest).
    transport.abort()
    return sock


# Serve (or pass on) a handed-over connection and the bytes already read from it.
Adopt = Callable[[socket.socket, bytes], None]


class Successor:
    """The sending end of the Unix socket to the next child."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        sock.setblocking(True)

    def send(self, conn: socket.socket, read: bytes = b"") -> None:
        """Pass ``conn`` on, with the bytes already ``read`` from it (and close our copy)."""
        try:
            socket.send_fds(
                self.sock, [_TAG + struct.pack("!I", len(read)) + read], [conn.fileno()]
            )
        except OSError as exc:  # the next child is gone
            log.debug("cannot hand a connection over: %s", exc)
        finally:
            conn.close()

    def stopped_accepting(self) -> None:
        """The next child may take new connections from the listener now."""
        with contextlib.suppress(OSError):
            self.sock.sendall(_STOPPED)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


class Inbox:
    """The receiving end: connections handed over by the previous child, until it is done (EOF).

    Until ``serve`` is called, received connections wait unread; ``forward`` passes everything
    (waiting and still to come) on to a successor instead.
    """

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        sock.setblocking(False)
        self.waiting: list[tuple[socket.socket, bytes]] = []
        self.closed = asyncio.Event()
        # Set when the previous child stopped accepting (or is done, or there is none): until
        # then this one does not accept, so that one version of the code answers at a time.
        self.predecessor_stopped = asyncio.Event()
        self._deliver: Adopt = self._wait
        asyncio.get_running_loop().add_reader(sock.fileno(), self._readable)

    def _readable(self) -> None:
        while True:
            try:
                data, fds, _flags, _addr = socket.recv_fds(self.sock, 1, 16)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                data, fds = b"", []
            if data == _TAG and fds:
                read = self._read_exactly(struct.unpack("!I", self._read_exactly(4))[0])
                self._deliver(socket.socket(fileno=fds[0]), read)
                fds = fds[1:]
            for fd in fds:  # never sent: close rather than leak
                os.close(fd)
            if data == _STOPPED:
                self.predecessor_stopped.set()
            if not data:
                self._close()
                return

    def _close(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            asyncio.get_running_loop().remove_reader(self.sock.fileno())
        with contextlib.suppress(OSError):
            self.sock.close()
        self.predecessor_stopped.set()
        self.closed.set()

    def _wait(self, conn: socket.socket, read: bytes) -> None:
        self.waiting.append((conn, read))

    def _read_exactly(self, size: int) -> bytes:
        """The rest of a message whose first byte came: its sender is writing it now."""
        chunks: list[bytes] = []
        self.sock.settimeout(5.0)
        try:
            while size > 0:
                chunk = self.sock.recv(size)
                if not chunk:
                    break
                chunks.append(chunk)
                size -= len(chunk)
        except OSError:
            pass
        finally:
            self.sock.setblocking(False)
        return b"".join(chunks)

    def serve(self, adopt: Adopt) -> None:
        """Serve the waiting connections, and those still to come, with ``adopt``."""
        self._deliver = adopt
        waiting, self.waiting = self.waiting, []
        for conn, read in waiting:
            adopt(conn, read)

    def forward(self, successor: Successor) -> None:
        self.serve(successor.send)


def adopter(server: web.Server) -> Adopt:
    """Serve a handed-over connection as if this child had accepted it."""
    loop = asyncio.get_running_loop()

    def adopt(conn: socket.socket, read: bytes) -> None:
        conn.setblocking(False)

        def handler() -> asyncio.Protocol:
            protocol = server()
            if isinstance(protocol, HandoffHandler):
                protocol.prefill = read
            return protocol

        task = loop.create_task(loop.connect_accepted_socket(handler, sock=conn))
        task.add_done_callback(_log_failure)

    return adopt


def _log_failure(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.debug("cannot serve a handed-over connection: %s", task.exception())


def receive_successor(control: socket.socket) -> Successor | None:
    """Read the successor's socket from the supervisor's message, if that is what came."""
    try:
        _data, fds, _flags, _addr = socket.recv_fds(control, 1, 1)
    except OSError:  # nothing yet, or the supervisor is gone
        return None
    return Successor(socket.socket(fileno=fds[0])) if fds else None


def pair() -> tuple[socket.socket, socket.socket]:
    """(sending end, receiving end) of a channel for handed-over connections."""
    return socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)


class Closing:
    """While set, every response says ``Connection: close`` (the server is going away for good).

    A middleware, not ``on_response_prepare``: aiohttp has chosen the headers by then."""

    def __init__(self) -> None:
        self.active = False

    def install(self, app: web.Application) -> None:
        # Outermost, so that it also sees the answers the API's error middleware makes.
        app.middlewares.insert(0, self.middleware)

    @web.middleware
    async def middleware(
        self, request: web.Request, handler: Callable[[web.Request], Any]
    ) -> web.StreamResponse:
        response: web.StreamResponse = await handler(request)
        if self.active:
            response.force_close()
        return response


POLL_SECONDS = 0.005


async def stop_accepting(site: web.SockSite, listener: socket.socket) -> None:
    """Stop taking connections from the shared listener (the next child takes them from the
    backlog), keeping every connection accepted so far.

    Closing the site at once would lose some: asyncio accepts a connection in one loop turn
    and makes its transport in a task a turn later, which fails (and drops the socket, request
    unread, so the client sees a reset) once the server is closed. So: stop reading the
    listener first, let those tasks run (loop turns, not time), then close."""
    asyncio.get_running_loop().remove_reader(listener.fileno())
    for _ in range(8):  # the task, the transport's connection_made, the handler's start
        await asyncio.sleep(0)
    await site.stop()


async def hand_over(server: web.Server, successor: Successor, seconds: float) -> int:
    """Give every connection to ``successor`` as soon as it is at rest (a request in progress is
    answered here first), for up to ``seconds``. Returns how many are left (still busy)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while True:
        for handler in server.connections:
            if isinstance(handler, HandoffHandler):
                handler.successor = successor
                conn = detach(handler)
                if conn is not None:
                    successor.send(conn)
        if not server.connections or loop.time() >= deadline:
            return len(server.connections)
        await asyncio.sleep(POLL_SECONDS)


async def close_all(server: web.Server, closing: Closing, seconds: float) -> None:
    """The server is going away: close idle connections now, answer busy ones (with
    ``Connection: close``) for up to ``seconds``."""
    closing.active = True
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while True:
        for handler in server.connections:
            if isinstance(handler, HandoffHandler) and handler.at_rest():
                handler.force_close()
        if not server.connections or loop.time() >= deadline:
            return
        await asyncio.sleep(POLL_SECONDS)
