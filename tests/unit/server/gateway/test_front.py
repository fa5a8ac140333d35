"""Client connections on the gateway's quick path (gateway/front.py) and their move to the stream path:
a real gateway, pools and route table in the test's event loop, the fake backend of tests/fakes.py beyond
the seam, clients speaking raw HTTP/1.1 over loopback."""

from __future__ import annotations

import asyncio
import socket
import struct
from dataclasses import replace
from pathlib import Path

from sampan.config import ProxyLimits
from sampan.server.apps import AppServer
from sampan.server.gateway import errors
from tests import fakes
from tests.unit.server.gateway.test_proxy import with_app


async def connect(url: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = url.removeprefix("http://").rstrip("/").split(":")
    return await asyncio.open_connection(host, int(port))


async def response(reader: asyncio.StreamReader) -> tuple[int, dict[bytes, bytes], bytes]:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    lines = head.split(b"\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(b":") for ln in lines[1:] if ln)}
    body = await reader.readexactly(int(headers.get(b"content-length", b"0")))
    return int(lines[0].split(b" ")[1]), headers, body


def get(path: str, extra: str = "") -> bytes:
    return f"GET {path} HTTP/1.1\r\nhost: x\r\n{extra}\r\n".encode()


async def served(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, path: str) -> None:
    """GET `path` on this connection: the fake container answers 200 with the request line."""
    writer.write(get(path))
    status, _, body = await response(reader)
    assert status == 200 and body.endswith(f"GET {path}".encode())


async def warm(url: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A connection that has had one answer (so a container is ready)."""
    reader, writer = await connect(url)
    await served(reader, writer, "/warm")
    return reader, writer


def paths(server: AppServer) -> tuple[int, int]:
    proxy = server.gateway.proxy
    return len(proxy.clients), len(proxy.connections)


def test_a_connection_stays_quick_until_a_request_needs_streams_and_then_serves_on(tmp_path: Path) -> None:
    async def test(server: AppServer, urls: dict[str, str]) -> None:
        reader, writer = await connect(urls["hello"])
        for path in ("/a", "/b", "/c"):  # the first waits for a cold start, by callback too
            writer.write(get(path))
            status, headers, body = await response(reader)
            assert status == 200 and body.endswith(f"GET {path}".encode())
            assert headers[b"modal-function-call-id"].startswith(b"fc-")
        assert paths(server) == (1, 0)  # served by callbacks: no task for this connection
        writer.write(b"POST /small HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\nhi")  # whole: still quick
        status, _, body = await response(reader)
        assert status == 200 and body.endswith(b"POST /small")
        assert paths(server) == (1, 0)
        writer.write(b"POST /d HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n")
        status, _, body = await response(reader)  # a chunked body: the stream path
        assert status == 200 and body.endswith(b"POST /d")
        assert paths(server) == (0, 1)
        await served(reader, writer, "/e")
        writer.close()

    with_app(tmp_path, test)


def test_a_streamed_answer_moves_the_connection_and_the_next_request_is_served(tmp_path: Path) -> None:
    async def test(server: AppServer, urls: dict[str, str]) -> None:
        reader, writer = await warm(urls["hello"])
        writer.write(get("/chunked"))
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert head.startswith(b"HTTP/1.1 200") and b"transfer-encoding: chunked" in head
        assert await asyncio.wait_for(reader.readuntil(b"0\r\n\r\n"), 10) == b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
        assert paths(server) == (0, 1)
        await served(reader, writer, "/after")  # the same connection, on the stream path now
        writer.close()

    with_app(tmp_path, test)


def test_pipelined_requests_and_a_head_in_pieces_are_answered_in_order(tmp_path: Path) -> None:
    async def test(server: AppServer, urls: dict[str, str]) -> None:
        reader, writer = await warm(urls["hello"])
        writer.write(b"GET /piece HT")
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(b"TP/1.1\r\nhost: x\r\n\r\n")
        assert (await response(reader))[2].endswith(b"GET /piece")
        writer.write(get("/one") + get("/two") + get("/three"))
        bodies = [(await response(reader))[2] for _ in range(3)]
        assert [b.rsplit(b" ", 1)[1] for b in bodies] == [b"/one", b"/two", b"/three"]
        writer.close()

    with_app(tmp_path, test)


def test_a_malformed_head_gets_the_same_answer_as_ever(tmp_path: Path) -> None:
    async def test(server: AppServer, urls: dict[str, str]) -> None:
        for raw, status, text in [
            (b"GET / HTTP/1.1\r\nhost: x\r\nhost: y\r\n\r\n", 400, errors.ONE_HOST),
            (b"GET / HTTP/1.1\r\nhost: x\r\nmodal-function-call-id: fc-1\r\n\r\n", 400,
             "prohibited modal header: modal-function-call-id"),
            (b"GET / HTTP/1.1\r\nhost: x\r\nx-big: " + b"a" * 70_000 + b"\r\n\r\n", 431, errors.HEADERS_TOO_LARGE),
        ]:
            reader, writer = await connect(urls["hello"])
            writer.write(raw)
            got, _, body = await response(reader)
            assert (got, body.decode()) == (status, text)
            assert await asyncio.wait_for(reader.read(), 10) == b""  # and the connection is closed
            writer.close()

    with_app(tmp_path, test)


def test_idle_connections_close_quietly_and_a_slow_head_gets_408(tmp_path: Path) -> None:
    async def test(server: AppServer, urls: dict[str, str]) -> None:
        reader, writer = await warm(urls["hello"])
        assert await asyncio.wait_for(reader.read(), 10) == b""  # idle past head_timeout: closed, no answer
        writer.close()
        reader, writer = await connect(urls["hello"])
        writer.write(b"GET / HTTP/1.1\r\nhost:")  # and then nothing more (slowloris)
        status, _, body = await response(reader)
        assert (status, body.decode()) == (408, errors.HEAD_TIMEOUT)
        writer.close()
        assert paths(server) == (0, 0)

    with_app(tmp_path, test, limits=ProxyLimits(head_timeout=0.3))


def test_a_client_that_half_closes_still_gets_its_answer(tmp_path: Path) -> None:
    async def test(server: AppServer, urls: dict[str, str]) -> None:
        reader, writer = await warm(urls["hello"])
        writer.write(get("/last"))
        writer.write_eof()
        status, _, body = await response(reader)
        assert status == 200 and body.endswith(b"GET /last")
        assert await asyncio.wait_for(reader.read(), 10) == b""
        writer.close()
        reader, writer = await connect(urls["hello"])
        writer.write(b"GET / HTTP/1.1\r\nho")
        writer.write_eof()  # the end in the middle of a head: 400, as on the stream path
        status, _, body = await response(reader)
        assert (status, body.decode()) == (400, errors.INCOMPLETE_HEAD)
        writer.close()

    with_app(tmp_path, test)


def test_a_dead_container_is_taken_out_and_the_request_served_by_another(tmp_path: Path) -> None:
    async def test(server: AppServer, urls: dict[str, str]) -> None:
        reader, writer = await connect(urls["hello"])
        writer.write(get("/first"))
        first = (await response(reader))[2].split(b" ")[0]
        writer.close()
        endpoint = next(iter(server.apps["tester/demo"].endpoints.values()))
        pool = endpoint.pool_for(b"")
        (pc,) = pool.containers.values()
        pc.backend.kill()  # its server stops accepting; the gateway's idle connections to it go too
        pc.close_idle_conns()
        reader, writer = await connect(urls["hello"])
        writer.write(get("/second"))
        status, _, body = await response(reader)
        assert status == 200 and body.split(b" ")[0] != first and body.endswith(b"GET /second")
        writer.close()

    with_app(tmp_path, test)


def test_past_the_connection_cap_new_connections_get_503(tmp_path: Path) -> None:
    async def test(server: AppServer, urls: dict[str, str]) -> None:
        host, port = urls["hello"].removeprefix("http://").rstrip("/").split(":")
        held = [socket.create_connection((host, int(port))) for _ in range(3)]
        try:
            await asyncio.sleep(0.1)
            reader, writer = await connect(urls["hello"])
            status, _, body = await response(reader)
            assert (status, body.decode()) == (503, errors.TOO_MANY_CONNECTIONS)
            writer.close()
        finally:
            for s in held:
                s.close()

    with_app(tmp_path, test, limits=ProxyLimits(max_connections=3))


def test_past_the_redirect_window_a_quick_request_gets_303_and_its_result_url_the_answer(tmp_path: Path) -> None:
    async def test(server: AppServer, urls: dict[str, str]) -> None:
        reader, writer = await warm(urls["hello"])
        writer.write(get("/sleep"))  # answered after 0.5 s; the window is 0.2 s
        status, headers, _ = await response(reader)
        assert status == 303
        location = headers[b"location"].decode()
        assert location.startswith("/sleep?__modal_function_call_id=fc-")
        assert paths(server) == (0, 1)  # the 303 chain is the stream path's: the connection moved
        writer.write(get(location))  # the same connection: the result URL waits for the answer
        status, _, body = await response(reader)
        assert status in (200, 303)
        while status == 303:
            writer.write(get(location))
            status, _, body = await response(reader)
        assert status == 200 and body.endswith(b"slept")
        await served(reader, writer, "/after")
        writer.close()

    with_app(tmp_path, test, limits=ProxyLimits(redirect_after=0.2))


def test_a_client_that_leaves_while_queued_for_a_cold_start_takes_no_slot(tmp_path: Path) -> None:
    async def test(server: AppServer, urls: dict[str, str]) -> None:
        server.backend.starts.clear()  # container starts wait until the client has left
        endpoint = next(iter(server.apps["tester/demo"].endpoints.values()))
        pool = endpoint.pool_for(b"")
        reader, writer = await connect(urls["hello"])
        writer.write(get("/cold"))  # no container yet: the request waits in the pool's queue
        for _ in range(200):
            if pool.waiters:
                break
            await asyncio.sleep(0.01)
        assert len(pool.waiters) == 1
        # The client leaves: a reset, which the gateway sees at once (a FIN alone only half-closes, and a
        # half-closed client still gets its answer).
        writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.close()
        for _ in range(200):
            if not pool.waiters:
                break
            await asyncio.sleep(0.01)
        server.backend.starts.set()
        for _ in range(200):
            if pool.containers and all(pc.state == "ready" for pc in pool.containers.values()):
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
        assert not pool.waiters and sum(pc.in_flight for pc in pool.containers.values()) == 0
        reader, writer = await connect(urls["hello"])
        await served(reader, writer, "/next")
        writer.close()

    with_app(tmp_path, test)


def test_bodies_the_quick_path_leaves_to_streams_are_answered_as_ever(tmp_path: Path) -> None:
    async def test(server: AppServer, urls: dict[str, str]) -> None:
        reader, writer = await warm(urls["hello"])
        writer.write(b"POST /late HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\n\r\n")  # the body comes later
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(b"hello")
        status, _, body = await response(reader)
        assert status == 200 and body.endswith(b"POST /late") and paths(server) == (0, 1)
        writer.close()
        reader, writer = await warm(urls["hello"])
        writer.write(b"POST /big HTTP/1.1\r\nhost: x\r\ncontent-length: 20\r\n\r\n" + b"x" * 20)  # over max_body
        status, _, body = await response(reader)
        assert (status, body.decode()) == (413, errors.BODY_TOO_LARGE.format(limit=10))
        writer.close()
        reader, writer = await warm(urls["hello"])
        writer.write(b"POST /ask HTTP/1.1\r\nhost: x\r\nexpect: 100-continue\r\ncontent-length: 2\r\n\r\n")
        assert await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10) == b"HTTP/1.1 100 Continue\r\n\r\n"
        writer.write(b"hi")
        status, _, body = await response(reader)
        assert status == 200 and body.endswith(b"POST /ask")
        writer.close()

    with_app(tmp_path, test, limits=ProxyLimits(max_body=10))


def test_every_request_on_a_quick_connection_is_checked_for_proxy_auth(tmp_path: Path) -> None:
    """Auth is per request, not per connection: once a request passed, the next one on the same
    kept-alive connection without a token, or with another workspace's, is refused."""
    manifest = fakes.manifest()
    entry = manifest.functions[0]
    protected = replace(manifest, functions=(replace(entry, web={**entry.web, "requires_proxy_auth": True}),))

    async def test(server: AppServer, urls: dict[str, str]) -> None:
        assert server.store is not None
        token_id, secret = server.store.create_proxy_token(server.store.workspace("tester"), "t")
        other_id, other_secret = server.store.create_proxy_token(server.store.workspace("other"), "t")
        ours = f"modal-key: {token_id}\r\nmodal-secret: {secret}\r\n"
        theirs = f"modal-key: {other_id}\r\nmodal-secret: {other_secret}\r\n"
        reader, writer = await connect(urls["hello"])
        for extra, expected in [(ours, 200), ("", 401), (ours, 200), (theirs, 401), (ours, 200)]:
            writer.write(get("/p", extra))
            status, _, body = await response(reader)
            assert status == expected, (extra, status, body)
            if status == 401:
                assert body.decode() in (errors.MISSING_PROXY_CREDENTIALS, errors.INVALID_PROXY_CREDENTIALS)
        assert paths(server) == (1, 0)  # all of it on the quick path
        writer.close()

    with_app(tmp_path, test, manifest=protected, store=True)


def test_a_request_sent_on_after_its_container_died_is_counted_once_against_the_rate_limit(tmp_path: Path) -> None:
    """A request that goes to another container because its own was dead (from the quick path to the
    stream path, or within the stream path) takes one token, not one per look: with three tokens, three
    such requests are answered and only the fourth is refused."""
    async def test(server: AppServer, urls: dict[str, str]) -> None:
        pool = next(iter(server.apps["tester/demo"].endpoints.values())).pool_for(b"")

        def kill() -> None:  # its server stops accepting, before the pool has noticed that it died
            for pc in pool.containers.values():
                pc.backend._server.close()
                pc.close_idle_conns()

        reader, writer = await connect(urls["hello"])
        await served(reader, writer, "/first")  # token 1
        writer.close()
        kill()
        reader, writer = await connect(urls["hello"])
        await served(reader, writer, "/second")  # token 2: the quick path gives it to the stream path
        writer.close()
        kill()
        reader, writer = await connect(urls["hello"])
        writer.write(b"POST /third HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n")
        status, _, body = await response(reader)  # token 3: the stream path, which retries it
        assert status == 200 and body.endswith(b"POST /third"), (status, body)
        writer.write(get("/fourth"))
        status, _, body = await response(reader)
        assert status == 429 and body.decode() == errors.RATE_LIMITED.format(rate=0.001, workspace="tester")
        writer.close()

    with_app(tmp_path, test, limits=ProxyLimits(rate=0.001, burst_seconds=3000))


def test_a_101_to_a_request_that_asked_for_no_upgrade_is_a_502_on_both_paths(tmp_path: Path) -> None:
    """A container that switches protocols unasked speaks something else on that connection from then
    on: the client gets 502, the container connection is dropped, and the next request is served on a
    fresh one (before, the 101 was relayed as a whole response and the connection reused)."""
    async def test(server: AppServer, urls: dict[str, str]) -> None:
        reader, writer = await warm(urls["hello"])
        writer.write(get("/switch"))  # the quick path
        status, _, body = await response(reader)
        assert (status, body.decode()) == (502, errors.MALFORMED_RESPONSE)
        writer.close()
        reader, writer = await connect(urls["hello"])
        await served(reader, writer, "/after-quick")
        writer.write(b"POST /switch HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\n")
        await asyncio.sleep(0.05)
        writer.write(b"hi")  # a body that came late: the stream path
        status, _, body = await response(reader)
        assert (status, body.decode()) == (502, errors.MALFORMED_RESPONSE)
        writer.close()
        reader, writer = await connect(urls["hello"])
        await served(reader, writer, "/after-streams")
        writer.close()

    with_app(tmp_path, test)
