"""The HTTP edge with real clients: WebSockets, streaming, bodies, the 303 chain, rate limits, hostile input."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import socket
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests
import websockets
from websockets.exceptions import ConnectionClosed

from sampan.config import ProxyLimits
from tests.helpers import free_port
from tests.server_helpers import running

pytestmark = pytest.mark.slow
MIB = 1 << 20

EDGE_APP = """
import asyncio, os, pathlib, time
import modal
from fastapi import FastAPI, Request, WebSocket
from fastapi.responses import StreamingResponse

app = modal.App("edge")
web = FastAPI()

@web.websocket("/ws")
async def ws(websocket: WebSocket):
    await websocket.accept()
    try:
        while True:
            message = await websocket.receive_bytes()
            await websocket.send_text(str(len(message)))
    except Exception:
        pass

@web.get("/forever")
async def forever(request: Request):
    async def gen():
        try:
            while True:
                if await request.is_disconnected():
                    break
                yield b"x" * 1024
                await asyncio.sleep(0.05)
        finally:  # Starlette cancels a streaming response whose client disconnected
            pathlib.Path(os.environ["MARKER"]).write_text("disconnected")
    return StreamingResponse(gen())

@web.post("/count")
async def count(request: Request):
    n = 0
    async for chunk in request.stream():
        n += len(chunk)
    return {"bytes": n}

@web.get("/download")
async def download(size: int):
    block = b"y" * (1 << 20)
    async def gen():
        for _ in range(size >> 20):
            yield block
    return StreamingResponse(gen(), media_type="application/octet-stream")

@web.get("/slow")
async def slow(seconds: float):
    await asyncio.sleep(seconds)
    return {"slept": seconds}

@web.post("/slow-post")
async def slow_post(request: Request):
    body = await request.json()
    await asyncio.sleep(body["seconds"])
    return body

@web.get("/hits")
def hits():
    return int(os.environ.get("HITS", "0"))

@app.function(env={"MARKER": "/marks/marker.txt"},
              volumes={"/marks": modal.Volume.from_name("marks", create_if_missing=True)})
@modal.concurrent(max_inputs=50)
@modal.asgi_app()
def edge():
    return web
"""


def edge_app(tmp_path: Path) -> str:
    return EDGE_APP


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def with_edge(tmp_path: Path, body: Any, limits: ProxyLimits | None = None) -> None:
    server, version, *_ = await running(tmp_path, edge_app(tmp_path), limits=limits)
    try:
        await body(server, version.infos[0].url)
    finally:
        await server.close()


def test_websocket_echo_2mib_edge_1009_and_no_deflate(tmp_path: Path) -> None:
    async def body(server: Any, url: str) -> None:
        ws_url = url.replace("http://", "ws://") + "/ws"
        async with websockets.connect(ws_url, max_size=None) as ws:  # the client offers permessage-deflate
            assert ws.response.headers.get("Sec-WebSocket-Extensions") is None
            await ws.send(b"abc")
            assert await ws.recv() == "3"
            await ws.send(b"z" * (2 * MIB))  # exactly 2 MiB passes
            assert await ws.recv() == str(2 * MIB)
            await ws.send(b"z" * (2 * MIB + 1))
            with pytest.raises(ConnectionClosed) as info:
                await ws.recv()
            assert info.value.rcvd is not None and info.value.rcvd.code == 1009

    run(with_edge(tmp_path, body))


def test_client_disconnect_reaches_the_app(tmp_path: Path) -> None:
    async def body(server: Any, url: str) -> None:
        async with httpx.AsyncClient(timeout=30) as client:
            async with client.stream("GET", url + "/forever") as r:
                async for _ in r.aiter_bytes():
                    break
        marker = tmp_path / "home" / "volumes" / "tester" / "marks" / "marker.txt"  # the app's Volume
        for _ in range(100):
            if marker.exists():
                break
            await asyncio.sleep(0.05)
        assert marker.read_text() == "disconnected"

    run(with_edge(tmp_path, body))


def rss_kib(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as fh:
                for line in fh:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


def container_pids(server_id: str) -> list[int]:
    needle = f"SAMPAN_LABEL_SERVER={server_id}".encode()
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/environ", "rb") as fh:
                    if needle in fh.read().split(b"\0"):
                        pids.append(int(entry))
            except OSError:
                pass
    return pids


def test_1gib_upload_and_download_with_bounded_memory(tmp_path: Path) -> None:
    async def body(server: Any, url: str) -> None:
        async with httpx.AsyncClient(timeout=120) as client:
            await client.post(url + "/count", content=b"warm")
            pids = [os.getpid(), *container_pids("test-server")]
            base = rss_kib(pids)
            peak = base
            stop = asyncio.Event()

            async def sample() -> None:
                nonlocal peak
                while not stop.is_set():
                    peak = max(peak, rss_kib(pids))
                    await asyncio.sleep(0.1)

            sampler = asyncio.create_task(sample())

            async def upload():  # noqa: ANN202
                block = b"u" * MIB
                for _ in range(1024):
                    yield block

            r = await client.post(url + "/count", content=upload())
            assert r.json() == {"bytes": 1 << 30}
            received = 0
            async with client.stream("GET", url + "/download", params={"size": 1 << 30}) as r:
                async for chunk in r.aiter_raw():
                    received += len(chunk)
            assert received == 1 << 30
            stop.set()
            await sampler
        # the test client itself is in this process too; all together stay far below the body sizes
        assert (peak - base) < 256 * 1024, f"memory grew by {(peak - base) // 1024} MiB"

    run(with_edge(tmp_path, body))


def test_request_body_limit_413(tmp_path: Path) -> None:
    async def body(server: Any, url: str) -> None:
        async with httpx.AsyncClient(timeout=30) as client:
            r = await client.post(url + "/count", content=b"a" * (MIB + 1))
            assert r.status_code == 413 and "request body is larger than the limit" in r.text
            assert (await client.post(url + "/count", content=b"a" * MIB)).json() == {"bytes": MIB}

            async def chunked():  # noqa: ANN202
                for _ in range(3):
                    yield b"b" * (MIB // 2)

            r = await client.post(url + "/count", content=chunked())
            assert r.status_code == 413

    run(with_edge(tmp_path, body, ProxyLimits(max_body=MIB)))


def test_303_chain_for_long_requests(tmp_path: Path) -> None:
    async def body(server: Any, url: str) -> None:
        def sync() -> None:
            first = requests.get(url + "/slow", params={"seconds": 2.5}, allow_redirects=False, timeout=30)
            assert first.status_code == 303
            location = first.headers["location"]
            assert "__modal_function_call_id=fc-" in location and location.startswith("/slow?seconds=2.5&")
            assert first.headers["modal-function-call-id"] in location
            result_url = url + location
            assert requests.post(result_url, timeout=30).text == "modal-http: bad redirect method"
            final = requests.get(result_url, timeout=30)  # follows the chain (303 again after 1 s)
            assert final.status_code == 200 and final.json() == {"slept": 2.5}
            assert len(final.history) >= 1
            # delivered once: stream semantics
            assert requests.get(result_url, timeout=30).status_code == 404
            # two fetches of one result at once: one gets it, the other a clean 404 (finding 17)
            again = requests.get(url + "/slow", params={"seconds": 1.5}, allow_redirects=False, timeout=30)
            with concurrent.futures.ThreadPoolExecutor(2) as pool:
                both = list(pool.map(lambda _: requests.get(url + again.headers["location"], timeout=30), range(2)))
            assert sorted(r.status_code for r in both) == [200, 404]
            assert next(r for r in both if r.status_code == 200).json() == {"slept": 1.5}
            # a POST that runs long is redirected too, and the result is fetched with GET
            r = requests.post(url + "/slow-post", json={"seconds": 1.5}, timeout=30)
            assert r.status_code == 200 and r.json() == {"seconds": 1.5}
            assert r.history and r.history[0].status_code == 303

        await asyncio.to_thread(sync)

    run(with_edge(tmp_path, body, ProxyLimits(redirect_after=1.0)))


def test_rate_limit_429_without_reaching_a_container(tmp_path: Path) -> None:
    async def body(server: Any, url: str) -> None:
        async with httpx.AsyncClient(timeout=30) as client:
            await client.get(url + "/hits")  # cold start out of the way (it took a token)
            start = time.monotonic()
            statuses = [(await client.get(url + "/hits")).status_code for _ in range(30)]
            limited = await client.get(url + "/hits")
            elapsed = time.monotonic() - start
        # 10 tokens of burst, minus the warm-up one, plus 5 per second of test time
        assert statuses.count(200) <= 10 + 5 * elapsed + 1
        assert statuses.count(429) >= 30 - (10 + 5 * elapsed + 1)
        assert limited.text == "modal-http: rate limit exceeded for workspace tester (5 requests per second)"

    run(with_edge(tmp_path, body, ProxyLimits(rate=5, burst_seconds=2)))


def raw(port: int, data: bytes, read_timeout: float = 10.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=read_timeout) as s:
        s.sendall(data)
        chunks = []
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
        except TimeoutError:
            pass
        return b"".join(chunks)


def status_of(response: bytes) -> int:
    return int(response.split(b" ", 2)[1]) if response.startswith(b"HTTP/1.1 ") else 0


def test_hostile_and_malformed_input(tmp_path: Path) -> None:
    async def body(server: Any, url: str) -> None:
        port = int(url.rsplit(":", 1)[1])
        host = b"Host: x\r\n"

        def checks() -> None:
            assert status_of(raw(port, b"GARBAGE\r\n\r\n")) == 400
            assert status_of(raw(port, b"GET / HTTP/1.1\r\n" + host + b"X: " + b"a" * 70_000 + b"\r\n\r\n")) == 431
            smuggle = b"POST /count HTTP/1.1\r\n" + host + b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
            assert status_of(raw(port, smuggle + b"0\r\n\r\n")) == 400
            bad_chunk = b"POST /count HTTP/1.1\r\n" + host + b"Transfer-Encoding: chunked\r\n\r\nZZ\r\nabc\r\n0\r\n\r\n"
            assert status_of(raw(port, bad_chunk)) == 400
            prohibited = raw(port, b"GET /hits HTTP/1.1\r\n" + host + b"Modal-Function-Call-Id: fc-x\r\n\r\n")
            assert status_of(prohibited) == 400
            assert prohibited.endswith(b"prohibited modal header: modal-function-call-id")
            # slowloris: half a head, then silence -> 408 once the head timeout passes
            start = time.monotonic()
            assert status_of(raw(port, b"GET /hits HTTP/1.1\r\nHost: x\r\n", read_timeout=10)) == 408
            assert time.monotonic() - start < 5
            # a body that stalls -> 408
            stalled = raw(port, b"POST /count HTTP/1.1\r\n" + host + b"Content-Length: 100\r\n\r\nabc")
            assert status_of(stalled) == 408
            # pipelined requests are answered in order on one connection
            pipelined = raw(port, b"GET /hits HTTP/1.1\r\n" + host + b"\r\nGET /slow?seconds=0 HTTP/1.1\r\n" + host
                            + b"Connection: close\r\n\r\n")
            assert pipelined.count(b"HTTP/1.1 200 OK") == 2 and pipelined.index(b"0") < pipelined.index(b"slept")
            # HTTP/1.0 without Host: answered, then closed
            assert status_of(raw(port, b"GET /hits HTTP/1.0\r\n\r\n")) == 200
            # unknown Host on the Host-routed port
            gateway = server.gateway.port
            unknown = raw(gateway, b"GET / HTTP/1.1\r\nHost: nobody--nothing.localhost\r\nConnection: close\r\n\r\n")
            assert status_of(unknown) == 404 and unknown.endswith(b"modal-http: invalid function call")

        await asyncio.to_thread(checks)
        # a thousand idle connections do not stop anyone else from being served
        idle = []
        for _ in range(1000):
            idle.append(await asyncio.open_connection("127.0.0.1", port))
        async with httpx.AsyncClient(timeout=30) as client:
            assert (await client.get(url + "/hits")).status_code == 200
        for _, writer in idle:
            writer.close()

    run(with_edge(tmp_path, body, ProxyLimits(head_timeout=1.0, body_timeout=1.0)))


def test_random_bytes_never_take_the_gateway_down(tmp_path: Path) -> None:
    import random

    async def body(server: Any, url: str) -> None:
        port = int(url.rsplit(":", 1)[1])
        rng = random.Random(1234)
        seeds = [b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"POST /count HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"]

        def fuzz() -> None:
            deadline = time.monotonic() + 20
            for _ in range(300):
                if time.monotonic() > deadline:
                    break
                data = bytearray(rng.choice(seeds))
                for _ in range(rng.randint(1, 8)):
                    pos = rng.randrange(len(data))
                    data[pos:pos + 1] = bytes(rng.randrange(256) for _ in range(rng.randint(0, 4)))
                with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                    s.sendall(bytes(data))
                    s.shutdown(socket.SHUT_WR)
                    try:
                        while s.recv(65536):
                            pass
                    except OSError:
                        pass

        await asyncio.to_thread(fuzz)
        async with httpx.AsyncClient(timeout=30) as client:
            assert (await client.get(url + "/hits")).status_code == 200

    run(with_edge(tmp_path, body, ProxyLimits(head_timeout=1.0, body_timeout=1.0)))


WEB_SERVER_APP = '''
import pathlib, subprocess, sys, tempfile
import modal

app = modal.App("raw-servers")

WS_SERVER = """
import asyncio, websockets
async def handler(ws):
    async for message in ws:
        if message == "bye":
            await ws.close(4000, "see you")
            return
        await ws.send(message[::-1])
async def main():
    async with websockets.serve(handler, "0.0.0.0", PORT, compression=None, max_size=None):
        await asyncio.Future()
asyncio.run(main())
"""

TRAILER_SERVER = """
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", PORT)); s.listen(16)
while True:
    c, _ = s.accept()
    buf = b""
    while b"\\\\r\\\\n\\\\r\\\\n" not in buf:
        data = c.recv(65536)
        if not data:
            break
        buf += data
    c.sendall(b"HTTP/1.1 200 OK\\\\r\\\\nTransfer-Encoding: chunked\\\\r\\\\nTrailer: x-checksum\\\\r\\\\n\\\\r\\\\n"
              b"5\\\\r\\\\nhello\\\\r\\\\n0\\\\r\\\\nx-checksum: abc123\\\\r\\\\n\\\\r\\\\n")
    c.close()
"""

def start(source, port):
    path = pathlib.Path(tempfile.mkdtemp()) / "server.py"
    path.write_text(source.replace("PORT", str(port)))
    subprocess.Popen([sys.executable, str(path)])

@app.function()
@modal.concurrent(max_inputs=10)
@modal.web_server(WS_PORT)
def ws_server():
    start(WS_SERVER, WS_PORT)

@app.function()
@modal.web_server(TRAILER_PORT)
def trailers():
    start(TRAILER_SERVER, TRAILER_PORT)

@app.function()
@modal.wsgi_app()
def wsgi_stream():
    import time
    def application(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        def body():
            for i in range(3):
                yield f"part {i}\\\\n".encode()
                time.sleep(0.5)
        return body()
    return application
'''



def test_web_server_websockets_trailers_and_wsgi_streaming(tmp_path: Path) -> None:
    source = WEB_SERVER_APP.replace("WS_PORT", str(free_port())).replace("TRAILER_PORT", str(free_port()))

    async def main() -> None:
        server, version, *_ = await running(tmp_path, source)
        urls = {i.tag: i.url for i in version.infos}
        try:
            ws_url = urls["ws_server"].replace("http://", "ws://") + "/"
            async with websockets.connect(ws_url, max_size=None, open_timeout=60) as ws:
                await ws.send("sampan")
                assert await ws.recv() == "napmas"
                await ws.send("x" * (2 * MIB + 1))  # the gateway enforces the limit for any server
                with pytest.raises(ConnectionClosed) as info:
                    await ws.recv()
                assert info.value.rcvd is not None and info.value.rcvd.code == 1009
            async with websockets.connect(ws_url, open_timeout=60) as ws:
                await ws.send("bye")
                with pytest.raises(ConnectionClosed) as info:
                    await ws.recv()
                assert info.value.rcvd is not None
                assert (info.value.rcvd.code, info.value.rcvd.reason) == (4000, "see you")

            port = int(urls["trailers"].rsplit(":", 1)[1])
            response = await asyncio.to_thread(
                raw, port, b"GET / HTTP/1.1\r\nHost: x\r\nTE: trailers\r\nConnection: close\r\n\r\n", 30
            )
            assert b"5\r\nhello\r\n0\r\nx-checksum: abc123\r\n\r\n" in response

            async with httpx.AsyncClient(timeout=30) as client:
                await client.get(urls["wsgi_stream"])  # warm
                start = time.monotonic()
                first = None
                async with client.stream("GET", urls["wsgi_stream"]) as r:
                    async for chunk in r.aiter_raw():  # raw: no charset sniffing that would buffer
                        if first is None and chunk:
                            first = time.monotonic() - start
                total = time.monotonic() - start
            assert first is not None and first < 0.4 < 1.0 < total
        finally:
            await server.close()

    run(main())


def test_result_urls_of_the_303_chain_are_rate_limited_like_any_request(tmp_path: Path) -> None:
    """Finding 17: a result URL skipped the rate limit (and proxy auth, which shares the same admission)."""
    async def body(server: Any, url: str) -> None:
        def sync() -> None:
            first = requests.get(url + "/slow", params={"seconds": 1.5}, allow_redirects=False, timeout=30)
            assert first.status_code == 303
            limited = requests.get(url + first.headers["location"], allow_redirects=False, timeout=30)
            assert limited.status_code == 429 and "rate limit exceeded" in limited.text

        await asyncio.to_thread(sync)

    run(with_edge(tmp_path, body, ProxyLimits(redirect_after=1.0, rate=0.2, burst_seconds=5.0)))
