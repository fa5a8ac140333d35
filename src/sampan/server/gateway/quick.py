"""The common exchange with a container, read by callbacks instead of a stream and a task.

Most requests through the gateway carry no body or a small one that is read before it is sent (the
proxy's `replay`), and most responses are a head and a body of known length. For those, a container
connection is an `asyncio.Protocol` that collects the whole response into one buffer and resolves one
future with it: no task to read the head, no `asyncio.wait`, no per-read timer, one write to the client.

Anything else (a chunked or close-delimited response, a body over `MAX_BUFFERED`, a response
that outlives the redirect window) is `detach`ed: the transport moves to a `StreamReader` holding the
bytes received so far, and the stream path (proxy.py, upstream.py) carries on from there unchanged.
A connection the container closes while idle leaves the idle list at once (`connection_lost`), so
taking one needs no peek at its socket.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from . import http
from .errors import MALFORMED_RESPONSE, RESPONSE_HEAD_TOO_LARGE, GatewayError
from .upstream import MAX_HEAD, UpstreamFailed

if TYPE_CHECKING:
    from ..pool import PoolContainer

MAX_BUFFERED = 64 * 1024  # a response body up to this is collected whole before the client sees it

# What a finished exchange resolves to: the response head, and its whole body, or None when the body
# is to be streamed (the connection was detached after the head).
Outcome = tuple[http.ResponseHead, "bytes | None"]


class ResponseBroken(Exception):
    """The container answered, then closed the connection before its response was complete."""


class QuickUpstream(asyncio.Protocol):
    """One keep-alive connection to a container, one exchange at a time."""

    def __init__(self, idle: list[QuickUpstream]) -> None:
        self.idle = idle  # the container's idle quick connections; this one leaves it when it closes
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[Outcome] | None = None
        self.method = b"GET"
        self.head: http.ResponseHead | None = None
        self.head_end = 0
        self.need = 0  # head and body bytes, once the head is known
        self.complete = False  # the waiter has the whole response
        self.paused = False
        self.closed = False
        self.eof = False
        self.reused = False
        self.tainted = False  # bytes beyond the response arrived: never reuse this connection
        self.detached = False

    # -- the protocol ---------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's transports are not asyncio's classes

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        waiter = self.waiter
        assert self.transport is not None
        if waiter is None:  # an idle connection: bytes nobody asked for
            self.tainted = True
            self._forget()
            self.transport.close()
            return
        if waiter.done():
            # Resolved with the whole response: anything more makes the connection unusable. Resolved
            # for the stream path, or given up on (redirect window, client gone): kept for whoever
            # detaches or closes it, with reading paused once a buffer's worth is here.
            if self.complete:
                self.tainted = True
            elif len(self.buffer) > MAX_HEAD + MAX_BUFFERED and not self.paused:
                self.paused = True
                self.transport.pause_reading()
            return
        try:
            self._progress()
        except GatewayError as exc:
            self.tainted = True
            waiter.set_exception(exc)

    def eof_received(self) -> bool:
        self.eof = True
        return False  # the transport closes itself; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._forget()
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            if self.head is None and not self.buffer:
                waiter.set_exception(UpstreamFailed("container closed the connection"))
            else:
                waiter.set_exception(ResponseBroken())

    # -- one exchange ---------------------------------------------------------------------------
    def send(self, data: bytes, method: bytes) -> asyncio.Future[Outcome]:
        """Send a whole request; the future resolves with the response (see Outcome)."""
        assert self.transport is not None and not self.closed
        self.waiter = asyncio.get_running_loop().create_future()
        self.method = method
        self.head = None
        self.head_end = self.need = 0
        self.complete = False
        self.transport.write(data)
        return self.waiter

    def _progress(self) -> None:
        assert self.waiter is not None
        buffer = self.buffer
        while self.head is None:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(buffer) > MAX_HEAD:
                    raise GatewayError(502, RESPONSE_HEAD_TOO_LARGE)
                return
            head = http.parse_response_head(bytes(buffer[:end + 4]), self.method)
            if 100 <= head.status < 200:  # never a 101: quick requests ask for no upgrade
                del buffer[:end + 4]  # 100 Continue from the container: the gateway answered the client
                continue
            self.head, self.head_end = head, end + 4
            if head.framing == http.NO_BODY:
                self.need = self.head_end
            elif head.framing == http.LENGTH and head.length <= MAX_BUFFERED:
                self.need = self.head_end + head.length
            else:  # chunked, until close, a large body: the stream path reads it
                self.waiter.set_result((head, None))
                return
        if len(buffer) < self.need:
            return
        if len(buffer) > self.need:
            raise GatewayError(502, MALFORMED_RESPONSE)  # more than the response: the connection is unusable
        body = bytes(buffer[self.head_end:])
        buffer.clear()
        self.complete = True
        self.waiter.set_result((self.head, body))

    # -- afterwards -----------------------------------------------------------------------------
    def give_back(self, ready: bool) -> None:
        """After a complete exchange: back to the idle list, if the connection can carry another."""
        self.waiter = None
        if ready and not (self.closed or self.eof or self.tainted or self.detached or self.buffer):
            self.idle.append(self)
        else:
            self.close()

    def close(self) -> None:
        self._forget()
        if self.transport is not None and not self.detached:
            self.transport.close()

    def _forget(self) -> None:
        try:
            self.idle.remove(self)
        except ValueError:
            pass

    def detach(self, from_head: bool) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """Hand the connection to the stream path: a reader holding what arrived so far (after the
        response head when `from_head`, since the caller has it parsed) and a writer."""
        assert self.transport is not None
        self.detached = True
        self._forget()
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=MAX_HEAD, loop=loop)
        protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
        if not self.closed:
            self.transport.set_protocol(protocol)
        protocol.connection_made(self.transport)
        rest = self.buffer[self.head_end:] if from_head else self.buffer
        if rest:
            reader.feed_data(bytes(rest))
        self.buffer = bytearray()
        if self.paused and not self.closed:
            self.transport.resume_reading()  # the reader pauses it again itself when its buffer is full
        if self.closed:
            protocol.connection_lost(None)  # feeds the end of stream and ends wait_closed()
        elif self.eof:
            reader.feed_eof()
        return reader, asyncio.StreamWriter(self.transport, protocol, reader, loop)


def take(idle: list[QuickUpstream]) -> QuickUpstream | None:
    """The most recently used idle connection (one the container closed has already left the list)."""
    while idle:
        conn = idle.pop()
        if not (conn.closed or conn.eof):
            conn.reused = True
            return conn
    return None


async def connect(pc: PoolContainer) -> QuickUpstream:
    """A fresh connection to the container's HTTP server; UpstreamFailed when it refuses."""
    idle = pc.conns.quick
    loop = asyncio.get_running_loop()
    address = pc.address
    try:
        if isinstance(address, str):  # a local container's Unix socket
            _, protocol = await loop.create_unix_connection(lambda: QuickUpstream(idle), address)
        else:
            _, protocol = await loop.create_connection(lambda: QuickUpstream(idle), *address)
    except OSError as exc:
        raise UpstreamFailed(str(exc)) from None
    return protocol
