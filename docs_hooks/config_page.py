"""The wf.toml reference, from the one annotated example of every key, wrangler-like.toml.example
at the repository root: each key with the comment written above it, table by table, then the
whole file. tests/docs/test_reference.py checks that it sets every key wf.project accepts and
that wf loads it."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from docs_hooks.markdown import code, table, text

EXAMPLE = Path(__file__).resolve().parent.parent / "wrangler-like.toml.example"
_HEADER = re.compile(r"^\[\[?(?P<name>[a-z_]+)\]\]?\s*$")
_KEY = re.compile(r"^(?P<key>[A-Za-z_][A-Za-z0-9_]*)\s*=\s*(?P<value>.*)$")
# "#   concurrency: at most ..." inside a comment about several keys: that key's own part.
_ITEM = re.compile(r"^  (?P<key>[a-z_]+): ")


@dataclass
class Key:
    name: str
    value: str  # as the example writes it
    about: str


@dataclass
class Table:
    name: str  # "" for the top level, else "workflows", "vars", ...
    about: str = ""
    keys: list[Key] = field(default_factory=list)
    array: bool = False


def _prose(lines: list[str]) -> str:
    """Comment lines as one paragraph; HTML-escaped outside `code`."""
    joined = " ".join(line.strip() for line in lines)
    parts = joined.split("`")
    return "`".join(part if i % 2 else text(part) for i, part in enumerate(parts))


def _about(key: str, comment: list[str], group: list[str]) -> str:
    """What the comment above ``key`` says of it. A comment about several keys ("  key: ...")
    gives each its intro and its own item; a key without a comment gets its item from the
    last such comment."""
    lines = comment or group
    intro: list[str] = []
    items: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in lines:
        item = _ITEM.match(line)
        if item:
            current = items.setdefault(item["key"], [])
        if current is None:
            intro.append(line)
        else:
            current.append(line)
    if key not in items:
        return _prose(lines if comment else [])
    return _prose([*(intro if comment else []), *items[key]])


def tables(source: str | None = None) -> list[Table]:
    """The example's tables in order, each key documented once (its first occurrence)."""
    lines = (source if source is not None else EXAMPLE.read_text(encoding="utf-8")).splitlines()
    found = [Table("")]
    by_name = {"": found[0]}
    comment: list[str] = []
    group: list[str] = []  # the last comment written above a key
    current = found[0]
    for line in lines:
        stripped = line.strip()
        if stripped.startswith("#"):
            comment.append(stripped[2:] if stripped.startswith("# ") else stripped[1:])
            continue
        if not stripped:
            if current is found[0] and not current.keys:
                comment = []  # the file's own header, not about a key
            continue
        header = _HEADER.match(stripped)
        if header:
            name = header["name"]
            if name in by_name:
                current = by_name[name]
            else:
                current = Table(name, _prose(comment), array=stripped.startswith("[["))
                by_name[name] = current
                found.append(current)
        else:
            key = _KEY.match(stripped)
            if key and all(k.name != key["key"] for k in current.keys):
                about = _about(key["key"], comment, group)
                current.keys.append(Key(key["key"], key["value"].strip(), about))
            if comment:
                group = comment
        comment = []
    return found


def _section(found: Table) -> str:
    if not found.name:
        title = "## Top level"
    else:
        brackets = ("[[", "]]") if found.array else ("[", "]")
        title = f"## {brackets[0]}{found.name}{brackets[1]}"
    parts = [title]
    if found.about:
        parts.append(found.about)
    if found.name == "vars":  # its keys are the user's own: show them as an example
        example = "\n".join(f"{k.name} = {k.value}" for k in found.keys)
        parts.append(f"```toml\n[vars]\n{example}\n```")
    else:
        rows = [(code(k.name), code(k.value), k.about) for k in found.keys]
        parts.append(table(("Key", "Example", "What it does"), rows))
    return "\n\n".join(parts)


def render() -> str:
    sections = [_section(found) for found in tables()]
    whole = EXAMPLE.read_text(encoding="utf-8").rstrip("\n")
    sections += [
        "## The whole file",
        "Every key above, in one file (`wrangler-like.toml.example` in wf's repository):",
        f'```toml title="wrangler-like.toml.example"\n{whole}\n```',
    ]
    return "\n\n".join(sections)
