"""Cloudflare's v4 envelope, the API's error codes, and how wf's errors map onto them.

Every response body is ``{"success", "errors": [{"code", "message"}], "messages", "result"}``
(plus ``result_info`` for lists). On error ``result`` is null and ``errors`` holds exactly one
entry whose message is a single line.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from wf.errors import (
    InstanceAlreadyExists,
    InstanceNotFound,
    InvalidTransition,
    StoreError,
    StoreUnavailable,
    ValidationError,
    WfError,
    WorkflowNotFound,
)

# ---- error codes (the contract's table) ------------------------------------------------------
INTERNAL = 10001  # 500: an internal error (the message says which)
BAD_REQUEST = 10002  # 400: bad body or parameter, or not valid HTTP
TOO_LARGE = 10003  # 413: the body is over its limit
PROJECT_BROKEN = 10004  # 503: the project failed to load
FORBIDDEN = 10005  # 403: Host or Origin refused
UNAUTHORIZED = 10006  # 401: missing or wrong API token
NO_ROUTE = 10007  # 404 / 405: no such path or method (or version of a workflow)
UNAVAILABLE = 10008  # 503: the database cannot be reached for now; retry
WORKFLOW_NOT_FOUND = 10200  # 404: no workflow of that name
WORKFLOW_IN_CONFIG = 10201  # 409: an update asks for what only wf.toml and wf deploy change
INSTANCE_NOT_FOUND = 10400  # 404: no instance of that id in that workflow
# 400, as Cloudflare answers (its SDKs map the status to a class)
INSTANCE_EXISTS = 10405  # 400: an instance with that id already exists
INVALID_TRANSITION = 10406  # 409: the instance cannot do that from its status

# wf's errors → (HTTP status, code); the first matching class wins, so subclasses come first.
WF_ERRORS: tuple[tuple[type[WfError], int, int], ...] = (
    (ValidationError, 400, BAD_REQUEST),
    (WorkflowNotFound, 404, WORKFLOW_NOT_FOUND),
    (InstanceNotFound, 404, INSTANCE_NOT_FOUND),
    (InstanceAlreadyExists, 400, INSTANCE_EXISTS),
    (InvalidTransition, 409, INVALID_TRANSITION),
    (StoreUnavailable, 503, UNAVAILABLE),
    (StoreError, 500, INTERNAL),
)


class ApiError(Exception):
    """Raised anywhere below a handler; the error middleware turns it into an envelope."""

    def __init__(
        self,
        status: int,
        code: int,
        message: str,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = one_line(message)
        self.headers = dict(headers or {})


def from_wf_error(exc: WfError) -> ApiError:
    """The API error for one of wf's errors (unknown kinds are internal errors)."""
    for kind, status, code in WF_ERRORS:
        if isinstance(exc, kind):
            message = exc.message
            if kind is StoreError or kind is StoreUnavailable:
                message = f"database error: {message}"
            return ApiError(status, code, message)
    return ApiError(500, INTERNAL, f"internal error: {exc.message}")


_CONTROL = {i: f"\\x{i:02x}" for i in (*range(32), *range(127, 160))} | {
    0x2028: "\\u2028",
    0x2029: "\\u2029",
    ord("\n"): "\\n",
    ord("\r"): "\\r",
    ord("\t"): "\\t",
}


def one_line(message: str) -> str:
    """Messages are one line: control characters (a newline in an id, say) and lone surrogates
    (which are not text) are shown escaped."""
    text = message.strip().translate(_CONTROL)
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _dumps(body: Any) -> str:
    text = json.dumps(body, ensure_ascii=False, allow_nan=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate somewhere: escape everything instead
        text = json.dumps(body, ensure_ascii=True, allow_nan=False)
    return text


def ok(
    result: Any,
    *,
    status: int = 200,
    result_info: Mapping[str, Any] | None = None,
) -> web.Response:
    body: dict[str, Any] = {"success": True, "errors": [], "messages": [], "result": result}
    if result_info is not None:
        body["result_info"] = dict(result_info)
    return web.json_response(body, status=status, dumps=_dumps)


def fail(
    status: int, code: int, message: str, headers: Mapping[str, str] | None = None
) -> web.Response:
    body = {
        "success": False,
        "errors": [{"code": code, "message": one_line(message)}],
        "messages": [],
        "result": None,
    }
    return web.json_response(body, status=status, dumps=_dumps, headers=headers)


def error_response(error: ApiError) -> web.Response:
    return fail(error.status, error.code, error.message, error.headers or None)
