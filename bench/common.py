"""Helpers shared by every side of the benchmark (stdlib only: DBOS runs in its own venv)."""

from __future__ import annotations

import json
import math
import os
import resource
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

RESULT_MARK = "BENCH-RESULT "


def percentile(values: Sequence[float], pct: float) -> float:
    """The nearest-rank percentile (``pct`` from 0 to 100) of ``values``."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def latency_summary(seconds: Sequence[float]) -> dict[str, float]:
    """p50/p90/p99/max/mean of a list of durations, in milliseconds."""
    ms = [s * 1000 for s in seconds]
    return {
        "p50_ms": percentile(ms, 50),
        "p90_ms": percentile(ms, 90),
        "p99_ms": percentile(ms, 99),
        "max_ms": max(ms) if ms else math.nan,
        "mean_ms": sum(ms) / len(ms) if ms else math.nan,
    }


def proc_status_kib(field: str) -> int | None:
    """A ``kB`` field of /proc/self/status (VmRSS, VmHWM, ...), or None off Linux."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def rss_mib() -> float:
    """The resident set size of this process now, in MiB."""
    kib = proc_status_kib("VmRSS")
    if kib is None:  # not Linux: the peak is the best we have
        return peak_rss_mib()
    return kib / 1024


def peak_rss_mib() -> float:
    """The peak resident set size of this process so far, in MiB."""
    kib = proc_status_kib("VmHWM")
    if kib is None:
        kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kib / 1024


def file_size_mib(path: Path) -> float:
    """The size of an SQLite database with its -wal and -journal files, in MiB."""
    total = 0
    for suffix in ("", "-wal", "-shm", "-journal"):
        candidate = path.with_name(path.name + suffix)
        if candidate.exists():
            total += candidate.stat().st_size
    return total / (1024 * 1024)


def fresh_db(path: Path) -> None:
    """Remove a database file left by an earlier run, with its companions."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-wal", "-shm", "-journal", ".lock"):
        candidate = path.with_name(path.name + suffix)
        if candidate.exists():
            candidate.unlink()


def emit_result(result: dict[str, Any]) -> None:
    """Hand a result to the parent process: one marked JSON line on stdout."""
    sys.stdout.write(RESULT_MARK + json.dumps(result) + "\n")
    sys.stdout.flush()


def now() -> float:
    return time.perf_counter()


def machine_info() -> dict[str, Any]:
    info: dict[str, Any] = {
        "cpu_count": os.cpu_count(),
        "python": sys.version.split()[0],
        "platform": sys.platform,
    }
    try:
        uname = os.uname()
        info["kernel"] = f"{uname.sysname} {uname.release} {uname.machine}"
    except AttributeError:
        pass
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    info["cpu_model"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    kib = None
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemTotal:"):
                    kib = int(line.split()[1])
                    break
    except OSError:
        pass
    if kib is not None:
        info["memory_gib"] = round(kib / 1024 / 1024, 1)
    import sqlite3

    info["sqlite"] = sqlite3.sqlite_version
    return info
