"""The server's side of a container's call line (runtime/callline.py): one call per connection at a time.

A call is one `C` frame out and one outcome frame back (callwire.py), on a connection kept for the
next call: no HTTP head to write or parse, and the answer is read by a protocol's callback, not a
stream reader's task. A container's idle connections are its `IdleLines` (last in, first out); a
connection that broke, or answered out of turn, is closed and never reused.
"""

from __future__ import annotations

import asyncio
from typing import Any

from .. import callwire

MAX_OUTCOME = 1 << 30  # as invoke.MAX_RESULT


class LineFailed(Exception):
    """The container closed or broke the connection before the whole outcome arrived."""


class LineConnection(asyncio.Protocol):
    """One connection: `exchange(frame)` sends a call and returns its outcome. The outcome is read
    into one buffer of its announced size (a large result is held once, not once per piece)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[bytes] | None = None
        self.broken = False
        self._head = bytearray()
        self._body: bytearray | None = None
        self._filled = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.waiter is None or self.waiter.done():  # nothing was asked: not the protocol
            self._fail("bytes nobody asked for")
            return
        view = memoryview(data)
        if self._body is None:
            need = 4 - len(self._head)
            self._head += view[:need]
            view = view[need:]
            if len(self._head) < 4:
                return
            length = int.from_bytes(self._head, "big")
            if not 0 < length <= MAX_OUTCOME:
                self._fail("an outcome of an impossible size")
                return
            self._body = bytearray(length)
        take = min(len(view), len(self._body) - self._filled)
        self._body[self._filled:self._filled + take] = view[:take]
        self._filled += take
        if take < len(view):
            self._fail("bytes after the outcome")
        elif self._filled == len(self._body):
            body, self._body, self._filled = self._body, None, 0
            self._head.clear()
            self.waiter.set_result(body)  # type: ignore[arg-type] - bytes-like, read as bytes

    def connection_lost(self, exc: Exception | None) -> None:
        self.broken = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(LineFailed("container closed the connection"))

    def _fail(self, why: str) -> None:
        self.broken = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(LineFailed(why))
        if self.transport is not None:
            self.transport.abort()

    async def exchange(self, request: bytes, timeout: float | None = None) -> bytes:
        """Send a call, await its outcome; TimeoutError after `timeout` seconds (a timer of the loop's: an
        `asyncio.timeout` block costs six times as much, on every call)."""
        assert self.transport is not None
        loop = asyncio.get_running_loop()
        self.waiter = waiter = loop.create_future()
        timer = loop.call_later(timeout, _expire, waiter) if timeout is not None else None
        self.transport.write(request)
        try:
            return await waiter
        finally:
            self.waiter = None
            if timer is not None:
                timer.cancel()

    def close(self) -> None:
        self.broken = True
        if self.transport is not None:
            self.transport.close()


def _expire(waiter: asyncio.Future[bytes]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


class IdleLines:
    """A container's call-line connections waiting for the next call."""

    def __init__(self) -> None:
        self._lines: list[LineConnection] = []

    def __len__(self) -> int:
        return len(self._lines)

    def take(self) -> LineConnection | None:
        while self._lines:
            line = self._lines.pop()
            if not line.broken:
                return line
        return None

    def put(self, line: LineConnection) -> None:
        if not line.broken:
            self._lines.append(line)

    def close(self) -> None:
        for line in self._lines:
            line.close()
        self._lines.clear()


async def open_line(address: Any) -> LineConnection:
    loop = asyncio.get_running_loop()
    try:
        if isinstance(address, str):
            _, line = await loop.create_unix_connection(LineConnection, address)
        else:
            _, line = await loop.create_connection(LineConnection, *address)
    except OSError as exc:
        raise LineFailed(str(exc)) from None
    return line


async def call(pc: Any, call_id: str, payload: bytes, timeout: float | None = None) -> bytes:
    """One call on the container `pc` (a PoolContainer whose backend has a `calls_address`): its outcome.
    TimeoutError after `timeout` seconds (the connection is then closed, as after any failure)."""
    line = pc.lines.take() or await open_line(pc.backend.calls_address)
    try:
        outcome = await line.exchange(callwire.frame(callwire.CALL, call_id.encode() + b"\0" + payload), timeout)
    except BaseException:
        line.close()  # a cancelled or failed call leaves the connection in an unknown state
        raise
    if pc.state == "ready":
        pc.lines.put(line)
    else:
        line.close()
    return outcome
