"""The dashboard's one Jinja2 environment (the only module that imports Jinja2).

Templates ship as package data; autoescaping is on, so a value from a workflow (params, outputs,
errors) can never become markup.
"""

from __future__ import annotations

import json
from contextvars import ContextVar
from datetime import datetime
from functools import cache
from typing import Any
from urllib.parse import quote

from jinja2 import Environment, PackageLoader
from markupsafe import Markup, escape

import wf
from wf.engine.details import iso

# The signed-in session's CSRF token for the page being rendered: set per request by wf serve's
# session middleware. None on wf dev, which has no sessions and checks Origin instead.
csrf_token: ContextVar[str | None] = ContextVar("wf_dashboard_csrf", default=None)


# Why wf dev's project does not load, for the page being rendered (its pages then read the
# database, and every page says so): set per request by wf.dashboard.routes' middleware.
load_problem: ContextVar[str | None] = ContextVar("wf_dashboard_load_problem", default=None)


def project_problem() -> str | None:
    return load_problem.get()


def csrf_field() -> Markup:
    """The hidden input every POST form carries (nothing when there is no session)."""
    token = csrf_token.get()
    if not token:
        return Markup("")
    return Markup('<input type="hidden" name="csrf" value="{}">').format(escape(token))


def signed_in() -> bool:
    """A signed-in session renders this page (wf serve): its header shows Versions and Sign out."""
    return bool(csrf_token.get())


def pretty_json(value: Any) -> str:
    """A value as indented JSON for a ``<pre>`` (escaped by the template, not here)."""
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False, default=str)


def segment(value: object) -> str:
    """A value as one segment of a URL path: unlike Jinja's ``urlencode``, "/" is escaped too (a
    cron firing's instance id holds its cron: ``*/5 * * * *-1700000100000``)."""
    return quote(str(value), safe="")


def _parse(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def duration(start: str | None, end: str | None) -> str:
    """``1.234 s`` / ``3 min 4 s`` between two ISO times of the API; empty when either is."""
    if not start or not end:
        return ""
    seconds = (_parse(end) - _parse(start)).total_seconds()
    if seconds < 60:
        return f"{seconds:.3f} s"
    minutes, rest = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {rest} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def cpu_time(seconds: object) -> str:
    """``0.012 s`` of CPU (``attempt.cpu``); empty when it was not measured."""
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        return ""
    return f"{seconds:.3f} s"


def step_cpu(attempts: object) -> str:
    """The CPU time of a step's attempts together; empty when none was measured."""
    if not isinstance(attempts, list):
        return ""
    measured = [a["cpu"] for a in attempts if isinstance(a, dict) and a.get("cpu") is not None]
    return cpu_time(sum(measured)) if measured else ""


@cache
def environment() -> Environment:
    env = Environment(
        loader=PackageLoader("wf.dashboard", "templates"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["pretty_json"] = pretty_json
    env.filters["segment"] = segment
    env.globals["duration"] = duration
    env.globals["cpu_time"] = cpu_time
    env.globals["step_cpu"] = step_cpu
    env.globals["iso"] = iso
    env.globals["csrf_field"] = csrf_field
    env.globals["signed_in"] = signed_in
    env.globals["project_problem"] = project_problem
    env.globals["static"] = f"/ui/static/{wf.__version__}"
    env.globals["wf_version"] = wf.__version__
    return env


def page(template: str, **context: Any) -> str:
    return environment().get_template(template).render(**context)
