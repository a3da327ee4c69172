"""The CLI reference, from the Typer app itself: every command, its usage, arguments and options
(what ``--help`` prints, split into columns), and the exit codes of wf.cli.exit."""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import typer.main

from docs_hooks.markdown import code, table, text

# "[default: 25; x>=1]" or "[env var: WF_URL]" or "[required]" at the end of a help text.
_EXTRAS = re.compile(r"\s*\[(?P<extras>[^\[\]]*)\]\s*$")


@dataclass(frozen=True)
class Param:
    names: str  # "-t, --template starter|cart-reminder", as --help shows it
    help: str
    details: str  # default, range, env var, required
    is_argument: bool
    flags: tuple[str, ...]  # every spelling: --step-output, --no-step-output, -t...


@dataclass(frozen=True)
class Command:
    path: str  # "wf instances list"
    usage: str
    help: str
    params: tuple[Param, ...]
    is_group: bool


def _split_help(help_text: str) -> tuple[str, str]:
    details: list[str] = []
    while match := _EXTRAS.search(help_text):
        details.insert(0, match.group("extras"))
        help_text = help_text[: match.start()]
    return help_text.strip(), "; ".join(details)


def _params(command: Any, ctx: Any) -> Iterator[Param]:
    for param in command.params:
        if getattr(param, "hidden", False):
            continue
        record = param.get_help_record(ctx)
        if record is None:
            continue
        names, help_text = record
        description, details = _split_help(help_text)
        is_argument = not param.opts[0].startswith("-")
        flags = () if is_argument else (*param.opts, *param.secondary_opts)
        yield Param(names, description, details, is_argument, tuple(flags))


def commands(app: typer.Typer | None = None) -> list[Command]:
    """Every visible command of the app, depth first, the root first (as ``wf``)."""
    if app is None:
        from wf.cli.main import app as wf_app

        app = wf_app
    root = typer.main.get_command(app)
    found: list[Command] = []

    def visit(command: Any, name: str, parent: Any) -> None:
        ctx = command.context_class(command, info_name=name, parent=parent)
        is_group = hasattr(command, "list_commands")
        usage = " ".join([ctx.command_path, *command.collect_usage_pieces(ctx)])
        found.append(
            Command(
                path=ctx.command_path,
                usage=usage,
                help=inspect.cleandoc(command.help or ""),
                params=tuple(_params(command, ctx)),
                is_group=is_group,
            )
        )
        if is_group:
            for sub_name in command.list_commands(ctx):
                sub = command.get_command(ctx, sub_name)
                if sub is not None and not sub.hidden:
                    visit(sub, sub_name, ctx)

    visit(root, "wf", None)
    return found


def _section(command: Command) -> str:
    heading = "#" * min(command.path.count(" ") + 2, 4)
    parts = [
        f"{heading} {command.path}",
        "",
        text(command.help),
        "",
        "```text",
        command.usage,
        "```",
    ]
    arguments = [p for p in command.params if p.is_argument]
    options = [p for p in command.params if not p.is_argument]
    if arguments:
        rows = [(code(p.names), text(p.help), text(p.details)) for p in arguments]
        parts += ["", table(("Argument", "Description", "Default and limits"), rows)]
    if options:
        rows = [(code(p.names), text(p.help), text(p.details)) for p in options]
        parts += ["", table(("Option", "Description", "Default and limits"), rows)]
    return "\n".join(parts)


def exit_codes() -> list[tuple[int, str]]:
    import click

    from wf.cli import exit as cli_exit

    return [
        (0, "success"),
        (cli_exit.EXIT_FAILURE, "wf refused or failed: one line on stderr, starting with `wf: `"),
        (
            click.UsageError.exit_code,
            "the command line is wrong (unknown option, missing argument): usage on stderr",
        ),
        (cli_exit.EXIT_INTERRUPTED, "interrupted (Ctrl-C)"),
    ]


def render() -> str:
    body = [_section(command) for command in commands()]
    codes = table(("Exit code", "Meaning"), [(str(n), meaning) for n, meaning in exit_codes()])
    return "\n\n".join([*body, "## Exit codes", codes])
