"""The benchmark suite's smoke run: ``python -m bench --smoke`` for wf alone (no peers: CI has no
DBOS venv or wrangler), as a subprocess, on SQLite and (a test of its own) on the PostgreSQL
server the bench starts itself. It checks that every workload gave sane figures and no error, and
that the suite leaves no process (its PostgreSQL server included) or temporary file behind. Speed
is never asserted: the figures only have to be positive and finite."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

from tests.postgres import HOW_TO, SKIP_REASON, find_binaries, required

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


def processes_using(folder: Path) -> list[str]:
    """Live processes whose command line or working directory is inside ``folder``."""
    inside = str(folder)
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            cmdline = Path("/proc", pid, "cmdline").read_bytes().replace(b"\0", b" ").decode()
            cwd = os.readlink(f"/proc/{pid}/cwd")
        except OSError:
            continue
        if inside in cmdline or cwd.startswith(inside):
            found.append(f"{pid}: {cmdline.strip()}")
    return found


def positive(result: dict[str, Any], *keys: str) -> None:
    for key in keys:
        value = result["median"][key]
        assert math.isfinite(value) and value > 0, f"{result['workload']} {key} = {value}"


def smoke(out: Path, scratch: Path, store: str, timeout: float) -> tuple[dict[str, Any], str]:
    """``python -m bench --smoke --store STORE``: its JSON and its output (the tables)."""
    argv = [sys.executable, "-m", "bench", "--smoke", "--store", store]
    argv += ["--out", str(out), "--tmp", str(scratch)]
    proc = subprocess.run(
        argv, cwd=ROOT, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-3000:]
    assert "W1 sequential" in proc.stdout

    payload: dict[str, Any] = json.loads(out.read_text())
    assert payload["errors"] == []
    assert payload["settings"]["quick"] is True
    assert payload["settings"]["peers"] == []
    assert payload["settings"]["stores"] == [store]
    machine = payload["machine"]
    for key in ("cpu_model", "cpu_count", "memory_gib", "kernel", "filesystem", "python"):
        assert machine.get(key), key
    assert machine["sqlite"] and "commit" in machine
    for result in payload["results"]:
        assert result["store"] == store
        assert len(result["runs"]) == 1 and result["errors"] == [], result["errors"]
        assert result["median"].get("errored", 0) == 0
    return payload, proc.stdout


def test_smoke_run_measures_every_workload(tmp_path: Path) -> None:
    scratch = tmp_path / "scratch"
    payload, stdout = smoke(tmp_path / "smoke.json", scratch, "sqlite", timeout=100)
    assert payload["postgres"] == {}

    results = {(r["engine"], r["workload"], r["durability"]): r for r in payload["results"]}
    assert set(results) == {
        ("wf", "W1", "fsync"),
        ("wf", "W1", "os"),
        ("wf", "W1-def", "fsync"),
        ("wf", "W1-def", "os"),
        ("wf", "W2", "fsync"),
        ("wf", "W2-http", "fsync"),
        ("wf", "W3", "fsync"),
        ("wf", "W4", "fsync"),
        ("sqlite", "L", "fsync"),
        ("sqlite", "L", "os"),
    }

    sizes = payload["settings"]["sizes"]
    for mode in ("fsync", "os"):
        for workload, body in (("W1", "async"), ("W1-def", "def")):
            w1 = results[("wf", workload, mode)]
            positive(w1, "step_us", "step_us_median", "seconds")
            assert w1["median"]["steps"] == sizes["w1_steps"] and w1["body"] == body
            assert w1["median"]["step_us"] < 1e6  # under a second a step: the run really ran
        ratio = payload["def_over_async"][mode]  # W1-def ÷ W1, in the JSON and the table
        assert math.isfinite(ratio["ratio"]) and ratio["ratio"] > 0
        assert f"{ratio['ratio']:.2f}×" in stdout
        positive(results[("sqlite", "L", mode)], "commits_per_s", "commit_us", "rows_per_s_64")
    positive(results[("wf", "W2", "fsync")], "instances_per_s", "seconds")
    http = results[("wf", "W2-http", "fsync")]
    positive(http, "instances_per_s", "creates_per_s", "startup_seconds")
    assert http["median"]["failed"] == 0
    w3 = results[("wf", "W3", "fsync")]
    positive(w3, "seconds", "import_seconds")
    assert w3["median"]["complete"] == sizes["w3_instances"]
    w4 = results[("wf", "W4", "fsync")]
    positive(w4, "creates_per_s", "waiting_per_s", "rss_peak_mib", "db_mib")
    assert w4["median"]["instances"] == sizes["w4_instances"]
    assert math.isfinite(w4["median"]["kib_per_instance"])

    # Nothing left behind: the suite removed its temporary folders and stopped its processes.
    assert processes_using(scratch) == []
    assert not scratch.exists() or list(scratch.iterdir()) == []


@pytest.mark.timeout(300)
def test_smoke_run_on_postgresql(tmp_path: Path) -> None:
    if find_binaries() is None and not required():
        pytest.skip(f"{SKIP_REASON}: {HOW_TO}")
    # The server runs as nobody when we are root: its folder must not be under pytest's 0700 ones.
    scratch = Path(tempfile.mkdtemp(prefix="wf-bench-smoke-"))
    scratch.chmod(0o755)
    try:
        payload, stdout = smoke(tmp_path / "smoke.json", scratch, "postgres", timeout=280)
        assert processes_using(scratch) == []  # the run's server stopped with it
        assert list(scratch.iterdir()) == []
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    server = payload["postgres"]  # a durable server, and the JSON says which
    assert server["version"][:2].isdigit()
    for name in ("fsync", "synchronous_commit", "full_page_writes"):
        assert server["settings"][name] == "on", name
    assert "PostgreSQL" in stdout and "fsync=on" in stdout

    results = {
        (r["engine"], r["workload"], r["durability"], r["variant"]): r for r in payload["results"]
    }
    assert set(results) == {
        ("wf", "W1", "fsync", ""),
        ("wf", "W1", "os", ""),
        ("wf", "W2", "fsync", ""),
        ("wf", "W1", "fsync", "metrics on"),
        ("wf", "W1", "os", "metrics on"),
        ("wf", "W2", "fsync", "metrics on"),
        ("wf", "W2-http", "fsync", ""),
        ("wf", "W3", "fsync", ""),
        ("wf", "W4", "fsync", ""),
        ("postgres", "L", "fsync", ""),
        ("postgres", "L", "os", ""),
        ("wf", "W2-scale", "fsync", "1 node"),
        ("wf", "W2-scale", "fsync", "2 nodes"),
        ("wf", "W2-scale", "fsync", "4 nodes"),
        ("wf", "takeover", "fsync", "SIGKILL"),
        ("wf", "takeover", "fsync", "SIGSTOP"),
    }
    sizes = payload["settings"]["sizes"]
    for mode in ("fsync", "os"):
        w1 = results[("wf", "W1", mode, "")]
        positive(w1, "step_us", "step_us_median", "seconds")
        assert w1["median"]["steps"] == sizes["w1_steps"]
        limit = results[("postgres", "L", mode, "")]
        positive(limit, "commits_per_s", "commit_us", "rows_per_s_64")
        assert limit["synchronous_commit"] == ("on" if mode == "fsync" else "off")
    positive(results[("wf", "W2", "fsync", "")], "instances_per_s", "seconds")
    http = results[("wf", "W2-http", "fsync", "")]
    positive(http, "instances_per_s", "creates_per_s", "startup_seconds")
    assert http["median"]["failed"] == 0
    w3 = results[("wf", "W3", "fsync", "")]
    positive(w3, "seconds", "import_seconds")
    assert w3["median"]["complete"] == sizes["w3_instances"]
    w4 = results[("wf", "W4", "fsync", "")]
    positive(w4, "creates_per_s", "waiting_per_s", "rss_peak_mib", "db_mib")
    assert w4["median"]["instances"] == sizes["w4_instances"]

    for nodes in (1, 2, 4):
        scale = results[("wf", "W2-scale", "fsync", f"{nodes} node" + ("s" if nodes > 1 else ""))]
        positive(scale, "instances_per_s", "seconds")
        run = scale["runs"][0]
        assert run["nodes"] == nodes and len(run["completed_by_node"]) == nodes
        # Each instance of the shared pool completed once, by one node or another.
        assert run["complete"] == run["completed_notices"] == sizes["scale_instances"]
    for how in ("SIGKILL", "SIGSTOP"):
        takeover = results[("wf", "takeover", "fsync", how)]
        positive(takeover, "seconds", "first_seconds")
        assert takeover["median"]["complete"] == sizes["takeover_instances"]
        assert takeover["median"]["lease_seconds"] == 5 and takeover["how"] == how
