"""Load generators for the benchmarks: wrk where it is installed, small raw-socket clients otherwise.

httpx costs more CPU per request than the servers being measured, and on a 2-core machine the
client's cost lands in every figure. So the throughput scenarios use wrk (`apt-get install wrk`),
and the Python fallbacks speak HTTP/1.1 over plain asyncio streams, parsing only what they must.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import time
from urllib.parse import urlsplit


def _request(url: str) -> tuple[str, int, bytes]:
    parts = urlsplit(url)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    host = parts.hostname or "127.0.0.1"
    return host, parts.port or 80, f"GET {path} HTTP/1.1\r\nHost: {parts.netloc}\r\n\r\n".encode()


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    lower = head.lower()
    match = re.search(rb"\r\ncontent-length:\s*(\d+)", lower)
    if match:
        await reader.readexactly(int(match.group(1)))
    elif b"transfer-encoding: chunked" in lower:
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    return status


async def one_request(url: str, timeout: float = 60.0) -> tuple[float, bool]:
    """One request on a fresh connection: (seconds to the whole response, status was 200)."""
    host, port, request = _request(url)
    start = time.perf_counter()
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
        try:
            writer.write(request)
            status = await asyncio.wait_for(_read_response(reader), timeout)
        finally:
            writer.close()
        return time.perf_counter() - start, status == 200
    except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError):
        return time.perf_counter() - start, False


async def burst(url: str, n: int) -> list[tuple[float, bool]]:
    """`n` requests at once, each on its own connection."""
    return list(await asyncio.gather(*(one_request(url) for _ in range(n))))


def run_burst(url: str, n: int) -> list[tuple[float, bool]]:
    """`burst` on uvloop where it is installed: the load generator shares the machine's cores with what
    it measures, and uvloop spends about half the CPU asyncio's own loop does on 1,000 connections."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(burst(url, n))
    return uvloop.run(burst(url, n))


async def _closed_loop(url: str, connections: int, seconds: float) -> dict[str, float]:
    host, port, request = _request(url)
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while time.perf_counter() < deadline:
                t = time.perf_counter()
                writer.write(request)
                if await _read_response(reader) != 200:
                    errors += 1
                latencies.append(time.perf_counter() - t)
        finally:
            writer.close()

    await asyncio.gather(*(worker() for _ in range(connections)))
    latencies.sort()
    return {
        "rps": len(latencies) / seconds,
        "errors": errors,
        "p50_ms": latencies[len(latencies) // 2] * 1000,
        "p99_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000,
        "tool": "python",
    }


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    if match is None:
        raise ValueError(text)
    return float(match.group(1)) * _UNITS[match.group(2)]


def wrk(url: str, connections: int, seconds: float, threads: int = 2) -> dict[str, float]:
    """Run wrk and read requests/s, errors and latency percentiles from its report."""
    out = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds:g}s", "--latency", url],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=True,
    ).stdout
    result: dict[str, float] = {"tool": "wrk"}  # type: ignore[dict-item]
    result["rps"] = float(re.search(r"Requests/sec:\s*([\d.]+)", out).group(1))  # type: ignore[union-attr]
    for pct in ("50", "99"):
        match = re.search(rf"^\s*{pct}%\s+(\S+)", out, re.M)
        result[f"p{pct}_ms"] = _ms(match.group(1)) if match else float("nan")
    non2xx = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    result["errors"] = (int(non2xx.group(1)) if non2xx else 0) + (sum(map(int, sock.groups())) if sock else 0)
    return result


def throughput(url: str, connections: int, seconds: float) -> dict[str, float]:
    """Closed-loop load on keep-alive connections: wrk if installed, else the Python client."""
    if shutil.which("wrk"):
        return wrk(url, connections, seconds)
    return asyncio.run(_closed_loop(url, connections, seconds))
