"""``python -m bench``: run the benchmark suite, print the figures, write bench/results/*.json.

Every measurement runs in its own subprocess, so no engine shares memory (or a warm cache of
imports) with another. wf runs in the project's venv; DBOS Transact in bench/.venv-dbos, made here
on first use; Cloudflare's local emulator (``wrangler dev``) from bench/cloudflare/node_modules,
installed here on first use with ``npm ci``. See bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import RESULT_MARK, machine_info

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "results"
README = BENCH / "README.md"
DBOS_VENV = BENCH / ".venv-dbos"
DBOS_REQUIREMENTS = BENCH / "requirements-dbos.txt"
CF_PROJECT = BENCH / "cloudflare"
FIGURES_START = "<!-- figures:start -->"
FIGURES_END = "<!-- figures:end -->"


@dataclass
class Plan:
    throughput_instances: int
    throughput_steps: int
    latency_steps: int
    hibernation_instances: int
    kinds: list[str]
    dbos: bool
    cloudflare: bool


@dataclass
class Run:
    """One measurement: a command in a subprocess, and what it reported."""

    label: str
    argv: list[str]
    timeout: float
    result: dict[str, Any] = field(default_factory=dict)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ---- setting up the other engines -------------------------------------------------------------
def dbos_python() -> tuple[Path | None, str]:
    """bench/.venv-dbos's Python, made and filled on first use (or why it cannot be)."""
    python = DBOS_VENV / "bin" / "python"
    stamp = DBOS_VENV / ".installed"
    wanted = DBOS_REQUIREMENTS.read_text()
    if python.exists() and stamp.exists() and stamp.read_text() == wanted:
        return python, ""
    log(f"setting up {DBOS_VENV.relative_to(ROOT)} (pip install -r {DBOS_REQUIREMENTS.name}) ...")
    try:
        if not python.exists():
            subprocess.run([sys.executable, "-m", "venv", str(DBOS_VENV)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "-r", str(DBOS_REQUIREMENTS)],
            check=True,
            timeout=600,
        )
    except (subprocess.SubprocessError, OSError) as exc:
        return None, f"could not install DBOS: {exc}"
    stamp.write_text(wanted)
    return python, ""


def cloudflare_ready() -> str:
    """Install wrangler in bench/cloudflare (npm ci) if needed; '' when ready, else why not."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        return "node and npm are not installed"
    version = subprocess.run([node, "--version"], capture_output=True, text=True).stdout.strip()
    match = re.match(r"v(\d+)\.(\d+)", version)
    if match is None or (int(match[1]), int(match[2])) < (20, 3):
        return f"wrangler 4.86 needs Node.js 20.3 or newer, found {version or 'none'}"
    lock = CF_PROJECT / "package-lock.json"
    installed = CF_PROJECT / "node_modules" / ".package-lock.json"
    if installed.exists() and installed.stat().st_mtime >= lock.stat().st_mtime:
        return ""
    log("installing wrangler in bench/cloudflare (npm ci) ...")
    try:
        subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel", "error"],
            cwd=CF_PROJECT,
            check=True,
            timeout=600,
        )
    except (subprocess.SubprocessError, OSError) as exc:
        return f"npm ci failed: {exc}"
    return ""


# ---- running ----------------------------------------------------------------------------------
def run(job: Run) -> dict[str, Any]:
    log(f"  {job.label} ...")
    # Start on a quiet disk: what the previous run (or anything else) left to write back would
    # otherwise slow this run's fsyncs.
    os.sync()
    time.sleep(1.0)
    started = time.monotonic()
    try:
        proc = subprocess.run(
            job.argv,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=job.timeout,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
    except subprocess.TimeoutExpired:
        job.result = {"error": f"timed out after {job.timeout:.0f} s"}
        log(f"    {job.result['error']}")
        return job.result
    took = time.monotonic() - started
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(RESULT_MARK)]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-15:]
        job.result = {"error": f"exit {proc.returncode}: " + " | ".join(tail)}
        log("    failed:\n      " + "\n      ".join(tail))
        return job.result
    job.result = json.loads(lines[-1][len(RESULT_MARK) :])
    log(f"    done in {took:.1f} s")
    return job.result


def build(plan: Plan, work: Path, dbos: Path | None) -> list[Run]:
    wf = [sys.executable, "-m", "bench.wf_side"]
    jobs: list[Run] = []
    tp = ["--instances", str(plan.throughput_instances), "--steps", str(plan.throughput_steps)]
    lat = ["--steps", str(plan.latency_steps)]
    if "throughput" in plan.kinds:
        for durability in ("fsync", "os"):
            jobs.append(
                Run(
                    f"wf throughput, durability={durability}",
                    [
                        *wf,
                        "throughput",
                        "--db",
                        str(work / "tp.db"),
                        "--durability",
                        durability,
                        *tp,
                    ],
                    300,
                )
            )
    if "latency" in plan.kinds:
        for durability in ("fsync", "os"):
            jobs.append(
                Run(
                    f"wf latency, durability={durability}",
                    [
                        *wf,
                        "latency",
                        "--db",
                        str(work / "lat.db"),
                        "--durability",
                        durability,
                        *lat,
                    ],
                    300,
                )
            )
    if dbos is not None:
        side = [str(dbos), "-m", "bench.dbos_side"]
        for kind, extra in (("throughput", tp), ("latency", lat)):
            if kind not in plan.kinds:
                continue
            for style in ("threads", "asyncio"):
                for durability in ("fsync", "os", "default"):
                    jobs.append(
                        Run(
                            f"DBOS {kind}, {style}, durability={durability}",
                            [
                                *side,
                                kind,
                                "--db",
                                str(work / "dbos.sqlite"),
                                "--durability",
                                durability,
                                "--style",
                                style,
                                *extra,
                            ],
                            400,
                        )
                    )
    if plan.cloudflare:
        cf = [sys.executable, "-m", "bench.cf_side"]
        if "throughput" in plan.kinds:
            jobs.append(Run("Cloudflare (wrangler dev) throughput", [*cf, "throughput", *tp], 400))
        if "latency" in plan.kinds:
            jobs.append(Run("Cloudflare (wrangler dev) latency", [*cf, "latency", *lat], 300))
    if "hibernation" in plan.kinds:
        jobs.append(
            Run(
                f"wf hibernation, {plan.hibernation_instances} instances",
                [
                    *wf,
                    "hibernation",
                    "--db",
                    str(work / "hib.db"),
                    "--durability",
                    "fsync",
                    "--instances",
                    str(plan.hibernation_instances),
                    "--timeout",
                    "500",
                ],
                600,
            )
        )
    return jobs


# ---- reporting --------------------------------------------------------------------------------
def fmt(value: Any, digits: int = 0) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    right = [
        i > 0 and any(c.isdigit() for r in rows for c in r[i][:1]) for i in range(len(headers))
    ]

    def line(cells: list[str]) -> str:
        padded = [
            c.rjust(w) if right[i] else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "| " + " | ".join(padded) + " |"

    rule = (
        "|"
        + "|".join(
            ("-" * (w + 1) + ":" if right[i] else "-" * (w + 2)) for i, w in enumerate(widths)
        )
        + "|"
    )
    return "\n".join([line(headers), rule, *(line(r) for r in rows)])


def engine_name(r: dict[str, Any]) -> str:
    if r["engine"] == "wf":
        return "wf"
    if r["engine"] == "dbos":
        return f"DBOS {r.get('dbos_version', '')} ({r['style']})"
    return f"Cloudflare wrangler dev {r.get('wrangler', '')}"


def durability_name(r: dict[str, Any]) -> str:
    if r["engine"] == "cloudflare":
        return "workerd local (fsync)"
    if r["engine"] == "dbos":
        journal = r.get("journal_mode", "?")
        return f"{r['durability']} ({journal})"
    return f"{r['durability']} (wal)"


def report(results: list[dict[str, Any]], errors: list[str], info: dict[str, Any]) -> str:
    parts: list[str] = []
    ok = [r for r in results if "error" not in r]
    tp = [r for r in ok if r["kind"] == "throughput"]
    if tp:
        first = tp[0]
        parts.append(
            f"**Throughput**: {first['instances']:,} instances × {first['steps_per_instance']} "
            "trivial steps, all started at once, SQLite\n"
        )
        rows = [
            [
                engine_name(r),
                durability_name(r),
                fmt(r["instances_per_s"]),
                fmt(r["steps_per_s"]),
                fmt(r.get("commits_per_step"), 3) if "commits_per_step" in r else "–",
                fmt(r["seconds"], 2),
            ]
            for r in tp
        ]
        parts.append(
            table(
                ["engine", "durability (journal)", "instances/s", "steps/s", "commits/step", "s"],
                rows,
            )
        )
    lat = [r for r in ok if r["kind"] == "latency"]
    if lat:
        parts.append(
            f"\n**Latency**: {lat[0]['rounds']} instances, one at a time, each of "
            f"{lat[0]['steps']} sequential trivial steps; the time of each `step.do` call as "
            "the workflow sees it, pooled\n"
        )
        rows = [
            [
                engine_name(r),
                durability_name(r),
                fmt(r["p50_ms"], 2),
                fmt(r["p90_ms"], 2),
                fmt(r["p99_ms"], 2),
                fmt(r["max_ms"], 2),
                fmt(r.get("commits_per_step"), 2) if "commits_per_step" in r else "–",
                fmt(r["instance_seconds"] * 1000, 0),
            ]
            for r in lat
        ]
        parts.append(
            table(
                [
                    "engine",
                    "durability (journal)",
                    "p50 ms",
                    "p90 ms",
                    "p99 ms",
                    "max ms",
                    "commits/step",
                    "median instance ms",
                ],
                rows,
            )
        )
    hib = [r for r in ok if r["kind"] == "hibernation"]
    for r in hib:
        parts.append(
            f"\n**Hibernation**: {r['instances']:,} instances each sleeping 1 day "
            f"(durability={r['durability']}, ManualClock)\n"
        )
        rows = [
            ["created (create_batch × 100) in", f"{r['create_seconds']:.1f} s"],
            [
                "all `waiting`, none in memory, after",
                f"{r['hibernate_seconds']:.1f} s ({r['hibernated_per_s']:,.0f} instances/s)",
            ],
            ["RSS before creating", f"{r['rss_start_mib']:.0f} MiB"],
            ["RSS with all of them waiting", f"{r['rss_waiting_mib']:.0f} MiB"],
            ["peak RSS until then", f"{r['rss_peak_mib']:.0f} MiB"],
            [
                "RSS growth ÷ instances",
                f"{r['per_waiting_instance_kib']:.2f} KiB (not per-instance state: see below)",
            ],
            [
                "Python objects the engine keeps per waiting instance",
                f"{r['python_blocks_per_waiting_instance']:.3f} pymalloc blocks",
            ],
            [
                "cancelled sleeps ManualClock still holds",
                f"{r['manualclock_lingering_sleepers']:,}",
            ],
            ["most lives in memory at once (sampled)", f"{r['lives_peak']:,}"],
            ["database size", f"{r['db_mib']:.0f} MiB"],
            [
                "clock advanced 1 day: all complete after",
                f"{r['wake_seconds']:.1f} s ({r['woken_per_s']:,.0f} instances/s)",
            ],
            ["peak RSS overall", f"{r['rss_peak_total_mib']:.0f} MiB"],
            ["complete / errored", f"{r['complete']:,} / {r['errored']:,}"],
        ]
        parts.append(table(["", "wf"], rows))
    ratios = compare(ok)
    if ratios:
        parts.append("\n**wf compared with DBOS** (same durability, DBOS's faster style)\n")
        parts.append(table(["measure", "durability", "wf", "DBOS", "wf ÷ DBOS"], ratios))
    if errors:
        parts.append("\n**Not measured**\n")
        parts.extend(f"- {e}" for e in errors)
    cpu = info.get("cpu_model", "?")
    parts.append(
        f"\n_{info['date']}, {info['cpu_count']} CPUs ({cpu}), {info.get('memory_gib', '?')} GiB, "
        f"Python {info['python']}, SQLite {info['sqlite']}, {info.get('kernel', '')}; "
        f"fsync of a small file here: {info.get('fsync_us', '?')} µs._"
    )
    return "\n".join(parts)


def compare(ok: list[dict[str, Any]]) -> list[list[str]]:
    rows: list[list[str]] = []
    for kind, key, label, better_high in (
        ("throughput", "steps_per_s", "steps/s", True),
        ("latency", "p50_ms", "p50 ms per step", False),
    ):
        for durability in ("fsync", "os"):
            mine = [r for r in ok if r["engine"] == "wf" and r["kind"] == kind]
            mine = [r for r in mine if r["durability"] == durability]
            theirs = [r for r in ok if r["engine"] == "dbos" and r["kind"] == kind]
            theirs = [r for r in theirs if r["durability"] == durability]
            if not mine or not theirs:
                continue
            pick = max if better_high else min
            best = pick(theirs, key=lambda r: r[key])
            a, b = mine[0][key], best[key]
            ratio = a / b if better_high else b / a
            rows.append(
                [
                    label,
                    durability,
                    fmt(a, 2 if not better_high else 0),
                    fmt(b, 2 if not better_high else 0),
                    f"{ratio:.1f}× faster" if ratio >= 1 else f"{1 / ratio:.1f}× slower",
                ]
            )
    return rows


def fsync_micros(folder: Path) -> float:
    """How long one fsync of a small file takes here (it bounds every "fsync" figure)."""
    path = folder / "fsync-probe"
    times = []
    with path.open("wb") as f:
        for _ in range(50):
            f.write(b"x" * 4096)
            f.flush()
            started = time.perf_counter()
            os.fsync(f.fileno())
            times.append(time.perf_counter() - started)
    path.unlink()
    times.sort()
    return round(times[len(times) // 2] * 1e6, 1)


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
        "engine_source_modified": bool(git("status", "--porcelain", "--", "src/wf/engine")),
    }


def update_readme(text: str) -> None:
    if not README.exists():
        return
    readme = README.read_text()
    start, end = readme.find(FIGURES_START), readme.find(FIGURES_END)
    if start < 0 or end < start:
        return
    block = f"{FIGURES_START}\n{text}\n{FIGURES_END}"
    README.write_text(readme[:start] + block + readme[end + len(FIGURES_END) :])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--quick", action="store_true", help="a smaller run (about a minute): fewer instances"
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=("throughput", "latency", "hibernation"),
        help="run only these benchmarks (repeatable)",
    )
    parser.add_argument("--no-dbos", action="store_true", help="skip DBOS Transact")
    parser.add_argument("--no-cloudflare", action="store_true", help="skip wrangler dev")
    parser.add_argument(
        "--out",
        type=Path,
        help="where to write the JSON (default: results/latest.json for a full run, "
        "results/quick.json otherwise)",
    )
    parser.add_argument(
        "--render",
        type=Path,
        metavar="JSON",
        help="measure nothing: print the tables of an earlier run (and, for latest.json, "
        "put them in bench/README.md)",
    )
    args = parser.parse_args(argv)
    if args.render is not None:
        saved = json.loads(args.render.read_text())
        text = report(saved["results"], saved["errors"], saved["machine"])
        print(text)
        if args.render.resolve() == (RESULTS / "latest.json").resolve():
            update_readme(text)
        return 0
    full = not args.quick and not args.only and not args.no_dbos and not args.no_cloudflare
    plan = Plan(
        throughput_instances=200 if args.quick else 1000,
        throughput_steps=10,
        latency_steps=100,
        hibernation_instances=10_000 if args.quick else 100_000,
        kinds=args.only or ["throughput", "latency", "hibernation"],
        dbos=not args.no_dbos,
        cloudflare=not args.no_cloudflare,
    )
    wanted_comparisons = {"throughput", "latency"} & set(plan.kinds)
    errors: list[str] = []
    dbos = None
    if plan.dbos and wanted_comparisons:
        dbos, why = dbos_python()
        if dbos is None:
            errors.append(f"DBOS Transact: {why}")
    if plan.cloudflare and wanted_comparisons:
        why = cloudflare_ready()
        if why:
            errors.append(f"Cloudflare wrangler dev: {why}")
            plan.cloudflare = False
    else:
        plan.cloudflare = False

    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="wf-bench-") as folder:
        work = Path(folder)
        info = {
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            **machine_info(),
            "fsync_us": fsync_micros(work),
            **git_state(),
        }
        jobs = build(plan, work, dbos)
        log(f"running {len(jobs)} measurements, each in its own process:")
        for job in jobs:
            run(job)
            for leftover in work.iterdir():  # each run starts from an empty database
                if leftover.is_file():
                    with contextlib.suppress(OSError):
                        leftover.unlink()
    results = []
    for job in jobs:
        if "error" in job.result:
            errors.append(f"{job.label}: {job.result['error']}")
        else:
            results.append(job.result)
    info["total_seconds"] = round(time.monotonic() - started, 1)
    text = report(results, errors, info)
    print(text)
    out = args.out or RESULTS / ("latest.json" if full else "quick.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "machine": info,
        "plan": plan.__dict__,
        "results": results,
        "errors": errors,
    }
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    tmp.replace(out)
    log(f"\nwrote {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")
    if full:
        update_readme(text)
        log(f"updated the figures in {README.relative_to(ROOT)}")
    return 1 if any("error" in job.result for job in jobs) else 0


if __name__ == "__main__":
    sys.exit(main())
