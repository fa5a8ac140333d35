"""The one control API client (sampan/api.py) against a real HTTP server on loopback: every answer
maps to the same exception whoever calls."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from sampan import api
from sampan.exception import AuthError, ExecutionError, InvalidError, NotFoundError


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        return None

    def _answer(self, status: int, payload: object, content_type: str = "application/json") -> None:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if self.headers.get("authorization") != "Bearer secret":
            return self._answer(401, {"error": "missing or invalid token"})
        routes = {"/ok": (200, {"path": self.path}), "/missing": (404, {"error": "no such thing"}),
                  "/bad": (400, {"error": "bad input"}), "/boom": (500, b"not json")}
        if self.path == "/lines":
            return self._answer(200, b'{"a": 1}\n\n{"b": 2}\n', "application/x-ndjson")
        status, payload = routes.get(self.path.split("?")[0], (404, {"error": "not found"}))
        return self._answer(status, payload)

    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        self._answer(200, {"got": body, "type": self.headers.get("content-type")})


@pytest.fixture
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_answers_and_errors_map_one_way(server: str) -> None:
    client = api.ControlClient(server, "secret")
    assert client.get("/ok?x=1") == {"path": "/ok?x=1"}
    assert client.post("/anything", {"k": [1]}) == {"got": {"k": [1]}, "type": "application/json"}
    with pytest.raises(NotFoundError, match="no such thing"):
        client.get("/missing")
    with pytest.raises(InvalidError, match="bad input"):
        client.get("/bad")
    with pytest.raises(ExecutionError, match="answered 500"):
        client.get("/boom")
    with pytest.raises(AuthError):
        api.ControlClient(server, "wrong").get("/ok")


def test_ndjson_streams_event_by_event(server: str) -> None:
    assert list(api.ControlClient(server, "secret").stream_json("GET", "/lines")) == [{"a": 1}, {"b": 2}]


def test_an_unreachable_server_says_where_it_looked() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(api.Unreachable, match=f"Could not reach the Sampan server at http://127.0.0.1:{port}"):
        api.ControlClient(f"http://127.0.0.1:{port}", "t").get("/v1/health", timeout=5)


def test_paths_quote_what_users_name() -> None:
    assert api.path("v1", "volumes", "../etc") == "/v1/volumes/..%2Fetc"
    assert api.path("v1", "apps", "a b", "stop") == "/v1/apps/a%20b/stop"
    assert api.path(query={"x": "a&b"}) == "?x=a%26b"


def test_a_container_uses_its_own_server_and_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAMPAN_SERVER_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("SAMPAN_SERVER_TOKEN", "ct-ws.mac")
    client = api.default_client()
    assert (client.url, client.token) == ("http://127.0.0.1:9", "ct-ws.mac")
