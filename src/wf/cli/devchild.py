"""Entry point of a ``wf dev`` child process: ``python -m wf.cli.devchild <options json>``."""

from __future__ import annotations

import asyncio
import sys

from wf.devserver.child import ChildOptions, serve
from wf.devserver.logs import configure
from wf.devserver.state import ServerState
from wf.engine.runner import Notice


class TerminalReporter:
    """Prints the dev server's story to the terminal, styled by ``wf.cli.render``."""

    def ready(self, state: ServerState, url: str, state_dir: str, first: bool) -> None:
        from wf.cli import render

        workflows = [(w.name, w.binding, w.class_name) for w in state.workflows]
        render.banner(None, url, state.project_name, workflows, state_dir, state.version_id)

    def reloaded(self, changes: list[str]) -> None:
        from wf.cli import render

        render.print_info(f"reloaded after changes to {', '.join(changes)}")

    def notice(self, notice: Notice) -> None:
        from wf.cli import render

        render.print_notice(notice)

    def error(self, message: str) -> None:
        from wf.cli import render

        render.print_error_line(message)

    def info(self, message: str) -> None:
        from wf.cli import render

        render.print_info(message)


def main() -> None:
    configure("wf")
    options = ChildOptions.from_json(sys.argv[1])
    try:
        code = asyncio.run(serve(options, TerminalReporter()))
    except KeyboardInterrupt:
        code = 0
    sys.exit(code)


if __name__ == "__main__":
    main()
