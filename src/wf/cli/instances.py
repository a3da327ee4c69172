"""``wf instances list | describe | export | pause | resume | terminate | restart | send-event |
upgrade``.

Every command that takes an instance id also takes ``latest``: the newest instance. ``upgrade``
talks to ``wf serve`` (the only server with versions to move between), so its address defaults
to wf serve's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from wf.cli.exit import CliError, exits, parse_json
from wf.cli.options import (
    JsonOption,
    ServeUrlOption,
    TokenOption,
    UrlOption,
    compact_json,
    make_client,
    make_serve_client,
    print_json,
    serve_errors,
)
from wf.client import STATUSES

if TYPE_CHECKING:
    from wf.client import Client

LATEST = "latest"

app = typer.Typer(
    help="List, describe and control the instances of a workflow.",
    no_args_is_help=True,
    rich_markup_mode=None,
)

NameArgument = Annotated[
    str, typer.Argument(metavar="NAME", help="Name of the workflow.", show_default=False)
]
IdArgument = Annotated[
    str,
    typer.Argument(
        metavar="ID", help='Id of the instance, or "latest" for the newest.', show_default=False
    ),
]


def resolve_id(client: Client, name: str, instance_id: str) -> str:
    """``latest`` is the newest instance of the workflow; any other id is itself."""
    if instance_id != LATEST:
        return instance_id
    instances, _ = client.list_instances(name, page=1, per_page=1)
    if not instances:
        raise CliError(
            f'there are no instances in workflow "{name}"; trigger one with: wf trigger {name}'
        )
    newest: str = instances[0]["id"]
    return newest


def _check_status(value: str | None) -> str | None:
    if value is not None and value not in STATUSES:
        raise typer.BadParameter(f'"{value}" is not a status; use one of {", ".join(STATUSES)}')
    return value


@app.command("list")
@exits
def list_(
    name: NameArgument,
    status: Annotated[
        str | None,
        typer.Option(
            "--status",
            callback=_check_status,
            help=f"Only instances with this status: {', '.join(STATUSES)}.",
            show_default=False,
        ),
    ] = None,
    reverse: Annotated[bool, typer.Option("--reverse", help="Oldest first.")] = False,
    page: Annotated[int, typer.Option("--page", min=1, help="Page to show.")] = 1,
    per_page: Annotated[int, typer.Option("--per-page", min=1, help="Instances per page.")] = 25,
    url: UrlOption = None,
    token: TokenOption = None,
    json_output: JsonOption = False,
) -> None:
    """List the instances of a workflow, newest first."""
    instances, _ = make_client(url, token).list_instances(
        name, status=status, page=page, per_page=per_page, reverse=reverse
    )
    if json_output:
        print_json(instances)
        return
    if not instances:
        if page > 1:
            typer.echo(f"No instances found on page {page}. Please try a smaller page number.")
        elif status is not None:
            typer.echo(f'There are no {status} instances in workflow "{name}".')
        else:
            typer.echo(
                f'There are no instances in workflow "{name}". '
                f'You can trigger it with "wf trigger {name}"'
            )
        return
    from wf.cli import render

    render.print_instances(instances, page)


@app.command("describe")
@exits
def describe(
    name: NameArgument,
    instance_id: Annotated[
        str,
        typer.Argument(
            metavar="ID", help='Id of the instance, or "latest" (the default) for the newest.'
        ),
    ] = LATEST,
    step_output: Annotated[
        bool,
        typer.Option(
            "--step-output/--no-step-output", help="Show the output of each step (can be long)."
        ),
    ] = True,
    truncate_output_limit: Annotated[
        int,
        typer.Option(
            "--truncate-output-limit", min=0, help="Cut each step's output after N characters."
        ),
    ] = 5000,
    url: UrlOption = None,
    token: TokenOption = None,
    json_output: JsonOption = False,
) -> None:
    """Describe an instance: its status, each step with its attempts, and a timeline."""
    client = make_client(url, token)
    resolved = resolve_id(client, name, instance_id)
    details = client.get_instance(name, resolved)
    if json_output:
        print_json(details)
        return
    from wf.cli import render

    render.print_instance(
        details,
        instance_id=resolved,
        latest=instance_id == LATEST,
        step_output=step_output,
        truncate_output_limit=truncate_output_limit,
    )


@app.command("export")
@exits
def export(
    name: NameArgument,
    instance_id: Annotated[
        str,
        typer.Argument(
            metavar="ID", help='Id of the instance, or "latest" (the default) for the newest.'
        ),
    ] = LATEST,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Write the history to FILE instead of stdout (- is stdout): the whole history "
            "replaces FILE, or FILE is left as it was.",
            metavar="FILE",
            show_default=False,
        ),
    ] = None,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Export an instance's full history as JSON, to replay it in tests.

    The history holds the params, every step with its attempts, outputs and errors, and the
    events sent to the instance. wf.testing replays it against your code:
    replay(MyWorkflow, History.load("history.json"))."""
    client = make_client(url, token)
    resolved = resolve_id(client, name, instance_id)
    history = client.get_history(name, resolved)
    text = json.dumps(history, indent=2, ensure_ascii=False) + "\n"
    if output is None or str(output) == "-":
        typer.echo(text, nl=False)
        return
    from wf.cli.files import write_atomically

    write_atomically(output, text)
    steps, events = len(history.get("steps", ())), len(history.get("events", ()))
    typer.echo(
        f'📄 Wrote the history of instance "{resolved}" from {name} to {output} '
        f"({steps} step{'s' * (steps != 1)}, {events} event{'s' * (events != 1)})",
        err=True,
    )


def _change(
    action: str, done: str, emoji: str, name: str, instance_id: str, client: Client, json: bool
) -> None:
    resolved = resolve_id(client, name, instance_id)
    result = client.change_status(name, resolved, action, trigger="cli")
    if json:
        print_json(result)
        return
    typer.echo(f'{emoji} The instance "{resolved}" from {name} was {done} successfully')


@app.command("pause")
@exits
def pause(
    name: NameArgument,
    instance_id: IdArgument,
    url: UrlOption = None,
    token: TokenOption = None,
    json_output: JsonOption = False,
) -> None:
    """Pause an instance: it stops before its next step until resumed."""
    _change("pause", "paused", "⏸️", name, instance_id, make_client(url, token), json_output)


@app.command("resume")
@exits
def resume(
    name: NameArgument,
    instance_id: IdArgument,
    url: UrlOption = None,
    token: TokenOption = None,
    json_output: JsonOption = False,
) -> None:
    """Resume a paused instance."""
    _change("resume", "resumed", "🔄", name, instance_id, make_client(url, token), json_output)


@app.command("terminate")
@exits
def terminate(
    name: NameArgument,
    instance_id: IdArgument,
    rollback: Annotated[
        bool,
        typer.Option(
            "--rollback",
            help="Run the instance's rollback handlers (newest step first) before it ends "
            "terminated.",
        ),
    ] = False,
    url: UrlOption = None,
    token: TokenOption = None,
    json_output: JsonOption = False,
) -> None:
    """Terminate an instance for good."""
    client = make_client(url, token)
    if not rollback:
        _change("terminate", "terminated", "🥷", name, instance_id, client, json_output)
        return
    resolved = resolve_id(client, name, instance_id)
    result = client.change_status(name, resolved, "terminate", trigger="cli", rollback=True)
    if json_output:
        print_json(result)
    elif result.get("status") == "terminated":
        typer.echo(f'🥷 The instance "{resolved}" from {name} was terminated successfully')
    else:
        typer.echo(
            f'🥷 The instance "{resolved}" from {name} is rolling back; it ends terminated '
            "once its rollback handlers ran"
        )


@app.command("restart")
@exits
def restart(
    name: NameArgument,
    instance_id: IdArgument,
    url: UrlOption = None,
    token: TokenOption = None,
    json_output: JsonOption = False,
) -> None:
    """Restart an instance from the beginning, with the same params."""
    _change("restart", "restarted", "🥷", name, instance_id, make_client(url, token), json_output)


@app.command("send-event")
@exits
def send_event(
    name: NameArgument,
    instance_id: IdArgument,
    event_type: Annotated[
        str,
        typer.Option(
            "--type",
            help="Type of the event (what step.wait_for_event waits for).",
            show_default=False,
        ),
    ],
    payload: Annotated[
        str, typer.Option("--payload", help="Payload of the event, as a JSON string.")
    ] = "{}",
    url: UrlOption = None,
    token: TokenOption = None,
    json_output: JsonOption = False,
) -> None:
    """Send an event to an instance (received by step.wait_for_event)."""
    parsed = parse_json(payload, "payload")
    client = make_client(url, token)
    resolved = resolve_id(client, name, instance_id)
    result = client.send_event(name, resolved, event_type, parsed)
    if json_output:
        print_json(result)
        return
    typer.echo(
        f'📤 The event with type "{event_type}" and payload "{compact_json(parsed)}" was sent '
        f'to the instance "{resolved}" from {name}'
    )


@app.command("upgrade")
@exits
def upgrade(
    name: NameArgument,
    instance_id: IdArgument,
    url: ServeUrlOption = None,
    token: TokenOption = None,
    json_output: JsonOption = False,
) -> None:
    """Move an unfinished instance to the active version (wf serve).

    It goes on from its recorded steps with the new code."""
    client = make_serve_client(url, token)
    with serve_errors(client):
        resolved = resolve_id(client, name, instance_id)
        result = client.upgrade(name, resolved)
    if json_output:
        print_json(result)
        return
    typer.echo(
        f'⬆️ The instance "{result.get("id", resolved)}" from {name} was moved from version '
        f"{result.get('from_version', '?')} to {result.get('to_version', '?')}"
    )
