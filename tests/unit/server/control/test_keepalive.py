"""The control API over real sockets: a client's requests share one kept-alive connection, and a
connection the server closed while idle is replaced without the caller noticing."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from sampan import api
from sampan.server.assemble import assemble
from sampan.server.control import server as control_server
from sampan.server.store import Store
from tests import fakes


@contextlib.contextmanager
def running_server(home: Path) -> Iterator[tuple[str, str]]:
    """A server (fake backend) on its own thread and loop; yields its control URL and token."""
    ready, done = threading.Event(), threading.Event()
    box: dict[str, str] = {}

    async def main() -> None:
        store = Store(home)
        assembly = assemble(fakes.settings(home), backend=fakes.FakeBackend(), store=store)
        await assembly.start()
        box["url"], box["token"] = assembly.control.url, assembly.control.token
        ready.set()
        while not done.is_set():
            await asyncio.sleep(0.05)
        await assembly.close()
        store.close()

    thread = threading.Thread(target=lambda: asyncio.run(main()), daemon=True)
    thread.start()
    try:
        assert ready.wait(30)
        yield box["url"], box["token"]
    finally:
        done.set()
        thread.join(30)


def test_requests_share_a_connection_and_survive_its_idle_close(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(control_server, "IDLE_TIMEOUT_S", 0.5)
    with running_server(tmp_path / "home") as (url, token):
        client = api.ControlClient(url, token)
        assert client.get("/v1/health")["workspace"] == "tester"
        first = client._local.conn
        assert first is not None and first.sock is not None
        port = first.sock.getsockname()[1]
        for _ in range(5):
            client.get("/v1/health")
        assert client._local.conn is first and first.sock.getsockname()[1] == port  # one connection
        with pytest.raises(api.NotFoundError):
            client.get("/v1/functions/none/none")
        assert client._local.conn is first  # an error answer keeps the connection too
        threading.Event().wait(1.0)  # the server closes the idle connection
        assert client.get("/v1/health")["ok"] is True  # sent again, on a new connection
        assert client._local.conn is not first
        client.close()


def test_routes_found_by_the_literal_index_still_need_a_token(tmp_path: Path) -> None:
    """`POST /v1/calls` and `GET /v1/apps` are answered through the router's dict of literal paths: over a
    real socket, no token, a malformed one and another server's are refused before any route runs."""
    with running_server(tmp_path / "home") as (url, good_token):
        body = {"app": "demo", "function": "add", "params": {}, "args": "", "mode": "call"}
        for token in ("", "not-a-token", "ct-tester.0000", good_token[:-1] + "x"):
            client = api.ControlClient(url, token)
            with pytest.raises(api.AuthError):
                client.post("/v1/calls", body)
            with pytest.raises(api.AuthError):
                client.get("/v1/apps")
            client.close()
        good = api.ControlClient(url, good_token)
        assert good.get("/v1/apps") == []
        good.close()
