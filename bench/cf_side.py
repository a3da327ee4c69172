"""The Cloudflare side: W1 and W2-http on Cloudflare's local emulator, ``wrangler dev``.

``python -m bench.cf_side W --dir DIR``: starts ``wrangler dev`` on 127.0.0.1 with the worker in
bench/cloudflare/ (TypeScript, bundled by wrangler) and a fresh ``--persist-to`` folder in DIR,
drives it over HTTP, and stops its whole process group (node and workerd). Needs ``npm ci`` to
have run in bench/cloudflare/ (``python -m bench --peer wrangler`` does it).

Each instance is a Durable Object with its own SQLite database under the persist folder, which
is workerd's business: the comparison is with wf's ``fsync`` mode, the one wf runs by default.

W1's headline figure is the client's wall time, from the POST that creates the instance to the
first poll (every 10 ms) that sees it complete, ÷ steps. The workflow also times its loop and
each ``step.do`` (workerd's clock moves only across I/O, in whole milliseconds, so the per-step
median is a whole number of milliseconds). wrangler dev enforces a per-instance step limit
(10,000 by default in 4.86; W1 has 1,000 steps): an instance stopped by it is reported as such.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

from bench.common import (
    Group,
    Http,
    HttpApi,
    emit_result,
    free_port,
    measure_http,
    median,
    percentile,
    stop_on_sigterm,
)

PROJECT = Path(__file__).resolve().parent / "cloudflare"


def wrangler_version() -> str:
    package = PROJECT / "node_modules" / "wrangler" / "package.json"
    return str(json.loads(package.read_text())["version"])


def wrangler(folder: Path, port: int) -> Group:
    env = {
        **os.environ,
        "WRANGLER_SEND_METRICS": "false",  # no telemetry
        "CLOUDFLARE_CF_FETCH_ENABLED": "false",  # no fetch of the Request.cf object
        "WRANGLER_LOG_PATH": str(folder / "logs"),
        "CI": "1",  # no interactive prompts or hotkeys
    }
    argv = [str(PROJECT / "node_modules" / ".bin" / "wrangler"), "dev", "--ip", "127.0.0.1"]
    argv += ["--port", str(port), "--persist-to", str(folder / "state"), "--log-level", "warn"]
    return Group(argv, PROJECT, folder / "wrangler.log", env)


def started(server: Group, port: int) -> float:
    def healthy() -> bool:
        http = Http(port, timeout=2)
        try:
            return http.call("GET", "/health")[0] == 200
        finally:
            http.close()

    return server.wait_ready(healthy)


def sequential(http: Http, n: int, timeout: float) -> dict[str, Any]:
    status, created = http.call("POST", "/sequential", {"params": {"n": n}})
    if status != 200:
        raise RuntimeError(f"create answered {status}: {created}")
    deadline = time.monotonic() + timeout
    while True:
        status, body = http.call("GET", f"/sequential/{created['id']}")
        if status != 200:
            raise RuntimeError(f"status answered {status}: {body}")
        if body["status"] == "complete":
            return dict(body["output"])
        if body["status"] in ("errored", "terminated"):
            error = body.get("error")
            if "steps has been reached" in json.dumps(error):
                raise RuntimeError(
                    f"wrangler dev's per-instance step limit stopped W1's {n} steps: {error}"
                )
            raise RuntimeError(f"the instance ended {body['status']}: {error}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"W1 instance still {body['status']} after {timeout} s")
        time.sleep(0.01)


def w1(args: argparse.Namespace) -> dict[str, Any]:
    port = free_port()
    with wrangler(args.dir, port) as server:
        ready = started(server, port)
        http = Http(port)
        try:
            sequential(http, 100, args.timeout)  # warm-up
            began = time.perf_counter()
            output = sequential(http, args.steps, args.timeout)
            wall = time.perf_counter() - began
        finally:
            http.close()
    times = output["step_ms"]
    return {
        "steps": args.steps,
        "seconds": wall,
        "step_us": wall / args.steps * 1e6,
        "loop_step_us": output["loop_ms"] / args.steps * 1000,
        "step_us_median": median(times) * 1000,
        "step_us_p90": percentile(times, 90) * 1000,
        "step_us_max": max(times) * 1000,
        "startup_seconds": ready,
    }


def three_api() -> HttpApi:
    def create(http: Http) -> str:
        status, body = http.call("POST", "/three", {"params": {}})
        if status != 200:
            raise RuntimeError(f"create answered {status}: {body}")
        return str(body["id"])

    def state(http: Http, instance_id: str) -> str:
        status, body = http.call("GET", f"/three/{instance_id}")
        if status != 200:
            raise RuntimeError(f"status answered {status}: {body}")
        return {"complete": "done", "errored": "failed", "terminated": "failed"}.get(
            body["status"], "running"
        )

    return HttpApi(create, state)


def w2_http(args: argparse.Namespace) -> dict[str, Any]:
    port = free_port()
    api = three_api()
    with wrangler(args.dir, port) as server:
        ready = started(server, port)
        result = measure_http(server, port, api, args, ready)
    return result


WORKLOADS = {"W1": w1, "W2-http": w2_http}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.cf_side")
    parser.add_argument("workload", choices=sorted(WORKLOADS))
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--instances", type=int, default=500)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--timeout", type=float, default=300.0)
    args = parser.parse_args(argv)
    stop_on_sigterm()
    result = WORKLOADS[args.workload](args)
    emit_result(
        {
            "engine": "wrangler",
            "workload": args.workload,
            "durability": "workerd",
            "wrangler": wrangler_version(),
            **result,
        }
    )


if __name__ == "__main__":
    main()
