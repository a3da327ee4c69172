"""Requests aiohttp's HTTP parser refuses, sent as raw bytes over a real socket to the API run
by ``HandoffRunner`` (whose handler is an ``EnvelopeRequestHandler``): the 400 comes in the API's
envelope, as JSON, and the connection closes."""

from __future__ import annotations

import asyncio
import gzip
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp import web

from wf.devserver.api import create_app
from wf.devserver.bad_requests import describe
from wf.devserver.handoff import HandoffRunner
from wf.devserver.state import ServerState

HOST = b"Host: 127.0.0.1\r\n"
POST = b"POST /api/workflows/quick/instances HTTP/1.1\r\n" + HOST
MALFORMED: dict[str, tuple[bytes, str]] = {
    "no request line": (b"GARBAGE\r\n\r\n", "Invalid method encountered: b'GARBAGE'"),
    "bad method": (b"G@T /api/health HTTP/1.1\r\n" + HOST + b"\r\n", "Invalid method"),
    "bad version": (b"GET /api/health HTTP/9.9\r\n" + HOST + b"\r\n", "Invalid HTTP version"),
    "space in a header name": (
        b"GET /api/health HTTP/1.1\r\n" + HOST + b"Bad Header: y\r\n\r\n",
        "Invalid header token: b'Bad Header: y'",
    ),
    "header without a colon": (
        b"GET /api/health HTTP/1.1\r\n" + HOST + b"nocolon\r\n\r\n",
        "Invalid header token",
    ),
    "control character in the path": (
        b"GET /api/\x01 HTTP/1.1\r\n" + HOST + b"\r\n",
        "Invalid char in url path",
    ),
    "request line too long": (
        b"GET /" + b"a" * 20_000 + b" HTTP/1.1\r\n" + HOST + b"\r\n",
        "Got more than 8190 bytes when reading",
    ),
    "header too long": (
        b"GET /api/health HTTP/1.1\r\n" + HOST + b"X-Big: " + b"b" * 20_000 + b"\r\n\r\n",
        "Got more than 8190 bytes when reading",
    ),
    "too many headers": (
        b"GET /api/health HTTP/1.1\r\n"
        + HOST
        + b"".join(b"X-H%d: v\r\n" % n for n in range(300))
        + b"\r\n",
        "Too many headers",
    ),
    "invalid chunk size": (
        POST + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
        "Invalid character in chunk size: b'zz'",
    ),
    "chunked and a length": (
        POST + b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "Transfer-Encoding can't be present with Content-Length",
    ),
    "length not a number": (
        POST + b"Content-Length: abc\r\n\r\n",
        "Invalid character in Content-Length",
    ),
    "TLS to the HTTP port": (
        bytes.fromhex("16030100a5010000a10303") + bytes(40),
        "Received HTTPS traffic on an HTTP port",
    ),
}


@dataclass
class RawReply:
    status_line: str
    headers: dict[str, str]
    body: bytes

    @property
    def status(self) -> int:
        return int(self.status_line.split()[1])

    def envelope(self) -> dict[str, Any]:
        assert self.headers["content-type"].startswith("application/json"), self
        body: dict[str, Any] = json.loads(self.body)
        return body


@pytest.fixture
async def port(state: ServerState) -> AsyncIterator[int]:
    """The API on a real loopback socket, run as ``wf dev`` and ``wf serve`` run it."""
    runner = HandoffRunner(create_app(state), handle_signals=False, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield int(runner.addresses[0][1])
    finally:
        await runner.cleanup()


async def send_raw(port: int, data: bytes) -> RawReply:
    """Send ``data`` as is; read until the server closes the connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), 10)  # EOF: the server closed it
    finally:
        writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    length = int(headers.get("content-length", len(body)))
    assert len(body) == length, raw  # one answer, then the close
    return RawReply(status_line, headers, body)


@pytest.mark.parametrize("case", list(MALFORMED))
async def test_what_the_parser_refuses_is_a_400_in_the_envelope(port: int, case: str) -> None:
    data, detail = MALFORMED[case]
    reply = await send_raw(port, data)
    assert reply.status == 400, reply
    envelope = reply.envelope()
    assert envelope["success"] is False and envelope["result"] is None, envelope
    assert envelope["messages"] == [], envelope
    [error] = envelope["errors"]
    assert error["code"] == 10002, envelope
    message = error["message"]
    assert message.startswith("the request is not valid HTTP: ") and detail in message, message
    assert "\n" not in message and "^" not in message, message


async def test_a_body_that_does_not_decompress_is_a_400_in_the_envelope(port: int) -> None:
    body = b"this is not gzip"
    reply = await send_raw(
        port,
        POST
        + b"Content-Type: application/json\r\nContent-Encoding: gzip\r\nConnection: close\r\n"
        + b"Content-Length: %d\r\n\r\n" % len(body)
        + body,
    )
    assert reply.status == 400, reply
    assert reply.envelope()["errors"] == [
        {
            "code": 10002,
            "message": "the request body cannot be read: Can not decode content-encoding: gzip",
        }
    ]


async def test_well_formed_requests_are_served_as_ever(port: int) -> None:
    body = gzip.compress(b'{"id": "zipped"}')
    created = await send_raw(
        port,
        POST
        + b"Content-Type: application/json\r\nContent-Encoding: gzip\r\nConnection: close\r\n"
        + b"Content-Length: %d\r\n\r\n" % len(body)
        + body,
    )
    assert created.status == 201, created
    assert created.envelope()["result"]["id"] == "zipped"
    health = await send_raw(
        port, b"GET /api/health HTTP/1.1\r\n" + HOST + b"Connection: close\r\n\r\n"
    )
    assert health.status == 200 and health.envelope()["result"]["status"] == "ok"


def test_server_errors_say_where_the_details_are() -> None:
    assert (
        describe(500, None)
        == "internal error (500 Internal Server Error); details in the server log"
    )
    assert describe(400, None) == "the request is not valid HTTP: Bad Request"
