"""wf.client against a real server, and where the CLI finds the server (wf.cli.options)."""

from __future__ import annotations

import http.server
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from unittest.mock import ANY

import pytest

from wf.cli.exit import CliError, one_line, parse_json
from wf.cli.options import resolve_url, url_for
from wf.client import (
    INSTANCE_EXISTS,
    INSTANCE_NOT_FOUND,
    WORKFLOW_NOT_FOUND,
    Client,
    ClientError,
    normalise_url,
)
from wf.errors import WfError

from .conftest import LiveServer, unused_port, wait_status

ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def test_every_route(server: LiveServer) -> None:
    client = server.client()
    health = client.health()
    assert health["status"] == "ok"
    assert health["project"] == "shop"
    assert "paths" in client.openapi()

    workflows, info = client.list_workflows(per_page=2)
    assert [w["name"] for w in workflows] == ["quick", "failing"]
    assert info == {"page": 1, "per_page": 2, "count": 2, "total_count": 5}
    found, info = client.list_workflows(search="APP")
    assert [w["name"] for w in found] == ["napper", "approval"]
    assert info["total_count"] == 2
    assert client.get_workflow("napper")["class_name"] == "Napper"

    created = client.create_batch("quick", [{"id": "b1", "params": {"n": 1}}, {"id": "b2"}])
    assert [c["id"] for c in created] == ["b1", "b2"]
    wait_status(client, "quick", "b1")
    wait_status(client, "quick", "b2")
    instances, info = client.list_instances("quick", status="complete", reverse=True)
    assert [i["id"] for i in instances] == ["b1", "b2"]
    assert info["total_count"] == 2
    assert client.latest_instance_id("quick") == "b2"

    client.create_instance("napper", id="n1", trigger="cli")
    wait_status(client, "napper", "n1", ("waiting",))
    assert client.pause("napper", "n1")["status"] in ("paused", "waitingForPause")
    assert client.resume("napper", "n1")["status"] in ("running", "waiting", "queued")
    assert client.terminate("napper", "n1")["status"] == "terminated"
    assert client.get_instance("napper", "n1")["trigger"] == {"source": "api", "via": "cli"}
    assert client.restart("napper", "n1")["status"] in ("queued", "running")

    client.create_instance("approval", id="a1")
    sent = client.send_event("approval", "a1", "approve", [1, 2])
    # Cloudflare's clients read instanceId and timestamp too.
    assert sent == {"type": "approve", "instance_id": "a1", "instanceId": "a1", "timestamp": ANY}
    assert ISO_MS.match(sent["timestamp"]), sent
    assert wait_status(client, "approval", "a1")["output"] == {"approved_with": [1, 2]}
    history = client.get_history("approval", "a1")
    assert (history["format"], history["id"], history["output"]) == (
        "wf-history",
        "a1",
        {"approved_with": [1, 2]},
    )
    assert history["events"][0]["payload"] == [1, 2]
    deleted = client.delete_workflow("quick")
    assert deleted == {"status": "ok", "name": "quick", "deleted": 2}  # Cloudflare's status too


def test_errors_carry_the_server_code_and_status(server: LiveServer) -> None:
    client = server.client()
    with pytest.raises(ClientError) as caught:
        client.get_workflow("nope")
    assert isinstance(caught.value, WfError)
    assert caught.value.api_code == WORKFLOW_NOT_FOUND
    assert caught.value.http_status == 404
    assert caught.value.message.startswith('workflow "nope" not found')

    with pytest.raises(ClientError) as caught:
        client.get_instance("quick", "ghost")
    assert (caught.value.api_code, caught.value.http_status) == (INSTANCE_NOT_FOUND, 404)
    with pytest.raises(ClientError) as caught:
        client.get_history("quick", "ghost")
    assert (caught.value.api_code, caught.value.http_status) == (INSTANCE_NOT_FOUND, 404)

    client.create_instance("quick", id="once")
    with pytest.raises(ClientError) as caught:
        client.create_instance("quick", id="once")
    assert (caught.value.api_code, caught.value.http_status) == (INSTANCE_EXISTS, 400)

    with pytest.raises(ClientError, match="no instances in workflow"):
        client.latest_instance_id("napper")


def test_no_server_at_the_url() -> None:
    url = f"http://127.0.0.1:{unused_port()}"
    with pytest.raises(ClientError) as caught:
        Client(url).health()
    assert str(caught.value) == f"no wf server at {url}; start one with wf dev"
    assert caught.value.api_code is None and caught.value.http_status is None


@pytest.fixture
def not_wf() -> Iterator[str]:
    """Some other web server, answering HTML."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"<html>hello</html>"
            self.send_response(404)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(10)


def test_an_answer_that_is_not_wf(not_wf: str) -> None:
    with pytest.raises(ClientError) as caught:
        Client(not_wf).list_workflows()
    assert str(caught.value) == (
        f"{not_wf} answered HTTP 404 without a wf API response; is it a wf server?"
    )
    assert caught.value.http_status == 404


def test_urls() -> None:
    assert normalise_url(" http://127.0.0.1:8787/ ") == "http://127.0.0.1:8787"
    for bad in ("127.0.0.1:8787", "ftp://host", "http://", "http://host:99999"):
        with pytest.raises(ClientError):
            normalise_url(bad)
    assert url_for("0.0.0.0", 9000) == "http://127.0.0.1:9000"
    assert url_for("::", 9000) == "http://[::1]:9000"
    assert url_for("::1", 9000) == "http://[::1]:9000"
    assert url_for("localhost", 1) == "http://localhost:1"


def test_resolve_url(tmp_path: Path) -> None:
    assert resolve_url("http://example.test:1", tmp_path) == "http://example.test:1"
    assert resolve_url(None, tmp_path) == "http://127.0.0.1:8787"
    (tmp_path / "wf.toml").write_text("this is [not toml")
    assert resolve_url(None, tmp_path) == "http://127.0.0.1:8787"
    (tmp_path / "wf.toml").write_text('[dev]\nport = "high"\nhost = "0.0.0.0"\n')
    assert resolve_url(None, tmp_path) == "http://127.0.0.1:8787"
    (tmp_path / "wf.toml").write_text("[dev]\nport = 9999\n")
    assert resolve_url(None, tmp_path) == "http://127.0.0.1:9999"


def test_json_and_lines() -> None:
    assert parse_json('{"a": [1, 2]}', "params", plural=True) == {"a": [1, 2]}
    with pytest.raises(CliError, match=r"^params are not valid JSON: Expecting value"):
        parse_json("", "params", plural=True)
    with pytest.raises(CliError, match="Infinity is not allowed"):
        parse_json("[Infinity]", "payload")
    assert one_line("first\n  second\r\nthird\x1b[2J") == "first second third\\x1b[2J"
