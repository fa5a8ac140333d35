"""The gateway's sockets: one Host-routed port, plus one port per web endpoint.

Per-endpoint ports exist because glibc does not resolve `*.localhost`: `http://127.0.0.1:<port>`
works as printed from curl, browsers, `requests` and `httpx` on any stock machine, while the
Host-routed form (`http://<ws>--<label>.localhost:<gateway port>`) needs a resolver that knows
the name (browsers and curl do; see docs/architecture.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable

from ...config import ProxyLimits
from ..requests import Request
from .front import ClientConnection
from .proxy import Proxy
from .routing import RouteTable


def _bind(host: str, port: int) -> socket.socket:
    # proto=IPPROTO_TCP: asyncio sets TCP_NODELAY only on sockets that say so (accepted ones inherit
    # it); without it, a response head and body written apart wait 40 ms for a delayed ACK.
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


class Gateway:
    def __init__(self, routes: RouteTable, host: str, port: int, scheme: str = "http", workspace: str = "",
                 limits: ProxyLimits | None = None,
                 verify_proxy_token: Callable[[str, str, str], bool] | None = None,
                 request_log: Callable[[Request], None] | None = None) -> None:
        self.routes = routes
        self.host = host
        self.requested_port = port
        self.port = 0
        self.proxy = Proxy(routes, scheme, workspace, limits, verify_proxy_token=verify_proxy_token,
                           request_log=request_log)
        self._main: asyncio.AbstractServer | None = None
        self._endpoint_servers: dict[str, asyncio.AbstractServer] = {}
        self.endpoint_ports: dict[str, int] = {}

    async def _serve(self, sock: socket.socket, fixed: str | None) -> asyncio.AbstractServer:
        proxy = self.proxy  # each connection starts on the quick path (front.py)
        return await asyncio.get_running_loop().create_server(lambda: ClientConnection(proxy, fixed), sock=sock,
                                                              backlog=2048)

    async def start(self) -> None:
        try:
            sock = _bind(self.host, self.requested_port)
        except OSError as exc:
            raise OSError(
                f"The gateway cannot listen on {self.host}:{self.requested_port} ({exc.strerror}). "
                "Set SAMPAN_GATEWAY_PORT to a free port (0 picks one)."
            ) from None
        self._main = await self._serve(sock, None)
        self.port = sock.getsockname()[1]

    async def open_endpoint(self, subdomain: str, candidates: list[int]) -> int:
        """Listen for one endpoint on the first free port of `candidates` (0 = any)."""
        if subdomain in self.endpoint_ports:
            return self.endpoint_ports[subdomain]
        for port in candidates:
            if port and port == self.port:
                continue
            try:
                sock = _bind(self.host, port)
            except OSError:
                continue
            self._endpoint_servers[subdomain] = await self._serve(sock, subdomain)
            self.endpoint_ports[subdomain] = sock.getsockname()[1]
            return self.endpoint_ports[subdomain]
        sock = _bind(self.host, 0)
        self._endpoint_servers[subdomain] = await self._serve(sock, subdomain)
        self.endpoint_ports[subdomain] = sock.getsockname()[1]
        return self.endpoint_ports[subdomain]

    async def close_endpoint(self, subdomain: str) -> None:
        server = self._endpoint_servers.pop(subdomain, None)
        self.endpoint_ports.pop(subdomain, None)
        if server is not None:
            server.close()

    async def close(self) -> None:
        servers = [s for s in (self._main, *self._endpoint_servers.values()) if s is not None]
        for server in servers:
            server.close()
        for client in list(self.proxy.clients):  # on the quick path: their exchanges end with them
            client.transport.close()
        tasks = [*self.proxy.connections, *self.proxy.background]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
        self.proxy.calls.close()  # results of the 303 chain nobody fetched
        self._endpoint_servers.clear()
        self.endpoint_ports.clear()
