"""The MkDocs hook (mkdocs.yml ``hooks:``): fills the reference pages' ``<!-- generated: NAME -->``
markers at build time and ships the OpenAPI document in the site."""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

# MkDocs loads this file by path, with only its own folder importable while it loads: make the
# repository root importable so that ``docs_hooks`` is one package whichever way it is loaded.
_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from docs_hooks import (  # noqa: E402
    cli_page,
    config_page,
    errors_page,
    limits_page,
    rest_page,
)

GENERATORS: dict[str, Callable[[], str]] = {
    "cli": cli_page.render,
    "config": config_page.render,
    "errors": errors_page.render,
    "limits": limits_page.render,
    "rest": rest_page.render,
}
MARKER = re.compile(r"^<!-- generated: (?P<name>[a-z-]+) -->$", re.M)


class UnknownMarker(ValueError):
    pass


def fill(markdown: str) -> str:
    """``markdown`` with every marker replaced by what its generator builds."""

    def generate(match: re.Match[str]) -> str:
        name = match.group("name")
        if name not in GENERATORS:
            raise UnknownMarker(f"unknown marker <!-- generated: {name} -->")
        return GENERATORS[name]()

    return MARKER.sub(generate, markdown)


def on_page_markdown(markdown: str, **kwargs: Any) -> str:
    return fill(markdown)


def on_files(files: Any, config: Any, **kwargs: Any) -> Any:
    """Ship the OpenAPI document in the site (a generated file, so links to it are checked)."""
    from mkdocs.structure.files import File

    files.append(File.generated(config, rest_page.SHIPPED_PATH, content=rest_page.document_text()))
    return files
