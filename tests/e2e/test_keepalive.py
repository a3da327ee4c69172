"""Keep-alive clients see nothing of reloads (issue 9): the HTTP clients people use, each keeping
its connection and never retrying, send POSTs and GETs back to back through ten reloads of
``wf dev`` (and against ``wf serve``): no request fails, every acknowledged instance exists."""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest
import requests
from requests.adapters import HTTPAdapter

from tests.e2e.helpers import dev_server, wait_until
from tests.e2e.serve_helpers import serving
from wf.devserver.supervisor import HANDOVER_TIMEOUT

pytestmark = pytest.mark.slow

RELOADS = 10
WF_TOML = """\
name = "keepalive"
main = "workflows.py"

[[workflows]]
name = "hello"
binding = "HELLO"
class_name = "Hello"
"""
WORKFLOWS = """\
from wf import WorkflowEntrypoint


def answer() -> int:
    return 42


class Hello(WorkflowEntrypoint):
    async def run(self, event, step):
        return {"answer": await step.do("answer", answer)}
"""


@dataclass
class Tally:
    """What one client saw: the ids it was told were created, and every failed request."""

    client: str
    acknowledged: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    requests: int = 0


# Each client: send(method, path, body) -> (status, decoded body), on one kept connection.
Send = Callable[[str, str, Any], tuple[int, Any]]


def run_client(tally: Tally, send: Send, keep_going: threading.Event, minimum: int) -> None:
    n = 0
    while keep_going.is_set() or n < minimum:
        instance_id = f"{tally.client}-{n}"
        n += 1
        for method, path, body in (
            ("POST", "/api/workflows/hello/instances", {"id": instance_id}),
            ("GET", f"/api/workflows/hello/instances/{instance_id}", None),
        ):
            tally.requests += 1
            try:
                status, answer = send(method, path, body)
            except Exception as exc:
                tally.failures.append(f"{method} {path}: {type(exc).__name__}: {exc}")
                continue
            if status not in (200, 201):
                tally.failures.append(f"{method} {path}: {status} {answer}")
            elif method == "POST":
                tally.acknowledged.append(instance_id)


def http_client_sender(port: int, headers: dict[str, str]) -> tuple[Send, Callable[[], None]]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    sockets: set[int] = set()

    def send(method: str, path: str, body: Any) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        connection.request(method, path, body=data, headers=headers)
        response = connection.getresponse()
        answer = json.loads(response.read())
        assert connection.sock is not None, "the server closed a kept connection"
        sockets.add(id(connection.sock))
        return response.status, answer

    def check() -> None:
        # http.client reconnects silently when the server closed the socket: it never did.
        assert len(sockets) == 1, f"http.client used {len(sockets)} connections"
        connection.close()

    return send, check


def requests_sender(url: str, headers: dict[str, str]) -> tuple[Send, Callable[[], None]]:
    session = requests.Session()
    session.mount("http://", HTTPAdapter(max_retries=0))  # no retry may hide a reset

    def send(method: str, path: str, body: Any) -> tuple[int, Any]:
        response = session.request(method, url + path, json=body, headers=headers, timeout=30)
        return response.status_code, response.json()

    return send, session.close


def httpx_sender(url: str, headers: dict[str, str]) -> tuple[Send, Callable[[], None]]:
    client = httpx.Client(
        base_url=url, headers=headers, timeout=30, transport=httpx.HTTPTransport(retries=0)
    )

    def send(method: str, path: str, body: Any) -> tuple[int, Any]:
        response = client.request(method, path, json=body)
        return response.status_code, response.json()

    return send, client.close


def aiohttp_sender(url: str, headers: dict[str, str]) -> tuple[Send, Callable[[], None]]:
    """aiohttp's ClientSession on an event loop of its own thread."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    async def make() -> aiohttp.ClientSession:
        return aiohttp.ClientSession(url, headers=headers, connector=aiohttp.TCPConnector(limit=1))

    session = asyncio.run_coroutine_threadsafe(make(), loop).result()

    async def request(method: str, path: str, body: Any) -> tuple[int, Any]:
        async with session.request(method, path, json=body) as response:
            return response.status, await response.json()

    def send(method: str, path: str, body: Any) -> tuple[int, Any]:
        return asyncio.run_coroutine_threadsafe(request(method, path, body), loop).result(30)

    def close() -> None:
        asyncio.run_coroutine_threadsafe(session.close(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()

    return send, close


def senders(
    url: str, port: int, headers: dict[str, str]
) -> dict[str, tuple[Send, Callable[[], None]]]:
    return {
        "httpclient": http_client_sender(port, headers),
        "requests": requests_sender(url, headers),
        "httpx": httpx_sender(url, headers),
        "aiohttp": aiohttp_sender(url, headers),
    }


def exercise(
    url: str, port: int, headers: dict[str, str], between: Callable[[list[Tally]], object]
) -> list[Tally]:
    """Run the four clients while ``between`` does its work (reloads, or nothing)."""
    clients = senders(url, port, headers)
    tallies = [Tally(name) for name in clients]
    keep_going = threading.Event()
    keep_going.set()
    threads = [
        threading.Thread(target=run_client, args=(tally, send, keep_going, 25), daemon=True)
        for tally, (send, _) in zip(tallies, clients.values(), strict=True)
    ]
    for thread in threads:
        thread.start()
    try:
        between(tallies)
    finally:
        keep_going.clear()
        for thread in threads:
            thread.join(120)
    for _, check in clients.values():
        check()
    return tallies


def reload_count(output: str) -> int:
    return output.count("reloaded after changes to workflows.py")


def test_keep_alive_clients_through_ten_reloads_of_wf_dev(tmp_path: Path) -> None:
    (tmp_path / "wf.toml").write_text(WF_TOML)
    source = tmp_path / "workflows.py"
    source.write_text(WORKFLOWS)
    with dev_server(tmp_path) as server:

        def reload_ten_times(tallies: list[Tally]) -> None:
            def sent() -> int:
                return sum(tally.requests for tally in tallies)

            for n in range(1, RELOADS + 1):
                source.write_text(WORKFLOWS + f"\n# edit {n}\n")
                wait_until(
                    lambda n=n: reload_count(server.output()) >= n,  # type: ignore[misc]
                    timeout=30,
                    what=f"reload {n}",
                )
                # Let requests flow on the new child before the next edit.
                before = sent()
                wait_until(lambda before=before: sent() > before + 20)  # type: ignore[misc]

        tallies = exercise(server.url, server.port, {}, reload_ten_times)
        assert reload_count(server.output()) >= RELOADS
        check_tallies(tallies, lambda i: server_instance(server.url, i))


def server_instance(url: str, instance_id: str, headers: dict[str, str] | None = None) -> Any:
    response = requests.get(f"{url}/api/workflows/hello/instances/{instance_id}", headers=headers)
    return response.json()["result"]


def check_tallies(tallies: list[Tally], instance: Callable[[str], Any]) -> None:
    for tally in tallies:
        assert tally.failures == [], (tally.client, tally.failures[:5])
        assert len(tally.acknowledged) >= 25, (tally.client, len(tally.acknowledged))
    for tally in tallies:
        for instance_id in tally.acknowledged:
            wait_until(
                lambda i=instance_id: instance(i)["status"] == "complete",  # type: ignore[misc]
                timeout=60,
                what=f"{instance_id} to complete",
            )
            assert instance(instance_id)["output"] == {"answer": 42}


def test_keep_alive_clients_against_wf_serve(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "wf.toml").write_text(WF_TOML)
    (project / "workflows.py").write_text(WORKFLOWS)
    with serving(tmp_path) as server:
        server.deploy(project)
        headers = {"Authorization": f"Bearer {server.token}"}
        done = threading.Event()
        tallies = exercise(server.url, server.port, headers, lambda _: done.wait(2))
        check_tallies(tallies, lambda i: server_instance(server.url, i, headers))


def stop_midway(port: int, headers: str, path: str, body: bytes, stop: Callable[[], object]) -> Any:
    """Stop a server while a request is in progress (its body not all sent yet), with another
    connection idle. The idle one is closed at once; the request is answered, with an answer
    that says Connection: close, and only then does its connection end. Returns that answer."""
    host = f"Host: 127.0.0.1:{port}\r\n{headers}"
    request = (
        f"POST {path} HTTP/1.1\r\n{host}"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    with (
        socket.create_connection(("127.0.0.1", port), timeout=30) as idle,
        socket.create_connection(("127.0.0.1", port), timeout=30) as busy,
    ):
        idle.sendall(f"GET /api/health HTTP/1.1\r\n{host}\r\n".encode())
        assert read_answer(idle)[0] == 200
        busy.sendall(request[:-5])
        stop()
        assert idle.recv(1) == b"", "an idle connection outlived the server"
        busy.sendall(request[-5:])
        response = http.client.HTTPResponse(busy)
        response.begin()
        answer = json.loads(response.read())
        assert response.will_close, response.getheaders()
        assert busy.recv(1) == b""
        return answer


def test_a_request_in_progress_when_wf_dev_stops_is_answered_then_its_connection_ends(
    tmp_path: Path,
) -> None:
    (tmp_path / "wf.toml").write_text(WF_TOML)
    (tmp_path / "workflows.py").write_text(WORKFLOWS)
    with dev_server(tmp_path) as server:
        path = "/api/workflows/hello/instances"
        answer = stop_midway(
            server.port, "", path, b'{"id": "not an id"}', lambda: server.signal(signal.SIGINT)
        )
        assert answer["errors"][0]["code"] == 10002, answer  # an error answer says it too


def test_a_request_in_progress_when_wf_serve_stops_is_answered_then_its_connection_ends(
    tmp_path: Path,
) -> None:
    with serving(tmp_path) as server:
        answer = stop_midway(
            server.port,
            f"Authorization: Bearer {server.token}\r\n",
            "/api/deploy",
            b'"not a bundle"',
            lambda: os.killpg(server.pid, signal.SIGINT),
        )
        assert not answer["success"], answer


SLOW_WORKFLOWS = """\
import os
import time
from pathlib import Path

from wf import WorkflowEntrypoint

HERE = Path(__file__).parent


def slow() -> str:
    (HERE / "started").touch()
    while not (HERE / "release").exists():
        time.sleep(0.01)
    return "done"


class Hello(WorkflowEntrypoint):
    async def run(self, event, step):
        if event.payload.get("slow"):
            return {"answer": await step.do("slow", slow)}
        return {"answer": await step.do("answer", lambda: 42)}
"""


def lock_holder(project: Path) -> str:
    return next((project / ".wf").glob("*.lock")).read_text().strip()


def test_a_reload_answers_while_the_old_child_finishes_a_step(tmp_path: Path) -> None:
    """The old child keeps the database while its running step finishes (here: until the test
    lets it); the new child answers reads and writes meanwhile, and runs what it took once it
    has the engine."""
    (tmp_path / "wf.toml").write_text(WF_TOML)
    source = tmp_path / "workflows.py"
    source.write_text(SLOW_WORKFLOWS)
    with dev_server(tmp_path, env={"WF_DEV_RELOAD_GRACE": "120"}) as server:
        session = requests.Session()
        url = f"{server.url}/api/workflows/hello/instances"
        assert session.post(url, json={"id": "slow", "params": {"slow": True}}).ok
        wait_until(lambda: (tmp_path / "started").exists(), what="the slow step to start")
        old_child = lock_holder(tmp_path)

        source.write_text(SLOW_WORKFLOWS + "\n# edited\n")
        wait_until(lambda: reload_count(server.output()) >= 1, what="the reload")
        # The new child serves while the old one still holds the database for its step.
        created = session.post(url, json={"id": "during-reload"})
        assert created.status_code == 201, created.text
        listed = session.get(url)
        assert listed.ok and {i["id"] for i in listed.json()["result"]} >= {"slow", "during-reload"}
        described = session.get(f"{url}/slow")
        assert described.json()["result"]["status"] == "running"
        assert lock_holder(tmp_path) == old_child

        (tmp_path / "release").touch()
        for instance_id in ("slow", "during-reload"):
            wait_until(
                lambda i=instance_id: (
                    session.get(f"{url}/{i}").json()["result"]["status"]  # type: ignore[misc]
                    == "complete"
                ),
                what=f"{instance_id} to complete",
            )
        assert lock_holder(tmp_path) != old_child
        session.close()


def test_a_reload_grace_longer_than_the_hand_over_is_honoured(tmp_path: Path) -> None:
    """WF_DEV_RELOAD_GRACE beyond the time a retired child gets to hand its connections over:
    the old child is not killed (running its step again) before the grace is up, and the new
    one answers from the store all along (it gave up waiting for the database, answering 503)."""
    grace = HANDOVER_TIMEOUT + 10
    (tmp_path / "wf.toml").write_text(WF_TOML)
    source = tmp_path / "workflows.py"
    source.write_text(SLOW_WORKFLOWS)
    with dev_server(tmp_path, env={"WF_DEV_RELOAD_GRACE": str(grace)}) as server:
        url = f"{server.url}/api/workflows/hello/instances"
        assert requests.post(url, json={"id": "slow", "params": {"slow": True}}).ok
        wait_until(lambda: (tmp_path / "started").exists(), what="the slow step to start")
        (tmp_path / "started").unlink()
        old_child = lock_holder(tmp_path)
        source.write_text(SLOW_WORKFLOWS + "\n# edited\n")
        wait_until(lambda: reload_count(server.output()) >= 1, what="the reload")
        reloaded = time.monotonic()
        # What this test is about is a deadline: let the hand-over's pass, with a margin.
        wait_until(
            lambda: time.monotonic() > reloaded + HANDOVER_TIMEOUT + 2,
            timeout=HANDOVER_TIMEOUT + 5,
            what="the hand-over time to pass",
        )
        assert lock_holder(tmp_path) == old_child
        assert not (tmp_path / "started").exists(), "the step ran again"
        created = requests.post(url, json={"id": "meanwhile"})
        assert created.status_code == 201, created.text

        (tmp_path / "release").touch()
        for instance_id in ("slow", "meanwhile"):
            wait_until(
                lambda i=instance_id: (
                    requests.get(f"{url}/{i}").json()["result"]["status"]  # type: ignore[misc]
                    == "complete"
                ),
                what=f"{instance_id} to complete",
            )
        [step] = requests.get(f"{url}/slow").json()["result"]["steps"]
        assert [attempt.get("error") for attempt in step["attempts"]] == [None], step


def test_a_child_superseded_before_it_had_the_engine_answers_what_it_began(
    tmp_path: Path,
) -> None:
    """Two reloads while the first child still finishes a step: the second child answers from
    the store, and is told to stop before it ever had the engine. A request it had begun to
    read is answered by it all the same (it was refused with 503 "stopped before the engine
    started"), then the connection moves on to the third child."""
    (tmp_path / "wf.toml").write_text(WF_TOML)
    source = tmp_path / "workflows.py"
    source.write_text(SLOW_WORKFLOWS)
    with dev_server(tmp_path, env={"WF_DEV_RELOAD_GRACE": "120"}) as server:
        url = f"{server.url}/api/workflows/hello/instances"
        assert requests.post(url, json={"id": "slow", "params": {"slow": True}}).ok
        wait_until(lambda: (tmp_path / "started").exists(), what="the slow step to start")
        source.write_text(SLOW_WORKFLOWS + "\n# edit 1\n")
        wait_until(lambda: reload_count(server.output()) >= 1, what="the first reload")

        host = f"Host: 127.0.0.1:{server.port}\r\n"
        body = json.dumps({"id": "begun"}).encode()
        request = (
            f"POST /api/workflows/hello/instances HTTP/1.1\r\n{host}"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as client:
            client.sendall(request[:20])  # the second child reads the start of a request...
            source.write_text(SLOW_WORKFLOWS + "\n# edit 2\n")
            wait_until(lambda: reload_count(server.output()) >= 2, what="the second reload")
            client.sendall(request[20:])  # ...and has been told to stop before the rest comes
            status, answer = read_answer(client)
            assert status == 201, answer
            client.sendall(
                f"GET /api/workflows/hello/instances/begun HTTP/1.1\r\n{host}\r\n".encode()
            )
            status, answer = read_answer(client)
            assert status == 200 and answer["result"]["id"] == "begun", answer

        (tmp_path / "release").touch()
        wait_until(
            lambda: requests.get(f"{url}/begun").json()["result"]["status"] == "complete",
            what="the instance created meanwhile to complete",
        )


def read_answer(sock: socket.socket) -> tuple[int, Any]:
    """Read one response off a connection the test keeps: its status and its JSON body."""
    response = http.client.HTTPResponse(sock)
    response.begin()
    answer = json.loads(response.read())
    assert not response.will_close, "the server ended a kept connection"
    return response.status, answer


def attempt_errors(session: requests.Session, url: str) -> list[str]:
    steps = session.get(f"{url}/slow").json()["result"]["steps"]
    return [
        attempt["error"]["message"]
        for step in steps
        for attempt in step.get("attempts", [])
        if attempt.get("error")
    ]


def test_an_attempt_cut_short_says_whether_a_reload_or_a_shutdown_did_it(tmp_path: Path) -> None:
    (tmp_path / "wf.toml").write_text(WF_TOML)
    source = tmp_path / "workflows.py"
    source.write_text(SLOW_WORKFLOWS)
    session = requests.Session()
    url_path = "/api/workflows/hello/instances"
    with dev_server(tmp_path, env={"WF_DEV_RELOAD_GRACE": "0"}) as server:
        url = server.url + url_path
        assert session.post(url, json={"id": "slow", "params": {"slow": True}}).ok
        wait_until(lambda: (tmp_path / "started").exists(), what="the slow step to start")
        (tmp_path / "started").unlink()
        source.write_text(SLOW_WORKFLOWS + "\n# edited\n")
        wait_until(lambda: (tmp_path / "started").exists(), what="the step to run again")
        assert any("because the server reloaded" in e for e in attempt_errors(session, url))
        (tmp_path / "started").unlink()
    with dev_server(tmp_path) as server:  # the first one stopped as Ctrl-C stops it
        url = server.url + url_path
        wait_until(lambda: (tmp_path / "started").exists(), what="the step to run again")
        errors = attempt_errors(session, url)
        assert any("because the server shut down" in e for e in errors), errors
        (tmp_path / "release").touch()
        wait_until(
            lambda: session.get(f"{url}/slow").json()["result"]["status"] == "complete",
            what="the slow instance to complete",
        )
    session.close()


def test_new_code_that_kills_its_process_at_import_leaves_the_old_code_serving(
    tmp_path: Path,
) -> None:
    """The serving child hands over only once the new one serves: a new module that ends its
    process while imported costs no request, and the next good edit reloads as usual."""
    (tmp_path / "wf.toml").write_text(WF_TOML)
    source = tmp_path / "workflows.py"
    source.write_text(WORKFLOWS)
    with dev_server(tmp_path) as server:
        session = requests.Session()
        url = f"{server.url}/api/workflows/hello/instances"
        assert session.post(url, json={"id": "before"}).status_code == 201

        source.write_text("import os\nos._exit(3)\n" + WORKFLOWS)
        wait_until(
            lambda: "exited with code 3 before it served" in server.output(),
            what="the supervisor to see the new code's process die",
        )
        assert session.post(url, json={"id": "meanwhile"}).status_code == 201
        assert reload_count(server.output()) == 0

        source.write_text(WORKFLOWS + "\n# fixed\n")
        wait_until(lambda: reload_count(server.output()) >= 1, what="the reload")
        assert session.post(url, json={"id": "after"}).status_code == 201
        for instance_id in ("before", "meanwhile", "after"):
            wait_until(
                lambda i=instance_id: (
                    session.get(f"{url}/{i}").json()["result"]["status"]  # type: ignore[misc]
                    == "complete"
                ),
                what=f"{instance_id} to complete",
            )
        session.close()
