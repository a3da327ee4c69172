"""Errors reach the terminal here and only here: one line on stderr, then exit 1.

Commands raise (``WfError`` and its subclasses, ``CliError`` for the CLI's own checks); the
``@exits`` decorator turns what they raise into ``wf: <message>`` and an exit code. Usage errors
stay Typer's (exit 2). Nothing prints a traceback unless ``WF_DEBUG`` is set.
"""

from __future__ import annotations

import functools
import json
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, ParamSpec, TypeVar

import typer

from wf.errors import WfError

P = ParamSpec("P")
T = TypeVar("T")

EXIT_FAILURE = 1
EXIT_INTERRUPTED = 130
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


class CliError(WfError):
    """The command line itself refuses something (bad JSON given as params, ...)."""

    code = "cli.error"


def one_line(message: str) -> str:
    """A message as a single printable line: newlines folded, control characters shown escaped."""
    folded = " ".join(part.strip() for part in message.splitlines() if part.strip())
    folded = folded.replace("\t", " ")
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], folded)


def error_line(message: str) -> str:
    return f"wf: {one_line(message) or 'unknown error'}"


def fail(message: str) -> NoReturn:
    """Stop the command with one error line (for code that cannot raise through ``@exits``)."""
    typer.echo(error_line(message), err=True)
    raise typer.Exit(EXIT_FAILURE)


def json_argument(text: str, noun: str, *, plural: bool = False) -> Any:
    """JSON given on the command line, or ``@FILE`` (read from that file), or ``-`` (read
    from standard input): a command line holds about 128 KiB, a payload may be 1 MiB. Neither
    form is ever valid JSON, so nothing that was valid before changes meaning."""
    if text == "-":
        return parse_json(sys.stdin.read(), noun, plural=plural)
    if text.startswith("@"):
        path = Path(text[1:])
        try:
            content = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise CliError(f"cannot read the {noun} from {path}: {reason}") from None
        return parse_json(content, f"{noun} in {path}", plural=plural)
    return parse_json(text, noun, plural=plural)


def parse_json(text: str, noun: str, *, plural: bool = False) -> Any:
    """Parse JSON the user typed; the error says where it went wrong, as Python's parser does:
    ``params are not valid JSON: Expecting ',' delimiter (line 1, column 9)``."""
    problem = f"{noun} {'are' if plural else 'is'} not valid JSON"

    def refuse(constant: str) -> Any:
        raise CliError(f"{problem}: {constant} is not allowed in JSON")

    try:
        return json.loads(text, parse_constant=refuse)
    except json.JSONDecodeError as exc:
        raise CliError(f"{problem}: {exc.msg} (line {exc.lineno}, column {exc.colno})") from None
    except RecursionError:
        raise CliError(f"{problem}: it is nested too deeply") from None


def exits(command: Callable[P, T]) -> Callable[P, T]:
    """Run a command; turn whatever it raises into one stderr line and an exit code."""

    @functools.wraps(command)
    def run(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return command(*args, **kwargs)
        except (typer.Exit, typer.Abort, typer.TyperException):
            raise
        except WfError as exc:
            fail(exc.message)
        except KeyboardInterrupt:
            typer.echo(error_line("interrupted"), err=True)
            raise typer.Exit(EXIT_INTERRUPTED) from None
        except BrokenPipeError:
            # The reader went away (``wf instances list NAME | head``): stop quietly.
            _silence_stdout()
            raise typer.Exit(EXIT_FAILURE) from None
        except Exception as exc:
            if os.environ.get("WF_DEBUG"):
                raise
            fail(
                f"internal error: {type(exc).__name__}: {exc} (set WF_DEBUG=1 to see the traceback)"
            )

    return run


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
