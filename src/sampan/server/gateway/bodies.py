"""Copying message bodies through the gateway: bounded memory, checked framing, limits, timeouts.

Every copy is a loop of reads of at most CHUNK bytes, each awaited with `idle_timeout` (a client
that stops sending mid-body is dropped, not waited on forever), and a running count checked
against `limit` (a body over the limit is refused with 413 as soon as the count passes it).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable
from typing import Protocol, TypeVar

from . import http
from .errors import GatewayError

CHUNK = 64 * 1024
NO_LIMIT = -1
T = TypeVar("T")


async def within(aw: Awaitable[T], seconds: float | None) -> T:
    """`await aw`, raising TimeoutError after `seconds` (None: no limit).

    On the hot path: `asyncio.wait_for` wraps every coroutine in a new task, where Python 3.11's
    `asyncio.timeout` only sets a timer on the running one.
    """
    if seconds is None:
        return await aw
    if sys.version_info >= (3, 11):
        async with asyncio.timeout(seconds):
            return await aw
    return await asyncio.wait_for(aw, seconds)


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
            raise GatewayError(413, f"modal-http: request body is larger than the limit of {self.limit} bytes")

    async def read(self, reader: asyncio.StreamReader, n: int) -> bytes:
        try:
            return await within(reader.read(n), self.idle_timeout)
        except asyncio.TimeoutError:
            raise GatewayError(408, "modal-http: timed out reading the request body") from None

    async def readuntil(self, reader: asyncio.StreamReader, sep: bytes) -> bytes:
        try:
            return await within(reader.readuntil(sep), self.idle_timeout)
        except asyncio.TimeoutError:
            raise GatewayError(408, "modal-http: timed out reading the request body") from None
        except asyncio.LimitOverrunError:
            raise GatewayError(400, "modal-http: invalid chunked body") from None


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


async def copy_chunked(reader: asyncio.StreamReader, writer: Writer, limits: BodyLimits | None = None) -> None:
    """Forward a chunked body re-framed: each chunk-size line is written anew (chunk extensions are
    dropped), and trailers only once parsed strictly (a token name, CRLF only, no folding). What the
    container's own parser sees is then exactly what the gateway understood: a lenient app server
    cannot be made to read a second request out of an extension or a trailer (request smuggling)."""
    limits = limits or BodyLimits()
    while True:
        line = await limits.readuntil(reader, b"\r\n")
        size_field = line[:-2].split(b";", 1)[0]
        if not size_field or len(size_field) > 16 or any(c not in b"0123456789abcdefABCDEF" for c in size_field):
            raise GatewayError(400, "modal-http: invalid chunk size")
        if b"\n" in line[:-2] or b"\r" in line[:-2]:
            raise GatewayError(400, "modal-http: invalid chunk size")
        size = int(size_field, 16)
        writer.write(b"%x\r\n" % size)
        if size == 0:
            trailers = 0
            while True:
                trailer = await limits.readuntil(reader, b"\r\n")
                if trailer == b"\r\n":
                    writer.write(trailer)
                    break
                trailers += 1
                if trailers > 100 or http.TRAILER.match(trailer) is None:
                    raise GatewayError(400, "modal-http: invalid chunked body")
                writer.write(trailer)
            await writer.drain()
            return
        await copy_length(reader, writer, size, limits)
        crlf = await limits.read(reader, 2)
        if crlf == b"\r":
            crlf += await limits.read(reader, 1)
        if crlf != b"\r\n":
            raise GatewayError(400, "modal-http: invalid chunk framing")
        writer.write(b"\r\n")


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
