"""Options every server command shares, and where the server's address comes from.

``--url``, else ``WF_URL``, else ``http://<[dev].host>:<[dev].port>`` of the wf.toml found upward
from the current folder, else ``http://127.0.0.1:8787``.

Commands whose routes only ``wf serve`` has (deploy, versions, secret, instances upgrade) use
``--url``, else ``WF_URL``, else ``http://127.0.0.1:8788`` (wf serve's default), and turn a
refusal for want of a token into a line that says where the token is.
"""

from __future__ import annotations

import ipaddress
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from wf.client import Client

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8787
SERVE_PORT = 8788
SERVE_URL = f"http://{DEFAULT_HOST}:{SERVE_PORT}"
MISSING_TOKEN = (
    "the server needs an API token: pass --token or set WF_API_TOKEN "
    "(wf serve printed it when it first started)"
)

UrlOption = Annotated[
    str | None,
    typer.Option(
        "--url",
        envvar="WF_URL",
        show_default=False,
        help="Server URL (default: the dev host and port of wf.toml, else http://127.0.0.1:8787).",
    ),
]
ServeUrlOption = Annotated[
    str | None,
    typer.Option(
        "--url",
        envvar="WF_URL",
        show_default=False,
        help=f"URL of the wf serve server (default: {SERVE_URL}).",
    ),
]
TokenOption = Annotated[
    str | None,
    typer.Option(
        "--token",
        envvar="WF_API_TOKEN",
        show_default=False,
        help="API token, sent as Authorization: Bearer (for wf serve).",
    ),
]
JsonOption = Annotated[
    bool,
    typer.Option("--json", help="Print the API result as JSON instead of the human view."),
]


def url_for(host: str, port: int) -> str:
    """The address to reach a server bound to ``host``: a wildcard bind is reached locally."""
    if host in ("", "0.0.0.0"):
        host = DEFAULT_HOST
    elif host == "::":
        host = "::1"
    try:
        if ipaddress.ip_address(host).version == 6:
            host = f"[{host}]"
    except ValueError:
        pass
    return f"http://{host}:{port}"


def _dev_table_leniently(config: Path) -> tuple[str, int] | None:
    """[dev] host and port of a wf.toml that does not validate as a whole (best effort)."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10 only
        import tomli as tomllib
    try:
        if config.stat().st_size > 64 * 1024:
            return None
        data: Any = tomllib.loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):  # TOMLDecodeError is a ValueError
        return None
    dev = data.get("dev", {})
    if not isinstance(dev, dict):
        return None
    host = dev.get("host", DEFAULT_HOST)
    port = dev.get("port", DEFAULT_PORT)
    if not isinstance(host, str) or not host:
        host = DEFAULT_HOST
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        port = DEFAULT_PORT
    return host, port


def resolve_url(url: str | None, start: Path | None = None) -> str:
    """The server URL: the option (or ``WF_URL``), else wf.toml's [dev], else the default.

    Only the address is needed here, so a wf.toml that fails validation does not stop the
    command: its [dev] table is read if it can be, otherwise the default address is used.
    """
    if url is not None and url.strip():
        return url.strip()
    from wf.project import ProjectError, find_config, load_project

    config = find_config(start)
    if config is None:
        return url_for(DEFAULT_HOST, DEFAULT_PORT)
    try:
        project = load_project(config)
    except (ProjectError, OSError):
        found = _dev_table_leniently(config)
        return url_for(*found) if found else url_for(DEFAULT_HOST, DEFAULT_PORT)
    return url_for(project.dev.host, project.dev.port)


def make_client(url: str | None, token: str | None) -> Client:
    from wf.client import Client

    return Client(resolve_url(url), token=token or None)


def make_serve_client(url: str | None, token: str | None, **options: Any) -> Client:
    """A client for the routes only ``wf serve`` has: its address does not come from wf.toml's
    [dev] table (that is ``wf dev``'s)."""
    from wf.client import Client

    address = url.strip() if url is not None and url.strip() else SERVE_URL
    return Client(address, token=token or None, starts_with="wf serve", **options)


@contextmanager
def serve_errors(client: Client) -> Iterator[None]:
    """Explain the refusals of a ``wf serve`` route: no token given, or a server without it."""
    from wf.cli.exit import CliError
    from wf.client import NO_ROUTE, UNAUTHORIZED, ClientError

    try:
        yield
    except ClientError as exc:
        if not client.token and (exc.api_code == UNAUTHORIZED or exc.http_status == 401):
            raise CliError(MISSING_TOKEN) from None
        if exc.api_code == NO_ROUTE and exc.http_status == 404:
            raise CliError(
                f"the server at {client.url} has no such route; is it wf dev? "
                "this command needs wf serve"
            ) from None
        raise


def print_json(value: Any) -> None:
    """What ``--json`` prints: the API's ``result``, pretty (2 spaces), UTF-8 as is."""
    import json

    typer.echo(json.dumps(value, indent=2, ensure_ascii=False))


def compact_json(value: Any) -> str:
    import json

    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
