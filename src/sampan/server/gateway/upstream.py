"""The gateway's side of a container connection: opening, reusing and closing keep-alive connections
to containers, and reading a container's response head. Used by the proxy (web requests) and the
invoker (calls); a container's idle connections are its `IdleConnections`, owned here and nowhere else.
"""

from __future__ import annotations

import asyncio
import socket
from typing import TYPE_CHECKING

from . import http
from .errors import RESPONSE_HEAD_TOO_LARGE, GatewayError

if TYPE_CHECKING:
    from ..pool import PoolContainer
    from .quick import QuickUpstream

MAX_HEAD = 64 * 1024


class UpstreamFailed(Exception):
    """The container closed or broke the connection before a response head arrived."""


class ContainerGone(Exception):
    """The container refused a new connection: it is dead, and the request never reached it."""


def reusable(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
    """Whether an idle connection to a container can carry the next request. Not when the container
    closed it (an app server closes after a handler raised, often just after a keep-alive response:
    a request with a body sent there would be lost, since its body cannot be sent twice), nor when
    bytes arrived that no request asked for. The socket is peeked without blocking, so a close that
    has arrived is seen even before the event loop has read it."""
    if reader.at_eof() or writer.is_closing() or getattr(reader, "_buffer", b""):
        return False
    sock = writer.get_extra_info("socket")
    if sock is None:
        return True
    peek = socket.socket(sock.family, sock.type, fileno=sock.fileno())  # a view of it: no dup, no close
    try:
        data = peek.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except (BlockingIOError, InterruptedError):
        return True  # nothing to read: open and quiet, as an idle connection should be
    except OSError:
        return False
    finally:
        peek.detach()  # the descriptor stays the transport's
    del data  # either the end of the stream (the container closed it), or bytes nobody asked for
    return False


class IdleConnections:
    """A container's keep-alive connections that wait for the next request (last in, first out): stream
    ones, and the protocol ones of the common exchange (quick.py), which leave `quick` when they close."""

    def __init__(self) -> None:
        self._conns: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.quick: list[QuickUpstream] = []

    def __len__(self) -> int:
        return len(self._conns)

    def take(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        """The most recent connection that can still carry a request; the others are closed."""
        while self._conns:
            reader, writer = self._conns.pop()
            if reusable(reader, writer):
                return reader, writer
            writer.close()
        return None

    def put(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if writer.is_closing():
            return
        self._conns.append((reader, writer))

    def close(self) -> None:
        for _, writer in self._conns:
            writer.close()
        self._conns.clear()
        for conn in list(self.quick):
            conn.close()
        self.quick.clear()


class Upstream:
    """A keep-alive connection to a container, borrowed from its idle list or freshly opened."""

    def __init__(self, pc: PoolContainer) -> None:
        self.pc = pc
        self.reader: asyncio.StreamReader
        self.writer: asyncio.StreamWriter
        self.reused = False

    async def open(self, reuse: bool = True) -> None:
        found = self.pc.conns.take() if reuse else None
        if found is not None:
            self.reader, self.writer = found
            self.reused = True
            return
        address = self.pc.address
        try:
            if isinstance(address, str):  # a local container's Unix socket: no TCP stack on the way
                self.reader, self.writer = await asyncio.open_unix_connection(address, limit=MAX_HEAD)
            else:
                self.reader, self.writer = await asyncio.open_connection(*address, limit=MAX_HEAD)
        except OSError as exc:
            raise UpstreamFailed(str(exc)) from None

    def give_back(self) -> None:
        if self.pc.state == "ready":
            self.pc.conns.put(self.reader, self.writer)
        else:
            self.writer.close()

    def close(self) -> None:
        self.writer.close()


async def response_head(upstream: Upstream, method: bytes, upgrade: bool = False) -> http.ResponseHead:
    """The container's response head, past any interim 100 (`upgrade`: the request asked for a WebSocket,
    so a 101 is the answer; see `http.parse_response_head`)."""
    while True:
        try:
            data = await upstream.reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError:
            raise GatewayError(502, RESPONSE_HEAD_TOO_LARGE) from None
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            raise UpstreamFailed("container closed the connection") from None
        response = http.parse_response_head(data, method, upgrade)
        if 100 <= response.status < 200 and response.status != 101:
            continue  # 100 Continue from the container: the gateway already answered the client
        return response


