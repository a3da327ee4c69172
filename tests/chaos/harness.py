"""The moving parts of the chaos suite: ``wf dev`` as a killable process group, and the REST
client that creates instances and sends events while the server keeps dying under it."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter, deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tests.chaos import workload

READY_LINE = "➜ Server:"  # wf dev prints it once the child serves requests
REQUEST_TIMEOUT = 5.0


# ---- HTTP -----------------------------------------------------------------------------------
def request(
    url: str, method: str = "GET", body: Any = None, token: str | None = None
) -> tuple[int, Any]:
    """``(HTTP status, decoded envelope)``; raises ``OSError``/``HTTPException``/``ValueError``
    when there is no complete answer (refused, reset, timed out, cut short). ``token``: sent as
    a bearer token (wf serve's)."""
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=REQUEST_TIMEOUT) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, json.load(exc)


NO_ANSWER = (OSError, http.client.HTTPException, ValueError)


def error_code(envelope: Any) -> int | None:
    try:
        return int(envelope["errors"][0]["code"])
    except (KeyError, IndexError, TypeError, ValueError):
        return None


# ---- processes ------------------------------------------------------------------------------
def group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes of a process group, from /proc; on a system without /proc,
    ``[pgid]`` while the group answers signal 0."""
    if not os.path.isdir("/proc/self"):
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return []
        return [pgid]
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


class Server:
    """One life of ``python -m wf dev --port P`` in its own session (supervisor and child)."""

    def __init__(self, project: Path, port: int, log: Path) -> None:
        self.project = project
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log = log
        env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "120"}
        env.pop("WF_URL", None)
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "wf", "dev", "--port", str(port)],
                cwd=project,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=env,
            )
        self.started = time.monotonic()
        self.pgid = self.process.pid

    def output(self, tail: int = 40) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-tail:])

    def serving(self) -> bool:
        """The child printed its ready banner (it serves requests)."""
        return self.log.exists() and READY_LINE in self.log.read_text(errors="replace")

    def has_child(self) -> bool:
        return any(pid != self.pgid for pid in group_members(self.pgid))

    def healthy(self) -> bool:
        try:
            code, body = request(self.url + "/api/health")
        except NO_ANSWER:
            return False
        return code == 200 and body["result"]["status"] == "ok"

    def wait_healthy(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            if self.healthy():
                return True
            time.sleep(0.03)
        return False

    def kill(self) -> None:
        """SIGKILL the whole group at once (a crash of the server), then wait until none of its
        processes is left, so nothing of it can write after this returns."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pgid, signal.SIGKILL)
        self.process.wait(10)
        self.wait_gone()

    def stop(self, timeout: float = 20.0) -> int | None:
        """Ctrl-C (SIGINT to the group), as a user stops it; SIGKILL if it does not stop in
        ``timeout``. Returns the supervisor's exit code (None if it had to be killed)."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pgid, signal.SIGINT)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                return None
        self.wait_gone(timeout)
        if group_members(self.pgid):
            self.kill()
            return None
        return self.process.returncode

    def wait_gone(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while group_members(self.pgid) and time.monotonic() < deadline:
            time.sleep(0.005)
        if group_members(self.pgid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pgid, signal.SIGKILL)
            raise AssertionError(f"processes of wf dev group {self.pgid} outlived SIGKILL")


# ---- the client -----------------------------------------------------------------------------
class Client(threading.Thread):
    """Creates the planned instances over REST, one request at a time, as they are released,
    and sends each instance that waits for an event its event a moment after its creation was
    acknowledged. Requests that get no answer are sent again later, unchanged.

    ``urls``: the server, or the nodes of a cluster, which get the requests in turn (a request
    sent again goes to the next one); ``token``: the bearer token they want, if any."""

    def __init__(
        self,
        urls: str | Sequence[str],
        units: list[workload.Unit],
        numbers: dict[str, int],
        seed: int,
        *,
        token: str | None = None,
        name: str = "chaos-client",
    ) -> None:
        super().__init__(name=name, daemon=True)
        self.urls = [urls] if isinstance(urls, str) else list(urls)
        self.token = token
        self._turn = 0
        self.units = units
        self.numbers = numbers
        self.rng = random.Random(seed)
        self.released = 0  # units the test lets the client send (only ever grows)
        self.inflight = 0  # requests sent and not answered yet
        self.creating = threading.Event()  # set as each creation request is sent
        self.acked: dict[str, float] = {}  # instance id -> when its creation was acknowledged
        self.events_sent: set[str] = set()
        self.stats: Counter[str] = Counter()
        self.problems: list[str] = []  # answers that must never happen
        self._pending: deque[int] = deque()
        self._next_unit = 0
        self._busy = False  # a unit taken from _pending is being sent
        self._retried: set[int] = set()
        self._event_retried: set[str] = set()
        self._events: list[tuple[float, str]] = []  # (due, instance id)
        self._lock = threading.Lock()
        self._halt = threading.Event()

    # -- what the test reads
    def acked_ids(self) -> set[str]:
        with self._lock:
            return set(self.acked)

    def release_one_more(self) -> bool:
        """Let one more unit go now, if none waits to be sent; False if none is left."""
        if not self._pending and self._next_unit >= self.released:
            if self.released >= len(self.units):
                return False
            self.released += 1
        return True

    def done(self) -> bool:
        with self._lock:
            every_unit = self._next_unit == len(self.units) and not self._pending
            return every_unit and not self._busy and not self._events

    def stop(self) -> None:
        self._halt.set()
        self.join(REQUEST_TIMEOUT * 2)

    # -- the loop
    def run(self) -> None:
        while not self._halt.is_set():
            while self._next_unit < min(self.released, len(self.units)):
                self._pending.append(self._next_unit)
                self._next_unit += 1
            now = time.monotonic()
            with self._lock:
                due = [e for e in self._events if e[0] <= now]
            if due:
                ok = self._send_event(min(due)[1])
            elif self._pending:
                with self._lock:
                    self._busy = True
                    index = self._pending.popleft()
                try:
                    ok = self._create(index)
                finally:
                    with self._lock:
                        self._busy = False
            else:
                time.sleep(0.01)
                continue
            # Spread requests over a server's life; back off a little while nobody answers.
            time.sleep(self.rng.uniform(0.02, 0.25) if ok else self.rng.uniform(0.03, 0.1))

    def _base(self) -> str:
        """The instances' URL on the next server in turn."""
        url = self.urls[self._turn % len(self.urls)]
        self._turn += 1
        return f"{url}/api/workflows/{workload.WORKFLOW_NAME}/instances"

    def _call(self, path: str, body: Any, creation: bool = False) -> tuple[int, Any] | None:
        self.inflight += 1
        if creation:
            self.creating.set()
        try:
            return request(self._base() + path, "POST", body, self.token)
        except NO_ANSWER as exc:
            self.stats[f"no answer ({type(exc).__name__})"] += 1
            return None
        finally:
            self.inflight -= 1

    def _create(self, index: int) -> bool:
        unit = self.units[index]
        self.stats["creation requests"] += 1
        if index in self._retried:
            self.stats["creation retries"] += 1
        answer = self._call("/batch" if unit.batch else "", unit.body(self.numbers), creation=True)
        if answer is None or answer[0] >= 500:
            if answer is not None:
                self.stats[f"HTTP {answer[0]}"] += 1
            self._retried.add(index)
            self._pending.append(index)
            return False
        code, envelope = answer
        if code == 201:
            self.stats["201"] += 1
        elif code == 400 and not unit.batch and error_code(envelope) == 10405:
            self.stats["exists on retry"] += 1  # an earlier, unanswered request created it
            if index not in self._retried:
                self.problems.append(f"first request for {unit.ids[0]} answered 10405: {envelope}")
        else:
            self.problems.append(f"creating {list(unit.ids)} answered {code}: {envelope}")
            return True
        now = time.monotonic()
        with self._lock:
            for instance_id in unit.ids:
                self.acked.setdefault(instance_id, now)
                if workload.needs_event(self.numbers[instance_id]):
                    # Sometimes before the instance waits (buffered), sometimes after.
                    self._events.append((now + self.rng.uniform(0.0, 2.5), instance_id))
        return True

    def _send_event(self, instance_id: str) -> bool:
        path = f"/{instance_id}/events/{workload.EVENT_TYPE}"
        answer = self._call(path, workload.event_payload(instance_id))
        done = False
        if answer is None or answer[0] >= 500:
            if answer is not None:
                self.stats[f"HTTP {answer[0]}"] += 1
            delay = 0.1
        elif answer[0] == 200:
            self.stats["events sent"] += 1
            done = True
        elif answer[0] == 409 and error_code(answer[1]) == 10406:
            # Finished already: only after an earlier send whose answer was lost.
            self.stats["event 409 (instance finished)"] += 1
            if instance_id not in self._event_retried:
                self.problems.append(f"event for {instance_id} answered 409: {answer[1]}")
            done = True
        else:
            self.problems.append(f"event for {instance_id} answered {answer[0]}: {answer[1]}")
            done = True
        with self._lock:
            self._events = [e for e in self._events if e[1] != instance_id]
            if done:
                self.events_sent.add(instance_id)
            else:
                self._event_retried.add(instance_id)
                self._events.append((time.monotonic() + delay, instance_id))
        return done
