"""The errors reference: the REST API's Cloudflare-style codes (wf.devserver.envelope), how wf's
errors map onto them, and every error class with its stable ``code``."""

from __future__ import annotations

import importlib
import inspect
import re
from dataclasses import dataclass

from docs_hooks.markdown import code, table, text

# Modules that define errors a user can meet; their WfError subclasses are all listed.
ERROR_MODULES = (
    "wf.errors",
    "wf.engine.cron",
    "wf.project",
    "wf.bundle",
    "wf.client",
    "wf.cli.exit",
    "wf.cli.init",
    "wf.devserver.supervisor",
    "wf.server.state",
    "wf.server.deploys",
    "wf.testing.errors",
)
# ``NAME = 10400  # 404: what it means`` in wf.devserver.envelope.
_CODE_LINE = re.compile(
    r"^(?P<name>[A-Z_]+) = (?P<code>1\d{4})[ \t]+#[ \t]*"
    r"(?P<status>\d{3}(?: / \d{3})?)[:,]?[ \t]*(?P<note>.*)$",
    re.M,
)


@dataclass(frozen=True)
class ApiCode:
    code: int
    constant: str
    status: str
    note: str


def api_codes() -> list[ApiCode]:
    """Every error code of the REST API, as wf.devserver.envelope defines it."""
    from wf.devserver import envelope

    found = [
        ApiCode(int(m["code"]), m["name"], m["status"], m["note"])
        for m in _CODE_LINE.finditer(inspect.getsource(envelope))
    ]
    return sorted(found, key=lambda c: c.code)


def _summary(cls: type) -> str:
    doc = inspect.cleandoc(vars(cls)["__doc__"]) if vars(cls).get("__doc__") else None
    return " ".join((doc or "").split("\n\n")[0].split())


def error_classes() -> list[type[BaseException]]:
    """Every exception class defined in ERROR_MODULES (public names only), tree order."""
    classes: list[type[BaseException]] = []
    for name in ERROR_MODULES:
        module = importlib.import_module(name)
        for attr, value in vars(module).items():
            if (
                isinstance(value, type)
                and issubclass(value, BaseException)
                and value.__module__ == name
                and not attr.startswith("_")
            ):
                classes.append(value)
    return classes


def _api_mapping() -> dict[type, tuple[int, int]]:
    from wf.devserver.envelope import WF_ERRORS

    return {kind: (status, api_code) for kind, status, api_code in WF_ERRORS}


def _api_of(cls: type, mapping: dict[type, tuple[int, int]]) -> str:
    for kind in cls.__mro__:
        if kind in mapping:
            status, api_code = mapping[kind]
            return f"{status} / {api_code}"
    return ""


def _base(cls: type) -> str:
    base = cls.__bases__[0]
    return base.__name__


def _where(cls: type) -> str:
    import wf
    import wf.testing

    if getattr(wf, cls.__name__, None) is cls:
        return f"wf.{cls.__name__}"
    if getattr(wf.testing, cls.__name__, None) is cls:
        return f"wf.testing.{cls.__name__}"
    return f"{cls.__module__}.{cls.__name__}"


def render() -> str:
    codes = table(
        ("Code", "HTTP status", "Meaning", "Constant"),
        [(str(c.code), c.status, text(c.note), code(c.constant)) for c in api_codes()],
    )
    mapping = _api_mapping()
    rows = [
        (
            code(_where(cls)),
            code(_base(cls)),
            code(getattr(cls, "code", "")) if hasattr(cls, "code") else "",
            _api_of(cls, mapping),
            text(_summary(cls)),
        )
        for cls in error_classes()
    ]
    classes = table(("Class", "Base", "code", "API status / code", "What it means"), rows)
    return "\n\n".join(
        ["## API error codes", _API_INTRO, codes, "## Error classes", _CLASSES_INTRO, classes]
    )


_API_INTRO = (
    "Every failed REST call answers Cloudflare's envelope with `success: false` and exactly one "
    "entry in `errors`, whose `message` is one line. Codes 10001-10008 are wf's own; "
    "10200-10406 are the codes Cloudflare's API uses for the same cases."
)
_CLASSES_INTRO = (
    "Every exception wf defines. A `WfError` has a stable, machine-readable `code` and a "
    "one-line message; the API status / code column says what the REST API answers when the "
    "server raises it. Exceptions that are not `WfError`s are raised in or at your code: "
    "`StepError` by `step.do`, `NonRetryableError` by you, the `wf.testing` ones in tests."
)
