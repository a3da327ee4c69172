"""``wf dev`` on PostgreSQL, as a user lives it: trigger, describe, a reload in the middle of a
step, a broken module's read routes, ``wf dev`` killed and restarted; and a database that
cannot be used (a closed port, a wrong password, a missing database) is one line and exit 1."""

from __future__ import annotations

import functools
import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.e2e.cluster_helpers import process_tree
from tests.e2e.helpers import DevServer, api, dev_server, free_port, wait_until, wf
from tests.e2e.serve_helpers import cmdline
from tests.postgres import HOW_TO, SKIP_REASON, Cluster, find_binaries, required
from wf.engine.store.urls import redact

pytestmark = pytest.mark.slow

NAME = "workflows-starter"
WORKFLOW = """
import asyncio
from pathlib import Path

from wf import WorkflowEntrypoint

VERSION = "v1"
RUNS = Path(__file__).with_name("runs.txt")


class MyWorkflow(WorkflowEntrypoint):
    async def run(self, event, step):
        async def slow():
            again = RUNS.exists() and event.instance_id in RUNS.read_text().split()
            with RUNS.open("a") as runs:  # one line per run of this body
                runs.write(event.instance_id + "\\n")
            await asyncio.sleep(0 if again else event.payload.get("slow", 0))
            return "slept"

        await step.do("slow", slow)
        approval = await step.wait_for_event("approval", type="approval", timeout="1 hour")
        await step.sleep("cool down", event.payload.get("cool", 0))
        return {"version": VERSION, "approved": approval.payload}
"""


def details(url: str, instance_id: str) -> dict[str, object]:
    found: dict[str, object] = api(url, f"/api/workflows/{NAME}/instances/{instance_id}")
    return found


def status(url: str, instance_id: str) -> str:
    return str(details(url, instance_id)["status"])


def has_step(url: str, instance_id: str, name: str) -> bool:
    steps = details(url, instance_id).get("steps")
    return isinstance(steps, list) and any(s.get("name") == name for s in steps)


def runs_of(project: Path) -> list[str]:
    runs = project / "runs.txt"
    return runs.read_text().split() if runs.exists() else []


def rows(database: str) -> dict[str, tuple[str, str | None]]:
    """Instances as PostgreSQL has them: id -> (status, owner)."""
    with psycopg.connect(database, autocommit=True) as conn:
        found = conn.execute("SELECT id, status, owner FROM wf.instances").fetchall()
    return {str(i): (str(s), None if o is None else str(o)) for i, s, o in found}


def new_project(tmp_path: Path, lease: str = "2 seconds") -> Path:
    wf("init", "proj", cwd=tmp_path)
    project = tmp_path / "proj"
    (project / "workflows.py").write_text(WORKFLOW)
    with (project / "wf.toml").open("a") as config:
        # wf dev killed with its claims: a restart takes them over at the latest once this has
        # lapsed (sooner when PostgreSQL saw its connections close).
        config.write(f'\n[engine]\nlease = "{lease}"\n')
    return project


def test_the_dev_loop_on_postgresql(tmp_path: Path, pg_url: str) -> None:
    project = new_project(tmp_path)
    port = free_port()
    server = DevServer(project, port, args=("--database", pg_url)).start()
    try:
        url = server.url
        assert f"  ➜ Database:  {redact(pg_url)} (schema wf)" in server.output()
        wf("trigger", NAME, '{"cool": 6}', "--id", "first", "--url", url, cwd=project)
        wait_until(lambda: status(url, "first") == "waiting", what="first waits for its event")
        wf(*send_event("first"), "--url", url, cwd=project)
        wait_until(lambda: has_step(url, "first", "cool down-1"), what="first sleeps")

        # A reload while a step runs: the old process finishes the attempt (its reload grace),
        # the new one carries on from it; the body ran once.
        wf("trigger", NAME, '{"slow": 1.5}', "--id", "second", "--url", url, cwd=project)
        wait_until(lambda: "second" in runs_of(project), what="second's slow step runs")
        first_version = server.health()["version_id"]
        (project / "workflows.py").write_text(WORKFLOW.replace('"v1"', '"v2"'))
        wait_until(
            lambda: server.health()["version_id"] not in (None, first_version),
            what="the reload with the edited module",
        )
        wait_until(lambda: status(url, "second") == "waiting", what="second waits for its event")
        wf(*send_event("second"), "--url", url, cwd=project)
        wait_until(lambda: status(url, "second") == "complete", what="second completes")
        assert details(url, "second")["output"] == {"version": "v2", "approved": {}}
        assert runs_of(project).count("second") == 1
        assert status(url, "first") == "waiting"  # still in its six-second sleep

        # Kill the whole server (supervisor and child) while "first" sleeps and "third" runs its
        # step, then start it again: "first" wakes; "third", still claimed by the dead process,
        # is taken over, its owner's connections being gone (or, at the latest, once its lease
        # lapses: 2 s here); its step runs again (it never finished).
        wf("trigger", NAME, '{"slow": 600}', "--id", "third", "--url", url, cwd=project)
        wait_until(lambda: "third" in runs_of(project), what="third's slow step runs")
        server.kill()
        assert rows(pg_url)["third"][1] is not None  # still claimed by the dead process
        server = DevServer(project, port, args=("--database", pg_url)).start()
        wait_until(lambda: status(url, "first") == "complete", what="first completes after restart")
        first = details(url, "first")
        assert first["output"] == {"version": "v2", "approved": {"ok": True}}
        assert runs_of(project).count("first") == 1
        wait_until(lambda: status(url, "third") == "waiting", what="third taken over")
        assert runs_of(project).count("third") == 2
        wf(*send_event("third"), "--url", url, cwd=project)
        wait_until(lambda: status(url, "third") == "complete", what="third completes")
        described = wf("instances", "describe", NAME, "first", "--url", url, cwd=project)
        assert "Completed" in described.stdout and "cool down-1" in described.stdout
        assert "Traceback" not in server.output()
    finally:
        server.stop()
        server.kill()
    # Everything is in the schema wf: nothing in public, nothing on disk but the state folder.
    assert set(rows(pg_url)) == {"first", "second", "third"}
    with psycopg.connect(pg_url, autocommit=True) as conn:
        public = conn.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchone()
    assert public == (0,)
    assert not (project / ".wf" / "wf.db").exists()


def send_event(instance_id: str) -> tuple[str, ...]:
    payload = '{"ok": true}' if instance_id == "first" else "{}"
    return (
        "instances",
        "send-event",
        NAME,
        instance_id,
        "--type",
        "approval",
        "--payload",
        payload,
    )


def test_a_broken_module_keeps_its_postgresql_history_readable(tmp_path: Path, pg_url: str) -> None:
    project = new_project(tmp_path)
    source = project / "workflows.py"
    with dev_server(project, env={"WF_DATABASE_URL": pg_url}) as server:
        url = ("--url", server.url)
        wf("trigger", NAME, "--id", "done", *url, cwd=project)
        wf(*send_event("done"), *url, cwd=project)
        wf("trigger", NAME, "--id", "waiting", *url, cwd=project)
        wait_until(lambda: status(server.url, "done") == "complete", what="done completes")
        wait_until(
            lambda: rows(pg_url).get("waiting") == ("waiting", None), what="waiting hibernates"
        )
        reads = [
            ("instances", "list", NAME, "--json"),
            ("instances", "describe", NAME, "done", "--json"),
            ("instances", "describe", NAME, "latest", "--json"),
            ("workflows", "list", "--json"),
        ]
        before = {r: wf(*r, *url, cwd=project).stdout for r in reads}

        source.write_text(WORKFLOW + "\ndef broken(:\n")
        wait_until(lambda: server.health()["status"] == "error", what="the broken module")
        for read in reads[:3]:
            assert wf(*read, *url, cwd=project).stdout == before[read], read
        [workflow] = json.loads(wf(*reads[3], *url, cwd=project).stdout)
        assert workflow["name"] == NAME and workflow["version_id"] is None
        refused = wf("trigger", NAME, "--id", "refused", *url, cwd=project, check=False)
        assert refused.returncode == 1 and "SyntaxError" in refused.stderr

        source.write_text(WORKFLOW)  # fixed: the engine starts, the reads did not hold it up
        wait_until(server.healthy, what="the fixed module")
        wf(*send_event("waiting"), *url, cwd=project)
        wait_until(lambda: status(server.url, "waiting") == "complete", what="waiting completes")
        assert "Traceback" not in server.output()
    assert set(rows(pg_url)) == {"done", "waiting"}


# ---- a database that cannot be used ---------------------------------------------------------

PASSWORD = "right-horse-battery"


@pytest.fixture(scope="module")
def guarded() -> Iterator[Cluster]:
    """A cluster of its own whose TCP connections need a password (the tests' shared one trusts
    everyone, so a wrong password would pass there)."""
    bin_dir = find_binaries()
    if bin_dir is None:
        if required():
            pytest.fail(f"{SKIP_REASON} and WF_REQUIRE_POSTGRES is set: {HOW_TO}")
        pytest.skip(f"{SKIP_REASON}: {HOW_TO}")
    root = Path(tempfile.mkdtemp(prefix="wf-pg-"))
    root.chmod(0o755)  # the server's user must enter it
    cluster = Cluster(root / "cluster", bin_dir)
    try:
        cluster.init()
        (cluster.data / "pg_hba.conf").write_text(
            "local all all trust\nhost all all 127.0.0.1/32 scram-sha-256\n"
        )
        cluster.start()
        with psycopg.connect(
            host=str(cluster.root), port=cluster.port, user="postgres", autocommit=True
        ) as conn:
            conn.execute(f"ALTER ROLE postgres PASSWORD '{PASSWORD}'")
        yield cluster
    finally:
        cluster.destroy()
        shutil.rmtree(root, ignore_errors=True)


def _where(source: str, url: str, project: Path) -> tuple[tuple[str, ...], dict[str, str]]:
    if source == "option":
        return ("--database", url), {"WF_DATABASE_URL": "postgresql://127.0.0.1:1/overridden"}
    if source == "variable":
        return (), {"WF_DATABASE_URL": url}
    with (project / "wf.toml").open("a") as config:
        config.write(f'\n[engine]\ndatabase = "{url}"\n')
    return (), {}


@pytest.mark.parametrize("source", ["option", "variable", "wf.toml"])
@pytest.mark.parametrize("problem", ["closed port", "wrong password", "missing database"])
def test_a_database_that_cannot_be_used_is_one_line_and_exit_1(
    tmp_path: Path, guarded: Cluster, problem: str, source: str
) -> None:
    port = {"closed port": free_port()}.get(problem, guarded.port)
    password = "not-the-password" if problem == "wrong password" else PASSWORD
    database = "nowhere" if problem == "missing database" else "postgres"
    url = f"postgresql://postgres:{password}@127.0.0.1:{port}/{database}"
    project = tmp_path / "proj"
    wf("init", "proj", cwd=tmp_path)
    args, env = _where(source, url, project)
    done = wf("dev", "--port", "0", *args, cwd=project, check=False, env=env, timeout=60)
    assert done.returncode == 1, done.stderr
    assert done.stdout == ""
    [line] = done.stderr.splitlines()
    assert line.startswith("wf: ") and "Traceback" not in line
    assert password not in line  # never printed, not even a wrong one
    assert redact(url) in line, line
    expected = {
        "closed port": "refused",
        "wrong password": "password",
        "missing database": '"nowhere" does not exist',
    }[problem]
    assert expected in line, line


def test_the_right_password_serves(tmp_path: Path, guarded: Cluster) -> None:
    """The same cluster with the right password: the failures above are the password's."""
    wf("init", "proj", cwd=tmp_path)
    url = f"postgresql://postgres:{PASSWORD}@127.0.0.1:{guarded.port}/postgres"
    with dev_server(tmp_path / "proj", args=("--database", url)) as server:
        wf("trigger", NAME, "--id", "one", "--url", server.url, cwd=tmp_path / "proj")
        wait_until(functools.partial(has_step, server.url, "one", "my first step-1"), what="runs")
        assert PASSWORD not in server.output()
        assert f"Database:  {redact(url)} (schema wf)" in server.output()


@pytest.mark.parametrize("source", ["option", "variable"])
def test_the_password_is_on_no_command_line_wf_dev_starts(
    tmp_path: Path, guarded: Cluster, source: str
) -> None:
    """``ps`` shows every user's command lines: a URL given in WF_DATABASE_URL (or typed after
    --database, on wf dev's own line) must not reappear on the line of the process wf dev starts."""
    wf("init", "proj", cwd=tmp_path)
    url = f"postgresql://postgres:{PASSWORD}@127.0.0.1:{guarded.port}/postgres"
    args, env = _where(source, url, tmp_path / "proj")
    with dev_server(tmp_path / "proj", args=args, env=env) as server:
        assert server.process is not None
        started = process_tree(server.process.pid)[1:]
        assert started, "wf dev runs its project in a process of its own"
        for pid in started:
            assert PASSWORD not in " ".join(cmdline(pid)), cmdline(pid)
        instance = f"ps-{source}"  # the guarded cluster's database is the module's
        wf("trigger", NAME, "--id", instance, "--url", server.url, cwd=tmp_path / "proj")
        wait_until(
            functools.partial(has_step, server.url, instance, "my first step-1"), what="runs"
        )
