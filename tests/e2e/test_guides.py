"""Every example of the guides in shared/reference, served by `sampan serve` and answered as the guide says.

Real processes, real HTTP (requests, httpx, curl where present), real WebSockets.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
from pathlib import Path

import httpx
import pytest
import requests
import websockets.sync.client

from tests.helpers import serve

GUIDES = Path(__file__).resolve().parents[2] / "examples" / "guides"
pytestmark = pytest.mark.slow


def port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


needs_port_8000 = pytest.mark.skipif(not port_free(8000), reason="port 8000 is taken on this machine")


def test_simple_endpoints_answer_as_the_guide_says(tmp_path: Path) -> None:
    with serve(GUIDES / "current_simple.py", tmp_path) as s:
        assert set(s.urls) == {"f", "square"}
        assert requests.get(s.urls["f"], timeout=30).json() == "Hello world!"
        assert requests.get(s.urls["square"], params={"x": 42}, timeout=30).text == '{"square":1764}'
        # The URL works as printed from httpx and from curl too.
        assert httpx.get(s.urls["square"] + "?x=3", timeout=30).json() == {"square": 9}
        if shutil.which("curl"):
            out = subprocess.run(["curl", "-s", s.urls["square"] + "?x=42"], capture_output=True, timeout=30)
            assert out.stdout == b'{"square":1764}'
        # FastAPI validation is the app's: a missing query parameter is FastAPI's 422.
        assert requests.get(s.urls["square"], timeout=30).status_code == 422
        # Only GET is routed for a GET endpoint.
        assert requests.post(s.urls["f"], timeout=30).status_code == 405


def test_post_endpoint_takes_a_json_body(tmp_path: Path) -> None:
    with serve(GUIDES / "current_square_post.py", tmp_path) as s:
        r = requests.post(s.urls["square"], data=json.dumps({"x": 42}),
                          headers={"Content-Type": "application/json"}, timeout=30)
        assert r.text == '{"square":1764}'


def test_pydantic_model_and_html_response(tmp_path: Path) -> None:
    with serve(GUIDES / "current_fastapi_item.py", tmp_path) as s:
        data = {"name": "Erik", "qty": 10}
        r = requests.post(s.urls["f"], json=data, timeout=30.0)
        assert r.status_code == 200
        assert r.text == "<html>Hello, Erik!</html>"
        assert r.headers["content-type"].startswith("text/html")


def test_asgi_app_with_concurrency(tmp_path: Path) -> None:
    with serve(GUIDES / "current_asgi_echo.py", tmp_path) as s:
        url = s.urls["fastapi_app"]
        assert requests.post(url + "/echo", json={"a": [1, 2]}, timeout=30).json() == {"a": [1, 2]}
        with httpx.Client(timeout=30) as client:
            for i in range(20):
                assert client.post(url + "/echo", json={"i": i}).json() == {"i": i}


def test_asgi_lifespan_runs_at_start_and_stop(tmp_path: Path) -> None:
    with serve(GUIDES / "current_lifespan.py", tmp_path) as s:
        assert requests.get(s.urls["fastapi_app_with_lifespan"], timeout=30).json() == "hello"
        s.wait_for("Starting")
        code = s.interrupt()
        assert code == 0
        assert "Shutting down" in s.output


def test_wsgi_flask_echo(tmp_path: Path) -> None:
    with serve(GUIDES / "current_flask_echo.py", tmp_path) as s:
        r = requests.post(s.urls["flask_app"] + "/echo", json={"hello": "flask"}, timeout=30)
        assert r.json() == {"hello": "flask"}


@needs_port_8000
def test_web_server_file_server(tmp_path: Path) -> None:
    with serve(GUIDES / "current_file_server.py", tmp_path) as s:
        r = requests.get(s.urls["my_file_server"], timeout=30)
        assert r.status_code == 200
        assert "Directory listing for /" in r.text


@needs_port_8000
def test_parametrized_web_server_takes_class_parameters_from_the_query(tmp_path: Path) -> None:
    (tmp_path / "served").mkdir()
    with serve(GUIDES / "current_parametrized.py", tmp_path) as s:
        url = s.urls["Server.files"]
        assert url.startswith("http://")
        # default root "." is the code bundle: it lists the script itself
        assert "current_parametrized.py" in requests.get(url, timeout=30).text
        # another value is another pool (and, here, another container on the same port)
        listing = requests.get(url, params={"root": "/"}, timeout=30).text
        assert "Directory listing for /" in listing
        assert requests.get(url, params={"root": "%2F"}, timeout=30).status_code in (200, 404)


def test_client_ip_is_the_real_peer(tmp_path: Path) -> None:
    with serve(GUIDES / "current_client_ip.py", tmp_path) as s:
        r = requests.get(s.urls["get_ip_address"], headers={"X-Forwarded-For": "6.6.6.6"}, timeout=30)
        assert r.json() == "Your IP address is 127.0.0.1"


def test_2024_edition_web_endpoint_still_works_with_a_warning(tmp_path: Path) -> None:
    with serve(GUIDES / "edition2024_web_endpoint.py", tmp_path) as s:
        assert "renamed to `@modal.fastapi_endpoint`" in s.output
        assert "DeprecationError" in s.output
        assert requests.get(s.urls["f"], timeout=30).json() == "Hello world!"
        assert requests.get(s.urls["square"], params={"x": 42}, timeout=30).json() == {"square": 1764}


def test_2024_edition_module_level_fastapi_app(tmp_path: Path) -> None:
    with serve(GUIDES / "edition2024_asgi_module_level.py", tmp_path) as s:
        url = s.urls["fastapi_app"]
        assert requests.post(url + "/foo", json={"k": "v"}, timeout=30).json() == {"k": "v"}
        assert requests.get(url + "/bar", timeout=30).text == "<h1>Hello Fast world!</h1>"
        assert requests.get(url + "/bar", params={"arg": "Sampan"}, timeout=30).text == "<h1>Hello Fast Sampan!</h1>"


def test_2024_edition_flask(tmp_path: Path) -> None:
    with serve(GUIDES / "edition2024_flask.py", tmp_path) as s:
        url = s.urls["flask_app"]
        assert requests.get(url, timeout=30).text == "Hello Flask World!"
        assert requests.post(url + "/echo", json=[1, 2, 3], timeout=30).json() == [1, 2, 3]


def test_oldest_edition_stub_webhooks(tmp_path: Path) -> None:
    with serve(GUIDES / "oldest_stub.py", tmp_path) as s:
        assert 'The use of "Stub" has been deprecated' in s.output
        assert requests.get(s.urls["f"], timeout=30).json() == "Hello world!"
        assert requests.get(s.urls["square"], params={"x": 42}, timeout=30).json() == {"square": 1764}
        r = requests.post(s.urls["square_post"], json={"x": 42}, timeout=30)
        assert r.json() == {"square": 1764}
        # keep_warm=True: a warm pool of 2 containers before any request.
        assert requests.get(s.urls["warm"], timeout=30).json() == {"hello": "world"}
        assert "keep_warm -> min_containers" in s.output


def test_oldest_edition_stub_asgi_and_wsgi(tmp_path: Path) -> None:
    with serve(GUIDES / "oldest_asgi_wsgi.py", tmp_path) as s:
        asgi, wsgi = s.urls["fastapi_app"], s.urls["flask_app"]
        assert requests.post(asgi + "/foo", json={"a": 1}, timeout=30).json() == {"a": 1}
        assert requests.get(asgi + "/bar", timeout=30).text == "<h1>Hello Fast world!</h1>"
        assert requests.get(wsgi, timeout=30).text == "Hello Flask World!"
        assert requests.post(wsgi + "/foo", json={"b": 2}, timeout=30).json() == {"b": 2}


def test_cheatsheet_hello_streaming_and_websockets(tmp_path: Path) -> None:
    with serve(GUIDES / "cheatsheet.py", tmp_path) as s:
        assert requests.get(s.urls["hello"], timeout=30).json() == {"message": "Hello, World!"}
        assert requests.get(s.urls["hello"], params={"name": "Ada"}, timeout=30).json() == {
            "message": "Hello, Ada!"
        }
        with requests.get(s.urls["stream_generate"], params={"prompt": "a b c"}, stream=True, timeout=30) as r:
            assert r.headers["content-type"].startswith("text/event-stream")
            events = [line for line in r.iter_lines() if line]
        assert events == [b"data: a", b"data: b", b"data: c"]
        ws_url = s.urls["ws_app"].replace("http://", "ws://") + "/ws"
        with websockets.sync.client.connect(ws_url, open_timeout=30) as ws:
            for word in ("hello", "sampan", "x" * 100_000):
                ws.send(word)
                assert ws.recv(timeout=30) == word.upper()
