"""``wf dev`` and ``wf workflows list`` as a user runs them (real subprocesses, real HTTP) on
broken projects, with secrets, and under requests that try to reach the file system."""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import socket
import subprocess
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.helpers import WF, free_port
from tests.fuzz.helpers import (
    SECRET,
    WORKFLOW_NAMES,
    Reply,
    check_envelope,
    listing,
    one_line,
    request,
    wait_until,
    write_project,
)
from tests.fuzz.strategies import PATH_LIKE

pytestmark = pytest.mark.slow


def _env() -> dict[str, str]:
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "120"}
    for name in ("WF_URL", "WF_API_TOKEN", "WF_DEBUG"):
        env.pop(name, None)
    return env


@dataclass
class Dev:
    process: subprocess.Popen[bytes]
    url: str
    log: Path

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def health(self) -> dict[str, Any] | None:
        try:
            reply = request(self.url, "GET", "/api/health", timeout=2)
        except OSError:
            return None
        result: dict[str, Any] = reply.json()["result"]
        return result


@contextmanager
def wf_dev(project: Path, logs: Path) -> Iterator[Dev]:
    """``wf dev`` in its own session, its output in ``logs`` (outside the project)."""
    port = free_port()
    logs.mkdir(parents=True, exist_ok=True)
    log = logs / f"dev-{port}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*WF, "dev", "--port", str(port)],
            cwd=project,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=_env(),
        )
    dev = Dev(process, f"http://127.0.0.1:{port}", log)
    try:
        yield dev
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


def _up(dev: Dev) -> dict[str, Any] | None:
    if dev.process.poll() is not None:
        raise AssertionError(f"wf dev exited with {dev.process.returncode}: {dev.output()}")
    return dev.health()


def wf(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*WF, *args], cwd=cwd, capture_output=True, text=True, timeout=60, env=_env()
    )


# ---- broken projects -------------------------------------------------------------------------

GOOD_TOML = 'name = "broken-project"\nmain = "fuzzflows.py"\n'
BROKEN: dict[str, tuple[str, bytes]] = {
    "wrong types": ("wf.toml", b'name = 5\nmain = ["fuzzflows.py"]\n'),
    "unknown unicode key": ("wf.toml", GOOD_TOML.encode() + '"n\u00e4me" = 1\n'.encode()),
    "random bytes": ("wf.toml", random.Random(3).randbytes(4096)),
    "deeply nested arrays": ("wf.toml", b"name = " + b"[" * 100_000 + b"]" * 100_000),
    "integer of 5000 digits": ("wf.toml", GOOD_TOML.encode() + b"[dev]\nport = " + b"9" * 5000),
    "NUL in main": ("wf.toml", b'name = "x"\nmain = "fuzz\\u0000flows.py"\n'),
    ".dev.vars not UTF-8": (".dev.vars", b"STORAGE_API_TOKEN=\xff\xfe\n"),
    ".dev.vars bad line": (".dev.vars", b"this is not a pair\n"),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_a_broken_project_gives_one_line_never_a_traceback(tmp_path: Path, case: str) -> None:
    """``wf dev`` stays up and shows the load error as one line naming the file; what needs the
    project's code answers 503 with it, and so does ``wf trigger`` (one line on stderr, exit 1).
    Reads answer from the store when wf.toml loads (it says where the database is), else 503
    saying so, and ``wf workflows list`` follows."""
    project = tmp_path / "project"
    write_project(project)
    filename, content = BROKEN[case]
    (project / filename).write_bytes(content)
    with wf_dev(project, tmp_path / "logs") as dev:
        health = wait_until(lambda: _up(dev), timeout=30, what=f"wf dev ({dev.output()})")
        assert health["status"] == "error", health
        error = health["error"]
        assert one_line(error) and filename in error, error
        reply = request(dev.url, "POST", "/api/workflows/quick/instances", b"{}")
        envelope = check_envelope(reply)
        assert reply.status == 503 and envelope["errors"][0] == {"code": 10004, "message": error}
        triggered = wf("trigger", "quick", "--url", dev.url, cwd=project)
        assert (triggered.returncode, triggered.stderr) == (1, f"wf: {error}\n"), triggered
        reply = request(dev.url, "GET", "/api/workflows")
        envelope = check_envelope(reply)
        listed = wf("workflows", "list", "--url", dev.url, cwd=project)
        if filename == "wf.toml":
            assert reply.status == 503 and envelope["errors"][0]["code"] == 10004, envelope
            message = envelope["errors"][0]["message"]
            assert message == f"{error}; instances can be read once wf.toml loads", message
            assert (listed.returncode, listed.stderr) == (1, f"wf: {message}\n"), listed
        else:
            assert reply.status == 200, envelope
            assert [w["name"] for w in envelope["result"]] == list(WORKFLOW_NAMES), envelope
            assert listed.returncode == 0 and "quick" in listed.stdout, listed
        assert "Traceback" not in listed.stdout + listed.stderr + triggered.stderr
    output = dev.output()
    assert "Traceback" not in output, output
    shown = [line for line in output.splitlines() if line.startswith("✗ ")]
    assert shown and all(filename in line for line in shown), output


@pytest.mark.parametrize("case", [c for c, (f, _) in BROKEN.items() if f == "wf.toml"])
def test_wf_workflows_list_reads_a_broken_wf_toml_without_a_traceback(
    tmp_path: Path, case: str
) -> None:
    """Without --url the address comes from wf.toml; a broken one falls back to the default
    address, so the command says that no server answers there, in one line."""
    project = tmp_path / "project"
    write_project(project)
    filename, content = BROKEN[case]
    (project / filename).write_bytes(content)
    with socket.socket() as default_port:
        try:  # bound, never listening, while the command runs: no server can start there
            default_port.bind(("127.0.0.1", 8787))
        except OSError:
            pytest.skip("something uses 127.0.0.1:8787, the default address")
        listed = wf("workflows", "list", cwd=project)
    assert listed.returncode == 1, listed
    assert listed.stderr == (
        "wf: no wf server at http://127.0.0.1:8787; start one with wf dev\n"
    ), listed.stderr
    assert listed.stdout == ""


def test_a_bad_dev_vars_line_does_not_echo_its_secret(tmp_path: Path) -> None:
    """A mistyped .dev.vars line (a dash in the name, a missing "=") holds a secret all the
    same: the load error the API serves names the file and line, not the value."""
    project = tmp_path / "project"
    write_project(project)
    (project / ".dev.vars").write_text(f"# secrets\nSTORAGE-API-TOKEN={SECRET}\n", encoding="utf-8")
    with wf_dev(project, tmp_path / "logs") as dev:
        health = wait_until(lambda: _up(dev), timeout=30, what=f"wf dev ({dev.output()})")
        assert health["status"] == "error" and ".dev.vars:2" in health["error"], health
        for path in ("/api/health", "/api/workflows", "/api/workflows/quick/instances"):
            reply = request(dev.url, "GET", path)
            assert SECRET.encode() not in reply.body, (path, reply.body)


# ---- a good project under attack -------------------------------------------------------------


def _attack_requests(seed: int, count: int) -> Iterator[tuple[str, str, bytes | None]]:
    rng = random.Random(seed)
    values = [*PATH_LIKE, "known", "quick", "../../../../../../../tmp/wf-fuzz-escape"]
    for _ in range(count):
        name, instance_id, event_type = (rng.choice(values) for _ in range(3))
        safe = rng.choice(("", "/.~"))
        n, i, t = (urllib.parse.quote(v, safe=safe) for v in (name, instance_id, event_type))
        body = json.dumps({"id": instance_id, "params": {"path": rng.choice(values)}}).encode()
        yield rng.choice(
            [
                ("POST", f"/api/workflows/{n}/instances", body),
                ("POST", f"/api/workflows/{n}/instances/batch", b"[" + body + b"]"),
                ("GET", f"/api/workflows/{n}/instances/{i}", None),
                ("POST", f"/api/workflows/{n}/instances/{i}/events/{t}", b'"x"'),
                ("PATCH", f"/api/workflows/{n}/instances/{i}/status", b'{"status":"pause"}'),
                ("GET", f"/api/workflows/{n}/instances?status={t}", None),
                ("GET", f"/{n}/{i}", None),
            ]
        )


def test_wf_dev_writes_nothing_outside_its_state_dir(tmp_path: Path) -> None:
    """Path-like names, ids, event types and params sent to a real ``wf dev``: every answer is
    an envelope under 500, and afterwards the folder around the project is as it was, but for
    the state dir (and Python's __pycache__)."""
    project = tmp_path / "project"
    write_project(project)
    (tmp_path / "outside.txt").write_text("canary", encoding="utf-8")
    state_dir = project / ".wf"
    logs = tmp_path / "logs"
    before = listing(tmp_path, skip=state_dir)
    with wf_dev(project, logs) as dev:
        wait_until(lambda: _up(dev), timeout=30, what=f"wf dev ({dev.output()})")
        for method, path, body in _attack_requests(seed=11, count=300):
            reply = request(dev.url, method, path, body)
            assert reply.status < 500, (method, path, reply)
            check_envelope(reply)
            assert b"canary" not in reply.body and SECRET.encode() not in reply.body
    after = listing(tmp_path, skip=state_dir)
    changed = {p for p in set(before) | set(after) if before.get(p) != after.get(p)}
    assert {p for p in changed if not p.startswith("logs")} == set(), changed
    assert not Path("/tmp/wf-fuzz-escape").exists()
    assert "Traceback" not in dev.output()


def test_requests_the_parser_refuses_print_no_traceback(tmp_path: Path) -> None:
    """A malformed request (no Host, a NUL in a header, a request line over 8 KiB) gets a 400
    from aiohttp's parser; ``wf dev``'s terminal must not fill with a traceback for it."""
    project = tmp_path / "project"
    write_project(project)
    with wf_dev(project, tmp_path / "logs") as dev:
        wait_until(lambda: _up(dev), timeout=30, what=f"wf dev ({dev.output()})")
        port = int(dev.url.rsplit(":", 1)[1])
        for raw in (
            b"GET /api/health HTTP/1.1\r\n\r\n",
            b"GET /api/health HTTP/1.1\r\nHost: localhost\x00\r\n\r\n",
            b"GET /api/workflows/" + b"a" * 9000 + b" HTTP/1.1\r\nHost: localhost\r\n\r\n",
        ):
            with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                sock.sendall(raw)
                answer = sock.recv(65536)
            assert answer.startswith(b"HTTP/1.") and b" 400 " in answer.split(b"\r\n")[0]
        reply: Reply = request(dev.url, "GET", "/api/health")
        assert reply.status == 200
    assert "Traceback" not in dev.output(), dev.output()
