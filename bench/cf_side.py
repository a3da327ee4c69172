"""The Cloudflare side: the same workload on Cloudflare's local emulator (``wrangler dev``).

``python -m bench.cf_side KIND --instances N --steps N``: starts ``wrangler dev`` on 127.0.0.1 with
the worker in bench/cloudflare/ (a fresh state folder each run), drives it over HTTP, stops it.
Needs ``npm ci`` to have run in bench/cloudflare/ (``python -m bench`` does it).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.common import emit_result, latency_summary

PROJECT = Path(__file__).resolve().parent / "cloudflare"
POLL = 0.05


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wrangler_version() -> str:
    package = PROJECT / "node_modules" / "wrangler" / "package.json"
    return str(json.loads(package.read_text())["version"])


class Wrangler:
    """A ``wrangler dev`` process group, and a tiny JSON client for the bench worker."""

    def __init__(self, state: Path) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = {
            **os.environ,
            "WRANGLER_SEND_METRICS": "false",  # no telemetry
            "CLOUDFLARE_CF_FETCH_ENABLED": "false",  # no fetch of the Request.cf object
            "CI": "1",  # no interactive prompts or hotkeys
        }
        self.log = (state / "wrangler.log").open("wb")
        self.proc = subprocess.Popen(
            [
                str(PROJECT / "node_modules" / ".bin" / "wrangler"),
                "dev",
                "--ip",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--persist-to",
                str(state / "state"),
                "--log-level",
                "warn",
            ],
            cwd=PROJECT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stopped as one below
        )
        self.log_path = state / "wrangler.log"

    def wait_ready(self, timeout: float = 90.0) -> float:
        started = time.perf_counter()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"wrangler dev exited: {self.log_path.read_text()[-2000:]}")
            try:
                self.post("/finished", {"ids": [], "probe": 1}, timeout=2)
                return time.perf_counter() - started
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.2)
        raise TimeoutError("wrangler dev did not become ready")

    def post(self, path: str, body: dict[str, Any], timeout: float = 60) -> Any:
        request = urllib.request.Request(
            self.base + path,
            data=json.dumps(body).encode(),
            headers={"content-type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read())

    def rss_mib(self) -> float:
        """The resident memory of every process of the group (node and workerd), in MiB."""
        total = 0
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                if os.getpgid(int(entry.name)) != self.proc.pid:
                    continue
                for line in (entry / "status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
            except (OSError, ProcessLookupError):
                continue
        return total / 1024

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        # workerd children may outlive wrangler's node process for a moment.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.log.close()


@contextlib.contextmanager
def wrangler() -> Iterator[tuple[Wrangler, float]]:
    with tempfile.TemporaryDirectory(prefix="wf-bench-cf-") as folder:
        dev = Wrangler(Path(folder))
        try:
            ready = dev.wait_ready()
            yield dev, ready
        finally:
            dev.stop()


def create(dev: Wrangler, count: int, steps: int, timed: bool = False) -> list[str]:
    ids: list[str] = []
    for start in range(0, count, 100):
        size = min(100, count - start)
        ids.extend(dev.post("/create", {"count": size, "n": steps, "timed": timed}))
    return ids


def wait_finished(dev: Wrangler, ids: list[str], timeout: float) -> int:
    """Poll until every instance finished; returns how many errored."""
    pending = list(ids)
    errored = 0
    deadline = time.monotonic() + timeout
    while pending:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(pending)} of {len(ids)} instances still running")
        answer = dev.post("/finished", {"ids": pending, "probe": 20})
        done = set(answer["done"])
        errored += len(answer["errored"])
        pending = [i for i in pending if i not in done]
        if pending:
            time.sleep(POLL)
    return errored


def throughput(args: argparse.Namespace) -> dict[str, Any]:
    with wrangler() as (dev, ready):
        wait_finished(dev, create(dev, 10, args.steps), args.timeout)  # warm-up
        started = time.perf_counter()
        ids = create(dev, args.instances, args.steps)
        errored = wait_finished(dev, ids, args.timeout)
        elapsed = time.perf_counter() - started
        rss = dev.rss_mib()
    steps = args.instances * args.steps
    return {
        "instances": args.instances,
        "steps_per_instance": args.steps,
        "seconds": elapsed,
        "instances_per_s": args.instances / elapsed,
        "steps_per_s": steps / elapsed,
        "errored": errored,
        "startup_seconds": ready,
        "rss_mib": rss,
        "poll_interval_s": POLL,
    }


def latency(args: argparse.Namespace) -> dict[str, Any]:
    with wrangler() as (dev, _):
        wait_finished(dev, create(dev, 1, 10, timed=True), args.timeout)  # warm-up
        elapsed = []
        times: list[float] = []
        for _ in range(args.rounds):  # one instance at a time, never two at once
            started = time.perf_counter()
            ids = create(dev, 1, args.steps, timed=True)
            wait_finished(dev, ids, args.timeout)
            elapsed.append(time.perf_counter() - started)
            times.extend(t / 1000 for t in dev.post("/output", {"id": ids[0]})["output"])
    return {
        "steps": args.steps,
        "rounds": args.rounds,
        "instance_seconds": sorted(elapsed)[len(elapsed) // 2],
        **latency_summary(times),
        "samples": len(times),
    }


KINDS = {"throughput": throughput, "latency": latency}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.cf_side")
    parser.add_argument("kind", choices=sorted(KINDS))
    parser.add_argument("--instances", type=int, default=200)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=5, help="latency: instances, one by one")
    parser.add_argument("--timeout", type=float, default=300.0)
    args = parser.parse_args(argv)
    result = KINDS[args.kind](args)
    emit_result(
        {"engine": "cloudflare", "kind": args.kind, "wrangler": wrangler_version(), **result}
    )


if __name__ == "__main__":
    main()
