"""``wf deploy``: bundle the project found upward from here and make it a ``wf serve`` server's
active version.

The server answers once it has imported the bundle in a fresh process, so a bundle that does not
import is refused (one line naming file and line) and the active version stays.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from wf.cli.exit import CliError, exits
from wf.cli.options import (
    JsonOption,
    ServeUrlOption,
    TokenOption,
    make_serve_client,
    print_json,
    serve_errors,
)

if TYPE_CHECKING:
    from wf.project import Project


@exits
def deploy(
    url: ServeUrlOption = None,
    token: TokenOption = None,
    json_output: JsonOption = False,
) -> None:
    """Deploy the project to a wf serve server.

    Uploads the folder of wf.toml (not hidden folders, virtualenvs or .dev.vars) and makes it
    the active version. New instances run it; running ones stay on their version until
    upgraded (wf instances upgrade NAME ID)."""
    from wf.bundle import build_bundle
    from wf.project import find_config, load_project

    client = make_serve_client(url, token)
    config = find_config()
    if config is None:
        raise CliError(
            f"no wf.toml in {Path.cwd()} or its parents; create a project with `wf init`"
        )
    project = load_project(config)
    _parses(project)
    with serve_errors(client):
        client.health()  # a cheap authenticated call: a wrong token or address is told first
    bundle = build_bundle(project)
    if not json_output:
        from wf.cli import render

        render.print_upload(bundle.files, bundle.skipped)
    with serve_errors(client):
        result = client.deploy(bundle.data, bundle.sha256)
    if json_output:
        print_json(result)
        return
    render.print_deployed(result)


def _parses(project: Project) -> None:
    """Refuse a main module that does not parse before anything is uploaded (the server would
    refuse it only after the upload, in the same words)."""
    try:
        compile(project.main.read_bytes(), project.main_label, "exec", dont_inherit=True)
    except SyntaxError as exc:
        where = f"{project.main_label}:{exc.lineno}" if exc.lineno else project.main_label
        raise CliError(f"{where}: SyntaxError: {exc.msg}") from None
    except (OSError, ValueError):
        return  # unreadable here, or null bytes: the server says what it makes of it
