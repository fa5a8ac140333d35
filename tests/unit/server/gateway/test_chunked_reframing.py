"""Chunked request bodies are re-framed at the edge (gateway/bodies.py `copy_chunked`): what reaches a
container's own parser is what the gateway understood, so extensions and trailers cannot smuggle a
request past it to a lenient app server (finding 10)."""

from __future__ import annotations

import asyncio

import pytest

from sampan.server.gateway.bodies import copy_chunked
from sampan.server.gateway.errors import GatewayError


class Sink:
    def __init__(self) -> None:
        self.data = b""

    def write(self, data: bytes) -> None:
        self.data += data

    async def drain(self) -> None:
        return None


def forward(raw: bytes) -> tuple[bytes, bytes]:
    """(what the container receives, what stays unread on the client connection)."""
    async def main() -> tuple[bytes, bytes]:
        reader = asyncio.StreamReader()
        reader.feed_data(raw)
        reader.feed_eof()
        sink = Sink()
        await copy_chunked(reader, sink)
        return sink.data, await reader.read()
    return asyncio.run(main())


def test_extensions_are_dropped_and_sizes_rewritten() -> None:
    sent, rest = forward(b"5;name=value\r\nhello\r\n000A\r\n0123456789\r\n0;last\r\n\r\nNEXT")
    assert sent == b"5\r\nhello\r\na\r\n0123456789\r\n0\r\n\r\n"
    assert rest == b"NEXT"  # the next request on the connection is the gateway's to parse


def test_strict_trailers_pass_and_nothing_else_does() -> None:
    sent, _ = forward(b"0\r\nX-Checksum: abc 123\r\nX-Other:\r\n\r\n")
    assert sent == b"0\r\nX-Checksum: abc 123\r\nX-Other:\r\n\r\n"
    for bad in (b"0\r\n folded: continuation\r\n\r\n",  # obs-fold
                b"0\r\nBad Name: x\r\n\r\n",  # not a token
                b"0\r\nX: a\rGET /admin HTTP/1.1\r\n\r\n",  # bare CR inside a value
                b"0\r\nno-colon\r\n\r\n",
                b"0\r\n" + b"X: y\r\n" * 101 + b"\r\n"):
        with pytest.raises(GatewayError) as info:
            forward(bad)
        assert info.value.status == 400


def test_bare_line_feeds_in_size_lines_are_refused() -> None:
    for bad in (b"5;ext\nGET /admin HTTP/1.1\r\nhello\r\n0\r\n\r\n", b"5\n\r\nhello\r\n0\r\n\r\n", b"x\r\n"):
        with pytest.raises(GatewayError):
            forward(bad)
