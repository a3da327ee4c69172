"""Projects, ``wf dev`` processes, mounts and a full disk for the fault tests.

Everything here is real: files on real (or tmpfs) file systems, ``wf dev`` as a subprocess
spoken to over loopback HTTP, SQLite files read back without any engine.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import signal
import sqlite3
import subprocess
import textwrap
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.helpers import WF, free_port, wait_until

FINISHED = ("complete", "errored", "terminated")


# ---- projects ------------------------------------------------------------------------------


def write_project(
    root: Path,
    source: str,
    workflows: Sequence[tuple[str, str]] = (("faulty", "Faulty"),),
    *,
    durability: str = "fsync",
) -> Path:
    """A project at ``root``: ``workflows.py`` holds ``source``; ``workflows`` are (name, class)."""
    root.mkdir(parents=True, exist_ok=True)
    lines = ['name = "faults"', 'main = "workflows.py"', ""]
    for name, class_name in workflows:
        binding = re.sub(r"\W", "_", name).upper()
        lines += [
            "[[workflows]]",
            f'name = "{name}"',
            f'binding = "{binding}"',
            f'class_name = "{class_name}"',
            "",
        ]
    lines += ["[engine]", f'durability = "{durability}"', ""]
    (root / "wf.toml").write_text("\n".join(lines))
    (root / "workflows.py").write_text(textwrap.dedent(source).lstrip())
    return root


def database(project: Path) -> Path:
    return project / ".wf" / "wf.db"


def query(db: Path, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Read a database as it is on disk, without any engine (read-only, no -wal/-shm created
    beside a database that has none)."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


# ---- HTTP ----------------------------------------------------------------------------------


def request(
    url: str, method: str, path: str, body: Any = None, timeout: float = 30
) -> tuple[int, Any]:
    """(HTTP status, decoded JSON body); a body that is not JSON comes back as text."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(
        url + path, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode(errors="replace")


def error_message(body: Any) -> str:
    """The one message of an error envelope (fails the test if the body is not one)."""
    assert isinstance(body, dict), f"not a JSON error envelope: {body!r}"
    assert body.get("success") is False, body
    errors = body.get("errors")
    assert isinstance(errors, list) and errors, body
    message = errors[0].get("message")
    assert isinstance(message, str), body
    return message


def assert_clear_message(message: str) -> None:
    """One line of text, not a traceback, not empty."""
    assert message.strip(), "the error message is empty"
    assert "\n" not in message, f"the error message is not one line: {message!r}"
    assert "Traceback" not in message, f"the error message is a traceback: {message!r}"


# ---- wf dev --------------------------------------------------------------------------------


class Dev:
    """``wf dev`` in its own session (killed as a group), optionally as another user."""

    def __init__(self, project: Path, port: int | None = None, prefix: Sequence[str] = ()) -> None:
        self.project = project
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.prefix = list(prefix)  # e.g. setpriv, to run it with fewer privileges
        self.log = project.parent / f"{project.name}-dev-{time.monotonic_ns()}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def launch(self) -> Dev:
        """Start it without waiting for anything."""
        env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200", "PYTHONUNBUFFERED": "1"}
        env.pop("WF_URL", None)
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [*self.prefix, *WF, "dev", "--port", str(self.port)],
                cwd=self.project,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=env,
            )
        return self

    def start(self, timeout: float = 30) -> Dev:
        """Start it and wait until it serves a healthy engine."""
        self.launch()
        wait_until(self.healthy, timeout=timeout, what=f"wf dev on {self.url}: {self.tail()}")
        return self

    def health(self, timeout: float = 3) -> dict[str, Any] | None:
        try:
            status, body = request(self.url, "GET", "/api/health", timeout=timeout)
        except OSError:
            return None
        if status != 200 or not isinstance(body, dict):
            return None
        result = body.get("result")
        return result if isinstance(result, dict) else None

    def healthy(self) -> bool:
        health = self.health()
        return bool(health and health.get("status") == "ok")

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.output().splitlines()[-lines:])

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def create(
        self, workflow: str, instance_id: str, params: Any = None, timeout: float = 30
    ) -> tuple[int, Any]:
        body: dict[str, Any] = {"id": instance_id}
        if params is not None:
            body["params"] = params
        return request(
            self.url, "POST", f"/api/workflows/{workflow}/instances", body, timeout=timeout
        )

    def instance(self, workflow: str, instance_id: str) -> dict[str, Any]:
        status, body = request(
            self.url, "GET", f"/api/workflows/{workflow}/instances/{instance_id}"
        )
        if status != 200:  # a ValueError, so that wait_until keeps polling
            raise ValueError(f"GET {workflow}/{instance_id}: {status} {body}")
        result: dict[str, Any] = body["result"]
        return result

    def send_event(self, workflow: str, instance_id: str, event_type: str) -> tuple[int, Any]:
        return request(
            self.url,
            "POST",
            f"/api/workflows/{workflow}/instances/{instance_id}/events/{event_type}",
            {},
        )

    def finished(self, workflow: str, instance_id: str, timeout: float = 30) -> dict[str, Any]:
        def done() -> dict[str, Any] | None:
            details = self.instance(workflow, instance_id)
            return details if details["status"] in FINISHED else None

        result: dict[str, Any] = wait_until(
            done, timeout=timeout, what=f"{workflow}/{instance_id} to finish; log:\n{self.tail()}"
        )
        return result

    def stop(self) -> None:
        """Ctrl-C, as a user stops it; SIGKILL the group if it does not stop in time."""
        if self.process is None:
            return
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(15)
        self.kill()

    def kill(self) -> None:
        """SIGKILL the whole group (supervisor and child) and reap the supervisor."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)


@contextlib.contextmanager
def running(dev: Dev, *, wait: bool = True) -> Iterator[Dev]:
    try:
        yield dev.start() if wait else dev.launch()
    finally:
        dev.stop()


def child_pids(pid: int) -> list[int]:
    """The child processes of ``pid`` (from /proc)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            found += [int(p) for p in (task / "children").read_text().split()]
    return found


def parent_pid(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])


# ---- mounts and a full disk ------------------------------------------------------------------


def _run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(command), capture_output=True, text=True, timeout=30)


def _unmount(path: Path) -> None:
    for _ in range(50):
        if _run("umount", str(path)).returncode == 0:
            return
        time.sleep(0.1)  # a process of ours may still be letting go of a file
    _run("umount", "-l", str(path))  # never leave a mount behind


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A small tmpfs mounted at ``path`` (skips the test where mounting is not allowed)."""
    path.mkdir(parents=True, exist_ok=True)
    mounted = _run("mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path))
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip() or mounted.returncode}")
    try:
        yield path
    finally:
        _unmount(path)


@contextlib.contextmanager
def read_only_bind(path: Path) -> Iterator[Path]:
    """``path`` bind-mounted over itself read-only (for root too): new opens for writing fail."""
    bound = _run("mount", "--bind", str(path), str(path))
    if bound.returncode != 0:
        pytest.skip(f"cannot bind-mount here: {bound.stderr.strip() or bound.returncode}")
    try:
        remounted = _run("mount", "-o", "remount,bind,ro", str(path))
        if remounted.returncode != 0:
            pytest.skip(f"cannot remount read-only: {remounted.stderr.strip()}")
        yield path
    finally:
        _unmount(path)


def fill_disk(ballast: Path, chunk: int = 64 * 1024) -> int:
    """Write ``ballast`` until the file system is full; returns its size."""
    written = 0
    block = b"\0" * chunk
    with ballast.open("wb", buffering=0) as out:
        while True:
            try:
                out.write(block)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                if chunk == 1:
                    return written
                chunk = 1  # the last few bytes one at a time, so it is really full
                block = b"\0"
                continue
            written += len(block)
