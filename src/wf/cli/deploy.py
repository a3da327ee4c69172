"""``wf deploy``: bundle the project found upward from here and make it a ``wf serve`` server's
active version.

The server answers once it has imported the bundle in a fresh process, so a bundle that does not
import is refused (one line naming file and line) and the active version stays.
"""

from __future__ import annotations

from pathlib import Path

from wf.cli.exit import CliError, exits
from wf.cli.options import (
    JsonOption,
    ServeUrlOption,
    TokenOption,
    make_serve_client,
    print_json,
    serve_errors,
)


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
