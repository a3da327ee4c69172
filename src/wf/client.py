"""A small synchronous HTTP client to a wf server (``wf dev`` or ``wf serve``).

Standard library only (``urllib``), so the CLI stays quick to start and ``import wf`` stays light.
Every method returns the envelope's ``result`` (list methods also return ``result_info``) and
raises ``ClientError`` with the server's one-line message, its error code and the HTTP status.

    >>> client = Client("http://127.0.0.1:8787")
    >>> client.create_instance("purchase", params={"sku": "a-1"})
    {'id': '...', 'status': 'queued', 'version_id': '...', 'workflow_id': 'purchase', ...}
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from wf.errors import WfError

DEFAULT_URL = "http://127.0.0.1:8787"
DEFAULT_TIMEOUT = 30.0
# The server imports a deployed bundle in a fresh process before it answers.
DEPLOY_TIMEOUT = 120.0
BUNDLE_TYPE = "application/gzip"
SHA256_HEADER = "X-WF-Bundle-Sha256"
STATUSES = (
    "queued",
    "running",
    "paused",
    "errored",
    "terminated",
    "complete",
    "waiting",
    "waitingForPause",
)
ACTIONS = ("pause", "resume", "terminate", "restart")

# Error codes of the REST contract (the envelope's ``errors[0].code``).
INTERNAL = 10001
BAD_REQUEST = 10002
TOO_LARGE = 10003
PROJECT_BROKEN = 10004
FORBIDDEN = 10005
UNAUTHORIZED = 10006
NO_ROUTE = 10007
WORKFLOW_NOT_FOUND = 10200
INSTANCE_NOT_FOUND = 10400
INSTANCE_EXISTS = 10405
INVALID_TRANSITION = 10406
BUNDLE_INVALID = 10008
BUNDLE_IMPORT_FAILED = 10009
SECRET_NOT_FOUND = 10404


# A stream sends a ping every 15 s: silence three times that long means the server is gone.
STREAM_READ_TIMEOUT = 45.0


@dataclass(frozen=True)
class StreamEvent:
    """One server-sent event of ``subscribe``: its type, its JSON data and its id."""

    event: str
    data: dict[str, Any]
    id: str | None


class ClientError(WfError):
    """The server refused a request, or could not be reached.

    ``api_code`` is the envelope's error code (``10200`` workflow not found, ...) and
    ``http_status`` the HTTP status; both are ``None`` when no answer came back.
    """

    code = "client.error"

    def __init__(
        self, message: str, api_code: int | None = None, http_status: int | None = None
    ) -> None:
        super().__init__(message)
        self.api_code = api_code
        self.http_status = http_status


def normalise_url(url: str) -> str:
    """``http://host:port`` without a trailing slash; refuse anything that is not http(s)."""
    text = url.strip()
    parts = urllib.parse.urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ClientError(f'the server URL must look like http://127.0.0.1:8787, got "{url}"')
    try:
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise ClientError(f'the server URL "{url}" has an invalid port') from None
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))


def _is_loopback(host: str | None) -> bool:
    if host is None:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _segment(value: str) -> str:
    return urllib.parse.quote(value, safe="")


class Client:
    """Talks to the ``/api`` routes of one wf server."""

    def __init__(
        self,
        url: str = DEFAULT_URL,
        token: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        starts_with: str = "wf dev",
    ) -> None:
        self.url = normalise_url(url)
        self.token = token or None
        self.timeout = timeout
        self.starts_with = starts_with  # the command that starts the server this client expects
        host = urllib.parse.urlsplit(self.url).hostname
        handlers: list[urllib.request.BaseHandler] = []
        if _is_loopback(host):
            # A proxy configured in the environment must not intercept a local server.
            handlers.append(urllib.request.ProxyHandler({}))
        self._opener = urllib.request.build_opener(*handlers)

    # ---- transport ----------------------------------------------------------------------------
    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": "wf-cli"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return headers

    def request(
        self,
        method: str,
        path: str,
        *,
        query: dict[str, Any] | None = None,
        body: Any = None,
        send_body: bool = False,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> tuple[Any, dict[str, Any] | None]:
        """Send one request to ``/api<path>``; return ``(result, result_info)``.

        ``body`` is sent as JSON when ``send_body``; ``raw`` is sent as is (give its
        ``Content-Type`` in ``headers``). ``timeout`` replaces the client's for this request."""
        target = f"{self.url}/api{path}"
        if query:
            pairs = {k: _query_value(v) for k, v in query.items() if v is not None}
            if pairs:
                target += "?" + urllib.parse.urlencode(pairs)
        data: bytes | None = None
        all_headers = self._headers()
        if raw is not None:
            data = raw
        elif send_body:
            data = json.dumps(body, ensure_ascii=False, allow_nan=False).encode("utf-8")
            all_headers["Content-Type"] = "application/json"
        all_headers.update(headers or {})
        req = urllib.request.Request(target, data=data, method=method, headers=all_headers)
        status, answer = self._send(req, timeout)
        return self._unwrap(status, answer)

    def _send(self, req: urllib.request.Request, timeout: float | None = None) -> tuple[int, bytes]:
        """Send a request; any HTTP status is an answer, only transport failures raise."""
        wait = self.timeout if timeout is None else timeout
        try:
            with self._opener.open(req, timeout=wait) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            with error:
                return error.code, error.read()
        except urllib.error.URLError as error:
            raise self._unreachable(error.reason, wait) from None
        except (OSError, http.client.HTTPException) as error:
            raise self._unreachable(error, wait) from None

    def _unreachable(self, reason: object, timeout: float | None = None) -> ClientError:
        if isinstance(reason, ConnectionRefusedError) or (
            isinstance(reason, OSError) and reason.errno in (111, 61, 10061)
        ):
            return ClientError(f"no wf server at {self.url}; start one with {self.starts_with}")
        if isinstance(reason, TimeoutError):
            return ClientError(
                f"the wf server at {self.url} did not answer within "
                f"{self.timeout if timeout is None else timeout:g} seconds"
            )
        if isinstance(reason, socket.gaierror):
            return ClientError(f"cannot reach a wf server at {self.url}: unknown host")
        text = getattr(reason, "strerror", None) or str(reason) or type(reason).__name__
        return ClientError(f"cannot reach a wf server at {self.url}: {text}")

    def _unwrap(self, status: int, raw: bytes) -> tuple[Any, dict[str, Any] | None]:
        try:
            envelope = json.loads(raw.decode("utf-8")) if raw else None
        except (UnicodeDecodeError, json.JSONDecodeError):
            envelope = None
        if not isinstance(envelope, dict) or "success" not in envelope:
            raise ClientError(
                f"{self.url} answered HTTP {status} without a wf API response; is it a wf server?",
                http_status=status,
            )
        if envelope.get("success") is True and 200 <= status < 300:
            info = envelope.get("result_info")
            return envelope.get("result"), info if isinstance(info, dict) else None
        errors = envelope.get("errors")
        first = errors[0] if isinstance(errors, list) and errors else {}
        if not isinstance(first, dict):
            first = {}
        message = first.get("message")
        code = first.get("code")
        if not isinstance(message, str) or not message:
            message = f"the server refused the request (HTTP {status})"
        return_code = code if isinstance(code, int) and not isinstance(code, bool) else None
        raise ClientError(message, api_code=return_code, http_status=status)

    def _get(self, path: str, **query: Any) -> Any:
        return self.request("GET", path, query=query)[0]

    # ---- server -------------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        result: dict[str, Any] = self._get("/health")
        return result

    def openapi(self) -> dict[str, Any]:
        """The OpenAPI document (served bare, or inside an envelope)."""
        req = urllib.request.Request(f"{self.url}/api/openapi.json", headers=self._headers())
        status, raw = self._send(req)
        if not 200 <= status < 300:
            self._unwrap(status, raw)  # raises the server's error
        try:
            document = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            document = None
        if isinstance(document, dict) and "success" in document and "result" in document:
            document = document["result"]
        if not isinstance(document, dict):
            raise ClientError(f"{self.url} did not answer an OpenAPI document")
        return document

    # ---- workflows ----------------------------------------------------------------------------
    def list_workflows(
        self, page: int = 1, per_page: int = 25, search: str | None = None
    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """One page of workflows; ``search`` keeps those whose name contains it (any case)."""
        query = {"page": page, "per_page": per_page, "search": search or None}
        result, info = self.request("GET", "/workflows", query=query)
        return list(result or []), info or {}

    def stats(self, workflow: str | None = None, since: str = "1h") -> dict[str, Any]:
        """``GET /api/stats``: a summary per workflow over the last ``since``."""
        result: dict[str, Any] = self._get("/stats", workflow=workflow, since=since)
        return result

    def get_workflow(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self._get(f"/workflows/{_segment(name)}")
        return result

    def delete_workflow(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self.request("DELETE", f"/workflows/{_segment(name)}")[0]
        return result

    # ---- instances ----------------------------------------------------------------------------
    def list_instances(
        self,
        name: str,
        *,
        status: str | None = None,
        page: int = 1,
        per_page: int = 25,
        reverse: bool = False,
    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        query: dict[str, Any] = {"status": status, "page": page, "per_page": per_page}
        if reverse:
            query["reverse"] = True
        result, info = self.request("GET", f"/workflows/{_segment(name)}/instances", query=query)
        return list(result or []), info or {}

    def latest_instance_id(self, name: str) -> str:
        """The id of the newest instance (what ``latest`` means on the command line)."""
        instances, _ = self.list_instances(name, page=1, per_page=1)
        if not instances:
            raise ClientError(f'there are no instances in workflow "{name}"')
        instance_id: str = instances[0]["id"]
        return instance_id

    def create_instance(
        self,
        name: str,
        *,
        id: str | None = None,
        params: Any = None,
        has_params: bool | None = None,
        trigger: str | None = None,
        priority: int | None = None,
    ) -> dict[str, Any]:
        """Queue a new instance. ``params`` is sent when not ``None`` (or when ``has_params``)."""
        body: dict[str, Any] = {}
        if id is not None:
            body["id"] = id
        if priority is not None:
            body["priority"] = priority
        if has_params or (has_params is None and params is not None):
            body["params"] = params
        headers = {"X-WF-Trigger": trigger} if trigger else None
        result: dict[str, Any] = self.request(
            "POST",
            f"/workflows/{_segment(name)}/instances",
            body=body,
            send_body=True,
            headers=headers,
        )[0]
        return result

    def create_batch(
        self, name: str, items: list[dict[str, Any]] | dict[str, Any], *, trigger: str | None = None
    ) -> Any:
        """A list of ``{id, params}`` (the created instances back), or the object form
        ``{"count", "params"}`` / ``{"instances": [...]}`` (``{"created", "errors"}`` back)."""
        headers = {"X-WF-Trigger": trigger} if trigger else None
        result: Any = self.request(
            "POST",
            f"/workflows/{_segment(name)}/instances/batch",
            body=items,
            send_body=True,
            headers=headers,
        )[0]
        return result

    def get_instance(self, name: str, instance_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._get(
            f"/workflows/{_segment(name)}/instances/{_segment(instance_id)}"
        )
        return result

    def get_history(self, name: str, instance_id: str) -> dict[str, Any]:
        """The instance's full history (format "wf-history"), as ``wf.testing`` replays it."""
        result: dict[str, Any] = self._get(
            f"/workflows/{_segment(name)}/instances/{_segment(instance_id)}/history"
        )
        return result

    def subscribe(
        self, name: str, instance_id: str, cursor: str | None = None, reconnect_for: float = 30.0
    ) -> Iterator[StreamEvent]:
        """The instance's progress as it happens (``GET .../subscribe``): its history first, then
        each change, until the ``end`` event (the last one yielded). A stream that ends without
        it (the server reloaded or stopped) is resumed after the last event seen, for up to
        ``reconnect_for`` seconds of failing to get an answer."""
        path = f"/workflows/{_segment(name)}/instances/{_segment(instance_id)}/subscribe"
        retry = 1.0
        failing_since: float | None = None
        while True:
            headers = {**self._headers(), "Accept": "text/event-stream"}
            if cursor:
                headers["Last-Event-ID"] = cursor
            req = urllib.request.Request(f"{self.url}/api{path}", headers=headers)
            try:
                response = self._opener.open(req, timeout=STREAM_READ_TIMEOUT)
            except urllib.error.HTTPError as error:
                with error:
                    self._unwrap(error.code, error.read())  # raises the server's one line
                raise ClientError(f"the server refused the stream (HTTP {error.code})") from None
            except (urllib.error.URLError, OSError, http.client.HTTPException) as error:
                reason = error.reason if isinstance(error, urllib.error.URLError) else error
                now = time.monotonic()
                failing_since = failing_since or now
                if now - failing_since >= reconnect_for:
                    raise self._unreachable(reason, STREAM_READ_TIMEOUT) from None
                time.sleep(retry)
                continue
            failing_since = None
            try:
                with response:
                    for event in read_events(response):
                        if event.event == "retry":
                            retry = float(event.data["ms"]) / 1000
                            continue
                        if event.id:
                            cursor = event.id
                        yield event
                        if event.event == "end":
                            return
            except (OSError, http.client.HTTPException):
                pass  # the connection broke: resume after the last event seen
            time.sleep(min(retry, 0.5))

    def change_status(
        self,
        name: str,
        instance_id: str,
        action: str,
        *,
        trigger: str | None = None,
        extra: dict[str, Any] | None = None,
        rollback: bool = False,
    ) -> dict[str, Any]:
        """``action`` is pause, resume, terminate or restart; returns ``{status, timestamp}``.
        ``trigger`` ("cli") is recorded as who terminated the instance; ``extra`` goes into the
        body (a restart's ``from`` and ``params``); ``rollback`` (with terminate) runs its
        rollback handlers first."""
        if action not in ACTIONS:
            raise ClientError(f'"{action}" is not an action; use one of {", ".join(ACTIONS)}')
        body: dict[str, Any] = {"status": action, **(extra or {})}
        if rollback:
            body["rollback"] = True
        result: dict[str, Any] = self.request(
            "PATCH",
            f"/workflows/{_segment(name)}/instances/{_segment(instance_id)}/status",
            body=body,
            send_body=True,
            headers={"X-WF-Trigger": trigger} if trigger else None,
        )[0]
        return result

    def pause(self, name: str, instance_id: str) -> dict[str, Any]:
        return self.change_status(name, instance_id, "pause")

    def resume(self, name: str, instance_id: str) -> dict[str, Any]:
        return self.change_status(name, instance_id, "resume")

    def terminate(self, name: str, instance_id: str, rollback: bool = False) -> dict[str, Any]:
        return self.change_status(name, instance_id, "terminate", rollback=rollback)

    def restart(
        self,
        name: str,
        instance_id: str,
        *,
        from_step: dict[str, Any] | None = None,
        params: Any = None,
    ) -> dict[str, Any]:
        """Restart, from ``from_step`` (``{"name", "count"?, "type"?}``) if given, with new
        ``params`` if not None."""
        extra: dict[str, Any] = {}
        if from_step is not None:
            extra["from"] = from_step
        if params is not None:
            extra["params"] = params
        return self.change_status(name, instance_id, "restart", extra=extra)

    def delete_instance(self, name: str, instance_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self.request(
            "DELETE", f"/workflows/{_segment(name)}/instances/{_segment(instance_id)}"
        )[0]
        return result

    def delete_batch(self, name: str, ids: list[str]) -> dict[str, Any]:
        """``{"deleted": [{"id"}], "errors": [{"id", "code", "message"}]}``."""
        result: dict[str, Any] = self.request(
            "POST",
            f"/workflows/{_segment(name)}/instances/batch/delete",
            body={"instances": ids},
            send_body=True,
        )[0]
        return result

    def send_event(
        self, name: str, instance_id: str, event_type: str, payload: Any = None
    ) -> dict[str, Any]:
        result: dict[str, Any] = self.request(
            "POST",
            f"/workflows/{_segment(name)}/instances/{_segment(instance_id)}/events/"
            f"{_segment(event_type)}",
            body=payload,
            send_body=True,
        )[0]
        return result

    def upgrade(self, name: str, instance_id: str) -> dict[str, Any]:
        """Move an instance to the active version (``wf serve``); returns
        ``{id, from_version, to_version, status}``."""
        result: dict[str, Any] = self.request(
            "POST", f"/workflows/{_segment(name)}/instances/{_segment(instance_id)}/upgrade"
        )[0]
        return result

    # ---- deployments (wf serve) ---------------------------------------------------------------
    def deploy(
        self, bundle: bytes, sha256: str | None = None, *, timeout: float = DEPLOY_TIMEOUT
    ) -> dict[str, Any]:
        """Upload a bundle (a gzip-compressed tar) and make it the active version.

        Returns ``{version_id, created_on, workflows, files, size, already_active}``. The server
        checks ``sha256`` (hex) when given. The timeout is long: the server imports the bundle in
        a fresh process before it answers."""
        headers = {"Content-Type": BUNDLE_TYPE}
        if sha256:
            headers[SHA256_HEADER] = sha256
        result: dict[str, Any] = self.request(
            "POST", "/deploy", raw=bundle, headers=headers, timeout=timeout
        )[0]
        return result

    def versions(self, name: str) -> list[dict[str, Any]]:
        """The versions that had workflow ``name``, newest first."""
        result = self._get(f"/workflows/{_segment(name)}/versions")
        return list(result or [])

    # ---- secrets (wf serve) -------------------------------------------------------------------
    def secrets(self) -> list[dict[str, Any]]:
        """``[{name, updated_on}]``; the server never sends a value back."""
        result = self._get("/secrets")
        return list(result or [])

    def put_secret(self, name: str, value: str) -> dict[str, Any]:
        result: dict[str, Any] = self.request(
            "PUT", f"/secrets/{_segment(name)}", body={"value": value}, send_body=True
        )[0]
        return result

    def delete_secret(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self.request("DELETE", f"/secrets/{_segment(name)}")[0]
        return result


def read_events(lines: Iterator[bytes] | Any) -> Iterator[StreamEvent]:
    """Server-sent events from a stream of lines (comments skipped; a ``retry:`` line comes as
    an event of type ``retry`` with ``{"ms"}``)."""
    event, data, event_id = "message", "", None
    for raw in lines:
        line = raw.decode("utf-8").rstrip("\r\n")
        if not line:
            if data:
                try:
                    parsed = json.loads(data)
                except json.JSONDecodeError:
                    parsed = {"text": data}
                yield StreamEvent(event, parsed if isinstance(parsed, dict) else {}, event_id)
            event, data = "message", ""
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if field == "event":
            event = value
        elif field == "data":
            data = f"{data}\n{value}" if data else value
        elif field == "id":
            event_id = value
        elif field == "retry" and value.isdigit():
            yield StreamEvent("retry", {"ms": int(value)}, None)


def _query_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
