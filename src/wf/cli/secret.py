"""``wf secret put NAME | list | delete NAME``: secrets a ``wf serve`` server gives its workflows.

``put`` reads the value from stdin (``printf %s "$TOKEN" | wf secret put STRIPE_KEY``), or asks
for it without echoing when stdin is a terminal. The value is never printed, not even in errors.
"""

from __future__ import annotations

import re
import sys
from typing import Annotated

import typer

from wf.cli.exit import CliError, exits
from wf.cli.options import (
    JsonOption,
    ServeUrlOption,
    TokenOption,
    make_serve_client,
    print_json,
    serve_errors,
)

MAX_NAME_LENGTH = 64
# What the server accepts: an ASCII Python identifier of at most 64 characters.
SECRET_NAME = re.compile(rf"[A-Za-z_][A-Za-z0-9_]{{0,{MAX_NAME_LENGTH - 1}}}")

app = typer.Typer(
    help="Manage the secrets a wf serve server passes to its workflows.",
    no_args_is_help=True,
    rich_markup_mode=None,
)

NameArgument = Annotated[
    str,
    typer.Argument(
        metavar="NAME", help="Name of the secret (a Python identifier).", show_default=False
    ),
]


def check_name(name: str) -> str:
    """Refuse a bad name before asking for a value (the server checks it again)."""
    if not SECRET_NAME.fullmatch(name):
        raise CliError(
            f'"{name}" is not a valid secret name: use a Python identifier of at most '
            f"{MAX_NAME_LENGTH} characters, such as STRIPE_KEY"
        )
    return name


def read_value(name: str) -> str:
    """The value: a hidden prompt on a terminal, else all of stdin minus one trailing newline."""
    if sys.stdin is not None and sys.stdin.isatty():
        value: str = typer.prompt(f'Enter the value of secret "{name}"', hide_input=True, err=True)
    else:
        raw = typer.get_binary_stream("stdin").read()
        try:
            value = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise CliError("the secret value on stdin is not UTF-8 text") from None
        if value.endswith("\r\n"):
            value = value[:-2]
        elif value.endswith("\n"):
            value = value[:-1]
    if not value:
        raise CliError(
            f'the secret value is empty; pipe it in: printf %s "$VALUE" | wf secret put {name}'
        )
    return value


@app.command("put")
@exits
def put(
    name: NameArgument,
    url: ServeUrlOption = None,
    token: TokenOption = None,
    json_output: JsonOption = False,
) -> None:
    """Create or replace a secret.

    The value is read from stdin (a terminal gets a hidden prompt). Workflows see it in env
    once the server has restarted its workers."""
    check_name(name)
    client = make_serve_client(url, token)
    value = read_value(name)
    with serve_errors(client):
        result = client.put_secret(name, value)
    if json_output:
        print_json(result)
        return
    typer.echo(f'✨ Secret "{result.get("name", name)}" saved')


@app.command("list")
@exits
def list_(
    url: ServeUrlOption = None,
    token: TokenOption = None,
    json_output: JsonOption = False,
) -> None:
    """List the secrets (names and when they changed; never their values)."""
    client = make_serve_client(url, token)
    with serve_errors(client):
        secrets = client.secrets()
    if json_output:
        print_json(secrets)
        return
    if not secrets:
        typer.echo('There are no secrets. Add one with "wf secret put NAME"')
        return
    from wf.cli import render

    render.print_secrets(secrets)


@app.command("delete")
@exits
def delete(
    name: NameArgument,
    url: ServeUrlOption = None,
    token: TokenOption = None,
    json_output: JsonOption = False,
) -> None:
    """Delete a secret."""
    client = make_serve_client(url, token)
    with serve_errors(client):
        result = client.delete_secret(name)
    if json_output:
        print_json(result)
        return
    typer.echo(f'✨ Secret "{result.get("name", name)}" deleted')
