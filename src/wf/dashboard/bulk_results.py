"""What a bulk action did, kept for the page it redirects to (post/redirect/get).

The sentence can name up to a thousand ids with their reasons: too long for a URL, and text in
a URL could be made up by anyone who sends a link. So the redirect carries a random token and
the sentence stays here, in this process, for the latest ``KEPT`` bulk actions. A token this
process does not know (another node, a restart) shows nothing.
"""

from __future__ import annotations

import secrets
from collections import OrderedDict

from aiohttp import web

KEPT = 100


class BulkResults:
    def __init__(self) -> None:
        self._by_token: OrderedDict[str, str] = OrderedDict()

    def remember(self, text: str) -> str:
        token = secrets.token_urlsafe(12)
        self._by_token[token] = text
        while len(self._by_token) > KEPT:
            self._by_token.popitem(last=False)
        return token

    def get(self, token: str) -> str | None:
        return self._by_token.get(token)


RESULTS_KEY = web.AppKey("wf_dashboard_bulk_results", BulkResults)


def install(app: web.Application) -> None:
    app[RESULTS_KEY] = BulkResults()


def remember(app: web.Application, text: str) -> str:
    return app[RESULTS_KEY].remember(text)


def lookup(app: web.Application, token: str) -> str | None:
    results = app.get(RESULTS_KEY)
    return results.get(token) if results is not None and token else None
