"""`wf init [DIR] [--template T]`: create a project from a template, never overwriting a file.

Templates are package data (``wf/templates/<name>/``). Copying a template renames ``dot-x`` to
``.x``. It also strips ``.tmpl`` from a file's name and replaces the ``${var}`` placeholders in
it. Every other file is copied byte for byte. Files are created exclusively: a file that already
exists is skipped and reported, never changed.
"""

from __future__ import annotations

import json
import re
import shlex
import sys
import unicodedata
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from wf.errors import WfError

if TYPE_CHECKING:
    if sys.version_info >= (3, 11):
        from importlib.resources.abc import Traversable
    else:
        from importlib.abc import Traversable

DEFAULT_TEMPLATE = "starter"
_DEFAULT_NAME = "my-workflows"
_TEMPLATE_SUFFIX = ".tmpl"
_DOT_PREFIX = "dot-"
_PLACEHOLDER = re.compile(r"\$\{(\w+)\}")
_CURRENT_FOLDER = Path(".")


@dataclass(frozen=True)
class Template:
    name: str
    description: str
    try_it: tuple[str, ...]  # commands to run once `wf dev` is up, shown as next steps


TEMPLATES: dict[str, Template] = {
    t.name: t
    for t in (
        Template(
            "starter",
            "Cloudflare's workflows-starter in Python: steps, an approval event, a sleep, retries",
            (
                "wf trigger workflows-starter",
                "wf instances describe workflows-starter latest",
                "wf instances send-event workflows-starter <id> --type approval "
                """--payload '{"approved": true}'""",
            ),
        ),
        Template(
            "cart-reminder",
            "the abandoned-cart reminder from Cloudflare's Workflows launch post",
            (
                """wf trigger cart-reminder '{"cartId": "cart-1", "wait": "10 seconds"}'""",
                "wf instances describe cart-reminder latest",
            ),
        ),
    )
}
_TEMPLATE_HELP = "; ".join(f"{t.name}: {t.description}" for t in TEMPLATES.values()) + "."


@dataclass
class InitResult:
    directory: Path
    template: str
    name: str  # the project's name in wf.toml
    created: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


class InitError(WfError):
    """The project cannot be created (the folder is a file, a file cannot be written, ...)."""

    code = "init.failed"


def project_name(folder: Path) -> str:
    """A project name from a folder's name: lower case, with runs of other characters as "-"."""
    ascii_name = unicodedata.normalize("NFKD", folder.name).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9_-]+", "-", ascii_name.lower()).strip("-_")
    return slug or _DEFAULT_NAME


def target_name(source_name: str) -> str:
    """The name a template file gets in the project: ``dot-gitignore`` -> ``.gitignore``,
    ``workflows.py.tmpl`` -> ``workflows.py``."""
    name = source_name
    if name.startswith(_DOT_PREFIX):
        name = "." + name[len(_DOT_PREFIX) :]
    if name.endswith(_TEMPLATE_SUFFIX):
        name = name[: -len(_TEMPLATE_SUFFIX)]
    return name


def render(text: str, variables: Mapping[str, str]) -> str:
    """Replace ``${var}`` for the known variables; leave any other ``$`` text as it is."""
    return _PLACEHOLDER.sub(lambda m: variables.get(m[1], m[0]), text)


@dataclass(frozen=True)
class TemplateFile:
    path: str  # where it goes, relative to the project folder, with "/" separators
    content: bytes
    substitute: bool  # a .tmpl file: replace its ${var} placeholders


def template_files(template: str) -> Iterator[TemplateFile]:
    """The files of a template, in a stable order."""
    yield from _walk(files("wf.templates").joinpath(template), "")


def _walk(folder: Traversable, prefix: str) -> Iterator[TemplateFile]:
    entries = sorted(folder.iterdir(), key=lambda e: target_name(e.name).lower())
    for entry in entries:
        if entry.name == "__pycache__" or entry.name.startswith("."):
            continue
        path = f"{prefix}{target_name(entry.name)}"
        if entry.is_dir():
            yield from _walk(entry, f"{path}/")
        else:
            yield TemplateFile(path, entry.read_bytes(), entry.name.endswith(_TEMPLATE_SUFFIX))


def create_project(directory: Path, template: str) -> InitResult:
    """Copy ``template`` into ``directory`` (created if missing), skipping existing files."""
    if template not in TEMPLATES:
        raise InitError(f'unknown template "{template}"')
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InitError(f"cannot create the folder {directory}: {_reason(exc)}") from None
    if not directory.is_dir():
        raise InitError(f"{directory} exists and is not a folder")
    name = project_name(directory.resolve())
    variables = {"name": name}
    result = InitResult(directory, template, name)
    for item in template_files(template):
        relative, content = item.path, item.content
        path = directory / relative
        if item.substitute:
            content = render(content.decode("utf-8"), variables).encode("utf-8")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # "x": create the file, or fail if anything (even a broken symlink) is there.
            with path.open("xb") as file:
                file.write(content)
        except FileExistsError:
            result.skipped.append(relative)
            continue
        except OSError as exc:
            raise InitError(f"cannot write {path}: {_reason(exc)}") from None
        result.created.append(relative)
    return result


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc)


def _shown(directory: Path) -> str:
    return shlex.quote(str(directory))


def _report(result: InitResult, shown_dir: str) -> None:
    template = result.template
    where = "the current folder" if result.directory == _CURRENT_FOLDER else shown_dir
    if result.created:
        typer.echo(f'Created a wf project from the "{template}" template in {where}:')
    for relative in result.created:
        typer.echo(f"  created  {relative}")
    for relative in result.skipped:
        typer.echo(f"  skipped  {relative} (it exists already; left unchanged)")
    if not result.created:
        typer.echo(
            f'Nothing was written: every file of the "{template}" template exists already '
            f"in {where}."
        )
        return
    typer.echo("")
    typer.echo("Next steps:")
    if result.directory != _CURRENT_FOLDER:
        typer.echo(f"  cd {shown_dir}")
    typer.echo("  wf dev")
    typer.echo("Then, in another terminal:")
    for command in TEMPLATES[template].try_it:
        typer.echo(f"  {command}")
    typer.echo("See README.md for more.")


def init(
    directory: Annotated[
        Path,
        typer.Argument(
            help="Folder to create the project in. It is created if it does not exist.",
        ),
    ] = _CURRENT_FOLDER,
    template: Annotated[
        str,
        typer.Option("--template", "-t", metavar="|".join(TEMPLATES), help=_TEMPLATE_HELP),
    ] = DEFAULT_TEMPLATE,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Create a wf project from a template. Existing files are never overwritten."""
    if template not in TEMPLATES:
        typer.echo(
            f'wf init: unknown template "{template}"; choose one of {", ".join(TEMPLATES)}',
            err=True,
        )
        raise typer.Exit(2)
    try:
        result = create_project(directory, template)
    except InitError as exc:
        typer.echo(f"wf init: {exc}", err=True)
        raise typer.Exit(1) from None
    if as_json:
        payload = {
            "directory": str(result.directory.resolve()),
            "template": result.template,
            "name": result.name,
            "created": result.created,
            "skipped": result.skipped,
        }
        typer.echo(json.dumps(payload, indent=2))
        return
    _report(result, _shown(directory))
