"""The instances of one workflow (``/w/{name}``): filters in the URL, a live region that
refreshes itself, checkboxes for the bulk actions and the trigger form."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote, urlencode

from aiohttp import web

from wf.dashboard import bulk_results
from wf.dashboard.list_filters import STATUSES, ListFilters, input_value
from wf.dashboard.render import page
from wf.dashboard.responses import error_page, html
from wf.devserver.api import _reads
from wf.devserver.envelope import ApiError
from wf.errors import WfError

PER_PAGE = 25
BULK_ACTIONS = ("pause", "resume", "terminate", "restart")


@dataclass(frozen=True)
class TriggerForm:
    """What the trigger form shows again after the server refused it."""

    instance_id: str = ""
    params: str = ""
    error: str = ""


async def render(
    request: web.Request, trigger: TriggerForm | None = None, status: int = 200
) -> web.Response:
    """The page for the request's workflow and query string (``trigger``: the refused form)."""
    try:
        filters = ListFilters.parse(request.query)
        engine = _reads(request)
        name = engine.workflow(request.match_info["name"])
        counts = await engine.store.count_statuses(name)
        rows, total = await engine.list_instances(
            name,
            status=filters.status or None,
            page=filters.page,
            per_page=PER_PAGE,
            id_prefix=filters.search or None,
            since=filters.since,
            until=filters.until,
        )
    except (WfError, ApiError) as exc:
        return error_page(exc)
    pages = max((total + PER_PAGE - 1) // PER_PAGE, 1)
    query = filters.query()
    return html(
        page(
            "instances.html",
            workflow=name,
            base=f"/w/{quote(name, safe='')}",
            counts=counts,
            statuses=STATUSES,
            filters=filters,
            status=filters.status,
            search=filters.search,
            since_value=input_value(filters.since, end=False),
            until_value=input_value(filters.until, end=True),
            rows=rows,
            total=total,
            page_number=filters.page,
            pages=pages,
            link=lambda **changes: filters.link(name, **changes),
            here=filters.link(name),
            bulk_query=f"?{urlencode(query)}" if query else "",
            bulk_actions=BULK_ACTIONS,
            bulk_result=bulk_results.lookup(request.app, request.query.get("bulk", "")),
            trigger=trigger or TriggerForm(),
        ),
        status,
    )


async def instances_view(request: web.Request) -> web.Response:
    return await render(request)
