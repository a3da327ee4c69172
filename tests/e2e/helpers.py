"""Run ``wf`` as a user runs it: real subprocesses, real HTTP over loopback."""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

WF = [sys.executable, "-m", "wf"]
REPO = Path(__file__).resolve().parents[2]


# Sockets that keep the ports free_port() handed out: held until this process exits.
_RESERVED: list[socket.socket] = []


@atexit.register
def _release_ports() -> None:
    for sock in _RESERVED:
        sock.close()


def free_port() -> int:
    """A loopback port for a server this test starts, taken by nobody else in the meantime.

    A port only seen free can be taken before the server binds it (or between a kill and the
    restart on the same port): by another server, or as the local end of any outgoing connection
    on a busy machine. So a socket stays bound to it, never listening, until this process exits:
    the kernel then gives the port to no other bind and no connect, yet a server that binds it
    with SO_REUSEADDR (wf dev and wf serve do) still can, restarts included. Connections to it
    while no server listens are refused, as to any closed port.
    """
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    _RESERVED.append(sock)
    return int(sock.getsockname()[1])


def wf(
    *args: str,
    cwd: Path,
    check: bool = True,
    timeout: float = 30,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "NO_COLOR": "1", "COLUMNS": "120"}
    environment.pop("WF_URL", None)
    environment.pop("WF_DATABASE_URL", None)
    environment.update(env or {})
    result = subprocess.run(
        [*WF, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=environment
    )
    if check and result.returncode != 0:
        raise AssertionError(f"wf {' '.join(args)} exited {result.returncode}: {result.stderr}")
    return result


def api(url: str, path: str, method: str = "GET", body: Any = None, timeout: float = 10) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url + path, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.load(response)["result"]
    except urllib.error.HTTPError as exc:
        return json.load(exc)


def raw_request(port: int, data: bytes) -> tuple[int, str, Any]:
    """Send ``data`` as is to 127.0.0.1:``port``; read until the server closes the connection.
    Returns the status, the Content-Type and the JSON body."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines)}
    return int(status_line.split()[1]), headers.get("content-type", ""), json.loads(body)


UNPARSEABLE = (
    b"GARBAGE\r\n\r\n",
    b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\nBad Header: y\r\n\r\n",
    b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"b" * 20_000 + b"\r\n\r\n",
)


def assert_unparseable_requests_get_the_envelope(port: int) -> None:
    """What aiohttp's HTTP parser refuses comes back in the API's envelope, as JSON."""
    for data in UNPARSEABLE:
        status, content_type, body = raw_request(port, data)
        assert (status, content_type) == (400, "application/json; charset=utf-8"), body
        assert body["success"] is False and body["result"] is None, body
        [error] = body["errors"]
        assert error["code"] == 10002, body
        assert error["message"].startswith("the request is not valid HTTP: "), body


def wait_until(predicate: Callable[[], Any], timeout: float = 20, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
        except (OSError, ValueError, KeyError, TypeError) as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what or predicate}: last saw {last!r}")


class DevServer:
    """``wf dev`` in its own session, so the test can kill it (and its child) as a group."""

    def __init__(
        self,
        project: Path,
        port: int,
        env: dict[str, str] | None = None,
        args: tuple[str, ...] = (),
    ) -> None:
        self.project = project
        self.port = port
        self.env = env or {}
        self.args = args  # more options for wf dev
        self.url = f"http://127.0.0.1:{port}"
        self.log = project / f"dev-{time.monotonic_ns()}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> DevServer:
        env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "120"}
        env.pop("WF_DATABASE_URL", None)  # the user's own database is not the tests'
        env.update(self.env)
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [*WF, "dev", "--port", str(self.port), *self.args],
                cwd=self.project,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=env,
            )
        wait_until(self.healthy, what=f"wf dev on {self.url} ({self.output()})")
        return self

    def healthy(self) -> bool:
        health = api(self.url, "/api/health", timeout=2)
        return bool(health and health.get("status") == "ok")

    def health(self) -> dict[str, Any]:
        result: dict[str, Any] = api(self.url, "/api/health")
        return result

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def signal(self, sig: int) -> None:
        assert self.process is not None
        os.killpg(self.process.pid, sig)

    def kill(self) -> None:
        """SIGKILL the supervisor and its child at once, like a crash of the whole server."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.signal(signal.SIGINT)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.kill()


@contextmanager
def dev_server(
    project: Path,
    port: int | None = None,
    env: dict[str, str] | None = None,
    args: tuple[str, ...] = (),
) -> Iterator[DevServer]:
    server = DevServer(project, port or free_port(), env, args)
    try:
        yield server.start()
    finally:
        server.stop()
        server.kill()  # whatever is left of the group
