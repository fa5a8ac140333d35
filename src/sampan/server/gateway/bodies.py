"""Copying message bodies through the gateway: bounded memory, checked framing, limits, timeouts.

Every copy is a loop of reads of at most CHUNK bytes, each awaited with `idle_timeout` (a client
that stops sending mid-body is dropped, not waited on forever), and a running count checked
against `limit` (a body over the limit is refused with 413 as soon as the count passes it).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Awaitable
from typing import Protocol, TypeVar

from . import http
from .errors import (
    BODY_TIMEOUT,
    BODY_TOO_LARGE,
    INVALID_CHUNK_FRAMING,
    INVALID_CHUNK_SIZE,
    INVALID_CHUNKED_BODY,
    GatewayError,
)

CHUNK = 64 * 1024
NO_LIMIT = -1
T = TypeVar("T")


async def within(aw: Awaitable[T], seconds: float | None) -> T:
    """`await aw`, raising TimeoutError after `seconds` (None: no limit).

    On the hot path (twice per proxied request), so it is one timer that cancels the running task and
    a flag saying the timer did it: `asyncio.wait_for` wraps every coroutine in a new task, and even
    Python 3.11's `asyncio.timeout` costs several times more in Python-level bookkeeping.
    """
    if seconds is None:
        return await aw
    task = asyncio.current_task()
    assert task is not None
    fired = False

    def expire() -> None:
        nonlocal fired
        fired = True
        task.cancel()

    timer = asyncio.get_running_loop().call_later(seconds, expire)
    try:
        return await aw
    except asyncio.CancelledError:
        if not fired:
            raise
        if sys.version_info >= (3, 11) and task.uncancel() > 0:
            raise  # cancelled by someone else too: that cancellation wins
        raise asyncio.TimeoutError from None
    finally:
        timer.cancel()


class Writer(Protocol):
    def write(self, data: bytes) -> None: ...

    async def drain(self) -> None: ...


class BodyLimits:
    def __init__(self, limit: int = NO_LIMIT, idle_timeout: float | None = None) -> None:
        self.limit = limit
        self.idle_timeout = idle_timeout
        self.count = 0

    def add(self, n: int) -> None:
        self.count += n
        if self.limit >= 0 and self.count > self.limit:
            raise GatewayError(413, BODY_TOO_LARGE.format(limit=self.limit))

    async def read(self, reader: asyncio.StreamReader, n: int) -> bytes:
        try:
            return await within(reader.read(n), self.idle_timeout)
        except asyncio.TimeoutError:
            raise GatewayError(408, BODY_TIMEOUT) from None

    async def readuntil(self, reader: asyncio.StreamReader, sep: bytes) -> bytes:
        try:
            return await within(reader.readuntil(sep), self.idle_timeout)
        except asyncio.TimeoutError:
            raise GatewayError(408, BODY_TIMEOUT) from None
        except asyncio.LimitOverrunError:
            raise GatewayError(400, INVALID_CHUNKED_BODY) from None


async def copy_length(reader: asyncio.StreamReader, writer: Writer, length: int,
                      limits: BodyLimits | None = None) -> None:
    limits = limits or BodyLimits()
    remaining = length
    while remaining > 0:
        chunk = await limits.read(reader, min(remaining, CHUNK))
        if not chunk:
            raise asyncio.IncompleteReadError(b"", remaining)
        limits.add(len(chunk))
        writer.write(chunk)
        remaining -= len(chunk)
        await writer.drain()


def chunk_size(line: bytes) -> int:
    """The size of a chunk from its size line (CRLF included; extensions ignored), strictly: hex digits
    only, at most 16 of them, no bare CR or LF."""
    size_field = line[:-2].split(b";", 1)[0]
    if not size_field or len(size_field) > 16 or any(c not in b"0123456789abcdefABCDEF" for c in size_field):
        raise GatewayError(400, INVALID_CHUNK_SIZE)
    if b"\n" in line[:-2] or b"\r" in line[:-2]:
        raise GatewayError(400, INVALID_CHUNK_SIZE)
    return int(size_field, 16)


async def _chunk_end(reader: asyncio.StreamReader, limits: BodyLimits) -> None:
    crlf = await limits.read(reader, 2)
    if crlf == b"\r":
        crlf += await limits.read(reader, 1)
    if crlf != b"\r\n":
        raise GatewayError(400, INVALID_CHUNK_FRAMING)


async def _trailers(reader: asyncio.StreamReader, limits: BodyLimits) -> list[bytes]:
    """The trailer lines after the last chunk, up to and including the empty line."""
    lines: list[bytes] = []
    while True:
        trailer = await limits.readuntil(reader, b"\r\n")
        lines.append(trailer)
        if trailer == b"\r\n":
            return lines
        if len(lines) > 100 or http.TRAILER.match(trailer) is None:
            raise GatewayError(400, INVALID_CHUNKED_BODY)


async def copy_chunked(reader: asyncio.StreamReader, writer: Writer, limits: BodyLimits | None = None) -> None:
    """Forward a chunked body re-framed: each chunk-size line is written anew (chunk extensions are
    dropped), and trailers only once parsed strictly (a token name, CRLF only, no folding). What the
    container's own parser sees is then exactly what the gateway understood: a lenient app server
    cannot be made to read a second request out of an extension or a trailer (request smuggling)."""
    limits = limits or BodyLimits()
    while True:
        size = chunk_size(await limits.readuntil(reader, b"\r\n"))
        writer.write(b"%x\r\n" % size)
        if size == 0:
            for trailer in await _trailers(reader, limits):
                writer.write(trailer)
            await writer.drain()
            return
        await copy_length(reader, writer, size, limits)
        await _chunk_end(reader, limits)
        writer.write(b"\r\n")


async def iter_chunked(reader: asyncio.StreamReader, limits: BodyLimits | None = None) -> AsyncIterator[bytes]:
    """A chunked body's data, as it arrives (pieces of at most CHUNK bytes), parsed as strictly as
    `copy_chunked`; trailers are read and dropped."""
    limits = limits or BodyLimits()
    while True:
        size = chunk_size(await limits.readuntil(reader, b"\r\n"))
        if size == 0:
            await _trailers(reader, limits)
            return
        while size:
            piece = await limits.read(reader, min(size, CHUNK))
            if not piece:
                raise asyncio.IncompleteReadError(b"", size)
            size -= len(piece)
            yield piece
        await _chunk_end(reader, limits)


async def copy_until_close(reader: asyncio.StreamReader, writer: Writer) -> None:
    while True:
        chunk = await reader.read(CHUNK)
        if not chunk:
            return
        writer.write(chunk)
        await writer.drain()


async def copy_body(framing: str, length: int, reader: asyncio.StreamReader, writer: Writer,
                    limits: BodyLimits | None = None) -> None:
    if framing == http.LENGTH:
        await copy_length(reader, writer, length, limits)
    elif framing == http.CHUNKED:
        await copy_chunked(reader, writer, limits)
    elif framing == http.UNTIL_CLOSE:
        await copy_until_close(reader, writer)
