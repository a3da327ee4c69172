"""Entry point of a ``wf dev`` child process: ``python -m wf.cli.devchild <options json>``."""

from __future__ import annotations

import asyncio
import os
import sys
import time

from wf.cli.notices import NoticePrinter
from wf.devserver.child import DATABASE_VARIABLE, ChildOptions, serve
from wf.devserver.logs import configure
from wf.devserver.state import ServerState
from wf.engine.runner import Notice


class TerminalReporter:
    """Prints the dev server's story to the terminal, styled by ``wf.cli.render``; notices at
    a readable rate (``wf.cli.notices``)."""

    def __init__(self) -> None:
        self._notices = NoticePrinter()

    def ready(
        self, state: ServerState, url: str, state_dir: str, first: bool, database: str | None
    ) -> None:
        from wf.cli import render

        self.flush()
        workflows = [(w.name, w.binding, w.class_name) for w in state.workflows]
        render.banner(
            None,
            url,
            state.project_name,
            workflows,
            state_dir,
            state.version_id,
            database,
            _next_firings(state),
        )

    def reloaded(self, changes: list[str]) -> None:
        from wf.cli import render

        self.flush()
        render.print_info(f"reloaded after changes to {', '.join(changes)}")

    def notice(self, notice: Notice) -> None:
        self._notices.notice(notice)

    def error(self, message: str) -> None:
        from wf.cli import render

        self.flush()
        render.print_error_line(message)

    def info(self, message: str) -> None:
        from wf.cli import render

        self.flush()
        render.print_info(message)

    def flush(self) -> None:
        """Print the notices held so far."""
        self._notices.flush()


def _next_firings(state: ServerState) -> list[tuple[str, str, float | None]]:
    """Each schedule of the project with its next firing (UTC), for the banner."""
    from wf.engine.cron import Cron

    now = time.time()
    return [
        (w.name, cron, Cron(cron).next_after(now)) for w in state.workflows for cron in w.schedules
    ]


def main() -> None:
    configure("wf")
    # Taken out of the environment: the workflows this process imports need not see it.
    database = os.environ.pop(DATABASE_VARIABLE, None) or None
    options = ChildOptions.from_json(sys.argv[1], database)
    reporter = TerminalReporter()
    try:
        code = asyncio.run(serve(options, reporter))
    except KeyboardInterrupt:
        code = 0
    finally:
        reporter.flush()  # what the last iteration of the loop told
    sys.exit(code)


if __name__ == "__main__":
    main()
