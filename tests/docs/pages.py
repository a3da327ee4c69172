"""A documentation page read as a script: its code blocks and directives, in order.

The conventions (tests/docs/README.md says them for writers):

- A fenced block with ``title="PATH"`` is a file the reader creates: it is written at PATH in
  the page's project folder.
- A ``python`` block without a title is run as a script in the project folder; a ``text``
  block with ``title="Output"`` right after it is what the script prints.
- A ``console`` block holds commands (``$ ``) each followed by what it prints.
  ``$ wf dev`` and ``$ wf serve`` start a server in the background for the rest of the page.
- A ``sh``/``bash`` block without a title runs as one shell script; a ``toml`` block without a
  title must parse.
- ``<!-- docs: DIRECTIVE -->`` just before a block changes how it runs (``skip REASON``,
  ``fails``); on its own line it is a step (``kill``, ``wait-for TEXT``, ``sleep SECONDS``);
  before the first heading it sets up the page (``project PATH``, ``postgres URL``,
  ``skip-page REASON``).
- ``<!-- docs: hidden`` ... ``-->`` holds blocks that run but are not shown.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})\s*(?P<lang>[\w+-]*)(?P<attrs>.*)$")
DIRECTIVE = re.compile(r"^\s*<!--\s*docs:\s*(?P<body>.*?)\s*-->\s*$")
HIDDEN = re.compile(r"^[ \t]*<!--\s*docs:\s*hidden\s*$(?P<inner>.*?)^[ \t]*-->[ \t]*$", re.M | re.S)
TITLE = re.compile(r"""title\s*=\s*"(?P<title>[^"]*)\"""")

BLOCK_DIRECTIVES = ("skip", "fails", "timeout")
STEP_DIRECTIVES = ("kill", "wait-for", "sleep")
PAGE_DIRECTIVES = ("project", "postgres", "skip-page")


class PageError(ValueError):
    """A page breaks the conventions: its path and line are in the message."""


@dataclass
class Block:
    """One fenced block and the directives written just before it."""

    lang: str
    title: str | None
    code: str
    line: int
    skip: str | None = None
    fails: bool = False
    timeout: float = 60.0


@dataclass
class Step:
    """A directive on its own line: something done between blocks."""

    name: str
    argument: str
    line: int


@dataclass
class Command:
    """One ``$ `` line of a console block and the output shown under it."""

    text: str
    expected: list[str]


@dataclass
class Page:
    path: Path
    items: list[Block | Step] = field(default_factory=list)
    project: str | None = None
    postgres: str | None = None
    skip: str | None = None

    @property
    def blocks(self) -> list[Block]:
        return [item for item in self.items if isinstance(item, Block)]


def unhide(text: str) -> str:
    """The page as the runner sees it: hidden blocks' comments opened, lines kept in place."""
    return HIDDEN.sub(lambda match: match.group("inner"), text)


def read_page(path: Path) -> Page:
    """Parse one Markdown page; PageError names the line that breaks a convention."""
    page = Page(path)
    lines = unhide(path.read_text(encoding="utf-8")).split("\n")
    pending: list[tuple[str, str, int]] = []  # block directives waiting for their block
    seen_heading = False
    index = 0
    while index < len(lines):
        line = lines[index]
        number = index + 1
        if line.startswith("#"):
            seen_heading = True
        directive = DIRECTIVE.match(line)
        if directive:
            name, _, argument = directive.group("body").partition(" ")
            argument = argument.strip()
            if name in PAGE_DIRECTIVES:
                if seen_heading:
                    raise PageError(f"{path}:{number}: '{name}' belongs before the first heading")
                _set_page_directive(page, name, argument, f"{path}:{number}")
            elif name in BLOCK_DIRECTIVES:
                pending.append((name, argument, number))
            elif name in STEP_DIRECTIVES:
                page.items.append(Step(name, argument, number))
            elif name != "hidden":
                raise PageError(f"{path}:{number}: unknown docs directive {name!r}")
            index += 1
            continue
        fence = FENCE.match(line)
        if fence:
            index = _read_block(page, lines, index, fence, pending)
            pending = []
            continue
        if line.strip() and pending:
            name, _, at = pending[0]
            raise PageError(f"{path}:{at}: directive {name!r} is not followed by a code block")
        index += 1
    if pending:
        raise PageError(f"{path}:{pending[0][2]}: directive {pending[0][0]!r} ends the page")
    _check_outputs(page)
    return page


def _check_outputs(page: Page) -> None:
    """An ``Output`` block is what the script right before it prints; anywhere else it would
    be checked against nothing."""
    previous: Block | Step | None = None
    for item in page.items:
        if isinstance(item, Block) and item.title == "Output":
            script = (
                isinstance(previous, Block)
                and previous.lang in ("python", "py")
                and previous.title is None
            )
            if not script:
                raise PageError(
                    f"{page.path}:{item.line}: an Output block must follow the python script "
                    "whose output it is"
                )
        previous = item


def _set_page_directive(page: Page, name: str, argument: str, where: str) -> None:
    if not argument:
        raise PageError(f"{where}: '{name}' needs an argument")
    if name == "project":
        page.project = argument
    elif name == "postgres":
        page.postgres = argument
    else:
        page.skip = argument


def _read_block(
    page: Page,
    lines: list[str],
    start: int,
    fence: re.Match[str],
    pending: list[tuple[str, str, int]],
) -> int:
    indent, marker = fence.group("indent"), fence.group("fence")
    title_match = TITLE.search(fence.group("attrs"))
    body: list[str] = []
    index = start + 1
    while index < len(lines):
        line = lines[index]
        stripped = line.strip()
        if stripped.startswith(marker) and set(stripped) == {marker[0]}:
            break
        body.append(line[len(indent) :] if line.startswith(indent) else line.lstrip())
        index += 1
    else:
        raise PageError(f"{page.path}:{start + 1}: code block never closed")
    block = Block(
        lang=fence.group("lang").lower(),
        title=title_match.group("title") if title_match else None,
        code="\n".join(body) + "\n",
        line=start + 1,
    )
    for name, argument, number in pending:
        if name == "skip":
            if not argument:
                raise PageError(f"{page.path}:{number}: 'skip' needs a reason")
            block.skip = argument
        elif name == "fails":
            block.fails = True
        else:
            try:
                block.timeout = float(argument)
            except ValueError:
                raise PageError(f"{page.path}:{number}: 'timeout' needs seconds") from None
    page.items.append(block)
    return index + 1


def commands(block: Block) -> list[Command]:
    """A console block's commands, each with the lines shown under it (continuations joined)."""
    found: list[Command] = []
    lines = block.code.rstrip("\n").split("\n")
    index = 0
    while index < len(lines):
        line = lines[index]
        if line.startswith("$ "):
            text = line[2:]
            while text.endswith("\\") and index + 1 < len(lines):
                index += 1
                text = text[:-1].rstrip() + " " + lines[index].strip()
            found.append(Command(text.strip(), []))
        elif found:
            found[-1].expected.append(line)
        elif line.strip():
            raise PageError(f"line {block.line}: console output before any '$ ' command")
        index += 1
    return found


def is_server(command: str) -> str | None:
    """'dev' or 'serve' when the command starts a server the page keeps running, with or
    without variables set for it first (``NODE=a wf serve ...``)."""
    words = shlex.split(command)
    while words and _ASSIGNMENT.fullmatch(words[0]):
        words = words[1:]
    if len(words) >= 2 and words[0] == "wf" and words[1] in ("dev", "serve"):
        return words[1]
    return None


_ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=.*", re.DOTALL)
_LEADING_ASSIGNMENTS = re.compile(r"((?:[A-Za-z_][A-Za-z0-9_]*=\S*\s+)*)(.*)", re.DOTALL)


def exec_form(command: str) -> str:
    """The command for ``bash -c`` so that bash becomes the server (``exec``), after the
    variables set for it: ``NODE=a exec wf serve`` (``exec NODE=a ...`` would not run)."""
    found = _LEADING_ASSIGNMENTS.fullmatch(command.strip())
    assert found is not None  # the pattern matches any text
    return f"{found[1]}exec {found[2]}"


def pages(root: Path) -> list[Path]:
    return sorted(path for path in root.rglob("*.md") if "snippets" not in path.parts)
