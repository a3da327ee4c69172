"""Helpers shared by every side of the benchmark.

Standard library only: the DBOS side runs this module in its own venv (bench/.venv-dbos), where wf
is not installed.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import math
import os
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

RESULT_MARK = "BENCH-RESULT "


# ---- numbers ----------------------------------------------------------------------------------
def median(values: Sequence[float]) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return float(ordered[middle])
    return (ordered[middle - 1] + ordered[middle]) / 2


def percentile(values: Sequence[float], pct: float) -> float:
    """The nearest-rank percentile (``pct`` from 0 to 100) of ``values``."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return float(ordered[min(rank, len(ordered)) - 1])


# ---- this process -----------------------------------------------------------------------------
def proc_status_kib(field_name: str, pid: int | str = "self") -> int | None:
    """A ``kB`` field of /proc/PID/status (VmRSS, VmHWM, ...), or None off Linux."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def rss_kib() -> int:
    """The resident set size of this process now, in KiB."""
    kib = proc_status_kib("VmRSS")
    return peak_rss_kib() if kib is None else kib


def peak_rss_kib() -> int:
    """The peak resident set size of this process so far, in KiB."""
    kib = proc_status_kib("VmHWM")
    if kib is None:
        kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kib


def emit_result(result: dict[str, Any]) -> None:
    """Hand a result to the parent process: one marked JSON line on stdout."""
    sys.stdout.write(RESULT_MARK + json.dumps(result) + "\n")
    sys.stdout.flush()


def stop_on_sigterm() -> None:
    """Make SIGTERM raise ``SystemExit`` in this process, so that its ``finally`` blocks stop the
    servers it started (the driver sends SIGTERM to a measurement that overran its time)."""

    def leave(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, leave)


def mark(name: str) -> None:
    """A progress line for a parent that times this process from outside (see ``wait_mark``)."""
    sys.stdout.write(f"MARK {name}\n")
    sys.stdout.flush()


def wait_mark(proc: subprocess.Popen[str], name: str, timeout: float) -> float:
    """Read ``proc``'s stdout until ``MARK name``; returns ``time.perf_counter()`` when it came."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    seen: list[str] = []
    timer = threading.Timer(timeout, lambda: proc.kill())
    timer.start()
    try:
        for line in proc.stdout:
            if line.strip() == f"MARK {name}":
                return time.perf_counter()
            seen.append(line.rstrip())
            if time.monotonic() > deadline:
                break
    finally:
        timer.cancel()
    tail = " | ".join(seen[-10:])
    raise RuntimeError(f"no MARK {name} from pid {proc.pid} (exit {proc.poll()}): {tail}")


def read_rest(proc: subprocess.Popen[str], timeout: float) -> str:
    """The rest of ``proc``'s stdout, up to its end, once ``wait_mark`` has read part of it
    (``communicate`` would lose the lines ``wait_mark`` has buffered); ``proc`` is killed if it
    has not closed it within ``timeout``."""
    assert proc.stdout is not None
    timer = threading.Timer(timeout, lambda: proc.kill())
    timer.start()
    try:
        rest = proc.stdout.read()
    finally:
        timer.cancel()
    proc.wait(timeout)
    return rest


def fresh_db(path: Path) -> None:
    """Remove a database left by an earlier run, with its companions."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-wal", "-shm", "-journal", ".lock"):
        candidate = path.with_name(path.name + suffix)
        if candidate.exists():
            candidate.unlink()


def files_mib(path: Path) -> float:
    """The size of an SQLite database with its -wal, -shm and -journal files, in MiB."""
    total = 0
    for suffix in ("", "-wal", "-shm", "-journal"):
        candidate = path.with_name(path.name + suffix)
        if candidate.exists():
            total += candidate.stat().st_size
    return total / (1024 * 1024)


# ---- other processes --------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes of a process group, from /proc."""
    members = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            stat = Path("/proc", name, "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            members.append(int(name))
    return members


class Group:
    """A server (``wf dev``, ``wrangler dev``, a DBOS app) in its own session, so that it and
    every process it starts are stopped together, by process group id (never by name)."""

    def __init__(
        self, argv: list[str], cwd: Path, log: Path, env: dict[str, str] | None = None
    ) -> None:
        self.log_path = log
        self._log: IO[bytes] = log.open("wb")
        self.proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.pgid = self.proc.pid

    def output(self, tail: int = 30) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-tail:])

    def alive(self) -> bool:
        return self.proc.poll() is None

    def rss_kib(self) -> int:
        """The resident memory of every process of the group, in KiB."""
        return sum(proc_status_kib("VmRSS", pid) or 0 for pid in group_members(self.pgid))

    def wait_ready(self, ready: Callable[[], bool], timeout: float = 90.0) -> float:
        """Poll ``ready`` until it is true; returns the seconds it took."""
        started = time.perf_counter()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"server exited ({self.proc.returncode}):\n{self.output()}")
            try:
                if ready():
                    return time.perf_counter() - started
            except (OSError, http.client.HTTPException, ValueError):
                pass
            time.sleep(0.05)
        raise TimeoutError(f"server not ready after {timeout:.0f} s:\n{self.output()}")

    def stop(self, sig: int = signal.SIGINT, timeout: float = 15.0) -> None:
        """Ask the group to stop (``sig``), then SIGKILL whatever is left; returns once none of
        its processes is alive."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pgid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout)
        deadline = time.monotonic() + 5
        while group_members(self.pgid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if group_members(self.pgid) or self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pgid, signal.SIGKILL)
            self.proc.wait(10)
            deadline = time.monotonic() + 10
            while group_members(self.pgid) and time.monotonic() < deadline:
                time.sleep(0.05)
        self._log.close()

    def __enter__(self) -> Group:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# ---- the HTTP workload (W2-http), the same client for every engine ---------------------------
class Http:
    """A keep-alive JSON client for one thread (reconnects when the server closed the socket)."""

    def __init__(self, port: int, timeout: float = 30.0) -> None:
        self.port = port
        self.timeout = timeout
        self.conn = _CountingConnection("127.0.0.1", port, timeout=timeout)
        self._opened_before = 0

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if data is not None else {}
        for attempt in (1, 2):
            try:
                self.conn.request(method, path, body=data, headers=headers)
                response = self.conn.getresponse()
                raw = response.read()
                return response.status, json.loads(raw) if raw else None
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.conn.close()
                self._opened_before += self.conn.opened
                self.conn = _CountingConnection("127.0.0.1", self.port, timeout=self.timeout)
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    @property
    def connections(self) -> int:
        """How many it opened: 1 when the server keeps the connection alive."""
        return self._opened_before + self.conn.opened

    def close(self) -> None:
        self.conn.close()


class _CountingConnection(http.client.HTTPConnection):
    """http.client reconnects by itself after a ``Connection: close`` answer: count it."""

    opened = 0

    def connect(self) -> None:
        super().connect()
        self.opened += 1


@dataclass
class HttpApi:
    """How to create an instance and read its status on one engine's REST API."""

    create: Callable[[Http], str]  # returns the new instance's id
    status: Callable[[Http, str], str]  # "done", "failed" or anything else (still running)


@dataclass
class HttpRun:
    seconds: float = 0.0
    create_seconds: float = 0.0  # until the last create was answered
    polls: int = 0
    failed: int = 0
    connections: int = 0
    errors: list[str] = field(default_factory=list)


def drive_http(port: int, api: HttpApi, count: int, threads: int, timeout: float) -> HttpRun:
    """``threads`` client threads create ``count`` instances between them (each its share, one
    POST after another), then each polls its own instances (GET, round robin) until every one
    is finished. Timed from the start of the first create to the last instance seen finished."""
    shares = [count // threads + (1 if i < count % threads else 0) for i in range(threads)]
    barrier = threading.Barrier(threads + 1)
    created_at = [0.0] * threads
    ended_at = [0.0] * threads
    run = HttpRun()
    lock = threading.Lock()
    deadline = time.monotonic() + timeout

    def client(index: int) -> None:
        http = Http(port)
        polls = failed = 0
        try:
            barrier.wait()
            pending = [api.create(http) for _ in range(shares[index])]
            created_at[index] = time.perf_counter()
            while pending:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{len(pending)} instances unfinished after {timeout} s")
                still = []
                for instance_id in pending:
                    polls += 1
                    state = api.status(http, instance_id)
                    if state == "failed":
                        failed += 1
                    elif state != "done":
                        still.append(instance_id)
                if len(still) == len(pending):
                    time.sleep(0.002)  # nothing moved: do not spin on the server
                pending = still
            ended_at[index] = time.perf_counter()
        except Exception as exc:
            with lock:
                run.errors.append(f"{type(exc).__name__}: {exc}")
            ended_at[index] = math.nan
        finally:
            http.close()
            with lock:
                run.polls += polls
                run.failed += failed
                run.connections += http.connections

    workers = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(threads)]
    for worker in workers:
        worker.start()
    barrier.wait()
    started = time.perf_counter()
    for worker in workers:
        worker.join(timeout + 30)
    if run.errors:
        raise RuntimeError("HTTP client failed: " + "; ".join(sorted(set(run.errors))[:3]))
    run.seconds = max(ended_at) - started
    run.create_seconds = max(created_at) - started
    return run


def measure_http(
    server: Group, port: int, api: HttpApi, args: argparse.Namespace, startup: float
) -> dict[str, Any]:
    """W2-http against a server that is up: a warm-up, then ``args.instances`` instances by
    ``args.threads`` clients; the figures, with the server's start-up time and its RSS."""
    drive_http(port, api, 40, args.threads, args.timeout)  # warm-up
    run = drive_http(port, api, args.instances, args.threads, args.timeout)
    count = args.instances
    return {
        "instances": count,
        "client_threads": args.threads,
        "seconds": run.seconds,
        "instances_per_s": count / run.seconds,
        "create_seconds": run.create_seconds,
        "creates_per_s": count / run.create_seconds,
        "polls_per_instance": run.polls / count,
        "connections_per_client": run.connections / args.threads,
        "failed": run.failed,
        "startup_seconds": startup,
        "server_rss_mib": server.rss_kib() / 1024,
        "errored": run.failed,
    }


# ---- the machine ------------------------------------------------------------------------------
def machine_info() -> dict[str, Any]:
    import platform
    import sqlite3

    info: dict[str, Any] = {
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "kernel": f"{platform.system()} {platform.release()} {platform.machine()}",
    }
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
    with (
        contextlib.suppress(OSError, ValueError),
        open("/proc/meminfo", encoding="ascii") as meminfo,
    ):
        for line in meminfo:
            if line.startswith("MemTotal:"):
                info["memory_gib"] = round(int(line.split()[1]) / 1024 / 1024, 1)
                break
    if hasattr(os, "sched_getaffinity"):
        info["cpus_usable"] = len(os.sched_getaffinity(0))
    return info


def fsync_micros(folder: Path, count: int = 200) -> dict[str, float]:
    """How long an fsync of a freshly written 4 KiB block takes in ``folder`` (median, p90)."""
    path = folder / "fsync-probe"
    times = []
    with path.open("wb") as probe:
        for _ in range(count):
            probe.write(b"x" * 4096)
            probe.flush()
            started = time.perf_counter()
            os.fsync(probe.fileno())
            times.append(time.perf_counter() - started)
    path.unlink()
    return {
        "fsync_us_median": round(median(times) * 1e6, 1),
        "fsync_us_p90": round(percentile(times, 90) * 1e6, 1),
    }
