"""Run a documentation page as its reader would: in a fresh project folder, command by command.

The page shows the default ports (8787 for ``wf dev``, 8788 for ``wf serve``); the runner
gives each page ports of its own and puts them wherever the page says 8787 or 8788, so pages
run side by side. A ``postgres`` page gets a fresh database in place of the URL it shows.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeGuard

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - the docs tests run on 3.11 or newer
    import tomli as tomllib

from tests.docs.matching import mismatch, normalise
from tests.docs.pages import Block, Command, Page, Step, commands, exec_form, is_server
from tests.e2e.helpers import free_port

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
SHOWN_PORTS = {"dev": 8787, "serve": 8788}  # where wf dev / wf serve listen unless told
EXTRA_PORTS = (8789, 8790)  # for a second and third node of a cluster


WAIT_SECONDS = 30.0  # how long a wait-for waits for its line

TIMES = re.compile(r"\b\d{1,2}:\d{2}:\d{2}(?:\.\d+)?\b")
DURATIONS = re.compile(r"\b\d+(?:\.\d+)? ?ms\b")


def mask(text: str) -> str:
    """Clock times and millisecond durations as placeholders: a log shown on a page was
    printed at another time, at another speed."""
    return DURATIONS.sub("N ms", TIMES.sub("HH:MM:SS", text))


def is_log(item: Block | Step | None) -> TypeGuard[Block]:
    """A plain ``text`` block right after a ``wait-for``: lines the servers printed."""
    return isinstance(item, Block) and item.lang == "text" and item.title is None


class ExampleFailed(AssertionError):
    """An example on the page did not do what the page says."""


@dataclass
class Server:
    kind: str
    process: subprocess.Popen[bytes]
    log: Path
    # Per text waited for: the line after the one that matched. Waiting again for the same text
    # waits for a new line; another text may be found anywhere (waits need not come in order).
    seen: dict[str, int] = field(default_factory=dict)

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")


@dataclass
class PageRun:
    page: Page
    folder: Path
    database_url: str | None = None
    ports: dict[str, int] = field(default_factory=dict)
    servers: list[Server] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path = field(init=False)
    ran: int = 0
    started: int = 0

    def __post_init__(self) -> None:
        self.cwd = self.folder
        self.ports = {kind: free_port() for kind in SHOWN_PORTS}
        self.extra_ports = {shown: free_port() for shown in EXTRA_PORTS}
        self.env = {
            **os.environ,
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "NO_COLOR": "1",
            "COLUMNS": "100",
            "TERM": "dumb",
            "PYTHONUNBUFFERED": "1",
            "WRANGLER_SEND_METRICS": "false",
        }
        for name in ("WF_URL", "WF_DATABASE_URL", "WF_API_TOKEN", "VIRTUAL_ENV"):
            self.env.pop(name, None)
        if self.page.project:
            shutil.copytree(REPO / self.page.project, self.folder, dirs_exist_ok=True)

    # ---- what the page says, made true for this run

    def localise(self, text: str) -> str:
        ports = {shown: self.ports[kind] for kind, shown in SHOWN_PORTS.items()}
        ports.update(self.extra_ports)
        for shown, port in ports.items():
            for host in ("127.0.0.1", "localhost"):
                text = text.replace(f"{host}:{shown}", f"{host}:{port}")
            text = text.replace(f"--port {shown}", f"--port {port}")
        if self.page.postgres and self.database_url:
            text = text.replace(self.page.postgres, self.database_url)
        return text

    def where(self, line: int) -> str:
        path = self.page.path
        shown = path.relative_to(REPO) if path.is_relative_to(REPO) else path
        return f"{shown}:{line}"

    # ---- the steps

    def run(self) -> int:
        try:
            items = self.page.items
            for index, item in enumerate(items):
                if isinstance(item, Step):
                    self.step(item)
                    following = items[index + 1] if index + 1 < len(items) else None
                    if item.name == "wait-for" and is_log(following) and following.skip is None:
                        self.check_log(following)
                        self.ran += 1
                elif item.skip is None and not is_log(item) and self.block(item):
                    self.ran += 1
            self.stop_servers(check=True)
        finally:
            self.stop_servers(check=False)
        return self.ran

    def check_log(self, block: Block) -> None:
        """What the servers printed must show the block's lines (times masked), in order; other
        lines may come between them (servers interleave concurrent instances' lines)."""
        expected = ["..."]
        for line in block.code.splitlines():
            expected += [mask(self.localise(line)), "..."]
        deadline = time.monotonic() + 15
        while mismatch(expected, self.logs()) and time.monotonic() < deadline:
            time.sleep(0.1)
        self.check(expected, self.logs(), block.line)

    def logs(self) -> str:
        return mask("\n".join(server.output() for server in self.servers))

    def step(self, step: Step) -> None:
        if step.name == "kill":
            for server in self.servers:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(server.process.pid, signal.SIGKILL)
                server.process.wait(10)
            self.servers.clear()
        elif step.name == "sleep":
            time.sleep(float(step.argument))
        else:  # wait-for
            self.wait_for(step.argument, self.where(step.line))

    def block(self, block: Block) -> bool:
        """Do what the block says; whether it was an example run (not a file written)."""
        if block.title is not None and block.lang != "console":
            if block.title != "Output":  # an Output block is checked with the script before it
                target = self.cwd / block.title
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(self.localise(block.code), encoding="utf-8")
            return False
        if block.lang in ("python", "py"):
            self.script(block)
        elif block.lang == "console":
            for command in commands(block):
                self.command(command, block)
        elif block.lang in ("sh", "bash", "shell"):
            self.shell(self.localise(block.code), block, check_exit=True)
        elif block.lang == "toml":
            try:
                tomllib.loads(block.code)
            except tomllib.TOMLDecodeError as exc:
                problem = f"{self.where(block.line)}: TOML does not parse: {exc}"
                raise ExampleFailed(problem) from None
        else:
            return False
        return True

    def script(self, block: Block) -> None:
        done = subprocess.run(
            [sys.executable, "-"],
            input=self.localise(block.code),
            cwd=self.cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=block.timeout,
        )
        printed = done.stdout + done.stderr
        if (done.returncode != 0) != block.fails:
            raise ExampleFailed(
                f"{self.where(block.line)}: the script exited {done.returncode}:\n{printed}"
            )
        shown = self.output_after(block)
        if shown is not None:
            self.check(shown, printed, block.line)

    def output_after(self, block: Block) -> list[str] | None:
        items = self.page.items
        following = items[items.index(block) + 1 :]
        if following and isinstance(following[0], Block) and following[0].title == "Output":
            return self.localise(following[0].code).splitlines()
        return None

    def command(self, command: Command, block: Block) -> None:
        text = self.localise(command.text)
        words = shlex.split(text)
        if words and words[0] == "cd":
            if len(words) != 2:
                raise ExampleFailed(f"{self.where(block.line)}: `cd` takes one folder here")
            self.cwd = (self.cwd / words[1]).resolve()
            return
        if words and words[0] == "export" and len(words) >= 2 and "=" in words[1]:
            # bash works the value out, as the reader's shell would: $VARS, $(commands)
            name = words[1].partition("=")[0]
            self.env[name] = self.shell(f'{text}\nprintf %s "${{{name}}}"', block, True)
            return
        kind = is_server(text)
        if kind:
            self.start_server(kind, text, command, block)
            return
        printed = self.shell(text, block, check_exit=True)
        self.check([self.localise(line) for line in command.expected], printed, block.line)

    def shell(self, text: str, block: Block, check_exit: bool) -> str:
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", text],
            cwd=self.cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=block.timeout,
            stdin=subprocess.DEVNULL,
        )
        printed = done.stdout + done.stderr
        if done.returncode in (126, 127):  # not found or not runnable: no example "fails" so
            raise ExampleFailed(f"{self.where(block.line)}: `{text}`: {printed.strip()}")
        if check_exit and (done.returncode != 0) != block.fails:
            wanted = "fail" if block.fails else "succeed"
            raise ExampleFailed(
                f"{self.where(block.line)}: expected `{text}` to {wanted}; "
                f"it exited {done.returncode}:\n{printed}"
            )
        return printed

    def check(self, shown: list[str], printed: str, line: int) -> None:
        problem = mismatch(shown, printed)
        if problem:
            raise ExampleFailed(f"{self.where(line)}: {problem}")

    # ---- servers kept running for the rest of the page

    def start_server(self, kind: str, text: str, command: Command, block: Block) -> None:
        if "--port" not in text:
            text += f" --port {self.ports[kind]}"
        self.started += 1  # a server started after a kill keeps the crashed one's log
        log = self.folder.parent / f"{kind}-{self.started}.log"
        with log.open("wb") as sink:
            process = subprocess.Popen(
                ["bash", "-c", exec_form(text)],
                cwd=self.cwd,
                env=self.env,
                stdout=sink,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        server = Server(kind, process, log)
        self.servers.append(server)
        if kind == "dev":
            self.env["WF_URL"] = f"http://127.0.0.1:{self.ports['dev']}"
        self.wait_for("Dashboard:", self.where(block.line), [server], advance=False)
        expected = [self.localise(line) for line in command.expected]
        deadline = time.monotonic() + 15
        while mismatch(expected, server.output()) and time.monotonic() < deadline:
            time.sleep(0.1)
        self.check(expected, server.output(), block.line)

    def wait_for(
        self, text: str, where: str, servers: list[Server] | None = None, advance: bool = True
    ) -> None:
        """Until a server prints ``text``; ``advance``: a later wait for the same text looks only
        past that line (the page's wait-for steps do; the runner's own start-up wait does not)."""
        deadline = time.monotonic() + WAIT_SECONDS
        wanted = normalise(self.localise(text))
        while time.monotonic() < deadline:
            for server in servers or self.servers:
                lines = server.output().splitlines()
                for number in range(server.seen.get(wanted, 0), len(lines)):
                    if wanted in normalise(lines[number]):
                        if advance:
                            server.seen[wanted] = number + 1
                        return
                if server.process.poll() is not None:
                    raise ExampleFailed(f"{where}: the server exited:\n{server.output()}")
            time.sleep(0.05)
        logs = "\n".join(server.output() for server in self.servers)
        raise ExampleFailed(f"{where}: the server never printed {text!r}:\n{logs}")

    def stop_servers(self, check: bool) -> None:
        """Stop what the page left running (Ctrl-C, as a reader would). ``check``: each must
        still have been running, and must stop cleanly, without a traceback."""
        for server in self.servers:
            died = server.process.poll()
            if check and died is not None:
                raise ExampleFailed(
                    f"{self.page.path.name}: wf {server.kind} exited ({died}) before the page "
                    f"ended:\n{server.output()}"
                )
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.process.pid, signal.SIGINT)
                try:
                    server.process.wait(15)
                finally:  # whatever is left of its group
                    os.killpg(server.process.pid, signal.SIGKILL)
                    server.process.wait(10)
            if check and "Traceback (most recent call last)" in server.output():
                raise ExampleFailed(
                    f"{self.page.path.name}: wf {server.kind} printed a traceback:\n"
                    f"{server.output()}"
                )
        self.servers.clear()
