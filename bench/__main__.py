"""``python -m bench``: wf's benchmark suite (bench/README.md). Prints the tables and writes JSON.

    python -m bench                          # every workload, wf only, 3 runs each
    python -m bench --peer all               # with DBOS Transact and wrangler dev (= make bench)
    python -m bench --workload W1 --workload L --runs 5
    python -m bench --quick                  # small counts, one run (--smoke: the same)
    python -m bench --store postgres         # the PostgreSQL forms alone

``--store sqlite|postgres|all`` (default all) picks the stores wf (and DBOS) run on: with
postgres, one throwaway durable PostgreSQL cluster serves the whole run (bench/pg_server.py),
every measurement on a fresh database of its own, and the cluster is stopped at the end, also
after an error or Ctrl-C.

Every measurement runs in its own subprocess, from an empty temporary folder (on the same disk as
the fsync probe and L), warms up before timing, and is repeated ``--runs`` times (the rounds are
interleaved, so a drift of the machine spreads over every configuration); the tables show
medians. A full run (every workload, both peers, both stores, ``--runs`` >= 3, not ``--quick``,
no ``--out``)
writes ``bench/results/latest.json`` and ``bench/RESULTS.md``; any other run writes
``bench/results/partial.json`` (``quick.json`` for ``--quick``) and leaves them alone.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.common import RESULT_MARK, fsync_micros, machine_info, median
from bench.npm import node_and_npm, npm_ci, npm_installed
from bench.report import RESULTS_FILE, Run, body_ratios, render, results_markdown

if TYPE_CHECKING:
    from bench.pg_server import BenchServer

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "results"
DBOS_VENV = BENCH / ".venv-dbos"
DBOS_REQUIREMENTS = BENCH / "requirements-dbos.txt"
CF_PROJECT = BENCH / "cloudflare"
WORKLOADS = ("W1", "W1-def", "W2", "W2-http", "W3", "W4", "L", "W2-scale", "takeover")
PG_ONLY = ("W2-scale", "takeover")  # runs of several wf processes sharing one database
SQLITE_ONLY = ("W1-def",)  # the cost of a def body's thread hop does not depend on the store
PEERS = ("dbos", "wrangler")
STORES = ("sqlite", "postgres")
SCALE_NODES = (1, 2, 4)
TAKEOVER_LEASE = 5.0
DBOS_MODES = ("default", "fsync", "os")


@dataclass(frozen=True)
class Sizes:
    w1_steps: int
    w2_instances: int
    http_instances: int
    w3_instances: int
    w4_instances: int
    w4_dbos_instances: int  # every sleeping DBOS workflow stays in memory, and starts slowly
    limit_seconds: float
    timeout: float  # of one measurement (W4: three times as long)
    scale_instances: int  # W2-scale: the pool the nodes share
    takeover_instances: int


FULL = Sizes(1000, 1000, 500, 1000, 100_000, 2000, 1.5, 300.0, 4000, 500)
QUICK = Sizes(200, 200, 100, 200, 5000, 200, 0.3, 60.0, 600, 50)


@dataclass
class Measurement:
    """One configuration of one workload on one engine, run ``runs`` times."""

    engine: str  # wf, dbos, wrangler; L: sqlite, postgres
    workload: str
    durability: str  # fsync, os; DBOS on SQLite: default; wrangler: workerd
    # DBOS's workflow style (async/sync); W2-scale: "1 node", ...; takeover: SIGKILL, SIGSTOP
    variant: str
    argv: list[str]
    timeout: float
    store: str = "sqlite"  # sqlite, postgres (a fresh database of the run's server for each run)
    runs: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        store = "on PostgreSQL" if self.store == "postgres" else ""
        parts = [self.engine, self.workload, self.durability, self.variant, store]
        return " ".join(p for p in parts if p)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ---- setting up the peers -------------------------------------------------------------------
def dbos_python() -> Path:
    """bench/.venv-dbos's Python, made and filled (pip, pinned) on first use."""
    python = DBOS_VENV / "bin" / "python"
    stamp = DBOS_VENV / ".installed"
    wanted = DBOS_REQUIREMENTS.read_text()
    if python.exists() and stamp.exists() and stamp.read_text() == wanted:
        return python
    log(f"setting up {DBOS_VENV.relative_to(ROOT)}: pip install -r {DBOS_REQUIREMENTS.name} ...")
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(DBOS_VENV)], check=True)
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "-r", str(DBOS_REQUIREMENTS)],
        check=True,
        timeout=900,
    )
    stamp.write_text(wanted)
    return python


def wrangler_ready() -> str:
    """Install wrangler in bench/cloudflare (``npm ci``) if needed; its version."""
    _, npm, node_version = node_and_npm()
    if not npm_installed(CF_PROJECT):
        log("installing wrangler in bench/cloudflare: npm ci ...")
        npm_ci(CF_PROJECT, npm)
    package = json.loads((CF_PROJECT / "node_modules" / "wrangler" / "package.json").read_text())
    return f"{package['version']} (Node.js {node_version})"


# ---- the plan ---------------------------------------------------------------------------------
def plan(
    workloads: list[str], peers: list[str], stores: list[str], sizes: Sizes, dbos: Path | None
) -> list[Measurement]:
    """What to measure, on each store asked for: wf in fsync mode (W1 and W1-def in both
    modes), DBOS with its defaults, wrangler dev (W1 and W2-http), and L in both modes;
    W2-scale and takeover on PostgreSQL alone, W1-def and wrangler on SQLite alone."""
    py = sys.executable
    out: list[Measurement] = []
    counts = {
        "W1": ["--steps", str(sizes.w1_steps)],
        "W1-def": ["--steps", str(sizes.w1_steps)],
        "W2": ["--instances", str(sizes.w2_instances)],
        "W2-http": ["--instances", str(sizes.http_instances)],
        "W3": ["--instances", str(sizes.w3_instances)],
        "W4": ["--instances", str(sizes.w4_instances)],
        "W2-scale": ["--instances", str(sizes.scale_instances)],
        "takeover": ["--instances", str(sizes.takeover_instances)],
    }

    def add(
        engine: str,
        workload: str,
        durability: str,
        variant: str,
        argv: list[str],
        store: str = "sqlite",
    ) -> None:
        timeout = sizes.timeout * (3 if workload == "W4" else 1)
        if engine not in ("sqlite", "postgres"):
            argv = [*argv, "--timeout", str(timeout - 15)]
        out.append(Measurement(engine, workload, durability, variant, argv, timeout, store=store))

    for workload in workloads:
        if workload == "L":
            seconds = ["--seconds", str(sizes.limit_seconds)]
            if "sqlite" in stores:
                for mode in ("fsync", "os"):
                    limit = [py, "-m", "bench.limit", "--durability", mode, *seconds]
                    add("sqlite", "L", mode, "", limit)
            if "postgres" in stores:
                for mode in ("fsync", "os"):
                    limit = [py, "-m", "bench.limit_pg", "--durability", mode, *seconds]
                    add("postgres", "L", mode, "", limit, "postgres")
            continue
        if workload in PG_ONLY:
            if "postgres" not in stores:
                continue
            wf = [py, "-m", "bench.wf_side", workload, *counts[workload]]
            if workload == "W2-scale":
                for nodes in SCALE_NODES:
                    variant = f"{nodes} node" + ("s" if nodes > 1 else "")
                    add("wf", workload, "fsync", variant, [*wf, "--nodes", str(nodes)], "postgres")
            else:
                for how in ("SIGKILL", "SIGSTOP"):
                    argv = [*wf, "--lease", str(TAKEOVER_LEASE), "--how", how]
                    add("wf", workload, "fsync", how, argv, "postgres")
            continue
        for store in stores:
            if store == "postgres" and workload in SQLITE_ONLY:
                continue
            # W1 in both durability modes (on PostgreSQL, "os" is synchronous_commit off).
            for mode in ("fsync", "os") if workload in ("W1", "W1-def") else ("fsync",):
                wf = [py, "-m", "bench.wf_side", workload, "--durability", mode]
                add("wf", workload, mode, "", [*wf, *counts[workload]], store)
                if workload in ("W1", "W2"):  # the cost of counting for /metrics: on vs off
                    argv = [*wf, *counts[workload], "--metrics"]
                    add("wf", workload, mode, "metrics on", argv, store)
            if workload in SQLITE_ONLY:  # wf's own comparison: the peers' W1 has both styles
                continue
            if "dbos" in peers and dbos is not None:
                side = [str(dbos), "-m", "bench.dbos_side", workload, "--durability", "default"]
                if workload == "W4":
                    count = ["--instances", str(sizes.w4_dbos_instances)]
                else:
                    count = counts[workload]
                # W1: async (the same workload as wf's) and sync, DBOS's faster style; W2,
                # W2-http and W3 run sync (faster, and what DBOS's HTTP examples use); W4
                # sleeps async.
                styles = {"W1": ("async", "sync"), "W4": ("async",)}.get(workload, ("sync",))
                mode = "default" if store == "sqlite" else "fsync"
                for style in styles:
                    argv = [*side, "--style", style, *count]
                    add("dbos", workload, mode, style, argv, store)
            if "wrangler" in peers and store == "sqlite" and workload in ("W1", "W2-http"):
                side = [py, "-m", "bench.cf_side", workload]
                add("wrangler", workload, "workerd", "", [*side, *counts[workload]])
    return out


# ---- running ----------------------------------------------------------------------------------
def run_once(job: Measurement, scratch: Path, server: BenchServer | None) -> None:
    """One run of ``job`` in its own process and empty folder (and, on PostgreSQL, a fresh
    database of ``server``, dropped after it); its result or error kept."""
    if job.store != "postgres":
        run_in(job, scratch, [])
        return
    if server is None:
        job.errors.append("no PostgreSQL server")
        return
    url = server.new_database()
    try:
        run_in(job, scratch, ["--database", url])
    finally:
        server.drop_database(url)


def run_in(job: Measurement, scratch: Path, extra: list[str]) -> None:
    folder = Path(tempfile.mkdtemp(prefix="run-", dir=scratch))
    pythonpath = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "PYTHONPATH": pythonpath}
    if job.engine == "sqlite":
        argv = [*job.argv, "--db", str(folder / "limit.db")]
    elif job.engine == "postgres":
        argv = list(job.argv)
    else:
        argv = [*job.argv, "--dir", str(folder)]
    argv += extra
    # Start on a quiet disk: what an earlier run left to write back would slow this one.
    os.sync()
    time.sleep(0.3)
    started = time.monotonic()
    proc = subprocess.Popen(
        argv,
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out, err = proc.communicate(timeout=job.timeout)
    except subprocess.TimeoutExpired:
        # SIGTERM first: the side stops the servers it started (its finally blocks run).
        proc.terminate()
        try:
            proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
        job.errors.append(f"timed out after {job.timeout:.0f} s")
        log(f"    {job.label}: timed out")
        return
    except BaseException:
        proc.terminate()
        proc.communicate(timeout=30)
        raise
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    took = time.monotonic() - started
    lines = [ln for ln in out.splitlines() if ln.startswith(RESULT_MARK)]
    if proc.returncode != 0 or not lines:
        tail = (err or out).strip().splitlines()[-12:]
        job.errors.append(f"exit {proc.returncode}: " + " | ".join(tail))
        log(f"    {job.label}: failed\n      " + "\n      ".join(tail))
        return
    result = json.loads(lines[-1][len(RESULT_MARK) :])
    result["process_seconds"] = took
    job.runs.append(result)
    bad = int(result.get("errored") or 0)
    if bad:
        samples = "; ".join(map(str, result.get("error_samples") or []))
        job.errors.append(
            f"{bad} instance(s) errored or failed" + (f": {samples}" if samples else "")
        )
    log(f"    {job.label}: {took:.1f} s" + (f", {bad} errored" if bad else ""))


def summarise(job: Measurement) -> dict[str, Any]:
    numeric: dict[str, list[float]] = {}
    for run in job.runs:
        for key, value in run.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                numeric.setdefault(key, []).append(float(value))
    medians = {key: median(values) for key, values in numeric.items()}
    fixed = {k: v for k, v in (job.runs[0].items() if job.runs else ()) if k not in numeric}
    return {
        **fixed,  # what the side reported; the plan's names of the measurement win
        "engine": job.engine,
        "workload": job.workload,
        "durability": job.durability,
        "variant": job.variant,
        "store": job.store,
        "argv": job.argv,
        "median": medians,
        "runs": job.runs,
        "errors": job.errors,
    }


def git_state() -> dict[str, Any]:
    def git(*args: str) -> str:
        try:
            return subprocess.run(
                ["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    return {
        "commit": git("rev-parse", "--short", "HEAD"),
        "engine_source_modified": bool(git("status", "--porcelain", "--", "src")),
    }


def filesystem(folder: Path) -> str:
    """The file system and device that hold ``folder`` (from /proc/mounts)."""
    best = ("", "", "")
    with contextlib.suppress(OSError):
        resolved = str(folder.resolve())
        for line in Path("/proc/mounts").read_text().splitlines():
            device, mount, kind, *_ = line.split()
            inside = resolved == mount or resolved.startswith(mount.rstrip("/") + "/")
            if inside and len(mount) >= len(best[1]):
                best = (device, mount, kind)
    return f"{best[2]} on {best[0]}" if best[0] else "?"


def selection(values: list[str] | None, known: tuple[str, ...], what: str) -> list[str]:
    chosen: list[str] = []
    for value in values or []:
        for item in value.split(","):
            item = item.strip()
            if item == "all":
                chosen = list(known)
            elif item == "none":
                chosen = []
            elif item in known:
                if item not in chosen:
                    chosen.append(item)
            else:
                raise SystemExit(f"unknown {what} {item!r}; use {', '.join(known)}, all or none")
    return [k for k in known if k in chosen]


def start_server(
    parent: Path | None, errors: list[str]
) -> tuple[BenchServer | None, dict[str, Any]]:
    """The run's PostgreSQL server, and what the JSON says of it; (None, {}) and an error when
    there is none to be had."""
    from bench.pg_server import BenchServer, Unavailable

    log("starting a durable PostgreSQL cluster for this run ...")
    try:
        server = BenchServer(parent)
    except (Unavailable, RuntimeError, OSError) as exc:
        errors.append(f"PostgreSQL could not be started: {exc}")
        log(f"  {errors[-1]}")
        return None, {}
    try:
        described = server.describe()
    except BaseException:
        server.close()
        raise
    log(f"  PostgreSQL {described['version']} on port {server.cluster.port}")
    return server, described


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--workload",
        action="append",
        metavar="W",
        help=f"{', '.join(WORKLOADS)} or all (repeatable; default all)",
    )
    parser.add_argument(
        "--peer",
        action="append",
        metavar="P",
        help="dbos, wrangler, all or none (repeatable; default none, and none with --quick)",
    )
    parser.add_argument(
        "--store",
        action="append",
        metavar="S",
        help="sqlite, postgres or all: what wf and DBOS run on (repeatable; default all)",
    )
    parser.add_argument("--runs", type=int, help="runs of each measurement (default 3; 1 quick)")
    parser.add_argument("--quick", action="store_true", help="small counts, one run")
    parser.add_argument("--smoke", action="store_true", help="the same as --quick")
    parser.add_argument("--out", type=Path, help="where to write the JSON")
    parser.add_argument(
        "--tmp",
        type=Path,
        metavar="DIR",
        help="where the temporary folders go (default: the system's temporary directory)",
    )
    parser.add_argument(
        "--render",
        type=Path,
        metavar="JSON",
        help="measure nothing: print the tables of an earlier run's JSON",
    )
    args = parser.parse_args(argv)
    if args.render is not None:
        earlier = json.loads(args.render.read_text())
        if "settings" not in earlier:
            raise SystemExit(f"{args.render} was written by an older suite; run it again")
        print(render(earlier))
        return 0
    quick = args.quick or args.smoke
    workloads = selection(args.workload or ["all"], WORKLOADS, "workload")
    peers = selection(args.peer, PEERS, "peer")
    stores = selection(args.store or ["all"], STORES, "store")
    runs = args.runs or (1 if quick else 3)
    if runs < 1:
        raise SystemExit("--runs must be at least 1")
    sizes = QUICK if quick else FULL
    full = (
        not quick
        and runs >= 3
        and workloads == list(WORKLOADS)
        and peers == list(PEERS)
        and stores == list(STORES)
        and args.out is None
    )

    began = time.monotonic()
    setup_errors: list[str] = []
    versions: dict[str, str] = {}
    dbos = None
    if "dbos" in peers:
        try:
            dbos = dbos_python()
            versions["dbos"] = subprocess.run(
                [str(dbos), "-c", "import importlib.metadata as m; print(m.version('dbos'))"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
        except (subprocess.SubprocessError, OSError) as exc:
            setup_errors.append(f"DBOS Transact could not be installed: {exc}")
    if "wrangler" in peers:
        try:
            versions["wrangler"] = wrangler_ready()
        except (RuntimeError, subprocess.SubprocessError, OSError) as exc:
            setup_errors.append(f"wrangler dev could not be installed: {exc}")
            peers = [p for p in peers if p != "wrangler"]
    jobs = plan(workloads, peers, stores, sizes, dbos)

    if args.tmp is not None:
        args.tmp.mkdir(parents=True, exist_ok=True)
    # SIGTERM, like Ctrl-C, ends the run through the finally blocks: the server is stopped.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    scratch = Path(tempfile.mkdtemp(prefix="wf-bench-", dir=args.tmp))
    server: BenchServer | None = None
    postgres: dict[str, Any] = {}
    try:
        if any(job.store == "postgres" for job in jobs):
            server, postgres = start_server(args.tmp, setup_errors)
            if server is None:
                jobs = [job for job in jobs if job.store != "postgres"]
            else:
                versions["postgres"] = postgres["version"]
        info = {
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            **machine_info(),
            **fsync_micros(scratch),
            "tmp_dir": str(scratch.parent),
            "filesystem": filesystem(scratch),
            **git_state(),
            "versions": versions,
        }
        log(f"{len(jobs)} measurements × {runs} run(s), each in its own process, in {scratch}:")
        for round_number in range(runs):
            log(f"  round {round_number + 1} of {runs}")
            for job in jobs:
                run_once(job, scratch, server)
    finally:
        if server is not None:
            server.close()
        shutil.rmtree(scratch, ignore_errors=True)
    info["total_seconds"] = round(time.monotonic() - began, 1)
    payload = {
        "machine": info,
        "settings": {
            "workloads": workloads,
            "peers": peers,
            "stores": stores,
            "runs": runs,
            "quick": quick,
            "sizes": asdict(sizes),
            "full": full,
        },
        "postgres": postgres,
        "results": [summarise(job) for job in jobs],
        "errors": setup_errors + [f"{j.label}: {e}" for j in jobs for e in j.errors],
    }
    payload["def_over_async"] = body_ratios(Run(payload))  # W1-def ÷ W1, by durability
    text = render(payload)
    print(text)
    default = "latest.json" if full else ("quick.json" if quick else "partial.json")
    out = args.out or RESULTS / default
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=1) + "\n")
    tmp.replace(out)
    log(f"\nwrote {out}")
    if full:
        RESULTS_FILE.write_text(results_markdown(payload, text))
        log(f"wrote {RESULTS_FILE}")
    return 1 if payload["errors"] else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # the finally blocks have run: the PostgreSQL server is stopped
        log("interrupted")
        sys.exit(130)
