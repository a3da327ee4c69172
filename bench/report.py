"""The tables of a benchmark run (from its JSON), and bench/RESULTS.md."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RESULTS_FILE = Path(__file__).resolve().parent / "RESULTS.md"

# Row writes an instance needs at the very least, each durable before the client may see it
# finished: with L's rows/s at 64 rows per commit, a ceiling (or floor) the engine cannot beat.
ROWS_THREE_STEPS = 5  # created, three step results, completed
ROWS_RECOVER = 3  # W3 after the restart: step 2's result, step 3's result, completed
ROWS_CREATED = 1  # W4's creation: the instance row
ROWS_ASLEEP = 3  # created, the sleep's start, waiting


@dataclass(frozen=True)
class Target:
    text: str
    bound: float
    at_most: bool  # the figure must be at most the bound (else at least)

    def met(self, value: float) -> bool:
        return value <= self.bound if self.at_most else value >= self.bound

    def show(self, value: float | None) -> str:
        if value is None or math.isnan(value):
            return f"{self.text} –"
        if self.met(value):
            return f"{self.text} ✅"
        if (
            abs(value - self.bound) < 0.01 * self.bound
        ):  # shown rounded onto the bound: say by how much
            return f"{self.text} ❌ ({value:,.1f})"
        return f"{self.text} ❌"


TARGETS: dict[str, Target] = {
    "W1 fsync": Target("≤ 250 µs", 250, at_most=True),
    "W1 os": Target("≤ 60 µs", 60, at_most=True),
    "W1-def": Target("≤ 1.2×", 1.2, at_most=True),  # a def body's µs/step ÷ an async def one's
    "W2": Target("≥ 3,000/s", 3000, at_most=False),
    "W2-http": Target("≥ 500/s", 500, at_most=False),
    "W3": Target("≤ 1 s", 1, at_most=True),
    "W4 KiB": Target("≤ 2 KiB", 2, at_most=True),
    "W4 creates": Target("≥ 5,000/s", 5000, at_most=False),
    # On PostgreSQL (issue 10), same host, durable commits.
    "postgres W1 fsync": Target("≤ 600 µs", 600, at_most=True),
    "postgres W2": Target("≥ 2,000/s", 2000, at_most=False),
    "postgres W3": Target("≤ 2 s", 2, at_most=True),
    "postgres W4 KiB": Target("≤ 2 KiB", 2, at_most=True),
    "postgres W4 creates": Target("≥ 3,000/s", 3000, at_most=False),
}
TAKEOVER_SLACK = 5.0  # takeover's target: the lease + this many seconds


def target(r: dict[str, Any], name: str) -> Target | None:
    """The target of a wf result ``r`` by ``name`` ("W2", "W4 KiB", ...) on its store; None for a
    peer, or where the issue sets none (W2-http on PostgreSQL)."""
    if r["engine"] != "wf":
        return None
    return TARGETS.get(name if r["store"] == "sqlite" else f"postgres {name}")


def show_target(r: dict[str, Any], name: str, value: float | None) -> str:
    found = target(r, name)
    return "" if found is None else found.show(value)


# ---- formatting -------------------------------------------------------------------------------
def num(value: Any, digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:,.{digits}f}"


def table(headers: list[str], rows: list[list[str]], right: set[int] | None = None) -> str:
    """A Markdown table, its columns padded (``right``: right-aligned columns)."""
    right = right if right is not None else set(range(2, len(headers)))
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        padded = [
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "| " + " | ".join(padded) + " |"

    rules = ["-" * (w + 1) + ":" if i in right else "-" * (w + 2) for i, w in enumerate(widths)]
    return "\n".join([line(headers), "|" + "|".join(rules) + "|", *(line(r) for r in rows)])


def times(ratio: float) -> str:
    return f"{ratio:,.1f}×" if ratio < 100 else f"{ratio:,.0f}×"


def ratio_text(wf: float, peer: float, higher_is_better: bool) -> str:
    """How wf compares with a peer, in words: "3.2× faster", "1.5× slower", "2.0× less"."""
    if not wf or not peer or math.isnan(wf) or math.isnan(peer):
        return "–"
    ratio = wf / peer if higher_is_better else peer / wf
    return f"{times(ratio)} better" if ratio >= 1 else f"{times(1 / ratio)} worse"


# ---- reading a run ----------------------------------------------------------------------------
ENGINE_ORDER = {"wf": 0, "dbos": 1, "wrangler": 2, "sqlite": 3, "postgres": 3}
MODE_ORDER = {"fsync": 0, "os": 1, "default": 2, "workerd": 3}
STORE_ORDER = {"sqlite": 0, "postgres": 1}
STORE_NAMES = {"sqlite": "SQLite", "postgres": "PostgreSQL"}
# What the durability modes mean on the bench's PostgreSQL server (bench/pg_server.py).
PG_MODES = {"fsync": "fsync + synchronous_commit on", "os": "synchronous_commit off"}


class Run:
    def __init__(self, payload: dict[str, Any]) -> None:
        self.payload = payload
        self.results: list[dict[str, Any]] = [r for r in payload["results"] if r["runs"]]
        for r in self.results:
            r.setdefault("store", "sqlite")  # runs from before PostgreSQL

    def find(
        self, engine: str, workload: str, durability: str, variant: str = "", store: str = "sqlite"
    ) -> Any:
        for r in self.results:
            same = (r["engine"], r["workload"], r["durability"]) == (engine, workload, durability)
            if same and r["store"] == store and (not variant or r["variant"] == variant):
                return r
        return None

    def of(self, workload: str) -> list[dict[str, Any]]:
        found = [r for r in self.results if r["workload"] == workload]
        return sorted(
            found,
            key=lambda r: (
                STORE_ORDER.get(r["store"], 9),
                ENGINE_ORDER.get(r["engine"], 9),
                MODE_ORDER.get(r["durability"], 9),
                r["variant"] != "async",
                r["variant"],
            ),
        )

    def limit(self, durability: str, key: str, store: str = "sqlite") -> float | None:
        """A median of L on ``store`` in ``durability`` (fsync/os), if L was measured."""
        engine = "postgres" if store == "postgres" else "sqlite"
        found = self.find(engine, "L", durability, store=store)
        return None if found is None else float(found["median"][key])

    def ceiling(self, r: dict[str, Any], rows: int) -> float | None:
        """Instances/s L allows a wf configuration, at ``rows`` row writes per instance."""
        if r["engine"] != "wf":
            return None
        rows_per_s = self.limit(r["durability"], "rows_per_s_64", r["store"])
        return None if rows_per_s is None else rows_per_s / rows

    @staticmethod
    def engine_name(r: dict[str, Any]) -> str:
        if r["engine"] == "dbos":
            return f"DBOS {r.get('dbos_version', '')} ({r['variant']})".replace("  ", " ")
        if r["engine"] == "wrangler":
            return f"wrangler dev {r.get('wrangler', '')}".strip()
        if r.get("variant") == "metrics on":  # W1, W2 counting for /metrics
            return "wf, metrics on"
        return str(r["engine"])

    @staticmethod
    def store_name(r: dict[str, Any]) -> str:
        if r["engine"] == "wrangler":
            return "workerd"
        return STORE_NAMES.get(r["store"], str(r["store"]))

    @staticmethod
    def mode_name(r: dict[str, Any]) -> str:
        if r["store"] == "postgres":
            return PG_MODES.get(r["durability"], str(r["durability"]))
        if r["engine"] == "dbos":
            journal = str(r.get("journal_mode", "?")).upper()
            if r["durability"] == "default":
                return f"DBOS defaults ({journal} journal, sync FULL)"
            sync = "FULL" if r["durability"] == "fsync" else "NORMAL"
            return f"{journal} + sync {sync}"
        if r["engine"] == "wrangler":
            return "workerd local storage"
        return str(r["durability"])

    @staticmethod
    def spread(r: dict[str, Any], key: str, digits: int = 0) -> str:
        values = [float(run[key]) for run in r["runs"] if key in run]
        if len(values) < 2:
            return ""
        return f"{min(values):,.{digits}f}–{max(values):,.{digits}f}"


# ---- the tables -------------------------------------------------------------------------------
def limit_table(run: Run) -> str:
    rows = []
    pairs = (("sqlite", "fsync"), ("sqlite", "os"), ("postgres", "fsync"), ("postgres", "os"))
    for store, mode in pairs:
        r = run.find(store, "L", mode, store=store)
        if r is None:
            continue
        m = r["median"]
        if store == "sqlite":
            what = f"SQLite {mode} (WAL, synchronous={r['synchronous']})"
        else:
            what = f"PostgreSQL {mode} (synchronous_commit={r.get('synchronous_commit', '?')})"
        rows.append(
            [
                what,
                num(m["commits_per_s"]),
                num(m["commit_us"], 1),
                num(m["rows_per_s_64"]),
                run.spread(r, "commits_per_s"),
            ]
        )
    headers = ["store, durability", "1-row commits/s", "µs/commit", "rows/s at 64 rows/commit"]
    return table([*headers, "runs"], rows, right={1, 2, 3, 4})


def body_ratios(run: Run) -> dict[str, dict[str, Any]]:
    """What a ``def`` step body costs against an ``async def`` one, per durability: wf's W1-def
    µs/step ÷ W1's (on SQLite), of the medians and of each round (the rounds are interleaved)."""
    ratios: dict[str, dict[str, Any]] = {}
    for mode in ("fsync", "os"):
        async_body, def_body = run.find("wf", "W1", mode), run.find("wf", "W1-def", mode)
        if async_body is None or def_body is None:
            continue
        pairs = zip(async_body["runs"], def_body["runs"], strict=False)
        ratios[mode] = {
            "async_us": async_body["median"]["step_us"],
            "def_us": def_body["median"]["step_us"],
            "ratio": def_body["median"]["step_us"] / async_body["median"]["step_us"],
            "round_ratios": [d["step_us"] / a["step_us"] for a, d in pairs],
        }
    return ratios


BODY = {"W1": "async def", "W1-def": "def"}


def w1_table(run: Run) -> str:
    rows = []
    ratios = body_ratios(run)
    found = run.of("W1") + run.of("W1-def")
    found.sort(
        key=lambda r: (
            STORE_ORDER.get(r["store"], 9),
            ENGINE_ORDER.get(r["engine"], 9),
            MODE_ORDER.get(r["durability"], 9),
        )
    )
    for r in found:
        m = r["median"]
        wf = r["engine"] == "wf"
        floor = run.limit(r["durability"], "commit_us", r["store"]) if wf else None
        ratio = ratios.get(r["durability"]) if wf and r["workload"] == "W1-def" else None
        if not wf:
            shown, body = "", {"async": "async def", "sync": "def"}.get(r["variant"], "async (TS)")
        elif ratio is None:
            shown = show_target(r, f"W1 {r['durability']}", m["step_us"])
            body = BODY[r["workload"]]
        else:
            shown, body = TARGETS["W1-def"].show(ratio["ratio"]), "def"
        rows.append(
            [
                run.engine_name(r),
                run.store_name(r),
                body,
                run.mode_name(r),
                num(m["step_us"]),
                f"{ratio['ratio']:.2f}×" if ratio else "",
                shown,
                num(m.get("step_us_median")),
                num(m.get("step_us_p90")),
                num(floor, 1),
                times(m["step_us"] / floor) if floor else "–",
                run.spread(r, "step_us"),
            ]
        )
    headers = ["engine", "store", "body", "durability", "µs/step", "÷ async def", "target"]
    headers += ["median step.do µs", "p90", "L µs/commit", "÷ L", "runs"]
    return table(headers, rows, right=set(range(4, len(headers))))


def rate_table(run: Run, workload: str, rows_each: int, extra: list[tuple[str, str, int]]) -> str:
    rows = []
    for r in run.of(workload):
        m = r["median"]
        ceiling = run.ceiling(r, rows_each)
        rows.append(
            [
                run.engine_name(r),
                run.store_name(r),
                run.mode_name(r),
                num(m["instances"]),
                num(m["instances_per_s"]),
                show_target(r, workload, m["instances_per_s"]),
                *(num(m.get(key), digits) for _, key, digits in extra),
                num(ceiling),
                f"{m['instances_per_s'] / ceiling:.1%}" if ceiling else "–",
                run.spread(r, "instances_per_s"),
            ]
        )
    headers = ["engine", "store", "durability", "instances", "instances/s", "target"]
    headers += [h for h, _, _ in extra] + ["L ceiling/s", "of L", "runs"]
    return table(headers, rows, right=set(range(3, len(headers))))


def w3_table(run: Run) -> str:
    rows = []
    for r in run.of("W3"):
        m = r["median"]
        wf = r["engine"] == "wf"
        rows_per_s = run.limit(r["durability"], "rows_per_s_64", r["store"]) if wf else None
        floor = m["instances"] * ROWS_RECOVER / rows_per_s if rows_per_s else None
        rows.append(
            [
                run.engine_name(r),
                run.store_name(r),
                run.mode_name(r),
                num(m["instances"]),
                num(m["seconds"], 2),
                show_target(r, "W3", m["seconds"]),
                num(m["import_seconds"], 2),
                num(m["engine_seconds"], 2),
                num(floor, 3),
                times(m["engine_seconds"] / floor) if floor else "–",
                run.spread(r, "seconds", 2),
            ]
        )
    headers = ["engine", "store", "durability", "instances", "s to all complete", "target"]
    headers += ["of which start-up + imports", "the rest", "L floor s", "rest ÷ L", "runs"]
    return table(headers, rows, right=set(range(3, len(headers))))


def w4_table(run: Run) -> str:
    rows = []
    for r in run.of("W4"):
        m = r["median"]
        created = run.ceiling(r, ROWS_CREATED)
        asleep = run.ceiling(r, ROWS_ASLEEP)
        rows.append(
            [
                run.engine_name(r),
                run.store_name(r),
                run.mode_name(r),
                num(m["instances"]),
                num(m["creates_per_s"]),
                show_target(r, "W4 creates", m["creates_per_s"]),
                f"{m['creates_per_s'] / created:.1%}" if created else "–",
                num(m["waiting_per_s"]),
                f"{m['waiting_per_s'] / asleep:.1%}" if asleep else "–",
                num(m["rss_peak_mib"]),
                num(m["kib_per_instance"], 2),
                show_target(r, "W4 KiB", m["kib_per_instance"]),
                num(m["peak_kib_per_instance"], 2),
                num(m.get("db_mib")),
                run.spread(r, "creates_per_s"),
            ]
        )
    headers = ["engine", "store", "durability", "instances", "created/s", "target", "of L"]
    headers += ["all waiting/s", "of L", "peak RSS MiB", "KiB/sleeper", "target"]
    headers += ["peak KiB/inst.", "DB MiB", "runs"]
    return table(headers, rows, right=set(range(3, len(headers))))


def scale_table(run: Run) -> str:
    rows = []
    found = run.of("W2-scale")
    found.sort(key=lambda r: r["median"]["nodes"])
    one = next((r for r in found if r["median"]["nodes"] == 1), None)
    for r in found:
        m = r["median"]
        ceiling = run.ceiling(r, ROWS_THREE_STEPS)
        first = one["median"]["instances_per_s"] if one else None
        balance = r["runs"][0].get("completed_by_node", [])
        rows.append(
            [
                num(m["nodes"]),
                num(m["instances"]),
                num(m["instances_per_s"]),
                f"{m['instances_per_s'] / first:.2f}×" if first else "–",
                " / ".join(str(n) for n in balance),
                num(ceiling),
                f"{m['instances_per_s'] / ceiling:.1%}" if ceiling else "–",
                run.spread(r, "instances_per_s"),
            ]
        )
    headers = ["node processes", "instances", "instances/s", "÷ 1 node"]
    headers += ["completed by each node (round 1)", "L ceiling/s", "of L", "runs"]
    return table(headers, rows, right=set(range(len(headers))) - {4})


def takeover_table(run: Run) -> str:
    rows = []
    for r in run.of("takeover"):
        m = r["median"]
        bound = m["lease_seconds"] + TAKEOVER_SLACK
        goal = Target(f"≤ {bound:g} s", bound, at_most=True)
        rows.append(
            [
                TAKEOVER_HOW.get(r["variant"], r["variant"]),
                num(m["instances"]),
                num(m["lease_seconds"], 1),
                num(m["poll_interval_seconds"], 1),
                num(m["first_seconds"], 2),
                num(m["seconds"], 2),
                goal.show(m["seconds"]),
                run.spread(r, "seconds", 2),
            ]
        )
    headers = ["the holder", "instances", "lease s", "poll s", "s to the first complete"]
    headers += ["s to all complete", "target (lease + 5 s)", "runs"]
    return table(headers, rows, right=set(range(1, 8)))


TAKEOVER_HOW = {
    "SIGKILL": "SIGKILLed (its connections close)",
    "SIGSTOP": "SIGSTOPped (frozen: its lease must lapse)",
}


# ---- wf against each peer and against L ------------------------------------------------------
@dataclass(frozen=True)
class Measure:
    workload: str
    key: str
    label: str
    higher_is_better: bool
    digits: int = 0


MEASURES = (
    Measure("W1", "step_us", "W1 µs/step", False),
    Measure("W1-def", "step_us", "W1-def µs/step", False),
    Measure("W2", "instances_per_s", "W2 instances/s", True),
    Measure("W2-http", "instances_per_s", "W2-http instances/s", True),
    Measure("W3", "seconds", "W3 s to recover", False, 2),
    Measure("W4", "creates_per_s", "W4 created/s", True),
    Measure("W4", "kib_per_instance", "W4 KiB per sleeper", False, 2),
)


def against_l(run: Run, measure: Measure, wf: dict[str, Any]) -> list[str] | None:
    """The row comparing a wf figure with what L allows, or None."""
    value = wf["median"][measure.key]
    store = wf["store"]
    mode = wf["durability"] if store == "sqlite" else f"PostgreSQL {wf['durability']}"
    if measure.workload in ("W1", "W1-def"):
        commit = run.limit(wf["durability"], "commit_us", store)
        if commit is None:
            return None
        return [f"L: one 1-row commit ({mode})", num(commit, 1), f"{times(value / commit)} L"]
    rows_per_s = run.limit(wf["durability"], "rows_per_s_64", store)
    if rows_per_s is None or measure.key == "kib_per_instance":
        return None
    if measure.workload == "W3":
        floor = wf["median"]["instances"] * ROWS_RECOVER / rows_per_s
        rest = wf["median"]["engine_seconds"]
        return [
            f"L: {ROWS_RECOVER} rows/instance at 64 rows/commit ({mode}), vs engine part "
            f"{num(rest, 2)} s",
            num(floor, 3),
            f"{times(rest / floor)} L",
        ]
    rows = ROWS_CREATED if measure.workload == "W4" else ROWS_THREE_STEPS
    ceiling = rows_per_s / rows
    return [
        f"L: {rows} rows/instance at 64 rows/commit ({mode})",
        num(ceiling),
        f"{value / ceiling:.1%} of L",
    ]


def ratio_table(run: Run) -> str:
    rows = []
    for measure in MEASURES:
        for wf in run.of(measure.workload):
            if wf["engine"] != "wf":
                continue
            where = wf["durability"]
            where += "" if wf["store"] == "sqlite" else " on PostgreSQL"
            mine = f"{num(wf['median'][measure.key], measure.digits)} (wf {where})"
            if wf["durability"] == "fsync":
                for peer in run.of(measure.workload):
                    if peer["engine"] == "wf" or measure.key not in peer["median"]:
                        continue
                    if peer["store"] != wf["store"]:  # pair by pair on the same store
                        continue
                    theirs = peer["median"][measure.key]
                    rows.append(
                        [
                            measure.label,
                            mine,
                            f"{run.engine_name(peer)}, {run.store_name(peer)}, "
                            f"{run.mode_name(peer)}",
                            num(theirs, measure.digits),
                            ratio_text(wf["median"][measure.key], theirs, measure.higher_is_better),
                        ]
                    )
            limit = against_l(run, measure, wf)
            if limit is not None:
                rows.append([measure.label, mine, *limit])
    return table(["measure", "wf", "against", "its figure", "wf vs it"], rows, right={3, 4})


# ---- the whole report -------------------------------------------------------------------------
def machine_line(info: dict[str, Any]) -> str:
    versions = info.get("versions", {})
    peers = "".join(f", {name} {version}" for name, version in sorted(versions.items()))
    modified = " (engine source modified)" if info.get("engine_source_modified") else ""
    return (
        f"_{info['date']}; {info.get('cpu_model', '?')}, {info['cpu_count']} cores"
        f" ({info.get('cpus_usable', info['cpu_count'])} usable), "
        f"{info.get('memory_gib', '?')} GiB RAM; {info.get('kernel', '')}; "
        f"Python {info['python']}, SQLite {info['sqlite']}{peers}; "
        f"temporary folders in {info.get('tmp_dir', '?')} ({info.get('filesystem', '?')}), "
        f"fsync of a 4 KiB write {info.get('fsync_us_median', '?')} µs median "
        f"({info.get('fsync_us_p90', '?')} µs p90); "
        f"git {info.get('commit', '?')}{modified}; "
        f"the suite took {info.get('total_seconds', 0) / 60:.1f} min._"
    )


def postgres_line(server: dict[str, Any]) -> str:
    settings = ", ".join(f"{k}={v}" for k, v in server.get("settings", {}).items())
    return (
        f"_PostgreSQL {server.get('version', '?')}: a throwaway cluster of this run on the same "
        f"host and disk, on 127.0.0.1 (TCP); a fresh database for each measurement; {settings}._"
    )


def render(payload: dict[str, Any]) -> str:
    run = Run(payload)
    settings = payload["settings"]
    sizes = settings["sizes"]
    parts = [
        f"**wf benchmark**: medians of {settings['runs']} run(s) each"
        + (" (quick: small counts)" if settings.get("quick") else "")
        + "; durability fsync unless stated",
        "",
        machine_line(payload["machine"]),
    ]
    if payload.get("postgres"):
        parts.extend(["", postgres_line(payload["postgres"])])

    def section(title: str, body: str) -> None:
        parts.extend(["", title, "", body])

    if run.of("L"):
        section(
            "**L, the limit**: raw SQLite commits from Python on the same disk, with wf's "
            "settings (WAL; synchronous FULL = fsync, NORMAL = os; busy_timeout 30000; "
            "temp_store MEMORY); raw psycopg commits on the run's PostgreSQL server (one "
            "connection; 64 rows = one pipelined `executemany`)",
            limit_table(run),
        )
    if run.of("W1") or run.of("W1-def"):
        section(
            f"**W1 sequential**: one instance of {sizes['w1_steps']:,} trivial steps returning 1 "
            "after a 100-step warm-up instance, with an `async def` body (W1, run on the event "
            "loop) and a `def` one (W1-def, run in a worker thread); µs/step = the run's wall "
            "time (create → completed) ÷ steps. ÷ async def: W1-def's µs/step over W1's, same "
            "durability. ÷ L: µs/step over one L commit on the same store",
            w1_table(run),
        )
    if run.of("W2"):
        section(
            f"**W2 fan-out**: {sizes['w2_instances']:,} instances of a 3-step workflow started at "
            "once in-process (wf: `create_batch` of 100, ended by `completed` notices; DBOS: "
            "one `start_workflow` each), until all complete. L ceiling = L's rows/s at 64 "
            f"rows/commit ÷ {ROWS_THREE_STEPS} row writes per instance",
            rate_table(run, "W2", ROWS_THREE_STEPS, [("s", "seconds", 2)]),
        )
    if run.of("W2-http"):
        section(
            f"**W2-http**: {sizes['http_instances']:,} instances of the 3-step workflow (wf: "
            "`def` bodies, like the README's) created over HTTP on 127.0.0.1 by 8 client threads "
            "(POST each, then GET each until complete) on kept-alive connections (http.client; "
            "connections/client counts the ones each opened), against a real server (wf: "
            "`wf dev`; DBOS: FastAPI + uvicorn; wrangler dev); instances/s as the clients see it",
            rate_table(
                run,
                "W2-http",
                ROWS_THREE_STEPS,
                [
                    ("creates/s", "creates_per_s", 0),
                    ("connections/client", "connections_per_client", 0),
                    ("server start s", "startup_seconds", 1),
                ],
            ),
        )
    if run.of("W3"):
        section(
            f"**W3 recovery**: {sizes['w3_instances']:,} instances, each past step 1 and inside "
            "step 2 (which blocks until a flag file exists), when the process is SIGKILLed. "
            "The file is created and a fresh process opens the same database (wf: plain "
            "`Engine.start()`; DBOS: `DBOS.launch()`): seconds from its start until every "
            "instance is complete. Its Python start-up and imports are measured apart",
            w3_table(run),
        )
    if run.of("W4"):
        section(
            f"**W4 hibernation**: {sizes['w4_instances']:,} wf instances (DBOS: "
            f"{sizes['w4_dbos_instances']:,}, created one by one), each sleeping an hour; wf "
            "creates them in batches of 100, one batch after another. Of L: created/s against "
            "L's rows/s at 64 rows/commit (1 row per instance), all waiting/s against it ÷ 3 rows. "
            "KiB/sleeper = RSS growth from before creating to all waiting ÷ instances; peak = "
            "VmHWM. A wf life whose wait ends more than `hibernate_after` (1 s) away leaves "
            "memory a few ms after its sleep starts, so only the instances still being created "
            "or started are in memory at once; every sleeping DBOS workflow stays in memory",
            w4_table(run),
        )
    if run.of("W2-scale"):
        section(
            f"**W2-scale**: W2's 3-step workflow with 1, 2 and 4 wf node processes on one "
            f"PostgreSQL database, each an Engine on its own PostgresStore claiming from one pool "
            f"of {sizes['scale_instances']:,} queued instances (written before the nodes start); "
            "every node, started and warmed up, is told to go at once; instances/s overall, "
            "until the database counts every instance complete (polled every 10 ms). On one "
            "2-core host the nodes share the cores with each other and with PostgreSQL",
            scale_table(run),
        )
    if run.of("takeover"):
        section(
            f"**Takeover**: a node process holding {sizes['takeover_instances']:,} running "
            "instances (each inside W3's gate step) is SIGKILLed or SIGSTOPped; another node, "
            "running since before with the same lease, takes them over at its next claim round "
            "once the holder counts as dead: at once when its connections closed (the server "
            "sees that), after its lease lapsed (the database's clock) when it is frozen. "
            "Seconds from the signal",
            takeover_table(run),
        )
    ratios = ratio_table(run)
    if ratios.count("\n") > 1:
        section(
            "**wf against each peer and against L**, pair by pair on the same store (wf in "
            "fsync mode against the peers; better/worse is from wf's side)",
            ratios,
        )
    if payload["errors"]:
        parts.extend(["", "**Not measured / failed**", ""])
        parts.extend(f"- {e}" for e in payload["errors"])
    return "\n".join(parts)


def results_markdown(payload: dict[str, Any], text: str) -> str:
    minutes = payload["machine"].get("total_seconds", 0) / 60
    return f"""# wf benchmark results

The latest full run of the benchmark suite (bench/README.md explains each workload and how it is
measured). Written by `make bench`; the same figures as JSON are in `bench/results/latest.json`.

## Reproduce

    make bench                                          # everything, with DBOS and wrangler dev
    make bench BENCH_ARGS="--workload W1 --workload L"  # some workloads, wf alone
    make bench BENCH_ARGS="--store postgres --peer dbos"  # the PostgreSQL forms, with DBOS
    .venv/bin/python -m bench --render bench/results/latest.json   # these tables again

This run took {minutes:.0f} minutes; installing the peers on first use (DBOS Transact into
bench/.venv-dbos, wrangler into bench/cloudflare/node_modules) adds a few more. Speed depends on
the machine, above all on its fsync latency: compare figures within one run, not across machines.

## Figures

{text}
"""
