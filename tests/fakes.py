"""What lies beyond the backend seam, faked for in-memory tests of the server: a backend whose
containers are small HTTP servers in the test's own event loop, on loopback.

A fake container answers a web request with `<container id> <method> <path>` and a call of the call
protocol (server/invoke.py) with the arguments it got, as the value of the call; everything on the
server's side of the seam (pools, gateway, invoker, control API, store) is the real thing.
"""

from __future__ import annotations

import asyncio
import contextlib
import pickle
from pathlib import Path
from typing import Any

from sampan import callwire
from sampan.backends.base import Backend, Container, ContainerSpec, LogSink
from sampan.config import ProxyLimits, Settings
from sampan.manifest import FunctionEntry, Manifest
from sampan.server.bundle import write_bundle


class HttpContainer(Container):
    def __init__(self, container_id: str) -> None:
        self.id = container_id
        self.address = ("127.0.0.1", 0)
        self.requests: list[tuple[str, str]] = []
        self._server: asyncio.AbstractServer | None = None
        self._exited = asyncio.Event()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.address = ("127.0.0.1", self._server.sockets[0].getsockname()[1])

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
                body = await reader.readexactly(int(headers.get("content-length") or 0))
                self.requests.append((method, target))
                if headers.get("content-type", "").encode() == callwire.CONTENT_VALUE:
                    payload = callwire.VALUE + pickle.dumps(("called", pickle.loads(body)))
                    kind = callwire.CONTENT_VALUE
                elif target.startswith("/sleep"):  # a slow function: the answer comes after half a second
                    await asyncio.sleep(0.5)
                    payload, kind = f"{self.id} slept".encode(), b"text/plain"
                elif target.startswith("/chunked"):  # a streamed answer, as a StreamingResponse sends
                    writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n")
                    await writer.drain()
                    await asyncio.sleep(0.05)
                    writer.write(b"6\r\n world\r\n0\r\n\r\n")
                    await writer.drain()
                    continue
                elif target.startswith("/switch"):  # a 101 to a request that asked for no upgrade
                    writer.write(b"HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: h2c\r\n\r\n")
                    await writer.drain()
                    continue
                else:
                    payload = f"{self.id} {method} {target}".encode()
                    kind = b"text/plain"
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: " + kind + b"\r\ncontent-length: "
                             + str(len(payload)).encode() + b"\r\n\r\n" + payload)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    @property
    def alive(self) -> bool:
        return not self._exited.is_set()

    async def stop(self, grace: float = 30.0) -> None:
        self.kill()

    def kill(self) -> None:
        if self._server is not None:
            self._server.close()
        self._exited.set()

    async def wait(self) -> int:
        await self._exited.wait()
        return 0


class FakeBackend(Backend):
    name = "fake"

    def __init__(self) -> None:
        self.containers: list[HttpContainer] = []
        self.starts = asyncio.Event()  # cleared: container starts wait until it is set again
        self.starts.set()

    async def start(self, spec: ContainerSpec, log: LogSink) -> Container:
        await self.starts.wait()
        container = HttpContainer(spec.container_id)
        await container.start()
        self.containers.append(container)
        return container

    async def close(self) -> None:
        for container in self.containers:
            with contextlib.suppress(Exception):
                container.kill()


def settings(home: Path, **overrides: Any) -> Settings:
    return Settings(home=home, workspace="tester", domain="localhost", host="127.0.0.1", gateway_port=0,
                    endpoint_port_base=0, dev_suffix="dev", debounce_ms=100, server_id="test-server",
                    images_dir=home / "images", limits=overrides.pop("limits", ProxyLimits()), **overrides)


def manifest(app_name: str = "demo", web: tuple[str, ...] = ("hello",), calls: tuple[str, ...] = ()) -> Manifest:
    """An app of web endpoints (FastAPI-style, no image) and functions called with `.remote()`."""
    return Manifest(
        app_name=app_name, module="app", app_var="app",
        functions=tuple(FunctionEntry(tag, "fastapi_endpoint", {"kind": "fastapi_endpoint", "method": "GET"})
                        for tag in web),
        calls=tuple(FunctionEntry(tag, "function", {}) for tag in calls),
    )


def bundle(home: Path) -> Any:
    return write_bundle(home, {"app.py": b"# the fake backend never runs it\n"})
