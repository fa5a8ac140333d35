"""The gateway's data plane: one coroutine per client connection, streaming in both directions.

For each request on a keep-alive connection:

    read and parse the head            (gateway/http.py)
    resolve the endpoint and its pool  (gateway/routing.py, by port or Host)
    acquire a container slot           (server/pool.py: waits during a cold start)
    send the head and stream the body to the container, concurrently read and stream the response
    release the slot

WebSocket upgrades are proxied as raw bytes after the 101, holding the slot for the whole
connection. Bodies are never held whole in memory: every copy is a bounded loop of reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import Callable
from typing import Any

from ...backends.base import ContainerStartError
from ..pool import PoolClosed, PoolContainer, QueueFull
from . import http
from .errors import QUEUE_FULL, TERMINATED, TIMED_OUT, GatewayError, init_failure, render
from .routing import RouteTable

MAX_HEAD = 64 * 1024
CHUNK = 64 * 1024


class UpstreamFailed(Exception):
    """The container closed or broke the connection before a response head arrived."""


def new_call_id() -> str:
    return "fc-" + secrets.token_hex(12)


async def _read_head(reader: asyncio.StreamReader) -> bytes | None:
    try:
        return await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if not exc.partial.strip():
            return None
        raise GatewayError(400, "incomplete request head") from None
    except asyncio.LimitOverrunError:
        raise GatewayError(431, "request header fields too large") from None


async def copy_length(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, length: int) -> None:
    remaining = length
    while remaining > 0:
        chunk = await reader.read(min(remaining, CHUNK))
        if not chunk:
            raise asyncio.IncompleteReadError(b"", remaining)
        writer.write(chunk)
        remaining -= len(chunk)
        await writer.drain()


async def copy_chunked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Forward a chunked body as is, checking every chunk-size line on the way."""
    while True:
        line = await reader.readuntil(b"\r\n")
        size_field = line[:-2].split(b";", 1)[0].strip()
        try:
            if not size_field or len(size_field) > 16:
                raise ValueError
            size = int(size_field, 16)
        except ValueError:
            raise GatewayError(400, "invalid chunk size") from None
        writer.write(line)
        if size == 0:
            while True:
                trailer = await reader.readuntil(b"\r\n")
                writer.write(trailer)
                if trailer == b"\r\n":
                    break
            await writer.drain()
            return
        await copy_length(reader, writer, size)
        if await reader.readexactly(2) != b"\r\n":
            raise GatewayError(400, "invalid chunk framing")
        writer.write(b"\r\n")


async def copy_until_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while True:
        chunk = await reader.read(CHUNK)
        if not chunk:
            return
        writer.write(chunk)
        await writer.drain()


async def copy_body(framing: str, length: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    if framing == http.LENGTH:
        await copy_length(reader, writer, length)
    elif framing == http.CHUNKED:
        await copy_chunked(reader, writer)
    elif framing == http.UNTIL_CLOSE:
        await copy_until_close(reader, writer)


async def _settle(task: asyncio.Task[None]) -> None:
    """Cancel a body copy that is still running and wait for it to end."""
    if not task.done():
        task.cancel()
    with contextlib.suppress(BaseException):
        await task


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            data = await reader.read(CHUNK)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            if writer.can_write_eof():
                writer.write_eof()


class _Progress:
    """The client's writer, noting whether the response head has gone out (then no error page can)."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self._writer = writer
        self.started = False

    def write(self, data: bytes) -> None:
        self.started = True
        self._writer.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._writer, name)


class Upstream:
    """A keep-alive connection to a container, borrowed from its idle list or freshly opened."""

    def __init__(self, pc: PoolContainer) -> None:
        self.pc = pc
        self.reader: asyncio.StreamReader
        self.writer: asyncio.StreamWriter
        self.reused = False

    async def open(self, reuse: bool = True) -> None:
        while reuse and self.pc.idle_conns:
            reader, writer = self.pc.idle_conns.pop()
            if not reader.at_eof() and not writer.is_closing():
                self.reader, self.writer, self.reused = reader, writer, True
                return
            writer.close()
        host, port = self.pc.address
        try:
            self.reader, self.writer = await asyncio.open_connection(host, port, limit=MAX_HEAD)
        except OSError as exc:
            raise UpstreamFailed(str(exc)) from None

    def give_back(self) -> None:
        if self.pc.state == "ready" and not self.writer.is_closing():
            self.pc.idle_conns.append((self.reader, self.writer))
        else:
            self.writer.close()

    def close(self) -> None:
        self.writer.close()


class Proxy:
    """Serves client connections for a route table; `fixed` pins a per-endpoint port to one subdomain."""

    def __init__(self, routes: RouteTable, scheme: str = "http", workspace: str = "") -> None:
        self.routes = routes
        self.scheme = scheme
        self.workspace = workspace
        self.connections: set[asyncio.Task[Any]] = set()
        self.active_requests = 0

    def handler(self, fixed: str | None = None) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Any]:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            self.connections.add(task)
            try:
                await self._connection(reader, writer, fixed)
            except (ConnectionError, asyncio.IncompleteReadError, OSError, asyncio.CancelledError):
                pass  # the client went away, or the gateway is shutting down
            finally:
                self.connections.discard(task)
                writer.close()

        return handle

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, fixed: str | None) -> None:
        peer = writer.get_extra_info("peername")
        client_ip = peer[0] if peer else "127.0.0.1"
        while True:
            try:
                data = await _read_head(reader)
                if data is None:
                    return
                head = http.parse_request_head(data)
            except GatewayError as exc:
                writer.write(render(exc.status, exc.body, close=True))
                await writer.drain()
                return
            keep_open = await self._request(head, reader, writer, client_ip, fixed)
            if not keep_open:
                return

    async def _request(self, head: http.RequestHead, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                       client_ip: str, fixed: str | None) -> bool:
        """Proxy one request. Returns whether the client connection may serve another."""
        call_id = new_call_id()
        self.active_requests += 1
        try:
            try:
                pc, pool = await self._acquire(head, fixed)
            except GatewayError as exc:
                return await self._answer(head, reader, writer, exc, call_id)
            progress = _Progress(writer)
            try:
                return await asyncio.wait_for(
                    self._forward(head, reader, progress, client_ip, call_id, pc), pool.timeout
                )
            except asyncio.TimeoutError:
                # The function ran past its `timeout`: answer if nothing was sent yet, and recycle
                # the container, since the work inside it may not be cancellable.
                pool.recycle(pc)
                if not progress.started:
                    writer.write(render(500, TIMED_OUT, close=True,
                                        extra=[(b"modal-function-call-id", call_id.encode())]))
                return False
            finally:
                pool.release(pc)
        finally:
            self.active_requests -= 1

    async def _acquire(self, head: http.RequestHead, fixed: str | None) -> tuple[PoolContainer, Any]:
        for _ in range(3):
            subdomain = fixed if fixed is not None else self.routes.subdomain_for_host(head.host)
            endpoint = self.routes.resolve(subdomain)
            pool = endpoint.pool_for(head.query)
            try:
                return await pool.acquire(), pool
            except PoolClosed:
                continue  # a reload swapped the route while we looked: look again
            except ContainerStartError as exc:
                raise init_failure(str(exc)) from None
            except QueueFull as exc:
                text = QUEUE_FULL.format(tag=endpoint.tag, limit=exc.args[0], workspace=self.workspace)
                raise GatewayError(429, text) from None
        raise GatewayError(503, "modal-http: endpoint is being replaced, try again")

    async def _answer(self, head: http.RequestHead, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                      exc: GatewayError, call_id: str) -> bool:
        """Answer without a container. Small bodies are read and dropped to keep the connection."""
        if head.framing == http.NO_BODY:
            keep = head.keep_alive
        elif head.framing == http.LENGTH and head.length <= CHUNK and head.keep_alive and not head.expect_continue:
            await reader.readexactly(head.length)
            keep = True
        else:
            keep = False
        writer.write(render(exc.status, exc.body, close=not keep,
                            extra=[(b"modal-function-call-id", call_id.encode())]))
        await writer.drain()
        return keep

    async def _forward(self, head: http.RequestHead, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                       client_ip: str, call_id: str, pc: PoolContainer) -> bool:
        request = http.upstream_request(head, client_ip, self.scheme, call_id)
        if head.expect_continue and head.framing != http.NO_BODY:
            interim = writer._writer if isinstance(writer, _Progress) else writer
            interim.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        for attempt in range(2):
            upstream = Upstream(pc)
            try:
                await upstream.open(reuse=attempt == 0)
            except UpstreamFailed:
                return await self._answer(head, reader, writer, GatewayError(500, TERMINATED), call_id)
            upstream.writer.write(request)
            body_task = asyncio.create_task(copy_body(head.framing, head.length, reader, upstream.writer))
            try:
                response = await self._response_head(upstream, head.method)
            except (UpstreamFailed, ConnectionError, asyncio.IncompleteReadError, OSError):
                await _settle(body_task)
                upstream.close()
                if upstream.reused and head.framing == http.NO_BODY:
                    continue  # the container had closed this idle connection: use a fresh one
                err = body_task.exception() if not body_task.cancelled() else None
                if isinstance(err, GatewayError):
                    writer.write(render(err.status, err.body, close=True))
                else:
                    writer.write(render(500, TERMINATED, close=True))
                return False
            except BaseException:
                await _settle(body_task)
                upstream.close()
                raise
            return await self._respond(head, reader, writer, call_id, upstream, response, body_task)
        writer.write(render(500, TERMINATED, close=True))
        return False

    async def _respond(self, head: http.RequestHead, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                       call_id: str, upstream: Upstream, response: http.ResponseHead,
                       body_task: asyncio.Task[None]) -> bool:
        reusable = False
        try:
            if head.websocket and response.status == 101:
                writer.write(http.client_response(response, False, call_id, upgrade=True))
                await writer.drain()
                body_task.cancel()
                await _websocket(reader, writer, upstream)
                return False
            keep_alive = head.keep_alive and response.framing != http.UNTIL_CLOSE
            writer.write(http.client_response(response, keep_alive, call_id))
            await copy_body(response.framing, response.length, upstream.reader, writer)
            await writer.drain()
            if not body_task.done():
                # The app answered without reading the whole request body: the client's
                # connection holds unread bytes and the container's is mid-request. Close both.
                return False
            if body_task.cancelled() or body_task.exception() is not None:
                return False
            reusable = response.keep_alive
            return keep_alive
        finally:
            await _settle(body_task)
            if reusable:
                upstream.give_back()
            else:
                upstream.close()

    async def _response_head(self, upstream: Upstream, method: bytes) -> http.ResponseHead:
        while True:
            try:
                data = await upstream.reader.readuntil(b"\r\n\r\n")
            except asyncio.LimitOverrunError:
                raise GatewayError(502, "response head too large") from None
            except asyncio.IncompleteReadError:
                raise UpstreamFailed("container closed the connection") from None
            response = http.parse_response_head(data, method)
            if 100 <= response.status < 200 and response.status != 101:
                continue  # 100 Continue from the container: the gateway already answered the client
            return response


async def _websocket(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, upstream: Upstream) -> None:
    # Bytes the client sent right after its upgrade request are already buffered in `reader`.
    up = asyncio.create_task(_pipe(reader, upstream.writer))
    down = asyncio.create_task(_pipe(upstream.reader, writer))
    try:
        done, pending = await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
        # One side closed: give the other a moment to finish its close handshake.
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.gather(*pending), 5.0)
    finally:
        for task in (up, down):
            task.cancel()
        upstream.close()
