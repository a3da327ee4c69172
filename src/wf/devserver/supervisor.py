"""The ``wf dev`` parent: bind the socket once, watch the project, start a fresh child per change.

The listening socket outlives every child, so while one child stops and the next starts, new
connections wait in the kernel's backlog instead of being refused; open connections are handed
from the old child to the new one (``wf.devserver.handoff``), so keep-alive clients see nothing.
"""

from __future__ import annotations

import contextlib
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

from wf.devserver.child import ChildOptions, reload_grace
from wf.errors import WfError
from wf.project import CONFIG_NAME, DEV_VARS_NAME, IGNORED_DIRS

STOP_TIMEOUT = 10.0  # a child gets this long to stop after SIGTERM, then SIGKILL
KEEP_INTERVAL = 0.1  # how often the supervisor looks after its children
# A retired child answers its requests in progress, then stops: it gets this long, plus the
# reload grace its running step attempts get (then it is killed).
HANDOVER_TIMEOUT = 30.0
CRASH_BACKOFF = 1.0
WATCHDOG_SECONDS = 8.0  # a child silent this long after it started serving is hung


class _Child:
    """A child process, the socket the supervisor talks to it on (its end closing tells the
    child the supervisor is gone), and the pipe its heartbeats come back on."""

    def __init__(
        self, process: subprocess.Popen[bytes], control: socket.socket, beats: int
    ) -> None:
        self.process = process
        self.control = control
        self.beats = beats
        self.last_beat: float | None = None  # armed once it has loaded the project
        self.killed_as_hung = False
        self.started = time.monotonic()
        self.slow_start_told = False
        # The sending end of its inbox, until whoever hands it connections has it (then closed,
        # so that the child sees the end of what it will be handed).
        self.inbox_sender: socket.socket | None = None

    def _read_beats(self) -> None:
        try:
            if os.read(self.beats, 4096):
                self.last_beat = time.monotonic()
        except (BlockingIOError, OSError):
            pass

    def ready(self) -> bool:
        """It has loaded the project and can take over (its first heartbeat came)."""
        self._read_beats()
        return self.last_beat is not None

    def hung(self) -> bool:
        """No heartbeat for ``WATCHDOG_SECONDS`` since its first."""
        self._read_beats()
        if self.last_beat is None or self.process.poll() is not None:
            return False
        if time.monotonic() - self.last_beat > WATCHDOG_SECONDS:
            self.killed_as_hung = True
            return True
        return False

    def hand_over_to(self, successor_inbox: socket.socket) -> bool:
        """Tell the child to stop and give its connections to the successor whose inbox's
        sending end this is. False if the child is gone."""
        try:
            socket.send_fds(self.control, [b"h"], [successor_inbox.fileno()])
            return True
        except OSError:
            return False

    def close_inbox(self) -> None:
        if self.inbox_sender is not None:
            self.inbox_sender.close()
            self.inbox_sender = None

    def close(self) -> None:
        self.close_inbox()
        with contextlib.suppress(OSError):
            self.control.close()
        with contextlib.suppress(OSError):
            os.close(self.beats)
        self.beats = -1


class PortInUse(WfError):
    """wf dev's port is taken by another program."""

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
        database: str | None = None,
    ) -> None:
        """``database``: ``--database`` or ``WF_DATABASE_URL``, checked; None: wf.toml says
        (each child reads it, so an edit of ``[engine] database`` is followed)."""
        self.config_path = config_path
        self.database = database
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
        self._next: _Child | None = None  # started for a change, not serving yet
        self._lock = threading.Lock()  # the watcher's thread and the keeper's share the children
        self._crashed_at: float | None = None
        self._superseded: list[_Child] = []  # started for older changes, not serving yet

    def _spawn(self, changes: list[str], after_crash: bool = False) -> _Child:
        """Start a child, keeping the sending end of its inbox (for its predecessors'
        connections) until they have it."""
        assert self._sock is not None
        control, child_control = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        inbox_sender, inbox = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        beat_read, beat_write = os.pipe()
        options = ChildOptions(
            config_path=str(self.config_path),
            listen_fd=self._sock.fileno(),
            control_fd=child_control.fileno(),
            inbox_fd=inbox.fileno(),
            heartbeat_fd=beat_write,
            host=self.host,
            port=self.port,
            generation=self._generation,
            changes=changes,
            after_crash=after_crash,
            database=self.database,
        )
        self._generation += 1
        try:
            process = subprocess.Popen(
                [*self.child_command, options.to_json()],
                env=options.environment(os.environ),
                pass_fds=(self._sock.fileno(), child_control.fileno(), inbox.fileno(), beat_write),
                cwd=self.root,
            )
        except BaseException:
            for end in (control, inbox_sender):
                end.close()
            raise
        finally:
            child_control.close()
            inbox.close()
            os.close(beat_write)
        os.set_blocking(beat_read, False)
        child = _Child(process, control, beat_read)
        child.inbox_sender = inbox_sender
        return child

    def _start(self, after_crash: bool = False) -> _Child:
        """A child with no predecessor to take connections from."""
        child = self._spawn([], after_crash=after_crash)
        child.close_inbox()
        return child

    def _stop_child(self, child: _Child) -> None:
        if child.process.poll() is None:
            child.process.send_signal(signal.SIGTERM)
        self._reap(child, STOP_TIMEOUT)

    def _reap(self, child: _Child, timeout: float) -> None:
        try:
            child.process.wait(timeout)
        except subprocess.TimeoutExpired:
            child.process.kill()
            child.process.wait()
        child.close()

    def _reload(self, changes: list[str]) -> None:
        """Start the next child. The serving one goes on until the new one has loaded; only then
        is it told to hand its connections over (``_take_over``), so a new child that crashes or
        blocks while importing the project costs no client anything."""
        if self._next is not None:  # superseded before it served: it hands over too, later
            self._superseded.append(self._next)
        self._next = self._spawn(changes)

    def _take_over(self, child: _Child) -> _Child:
        """Once the next child is ready, the older ones stop accepting, hand it their connections
        and stop; it is the serving child from then on. Returns the serving child."""
        new = self._next
        if new is None:
            return child
        if new.ready():
            assert new.inbox_sender is not None
            for old in (child, *self._superseded):
                old.close_inbox()  # nothing more will be handed to it
                self._retire(old, new.inbox_sender)
            new.close_inbox()
            self._superseded = []
            self._next = None
            return new
        code = new.process.poll()
        if code is not None:
            new.close()
            # One it superseded may serve yet, and take over when it does.
            self._next = self._superseded.pop() if self._superseded else None
            if self._next is None:
                self.say(
                    f"the server process for the new code exited with code {code} before it "
                    "served; the previous code keeps serving until the next change"
                )
        elif not new.slow_start_told and time.monotonic() - new.started > WATCHDOG_SECONDS:
            new.slow_start_told = True
            self.say(
                f"the new code has not started serving after {WATCHDOG_SECONDS:.0f} s (does "
                "importing it block?); the previous code keeps serving"
            )
        return child

    def _retire(self, old: _Child, successor_inbox: socket.socket) -> None:
        """Tell ``old`` to hand its connections to the child whose inbox this is, and reap it."""
        handed = old.hand_over_to(successor_inbox)
        # No SIGTERM after a hand-over: it would race the message and close the connections.
        if handed:
            reaper = threading.Thread(
                target=self._reap, args=(old, HANDOVER_TIMEOUT + reload_grace()), daemon=True
            )
        else:  # it is going or gone already
            reaper = threading.Thread(target=self._stop_child, args=(old,), daemon=True)
        reaper.start()
        self._retiring = [t for t in self._retiring if t.is_alive()] + [reaper]

    def run(self) -> int:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, lambda *_: self.stop_event.set())
        self._sock = bind(self.host, self.port)
        self.port = self._sock.getsockname()[1]
        self._child = self._start()
        # The children are looked after on a clock of their own: the watcher yields only for
        # changes (or after 300 ms without any file event, which a busy database never allows).
        keeper = threading.Thread(target=self._keep, name="wf-dev-keeper", daemon=True)
        keeper.start()
        watch_filter = ProjectFilter(self.root, self.state_dir)
        try:
            for changes in watch(
                self.root,
                watch_filter=watch_filter,
                stop_event=self.stop_event,
                rust_timeout=300,
                debounce=400,
            ):
                if self.stop_event.is_set():
                    break
                with self._lock:
                    self._reload(sorted({self._relative(path) for _, path in changes}))
        except KeyboardInterrupt:
            pass
        finally:
            self.stop_event.set()
            keeper.join(5)
            with self._lock:
                for other in (self._next, *self._superseded):
                    if other is not None:
                        self._stop_child(other)
                self._stop_child(self._child)
            for reaper in self._retiring:  # old children too: none may outlive wf dev
                reaper.join(HANDOVER_TIMEOUT + reload_grace() + 5)
            self._sock.close()
        return 0

    def _keep(self) -> None:
        while not self.stop_event.wait(KEEP_INTERVAL):
            with self._lock:
                if not self.stop_event.is_set():
                    self._look_after()

    def _look_after(self) -> None:
        """Promote the next child once it is ready, replace a hung or dead one."""
        child = self._child = self._take_over(self._child)
        if child.hung():
            # User code blocks the event loop (an endless loop in run(), say): the API is dead
            # too. Kill it; the next child suspects what it was running.
            self.say(
                f"the server process stopped answering for {WATCHDOG_SECONDS:.0f} s "
                "(is a step or run() blocking the event loop?); restarting it"
            )
            child.process.kill()
            child.process.wait()
        code = child.process.poll()
        if code is None:
            return
        if self._next is not None:
            # It died while the next one was starting: that one takes over at once.
            self.say(f"the server process exited with code {code}")
            child.close()
            self._child = self._next
            self._child.close_inbox()  # nobody will hand it anything
            self._next = None
            for old in self._superseded:
                self._stop_child(old)
            self._superseded = []
            self._crashed_at = None
            return
        # The child died on its own (a crash, or killed): start another, but do not spin.
        now = time.monotonic()
        if self._crashed_at is None:
            self._crashed_at = now
            if not child.killed_as_hung:
                self.say(f"the server process exited with code {code}; restarting it")
        if now - self._crashed_at >= CRASH_BACKOFF:
            child.close()
            self._child = self._start(after_crash=True)
            self._crashed_at = None

    def _relative(self, path: str) -> str:
        try:
            return str(Path(path).relative_to(self.root))
        except ValueError:
            return path


def child_command() -> list[str]:
    return [sys.executable, "-m", "wf.cli.devchild"]
