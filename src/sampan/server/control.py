"""The control API: JSON over HTTP on 127.0.0.1, for the CLI (`sampan container list|logs`) and tests.

    GET /v1/health                         {"ok": true, "server_id": ...}
    GET /v1/apps                           the live apps with their version and endpoints
    GET /v1/containers                     every container: id, app, function, pool, state, ...
    GET /v1/containers/{id}/logs?n=&follow=1   text lines; with follow, streamed until it exits

Every request carries `Authorization: Bearer <token>`; the token is written, readable by the user
only, to `$SAMPAN_HOME/servers/<server id>.json`, which is also how the CLI finds running servers.
The parsing reuses the gateway's HTTP head parser, so the control plane needs no web framework.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from .apps import AppServer
from .gateway import http
from .gateway.errors import GatewayError, render


def _json(status: int, payload: Any) -> bytes:
    body = json.dumps(payload).encode()
    return (
        f"HTTP/1.1 {status} {'OK' if status == 200 else 'Error'}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\n\r\n"
    ).encode() + body


class ControlServer:
    def __init__(self, server: AppServer, host: str = "127.0.0.1") -> None:
        self.server = server
        self.host = host
        self.token = secrets.token_urlsafe(24)
        self.port = 0
        self._srv: asyncio.AbstractServer | None = None
        self._conns: set[asyncio.Task[Any]] = set()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        self._srv = await asyncio.start_server(self._handle, self.host, 0, limit=64 * 1024)
        self.port = self._srv.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._srv is not None:
            self._srv.close()
        for task in list(self._conns):
            task.cancel()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._conns.add(task)
        try:
            data = await reader.readuntil(b"\r\n\r\n")
            head = http.parse_request_head(data)
            auth = dict(head.headers).get(b"authorization", b"")
            if not hmac.compare_digest(auth, b"Bearer " + self.token.encode()):
                writer.write(render(401, "missing or invalid control token", close=True))
                return
            await self._route(head, writer)
        except (GatewayError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass
        finally:
            self._conns.discard(task)
            with contextlib.suppress(Exception):
                await writer.drain()
            writer.close()

    async def _route(self, head: http.RequestHead, writer: asyncio.StreamWriter) -> None:
        path = head.path.decode("latin-1").rstrip("/")
        query = dict(parse_qsl(head.query.decode("latin-1")))
        if head.method != b"GET":
            writer.write(_json(405, {"error": "method not allowed"}))
        elif path == "/v1/health":
            writer.write(_json(200, {"ok": True, "server_id": self.server.settings.server_id}))
        elif path == "/v1/apps":
            writer.write(_json(200, self.server.describe_apps()))
        elif path == "/v1/containers":
            writer.write(_json(200, self.server.describe_containers()))
        elif path.startswith("/v1/containers/") and path.endswith("/logs"):
            await self._logs(path.split("/")[3], query, writer)
        else:
            writer.write(_json(404, {"error": "not found"}))

    async def _logs(self, container_id: str, query: dict[str, str], writer: asyncio.StreamWriter) -> None:
        logs = self.server.logs
        if not logs.known(container_id) and container_id not in self.server.live_container_ids():
            writer.write(_json(404, {"error": f"no container {container_id}"}))
            return
        n = int(query["n"]) if query.get("n", "").isdigit() else None
        follow = query.get("follow") in ("1", "true")
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/plain; charset=utf-8\r\ntransfer-encoding: chunked\r\n\r\n"
        )
        queue = logs.follow(container_id) if follow else None
        try:
            for line in logs.tail(container_id, n):
                writer.write(_chunk(line.text + "\n"))
            await writer.drain()
            while queue is not None and container_id in self.server.live_container_ids():
                try:
                    line = await asyncio.wait_for(queue.get(), 1.0)
                except asyncio.TimeoutError:
                    continue
                if line is None:
                    break
                writer.write(_chunk(line.text + "\n"))
                await writer.drain()
        finally:
            if queue is not None:
                logs.unfollow(container_id, queue)
        writer.write(b"0\r\n\r\n")


def _chunk(text: str) -> bytes:
    data = text.encode()
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


@dataclass(frozen=True)
class ServerInfo:
    server_id: str
    pid: int
    control_url: str
    token: str
    kind: str
    started_at: float

    def alive(self) -> bool:
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


def servers_dir(home: Path) -> Path:
    return home / "servers"


def register(home: Path, control: ControlServer, kind: str) -> Path:
    """Write this server's discovery file (mode 0600: it holds the control token)."""
    directory = servers_dir(home)
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    path = directory / f"{control.server.settings.server_id}.json"
    info = {
        "server_id": control.server.settings.server_id,
        "pid": os.getpid(),
        "control_url": control.url,
        "token": control.token,
        "kind": kind,
        "started_at": time.time(),
    }
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(info, fh)
    return path


def running_servers(home: Path) -> list[ServerInfo]:
    """Servers whose discovery file exists and whose process is alive (stale files are removed)."""
    found = []
    directory = servers_dir(home)
    if not directory.is_dir():
        return found
    for path in sorted(directory.glob("*.json")):
        try:
            info = ServerInfo(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):
            continue
        if info.alive():
            found.append(info)
        else:
            with contextlib.suppress(OSError):
                path.unlink()
    return found
