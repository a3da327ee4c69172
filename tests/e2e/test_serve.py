"""``wf serve`` as an operator lives it (issue 4): deploy versions, pin and upgrade instances,
refuse bad bundles, require the token everywhere, survive killed workers and a killed server, and
hand secrets to workflows without showing them.

Each test starts ``python -m wf serve`` in its own session on a free port with a fresh state
folder, talks to it with ``python -m wf ...`` and plain HTTP, and kills its process group.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import os
import secrets
import shutil
import signal
import stat
import tarfile
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.helpers import wait_until
from tests.e2e.serve_helpers import (
    TOKEN_LINE,
    Serve,
    serving,
    write_project,
)

pytestmark = pytest.mark.slow

UNAUTHORIZED = 10006
BUNDLE_INVALID = 10008
BUNDLE_IMPORT_FAILED = 10009
TOO_LARGE = 10003
MAX_BUNDLE = 32 * 1024 * 1024
GZIP = {"Content-Type": "application/gzip"}
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")

# Every route of the REST and serve contracts (the OpenAPI document should list them all).
CONTRACT_ROUTES = {
    "/api/health": {"get"},
    "/api/openapi.json": {"get"},
    "/api/workflows": {"get"},
    "/api/workflows/{name}": {"get", "delete"},
    "/api/workflows/{name}/instances": {"get", "post"},
    "/api/workflows/{name}/instances/batch": {"post"},
    "/api/workflows/{name}/instances/{id}": {"get"},
    "/api/workflows/{name}/instances/{id}/status": {"patch"},
    "/api/workflows/{name}/instances/{id}/events/{type}": {"post"},
    "/api/deploy": {"post"},
    "/api/workflows/{name}/versions": {"get"},
    "/api/workflows/{name}/instances/{id}/upgrade": {"post"},
    "/api/secrets": {"get"},
    "/api/secrets/{name}": {"put", "delete"},
}


def table_row(output: str, key: str) -> list[str]:
    """The cells of the table row that starts with ``key``."""
    for line in output.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("│").split("│")]
        if cells and cells[0] == key:
            return cells
    raise AssertionError(f"no row {key!r} in:\n{output}")


def one_line_error(result: Any) -> str:
    """The stderr of a refused ``wf`` command: exit 1, one ``wf: ...`` line, no traceback."""
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("wf: "), result.stderr
    return str(lines[0])


# ---- 1. versions -------------------------------------------------------------------------------


def test_in_flight_instances_stay_on_their_version_and_upgrade_moves_one(tmp_path: Path) -> None:
    project = write_project(tmp_path / "proj", "v1")
    with serving(tmp_path) as server:
        v1 = server.deploy(project)
        assert server.bundles() == [v1]
        server.trigger(project, "A", {"wait": True})
        wait_until(lambda: server.status("A") == "waiting", what="A waits")

        write_project(project, "v2")
        v2 = server.deploy(project)
        assert v2 != v1
        server.trigger(project, "B", {"nap": 0.2})
        b = server.finished("B")
        assert (b["status"], b["output"], b["versionId"]) == ("complete", {"version": "v2"}, v2)

        versions = server.versions()
        assert versions[v2]["active"] is True and versions[v2]["loaded"] is True
        assert versions[v1]["active"] is False
        # A still waits: its version stays loaded for it.
        assert versions[v1]["unfinished"] == 1 and versions[v1]["loaded"] is True
        assert sorted(server.workers().values()) == sorted([v1, v2])
        listed = server.wf("versions", "list", "pin", cwd=project).stdout
        assert "Version Id" in listed and "Unfinished" in listed
        assert listed.index(v2) < listed.index(v1)  # newest first
        assert table_row(listed, v2)[2:4] == ["✅ Yes", "Yes"]
        assert table_row(listed, v1)[2:] == ["No", "Yes", "1"]

        server.go("A")
        a = server.finished("A")
        assert (a["status"], a["output"], a["versionId"]) == ("complete", {"version": "v1"}, v1)

        def old_unloaded() -> bool:
            old = server.versions()[v1]
            return old["unfinished"] == 0 and old["loaded"] is False and v1 not in server.bundles()

        wait_until(old_unloaded, timeout=15, what=f"version {v1} to be unloaded")
        assert server.bundles() == [v2]
        assert list(server.workers().values()) == [v2]
        listed = server.wf("versions", "list", "pin", cwd=project).stdout
        assert table_row(listed, v1)[2:] == ["No", "No", "0"]
        assert table_row(listed, v2)[2:] == ["✅ Yes", "Yes", "0"]

        # Upgrade: C waits on v2; v3 is deployed; C is moved and finishes with v3's code.
        server.trigger(project, "C", {"wait": True})
        wait_until(lambda: server.status("C") == "waiting", what="C waits")
        write_project(project, "v3")
        v3 = server.deploy(project)
        moved = server.wf("instances", "upgrade", "pin", "C", cwd=project)
        assert f'⬆️ The instance "C" from pin was moved from version {v2} to {v3}' in moved.stdout, (
            moved.stdout
        )
        server.go("C")
        c = server.finished("C")
        assert (c["status"], c["output"], c["versionId"]) == ("complete", {"version": "v3"}, v3)
        refused = server.wf("instances", "upgrade", "pin", "A", cwd=project, check=False)
        assert '"A"' in one_line_error(refused)

        def v2_unloaded() -> bool:
            return server.versions()[v2]["loaded"] is False and v2 not in server.bundles()

        wait_until(v2_unloaded, timeout=15, what=f"version {v2} to be unloaded")
        assert list(server.workers().values()) == [v3]


def test_each_version_keeps_its_finished_instances_for_its_own_retention(tmp_path: Path) -> None:
    project = write_project(tmp_path / "proj", "v1")
    with (project / "wf.toml").open("a") as toml:
        toml.write('\n[engine]\nretention = "1 second"\n')
    state = tmp_path / "state"
    with serving(tmp_path, state) as server:
        server.deploy(project)
        server.trigger(project, "brief", {})
        ended = server.finished("brief")["end"]
        write_project(project, "v2")  # no [engine] table: 7 days
        server.deploy(project)
        server.trigger(project, "kept", {})
        server.finished("kept")
    # The purge runs as the server starts (then hourly): "brief" must be over a second old.
    over = datetime.fromisoformat(ended.replace("Z", "+00:00")).timestamp() + 1.5
    wait_until(lambda: time.time() > over, what="a second and a half past the end of brief")
    with serving(tmp_path, state) as restarted:

        def purged() -> bool:
            reply = restarted.request("GET", "/api/workflows/pin/instances/brief")
            return reply.status == 404

        wait_until(purged, what="brief, past its version's retention, to be purged")
        assert restarted.status("kept") == "complete"


# ---- 2. rejected bundles -----------------------------------------------------------------------


def tarball(entries: list[tuple[str, str, str]]) -> bytes:
    """A gzip-compressed tar archive of (name, content or link target, "file" | "symlink")."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", format=tarfile.PAX_FORMAT) as tar:
        for name, content, kind in entries:
            info = tarfile.TarInfo(name)
            if kind == "symlink":
                info.type = tarfile.SYMTYPE
                info.linkname = content
                tar.addfile(info)
            else:
                data = content.encode()
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def disk(folder: Path) -> dict[str, str]:
    """Every entry under ``folder`` (hidden ones too): path → sha256 of a file, or its kind."""
    found: dict[str, str] = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = Path(root, name)
            relative = str(path.relative_to(folder))
            if path.is_symlink():
                found[relative] = "symlink"
            elif path.is_dir():
                found[relative] = "dir"
            else:
                found[relative] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def test_rejected_bundles_change_nothing(tmp_path: Path) -> None:
    project = write_project(tmp_path / "proj", "v1")
    good_toml = (project / "wf.toml").read_text()
    good_source = (project / "workflows.py").read_text()
    with serving(tmp_path) as server:
        v1 = server.deploy(project)
        state = server.state

        def snapshot() -> tuple[Any, ...]:
            versions = server.versions()
            active = [v for v, row in versions.items() if row["active"]]
            return active, sorted(versions), server.workers(), disk(state / "bundles")

        before = snapshot()
        assert before[0] == [v1] and list(before[2].values()) == [v1]

        # Zip-slip: an entry that climbs out of the bundle folder.
        evil = tarball(
            [
                ("wf.toml", good_toml, "file"),
                ("workflows.py", good_source, "file"),
                ("../evil.py", "import os\n", "file"),
            ]
        )
        reply = server.request("POST", "/api/deploy", data=evil, headers=GZIP)
        assert reply.status == 400, reply.text
        assert reply.error["code"] == BUNDLE_INVALID
        assert "../evil.py" in reply.error["message"] and "\n" not in reply.error["message"]
        assert snapshot() == before
        assert not (state / "evil.py").exists() and not (state / "bundles" / "evil.py").exists()
        assert not (tmp_path / "evil.py").exists()

        # A symbolic link entry.
        linked = tarball(
            [
                ("wf.toml", good_toml, "file"),
                ("workflows.py", good_source, "file"),
                ("secrets.py", "/etc/passwd", "symlink"),
            ]
        )
        reply = server.request("POST", "/api/deploy", data=linked, headers=GZIP)
        assert reply.status == 400, reply.text
        assert reply.error["code"] == BUNDLE_INVALID
        assert "secrets.py" in reply.error["message"] and "link" in reply.error["message"]
        assert "\n" not in reply.error["message"]
        assert snapshot() == before

        # Over 32 MiB: refused by its Content-Length, and while streaming a chunked body.
        big = b"\x1f\x8b" + b"\0" * MAX_BUNDLE
        reply = server.request("POST", "/api/deploy", data=big, headers=GZIP, timeout=60)
        assert reply.status == 413, reply.text
        assert reply.error["code"] == TOO_LARGE and str(MAX_BUNDLE) in reply.error["message"]
        chunked = server.request_chunked("/api/deploy", big, GZIP)
        assert chunked.status == 413, chunked.text
        assert chunked.error["code"] == TOO_LARGE
        assert snapshot() == before

        # A module that does not import: wf deploy exits 1 naming the file and the line.
        broken = tmp_path / "broken"
        shutil.copytree(project, broken)
        (broken / "workflows.py").write_text(good_source + "\ndef broken(:\n")
        line = good_source.count("\n") + 2
        refused = server.wf("deploy", cwd=broken, check=False)
        message = one_line_error(refused)
        assert f"workflows.py:{line}:" in message and "SyntaxError" in message, message
        assert "Deployed" not in refused.stdout
        assert snapshot() == before
        broken_bundle = tarball(
            [
                ("wf.toml", good_toml, "file"),
                ("workflows.py", good_source + "\ndef broken(:\n", "file"),
            ]
        )
        reply = server.request("POST", "/api/deploy", data=broken_bundle, headers=GZIP)
        assert reply.status == 400, reply.text
        assert reply.error["code"] == BUNDLE_IMPORT_FAILED
        assert reply.error["message"].startswith(f"workflows.py:{line}: SyntaxError")
        assert snapshot() == before

        # A class_name that the module does not define.
        misnamed = tmp_path / "misnamed"
        shutil.copytree(project, misnamed)
        (misnamed / "wf.toml").write_text(good_toml.replace("PinWorkflow", "NoSuchWorkflow"))
        refused = server.wf("deploy", cwd=misnamed, check=False)
        message = one_line_error(refused)
        assert "NoSuchWorkflow" in message and "workflows.py" in message, message
        assert snapshot() == before

        # The old version still runs new instances.
        server.trigger(project, "after", {})
        after = server.finished("after")
        assert (after["status"], after["output"], after["versionId"]) == (
            "complete",
            {"version": "v1"},
            v1,
        )
        assert snapshot() == before
        server.stop()
        # A refused deploy is an expected event: the server's terminal shows no traceback.
        assert "Traceback" not in server.output(), server.output()


# ---- 3. auth -----------------------------------------------------------------------------------


def concrete(path: str) -> str:
    return path.replace("{name}", "pin").replace("{id}", "some-id").replace("{type}", "approval")


def refusals(server: Serve) -> Iterator[dict[str, str]]:
    """Authorization headers that must all be refused."""
    yield {}
    yield {"Authorization": "Bearer wrong-token"}
    yield {"Authorization": f"Bearer {server.token}x"}
    yield {"Authorization": f"Bearer {server.token[:-1]}"}
    yield {"Authorization": f"Basic {server.token}"}
    yield {"Authorization": server.token}
    yield {"Authorization": "Bearer "}


def test_every_route_needs_the_token_and_rotation_replaces_it(tmp_path: Path) -> None:
    project = write_project(tmp_path / "proj", "v1")
    with serving(tmp_path) as server:
        token_file = server.state / "token"
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        printed = TOKEN_LINE.search(server.output())
        assert printed and printed.group(2) == server.token, server.output()
        assert Path(printed.group(1)) == token_file.resolve()
        server.deploy(project)

        document = server.request("GET", "/api/openapi.json")
        assert document.status == 200, document.text
        documented = {
            path: {m for m in item if m in {"get", "post", "put", "patch", "delete"}}
            for path, item in document.body["paths"].items()
        }
        missing = {
            path: methods - documented.get(path, set())
            for path, methods in CONTRACT_ROUTES.items()
            if methods - documented.get(path, set())
        }
        assert not missing, f"routes missing from /api/openapi.json: {missing}"

        paths = sorted({*documented, *CONTRACT_ROUTES, "/api/no-such-route"})
        checked = 0
        for path in paths:
            for method in METHODS:
                for headers in refusals(server):
                    reply = server.request(method, concrete(path), token=None, headers=headers)
                    where = f"{method} {path} with {headers or 'no token'}"
                    assert reply.status == 401, f"{where}: {reply.status} {reply.text}"
                    assert reply.error["code"] == UNAUTHORIZED, where
                    assert reply.headers.get("WWW-Authenticate") == "Bearer", where
                    assert server.token not in reply.text
                    checked += 1
        assert checked >= len(CONTRACT_ROUTES) * len(METHODS) * 7
        # The dashboard's pages: without a session, a browser is sent to sign in (GET) or
        # refused; a wrong token is refused as on the API.
        for path in ("/", "/w/pin", "/versions", "/no-such-page"):
            for method in METHODS:
                reply = server.request(method, path, token=None)
                expected = 303 if method == "GET" else 403
                assert reply.status == expected, f"{method} {path}: {reply.status}"
                if method == "GET":
                    assert reply.headers["Location"].startswith("/signin?next=")
                wrong = server.request(method, path, token="wrong-token")
                assert wrong.status == 401, f"{method} {path} with a wrong token"
        for path, methods in documented.items():
            if "get" in methods:
                assert server.request("GET", concrete(path)).status != 401, path
        old = server.token
        server.stop()

        # --rotate-token: a new token, printed once; the old one is refused from then on.
        rotated = Serve(tmp_path, server.state, server.port)
        try:
            rotated.start("--rotate-token")
            printed = TOKEN_LINE.search(rotated.output())
            assert printed, rotated.output()
            new = printed.group(2)
            assert new != old and new == token_file.read_text().strip() == rotated.token
            assert "new API token" in rotated.output()
            assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
            reply = rotated.request("GET", "/api/health", token=old)
            assert reply.status == 401 and reply.error["code"] == UNAUTHORIZED
            assert rotated.request("GET", "/api/health", token=new).status == 200
            listed = rotated.wf("versions", "list", "pin", cwd=project, token=old, check=False)
            assert "token" in one_line_error(listed)
            rotated.wf("versions", "list", "pin", cwd=project, token=new)
        finally:
            rotated.stop()
            rotated.kill()


# ---- 4. crashes --------------------------------------------------------------------------------


def test_a_killed_worker_is_replaced_and_its_instance_completes(tmp_path: Path) -> None:
    project = write_project(tmp_path / "proj", "v1")
    mark = tmp_path / "before-ran"
    with serving(tmp_path) as server:
        v1 = server.deploy(project)
        server.trigger(project, "A", {"wait": True, "nap": 1, "mark": str(mark)})
        wait_until(lambda: server.status("A") == "waiting", what="A waits")
        workers = server.workers()
        assert list(workers.values()) == [v1], workers
        (victim,) = workers
        os.kill(victim, signal.SIGKILL)

        def replaced() -> list[int]:
            return [pid for pid, version in server.workers().items() if pid != victim]

        wait_until(replaced, timeout=15, what="a new worker")
        server.go("A")
        a = server.finished("A")
        assert (a["status"], a["output"], a["versionId"]) == ("complete", {"version": "v1"}, v1)
        assert mark.read_text() == "ran\n"  # the step before the crash was not run again
        assert list(server.workers().values()) == [v1]
        server.trigger(project, "B", {})
        assert server.finished("B")["output"] == {"version": "v1"}


def waiting(server: Serve, name: str) -> bool:
    return server.status(name) == "waiting"


def test_a_killed_server_resumes_the_instances_of_every_version(tmp_path: Path) -> None:
    project = write_project(tmp_path / "proj", "v1")
    state = tmp_path / "state"
    server = Serve(tmp_path, state)
    restarted = Serve(tmp_path, state, server.port)
    try:
        server.start()
        v1 = server.deploy(project)
        # They wait for an event until after the restart, then sleep (on the restarted server).
        for name in ("A1", "A2"):
            server.trigger(project, name, {"wait": True, "nap": 1, "mark": str(tmp_path / name)})
        write_project(project, "v2")
        v2 = server.deploy(project)
        for name in ("B1", "B2"):
            server.trigger(project, name, {"wait": True, "nap": 1, "mark": str(tmp_path / name)})
        expected = {"A1": v1, "A2": v1, "B1": v2, "B2": v2}
        for name in expected:
            wait_until(functools.partial(waiting, server, name), what=f"{name} waits")
        assert sorted(server.workers().values()) == sorted([v1, v2])
        token = server.token

        server.kill()  # SIGKILL to the whole group: the server and both workers
        restarted.start()
        assert restarted.token == token
        assert "API token" not in restarted.output()  # shown once, on the first start only
        for name in expected:
            restarted.go(name)
        for name, version in expected.items():
            done = restarted.finished(name)
            wanted = {"version": "v1" if version == v1 else "v2"}
            assert (done["status"], done["output"], done["versionId"]) == (
                "complete",
                wanted,
                version,
            ), name
            assert (tmp_path / name).read_text() == "ran\n", name

        def old_unloaded() -> bool:
            return restarted.versions()[v1]["loaded"] is False and v1 not in restarted.bundles()

        wait_until(old_unloaded, timeout=15, what=f"version {v1} to be unloaded")
        assert list(restarted.workers().values()) == [v2]
    finally:
        for each in (server, restarted):
            each.stop()
            each.kill()


# ---- 5. secrets --------------------------------------------------------------------------------

SECRET_WORKFLOW = """\
from wf import WorkflowEntrypoint


class PinWorkflow(WorkflowEntrypoint):
    async def run(self, event, step):
        return await step.do("read", lambda: {"key": self.env.API_KEY})
"""


def without_outputs(details: dict[str, Any]) -> dict[str, Any]:
    """An instance's details minus what the workflow itself returned."""
    steps = [{k: v for k, v in s.items() if k != "output"} for s in details["steps"]]
    return {**{k: v for k, v in details.items() if k != "output"}, "steps": steps}


def test_secrets_reach_env_and_are_never_shown(tmp_path: Path) -> None:
    project = write_project(tmp_path / "proj", source=SECRET_WORKFLOW)
    value = f"s3cr3t-{secrets.token_hex(12)}"
    with serving(tmp_path) as server:
        deployed = server.wf("deploy", cwd=project)
        put = server.wf("secret", "put", "API_KEY", cwd=project, stdin=value + "\n")
        assert '✨ Secret "API_KEY" saved' in put.stdout
        assert value not in put.stdout + put.stderr

        server.trigger(project, "S", {})
        done = server.finished("S")
        assert (done["status"], done["output"]) == ("complete", {"key": value})

        listed = server.wf("secret", "list", cwd=project)
        assert "API_KEY" in listed.stdout and value not in listed.stdout + listed.stderr
        as_json = json.loads(server.wf("secret", "list", "--json", cwd=project).stdout)
        assert [sorted(s) for s in as_json] == [["name", "updated_on"]]
        assert as_json[0]["name"] == "API_KEY"
        described = server.wf("instances", "describe", "pin", "S", cwd=project)
        assert described.returncode == 0

        # Every other answer of the API leaves the value out, refusals included.
        answers = [
            server.request("GET", path).text
            for path in (
                "/api/health",
                "/api/openapi.json",
                "/api/workflows",
                "/api/workflows/pin",
                "/api/workflows/pin/instances",
                "/api/workflows/pin/versions",
                "/api/secrets",
            )
        ]
        answers.append(json.dumps(without_outputs(server.instance("S"))))
        answers.append(server.request("PUT", "/api/secrets/API_KEY", {"value": value}).text)
        answers.append(server.request("PUT", "/api/secrets/bad-name", {"value": value}).text)
        answers.append(server.request("PUT", "/api/secrets/X", {"value": value, "x": 1}).text)
        answers.append(server.request("PUT", "/api/secrets/X", {"value": [value]}).text)
        answers.append(server.request("DELETE", "/api/secrets/NOPE").text)
        answers.append(deployed.stdout)
        for answer in answers:
            assert value not in answer, answer

        # A new value reaches the workers (they are restarted); deleting it leaves none listed.
        newer = f"n3w-{secrets.token_hex(12)}"
        server.wf("secret", "put", "API_KEY", cwd=project, stdin=newer)
        server.trigger(project, "S2", {})
        assert server.finished("S2")["output"] == {"key": newer}
        deleted = server.wf("secret", "delete", "API_KEY", cwd=project)
        assert '✨ Secret "API_KEY" deleted' in deleted.stdout
        assert "no secrets" in server.wf("secret", "list", cwd=project).stdout
        gone = server.wf("secret", "delete", "API_KEY", cwd=project, check=False)
        assert "API_KEY" in one_line_error(gone)
        assert value not in server.output() and newer not in server.output()


SLOW_IMPORT_WORKFLOW = """\
import time

from wf import WorkflowEntrypoint

time.sleep(3)  # a module that takes a while to import

VERSION = "v1"


class PinWorkflow(WorkflowEntrypoint):
    async def run(self, event, step):
        return await step.do("read", lambda: {"key": self.env.API_KEY, "version": VERSION})
"""


def test_a_secret_put_during_a_deploy_reaches_the_new_version(tmp_path: Path) -> None:
    project = write_project(tmp_path / "proj", source=SLOW_IMPORT_WORKFLOW)
    with serving(tmp_path) as server:
        server.wf("secret", "put", "API_KEY", cwd=project, stdin="old value")
        v1 = server.deploy(project)
        write_project(project, "v2", source=SLOW_IMPORT_WORKFLOW)
        deployed: list[str] = []
        deploying = threading.Thread(target=lambda: deployed.append(server.deploy(project)))
        deploying.start()
        try:
            # v2's bundle is unpacked: its worker is importing the module (for 3 s)
            wait_until(
                lambda: [b for b in server.bundles() if b != v1 and not b.startswith(".")],
                what="the deploy of v2 to unpack its bundle",
            )
            server.wf("secret", "put", "API_KEY", cwd=project, stdin="new value")
        finally:
            deploying.join(60)
        assert deployed and deployed[0] != v1
        server.trigger(project, "after", {})
        after = server.finished("after")
        assert after["versionId"] == deployed[0]
        assert after["output"] == {"key": "new value", "version": "v2"}


def test_a_secret_named_like_a_binding_does_not_stop_the_workflows(tmp_path: Path) -> None:
    project = write_project(tmp_path / "proj", "v1")
    with serving(tmp_path) as server:
        server.deploy(project)
        put = server.wf("secret", "put", "PIN", cwd=project, stdin="x", check=False)
        if put.returncode != 0:  # refusing the name is one right answer...
            assert "PIN" in one_line_error(put)
        # ...but either way the server keeps running and deploying its workflows.
        write_project(project, "v2")
        v2 = server.deploy(project)
        server.trigger(project, "after", {})
        after = server.finished("after")
        assert (after["status"], after["output"], after["versionId"]) == (
            "complete",
            {"version": "v2"},
            v2,
        )


# ---- the workflow views of wf serve ------------------------------------------------------------


def test_workflows_show_the_binding_and_class_of_the_active_version(tmp_path: Path) -> None:
    project = write_project(tmp_path / "proj", "v1")
    with serving(tmp_path) as server:
        v1 = server.deploy(project)
        workflow = server.api("/api/workflows/pin")
        assert (workflow["binding"], workflow["class_name"], workflow["version_id"]) == (
            "PIN",
            "PinWorkflow",
            v1,
        )
        described = server.wf("workflows", "describe", "pin", cwd=project).stdout
        assert "PinWorkflow" in described, described


def test_a_workflow_of_an_unloaded_version_still_has_its_versions_and_instances(
    tmp_path: Path,
) -> None:
    project = write_project(tmp_path / "proj", "v1")
    with serving(tmp_path) as server:
        v1 = server.deploy(project)
        server.trigger(project, "A", {})
        assert server.finished("A")["output"] == {"version": "v1"}
        toml = (project / "wf.toml").read_text()
        (project / "wf.toml").write_text(
            toml.replace('name = "pin"\nbinding', 'name = "other"\nbinding')
        )
        server.deploy(project)

        def unloaded() -> bool:
            return v1 not in server.bundles()

        wait_until(unloaded, timeout=15, what=f"version {v1} to be unloaded")
        # The contract: 404 only if no version ever had that workflow.
        reply = server.request("GET", "/api/workflows/pin/versions")
        assert reply.status == 200, reply.text
        assert [(v["id"], v["loaded"], v["unfinished"]) for v in reply.result] == [(v1, False, 0)]
        # The finished instance is still in the store: its details stay readable.
        assert server.instance("A")["output"] == {"version": "v1"}


def test_the_terminal_shows_what_the_api_did_once(tmp_path: Path) -> None:
    # The API's own changes (queued, paused, event sent, terminated) are printed by the
    # server, as wf dev prints them; the worker's (started, steps) beside them; none twice.
    project = write_project(tmp_path / "proj")
    with serving(tmp_path) as server:

        def reaches(status: str) -> None:
            wait_until(lambda: server.status("told") == status, what=f"told to be {status}")

        server.deploy(project)
        server.api("/api/workflows/pin/instances", "POST", {"id": "told", "params": {"wait": True}})
        reaches("waiting")
        server.api("/api/workflows/pin/instances/told/status", "PATCH", {"status": "pause"})
        reaches("paused")
        server.go("told")
        server.api("/api/workflows/pin/instances/told/status", "PATCH", {"status": "terminate"})
        reaches("terminated")
        said = {
            "queued": "pin/told ⌛ queued via api",
            "started": "pin/told ▶ started",
            "paused": "pin/told ⏸ paused",
            "event": 'pin/told 📤 event "go" sent',
            "terminated": "pin/told 🚫 terminated via api",
        }
        wait_until(lambda: said["terminated"] in server.output(), what="the terminated line")
        output = server.output()
        for what, line in said.items():
            assert output.count(line) == 1, (what, output)
