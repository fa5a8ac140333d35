"""The gateway's protocol connections to a container (gateway/quick.py), against a real Unix-socket server
that answers each request with scripted bytes."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from sampan.server.gateway import quick
from sampan.server.gateway.bodies import copy_body
from sampan.server.gateway.errors import GatewayError
from sampan.server.gateway.upstream import UpstreamFailed

GET = b"GET / HTTP/1.1\r\nhost: c\r\n\r\n"
Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def ok(body: bytes = b"hello") -> bytes:
    return b"HTTP/1.1 200 OK\r\ncontent-length: " + str(len(body)).encode() + b"\r\n\r\n" + body


async def _serve_each(script: Script, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        await script(reader, writer)
    finally:
        writer.close()


def run(tmp_path: Path, script: Script, test: Callable[[Callable[[], Awaitable[quick.QuickUpstream]],
                                                         list[quick.QuickUpstream]], Awaitable[None]]) -> None:
    """A server running `script` per connection; `test` gets a connect function and the idle list."""
    path = str(tmp_path / "c.sock")

    async def main() -> None:
        server = await asyncio.start_unix_server(lambda r, w: _serve_each(script, r, w), path)
        idle: list[quick.QuickUpstream] = []

        async def connect() -> quick.QuickUpstream:
            _, conn = await asyncio.get_running_loop().create_unix_connection(lambda: quick.QuickUpstream(idle),
                                                                              path)
            return conn

        try:
            await asyncio.wait_for(test(connect, idle), 10)
        finally:
            for conn in list(idle):
                conn.close()
            server.close()
            await server.wait_closed()

    asyncio.run(main())


async def answer_each(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, response: bytes) -> None:
    while True:
        try:
            await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return
        writer.write(response)
        await writer.drain()


async def idle_until_it_leaves(connect: Callable[[], Awaitable[quick.QuickUpstream]],
                               idle: list[quick.QuickUpstream]) -> quick.QuickUpstream:
    """A connection after one exchange, given back to the idle list; returned once it has left it (in 1 s)."""
    conn = await connect()
    await conn.send(GET, b"GET")
    conn.give_back(ready=True)
    assert idle == [conn]
    for _ in range(100):
        if not idle:
            break
        await asyncio.sleep(0.01)
    assert idle == []
    return conn


def test_a_response_of_known_length_comes_whole_and_its_connection_is_reused(tmp_path: Path) -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await answer_each(reader, writer, ok())

    async def test(connect: Callable[[], Awaitable[quick.QuickUpstream]], idle: list[quick.QuickUpstream]) -> None:
        conn = await connect()
        head, body = await conn.send(GET, b"GET")
        assert (head.status, body) == (200, b"hello")
        conn.give_back(ready=True)
        assert idle == [conn]
        again = quick.take(idle)
        assert again is conn and again.reused and idle == []
        head, body = await again.send(GET, b"GET")
        assert body == b"hello"
        again.give_back(ready=False)  # a container no longer ready: the connection is closed, not kept
        assert idle == [] and conn.transport is not None and conn.transport.is_closing()

    run(tmp_path, script, test)


def test_interim_100_continue_is_skipped_and_a_head_response_has_no_body(tmp_path: Path) -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(0.01)
        writer.write(ok())
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n")  # the answer to a HEAD
        await writer.drain()
        await reader.read()

    async def test(connect: Callable[[], Awaitable[quick.QuickUpstream]], idle: list[quick.QuickUpstream]) -> None:
        conn = await connect()
        head, body = await conn.send(GET, b"GET")
        assert (head.status, body) == (200, b"hello")
        conn.give_back(ready=True)
        head, body = await conn.send(b"HEAD / HTTP/1.1\r\nhost: c\r\n\r\n", b"HEAD")
        assert (head.status, body) == (200, b"")

    run(tmp_path, script, test)


@pytest.mark.parametrize("kind", ["chunked", "large"])
def test_a_streamed_or_large_body_is_left_to_the_stream_path_with_every_byte(tmp_path: Path, kind: str) -> None:
    large = bytes(range(256)) * (quick.MAX_BUFFERED // 256 + 10)

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        if kind == "chunked":
            writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n")
            await writer.drain()
            await asyncio.sleep(0.05)  # the rest comes after the proxy has seen the head
            writer.write(b"2\r\nde\r\n0\r\n\r\n")
        else:
            writer.write(ok(large))
        await writer.drain()
        await reader.read()

    async def test(connect: Callable[[], Awaitable[quick.QuickUpstream]], idle: list[quick.QuickUpstream]) -> None:
        conn = await connect()
        head, body = await conn.send(GET, b"GET")
        assert body is None
        reader, writer = conn.detach(from_head=True)

        class Sink:
            data = b""

            def write(self, chunk: bytes) -> None:
                Sink.data += chunk

            async def drain(self) -> None:
                pass

        await copy_body(head.framing, head.length, reader, Sink())
        assert Sink.data == (b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n" if kind == "chunked" else large)
        writer.close()
        assert idle == []

    run(tmp_path, script, test)


@pytest.mark.parametrize("then", ["close", "unasked bytes"])
def test_an_idle_connection_leaves_the_idle_list_when_the_container_closes_it_or_talks(tmp_path: Path,
                                                                                     then: str) -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(ok())
        await writer.drain()
        await asyncio.sleep(0.05)
        if then == "close":
            return  # as an app server does with an idle connection
        writer.write(ok(b"smuggled"))  # an answer to no request, on an idle connection
        await writer.drain()
        await reader.read()

    async def test(connect: Callable[[], Awaitable[quick.QuickUpstream]], idle: list[quick.QuickUpstream]) -> None:
        conn = await idle_until_it_leaves(connect, idle)
        assert (conn.closed and quick.take(idle) is None) if then == "close" else conn.tainted

    run(tmp_path, script, test)


@pytest.mark.parametrize("answer", [
    ok() + ok(b"second"),  # two responses in one segment: more than the response
    b"HTTP/1.1 200 OK\r\nx-filler: " + b"a" * (quick.MAX_HEAD + 10),  # a head past MAX_HEAD
    b"HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: h2c\r\n\r\n",  # unasked
])
def test_a_broken_answer_is_a_502_and_its_connection_never_reused(tmp_path: Path, answer: bytes) -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(answer)
        await writer.drain()
        await reader.read()

    async def test(connect: Callable[[], Awaitable[quick.QuickUpstream]], idle: list[quick.QuickUpstream]) -> None:
        conn = await connect()
        with pytest.raises(GatewayError) as caught:
            await conn.send(GET, b"GET")
        assert caught.value.status == 502
        conn.give_back(ready=True)
        assert idle == []

    run(tmp_path, script, test)


@pytest.mark.parametrize("sent", [b"", b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nhel"])
def test_a_container_closing_before_or_during_its_answer(tmp_path: Path, sent: bytes) -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(sent)
        await writer.drain()

    async def test(connect: Callable[[], Awaitable[quick.QuickUpstream]], idle: list[quick.QuickUpstream]) -> None:
        conn = await connect()
        # Nothing answered: the request may be sent again (UpstreamFailed). Part of an answer: the app
        # saw it, so it must not be (ResponseBroken).
        with pytest.raises(UpstreamFailed if not sent else quick.ResponseBroken):
            await conn.send(GET, b"GET")

    run(tmp_path, script, test)


def test_a_waiter_given_up_on_keeps_what_arrives_for_the_stream_path(tmp_path: Path) -> None:
    """The redirect window: the proxy stops waiting, then reads the whole response from a stream."""
    released = asyncio.Event()

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-")
        await writer.drain()
        await released.wait()
        writer.write(b"length: 5\r\n\r\nlater")
        await writer.drain()
        await reader.read()

    async def test(connect: Callable[[], Awaitable[quick.QuickUpstream]], idle: list[quick.QuickUpstream]) -> None:
        conn = await connect()
        waiter = conn.send(GET, b"GET")
        await asyncio.sleep(0.05)
        waiter.cancel()
        released.set()
        await asyncio.sleep(0.05)  # the rest arrives after the waiter was given up on
        reader, writer = conn.detach(from_head=False)
        assert await reader.readexactly(len(ok(b"later"))) == ok(b"later")
        writer.close()

    run(tmp_path, script, test)
