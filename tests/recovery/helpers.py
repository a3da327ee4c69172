"""Child processes running ``tests/crash_child.py``, and read-only looks at their database."""

from __future__ import annotations

import contextlib
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, TypeVar

ROOT = Path(__file__).resolve().parents[2]
CHILD = ROOT / "tests" / "crash_child.py"
T = TypeVar("T")


class Child:
    """One run of the child program; its output is collected by reader threads as it comes."""

    def __init__(self, *args: Any) -> None:
        self.args = [str(a) for a in args]
        self.started_at = time.time()
        self.proc = subprocess.Popen(
            [sys.executable, str(CHILD), *self.args],
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.out: list[str] = []
        self.err: list[str] = []
        self._readers = [
            threading.Thread(target=self._read, args=(self.proc.stdout, self.out), daemon=True),
            threading.Thread(target=self._read, args=(self.proc.stderr, self.err), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _read(stream: IO[str] | None, into: list[str]) -> None:
        assert stream is not None
        for line in stream:
            into.append(line.rstrip("\n"))

    @property
    def pid(self) -> int:
        return self.proc.pid

    def line(self, prefix: str, timeout: float = 15.0) -> str:
        """The first output line starting with ``prefix``, waiting for it."""
        deadline = time.monotonic() + timeout
        while True:
            for line in list(self.out):
                if line.startswith(prefix):
                    return line
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self._join()
                for line in self.out:
                    if line.startswith(prefix):
                        return line
                raise AssertionError(f"child never printed {prefix!r}; {self.describe()}")
            time.sleep(0.005)

    def has_line(self, prefix: str) -> bool:
        return any(line.startswith(prefix) for line in list(self.out))

    def wait(self, timeout: float) -> int | None:
        """The exit code, or None if it is still running after ``timeout`` seconds."""
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        self._join()
        return code

    def kill(self) -> int:
        """SIGKILL it (if still running) and reap it; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        code = self.proc.wait()
        self._join()
        return code

    def finish(self, timeout: float = 30.0) -> int:
        """Wait for it to exit by itself; kill it if it does not within ``timeout``."""
        code = self.wait(timeout)
        if code is None:
            self.kill()
            raise AssertionError(f"child still running after {timeout}s; {self.describe()}")
        return code

    def _join(self) -> None:
        for reader in self._readers:
            reader.join(5)

    def close(self) -> None:
        self.kill()
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()

    def describe(self) -> str:
        err = "\n".join(self.err[-30:])
        return (
            f"child {self.args} pid {self.pid} exit {self.proc.returncode}; "
            f"stdout {self.out[-10:]}; stderr:\n{err}"
        )

    def __enter__(self) -> Child:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextlib.contextmanager
def children() -> Iterator[list[Child]]:
    """A list to start children into; every one of them is killed and reaped at the end."""
    started: list[Child] = []
    try:
        yield started
    finally:
        for child in started:
            child.close()


def query(db: Path, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Read the database as it is on disk, read-only, without any engine."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


def poll(fn: Callable[[], T], timeout: float = 15.0, what: str = "condition") -> T:
    """Call ``fn`` until it returns something truthy; a database not created yet counts as no."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = fn()
        except sqlite3.OperationalError:  # no file or no tables yet
            result = None
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout}s")
        time.sleep(0.01)


@dataclass(frozen=True)
class Mark:
    kind: str  # run, ret or err
    instance: str
    step: str  # display name, e.g. "fetch-1"
    attempt: int
    token: str


def read_marks(path: Path) -> list[Mark]:
    if not path.exists():
        return []
    marks = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        fields = line.split("\t")
        assert len(fields) == 5, f"{path}:{number}: torn marker line {line!r}"
        marks.append(Mark(fields[0], fields[1], fields[2], int(fields[3]), fields[4]))
    return marks


def runs_by_step(marks: list[Mark]) -> dict[tuple[str, str], list[Mark]]:
    """The ``run`` marks (body starts) of each (instance, step), in the order they happened."""
    runs: dict[tuple[str, str], list[Mark]] = defaultdict(list)
    for mark in marks:
        if mark.kind == "run":
            runs[(mark.instance, mark.step)].append(mark)
    return runs
