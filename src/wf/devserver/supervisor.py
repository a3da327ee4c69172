"""The ``wf dev`` parent: bind the socket once, watch the project, start a fresh child per change.

The listening socket outlives every child, so while one child stops and the next starts, new
connections wait in the kernel's backlog instead of being refused.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from watchfiles import Change, DefaultFilter, watch

from wf.devserver.child import ChildOptions
from wf.errors import WfError
from wf.project import CONFIG_NAME, DEV_VARS_NAME, IGNORED_DIRS

STOP_TIMEOUT = 10.0  # a child gets this long to stop after SIGTERM, then SIGKILL
CRASH_BACKOFF = 1.0


class PortInUse(WfError):
    code = "dev.port_in_use"


class ProjectFilter(DefaultFilter):
    """Python sources, wf.toml and .dev.vars; never state, environments, caches or databases."""

    def __init__(self, root: Path, state_dir: str) -> None:
        super().__init__(ignore_dirs=(*self.ignore_dirs, *IGNORED_DIRS, state_dir))
        self.root = root

    def __call__(self, change: Change, path: str) -> bool:
        name = os.path.basename(path)
        if name in (CONFIG_NAME, DEV_VARS_NAME):
            return True
        return name.endswith(".py") and super().__call__(change, path)


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno in (98, 48):  # EADDRINUSE on Linux, macOS
            raise PortInUse(
                f"port {port} on {host} is in use; stop the other server or pass --port"
            ) from None
        raise WfError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


class Supervisor:
    def __init__(
        self,
        config_path: Path,
        host: str,
        port: int,
        state_dir: str,
        child_command: Sequence[str],
        say: Callable[[str], None],
    ) -> None:
        self.config_path = config_path
        self.root = config_path.parent
        self.host = host
        self.port = port
        self.state_dir = state_dir
        self.child_command = list(child_command)
        self.say = say
        self.stop_event = threading.Event()
        self._sock: socket.socket | None = None
        self._generation = 0
        self._retiring: list[threading.Thread] = []

    def _spawn(self, changes: list[str]) -> tuple[subprocess.Popen[bytes], int]:
        assert self._sock is not None
        read_end, write_end = os.pipe()
        options = ChildOptions(
            config_path=str(self.config_path),
            listen_fd=self._sock.fileno(),
            parent_fd=read_end,
            host=self.host,
            port=self.port,
            generation=self._generation,
            changes=changes,
        )
        self._generation += 1
        child = subprocess.Popen(
            [*self.child_command, options.to_json()],
            pass_fds=(self._sock.fileno(), read_end),
            cwd=self.root,
        )
        os.close(read_end)
        return child, write_end

    def _stop_child(self, child: subprocess.Popen[bytes], pipe: int) -> None:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
        try:
            child.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        os.close(pipe)

    def _retire(self, child: subprocess.Popen[bytes], pipe: int) -> None:
        """Stop an old child in the background while the new one starts."""
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
        reaper = threading.Thread(target=self._stop_child, args=(child, pipe), daemon=True)
        reaper.start()
        self._retiring = [t for t in self._retiring if t.is_alive()] + [reaper]

    def run(self) -> int:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, lambda *_: self.stop_event.set())
        self._sock = bind(self.host, self.port)
        self.port = self._sock.getsockname()[1]
        child, pipe = self._spawn([])
        crashed_at: float | None = None
        watch_filter = ProjectFilter(self.root, self.state_dir)
        try:
            for changes in watch(
                self.root,
                watch_filter=watch_filter,
                stop_event=self.stop_event,
                yield_on_timeout=True,
                rust_timeout=300,
                debounce=400,
            ):
                if self.stop_event.is_set():
                    break
                if changes:
                    names = sorted({self._relative(path) for _, path in changes})
                    self._retire(child, pipe)
                    child, pipe = self._spawn(names)
                    crashed_at = None
                    continue
                code = child.poll()
                if code is None:
                    continue
                # The child died on its own (a crash, or killed): start another, but do not spin.
                now = time.monotonic()
                if crashed_at is None:
                    crashed_at = now
                    self.say(f"the server process exited with code {code}; restarting it")
                if now - crashed_at >= CRASH_BACKOFF:
                    os.close(pipe)
                    child, pipe = self._spawn([])
                    crashed_at = None
        except KeyboardInterrupt:
            pass
        finally:
            self._stop_child(child, pipe)
            for reaper in self._retiring:  # old children too: none may outlive wf dev
                reaper.join(STOP_TIMEOUT + 5)
            self._sock.close()
        return 0

    def _relative(self, path: str) -> str:
        try:
            return str(Path(path).relative_to(self.root))
        except ValueError:
            return path


def child_command() -> list[str]:
    return [sys.executable, "-m", "wf.cli.devchild"]
