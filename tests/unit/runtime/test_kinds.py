"""Runtime builders that can be checked in-process (the rest runs in real containers in e2e)."""

from __future__ import annotations

import asyncio
import re
import socket
import sys

import pytest

from sampan.exception import InvalidError
from sampan.runtime import kinds


def test_fastapi_missing_gets_modals_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "fastapi", None)
    with pytest.raises(InvalidError, match=re.escape(
        "Modal functions decorated with `fastapi_endpoint` require FastAPI to be installed in the modal.Image. "
        "Please update your Image definition code, e.g. with `.pip_install(\"fastapi[standard]\")`."
    )):
        kinds.fastapi_endpoint_app(lambda: None, "GET", False)


def test_wait_for_port_times_out_with_modals_message() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening
        with pytest.raises(TimeoutError, match=re.escape(
            f"Waited too long for port {port} to start accepting connections. Make sure the web server is bound "
            "to 0.0.0.0 (rather than localhost or 127.0.0.1), or adjust `startup_timeout`."
        )):
            asyncio.run(kinds.wait_for_port(port, 0.2))


def test_wait_for_port_returns_once_listening() -> None:
    async def main() -> None:
        server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            await kinds.wait_for_port(port, 2.0)
        finally:
            server.close()
            await server.wait_closed()

    asyncio.run(main())
