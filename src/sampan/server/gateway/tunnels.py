"""A Sandbox's tunnels (`sb.tunnels()`): a TCP port of the server per exposed port of the sandbox.

Each connection to the tunnel's port is copied, both ways, to the sandbox: to the relay socket its agent
keeps beside its own (`<socket>.<port>`, which reaches 127.0.0.1:<port> inside the sandbox's network),
or, on the process runtime where a sandbox shares the host's network, to that port on loopback. The
sandbox makes the relay socket, so it could make that name a link to a socket of the host's: the
connection goes to the socket found there, never through a link (backends/addresses.py `connect_unix`). Bytes
are not interpreted: HTTP, WebSockets or any TCP protocol pass. `on_connection(+1/-1)` lets the sandbox
count open connections as activity (its idle timeout).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from ...backends.addresses import connect_unix
from ...runtime.relay import pipe


class Tunnel:
    def __init__(self, host: str, socket_path: str | None, port: int,
                 on_connection: Callable[[int], None] = lambda delta: None) -> None:
        """`socket_path`: the host path of the sandbox's own socket (None: it shares the host's network)."""
        self.host = host
        self.target: Any = f"{socket_path}.{port}" if socket_path is not None else ("127.0.0.1", port)
        self.container_port = port
        self.on_connection = on_connection
        self.port = 0
        self._server: asyncio.AbstractServer | None = None
        self._conns: set[asyncio.Task[Any]] = set()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._connection, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _connection(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._conns.add(task)
        self.on_connection(1)
        try:
            try:
                if isinstance(self.target, str):
                    app_r, app_w = await connect_unix(self.target)
                else:
                    app_r, app_w = await asyncio.open_connection(*self.target)
            except OSError:
                return
            try:
                await asyncio.gather(pipe(client_r, app_w), pipe(app_r, client_w))
            finally:
                app_w.close()
        finally:
            client_w.close()
            self.on_connection(-1)
            self._conns.discard(task)

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._conns):
            task.cancel()

