"""``wf instances list | describe | tail | export | pause | resume | terminate | restart | delete |
send-event | upgrade``.

Every command that takes an instance id also takes ``latest``: the newest instance. ``upgrade``
talks to ``wf serve`` (the only server with versions to move between), so its address defaults
to wf serve's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from wf.cli.exit import CliError, exits, json_argument, parse_json
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


@app.command("tail")
@exits
def tail(
    name: NameArgument,
    instance_id: Annotated[
        str,
        typer.Argument(
            metavar="ID", help='Id of the instance, or "latest" (the default) for the newest.'
        ),
    ] = LATEST,
    url: UrlOption = None,
    token: TokenOption = None,
    json_output: JsonOption = False,
) -> None:
    """Follow an instance live: its steps so far, then each as it happens, until it ends.
    Exits 0 when it completes, 1 when it errors, is terminated or deleted. --json prints each
    event as one JSON line."""
    from wf.cli import render
    from wf.cli.exit import EXIT_FAILURE, EXIT_INTERRUPTED, error_line
    from wf.cli.tail import FAILED_ENDS, notices

    client = make_client(url, token)
    resolved = resolve_id(client, name, instance_id)
    ended: object = None
    try:
        for event in client.subscribe(name, resolved):
            if json_output:
                typer.echo(compact_json({"event": event.event, "id": event.id, "data": event.data}))
            else:
                render.print_notices(notices(event, name, resolved))
            if event.event == "end":
                ended = event.data.get("status")
    except KeyboardInterrupt:
        raise typer.Exit(EXIT_INTERRUPTED) from None  # the user stopped following: no more
    if ended == "complete":
        return
    said = f"ended {ended}" if ended in FAILED_ENDS else "was deleted"
    typer.echo(error_line(f'instance "{resolved}" of workflow "{name}" {said}'), err=True)
    raise typer.Exit(EXIT_FAILURE)


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


RESTART_STEP_TYPES = ("do", "sleep", "waitForEvent")


def _check_step_type(value: str | None) -> str | None:
    if value is not None and value not in RESTART_STEP_TYPES:
        raise typer.BadParameter(f'"{value}" is not a step type; use do, sleep or waitForEvent')
    return value


@app.command("restart")
@exits
def restart(
    name: NameArgument,
    instance_id: IdArgument,
    from_step_name: Annotated[
        str | None,
        typer.Option(
            "--from-step-name",
            help="Restart from this step: earlier steps keep their results, this step and "
            "every later one run again.",
            show_default=False,
        ),
    ] = None,
    from_step_count: Annotated[
        int | None,
        typer.Option(
            "--from-step-count",
            min=1,
            help="Which call of the step named --from-step-name (1 is the first; default 1).",
            show_default=False,
        ),
    ] = None,
    from_step_type: Annotated[
        str | None,
        typer.Option(
            "--from-step-type",
            callback=_check_step_type,
            help="The type of that step: do (default), sleep or waitForEvent.",
            show_default=False,
        ),
    ] = None,
    params: Annotated[
        str | None,
        typer.Option(
            "--params",
            help=(
                "New params for the restarted run, as a JSON string, @FILE or - (default: "
                "the old ones)."
            ),
            show_default=False,
        ),
    ] = None,
    url: UrlOption = None,
    token: TokenOption = None,
    json_output: JsonOption = False,
) -> None:
    """Restart an instance from the beginning, or from a step, with the same params or new."""
    if from_step_name is None and (from_step_count is not None or from_step_type is not None):
        raise CliError("--from-step-count and --from-step-type go with --from-step-name")
    from_step: dict[str, object] | None = None
    if from_step_name is not None:
        from_step = {"name": from_step_name}
        if from_step_count is not None:
            from_step["count"] = from_step_count
        if from_step_type is not None:
            from_step["type"] = from_step_type
    new_params = None if params is None else json_argument(params, "params", plural=True)
    client = make_client(url, token)
    resolved = resolve_id(client, name, instance_id)
    extra: dict[str, object] = {}
    if from_step is not None:
        extra["from"] = from_step
    if new_params is not None:
        extra["params"] = new_params
    result = client.change_status(name, resolved, "restart", trigger="cli", extra=extra)
    if json_output:
        print_json(result)
        return
    typer.echo(f'🥷 The instance "{resolved}" from {name} was restarted successfully')


def _ids_from_file(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise CliError(f"{path} is not UTF-8 text") from None
    ids = parse_json(text, f"{path}")
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise CliError(f'{path} must hold a JSON array of instance ids, such as ["a", "b"]')
    return ids


@app.command("delete")
@exits
def delete(
    name: NameArgument,
    instance_ids: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="ID...",
            help='Ids of the instances to delete ("latest" is the newest).',
            show_default=False,
        ),
    ] = None,
    filename: Annotated[
        Path | None,
        typer.Option(
            "--filename",
            help="A JSON file holding an array of instance ids to delete (with the ids given).",
            metavar="F",
            show_default=False,
        ),
    ] = None,
    url: UrlOption = None,
    token: TokenOption = None,
    json_output: JsonOption = False,
) -> None:
    """Delete instances and everything stored about them (up to 100 at once).

    A running instance stops at once, without running rollbacks."""
    given = list(instance_ids or [])
    if filename is not None:
        given += _ids_from_file(filename)
    if not given:
        raise CliError("give the ids of the instances to delete, or --filename with a JSON array")
    if len(given) > 100:
        raise CliError(f"at most 100 instances can be deleted at once, got {len(given)}")
    client = make_client(url, token)
    ids = [resolve_id(client, name, i) for i in given]
    result = client.delete_batch(name, ids)
    if json_output:
        print_json(result)
    else:
        deleted = [str(d.get("id")) for d in result.get("deleted", [])]
        if deleted:
            shown = ", ".join(f'"{i}"' for i in deleted)
            typer.echo(f'🗑️  Deleted workflow instances from "{name}": {shown}')
    errors = result.get("errors") or []
    if errors:
        for error in errors if not json_output else ():
            typer.echo(f'wf: "{error.get("id")}": {error.get("message")}', err=True)
        raise typer.Exit(1)


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
        str,
        typer.Option(
            "--payload",
            help="Payload of the event, as a JSON string, @FILE or - (standard input).",
        ),
    ] = "{}",
    url: UrlOption = None,
    token: TokenOption = None,
    json_output: JsonOption = False,
) -> None:
    """Send an event to an instance (received by step.wait_for_event)."""
    parsed = json_argument(payload, "payload")
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
