"""Benchmark: what Sampan's gateway adds to a warm request, and what a cold start costs.

Baselines run in the same process, on the same machine, in the same run:
- warm latency: the same ASGI app under plain `uvicorn --loop uvloop --http httptools`, against
  the same app behind Sampan's gateway (one keep-alive connection, sequential requests);
- cold start: spawning `uvicorn` with the FastAPI app until its first response, against Sampan
  going from zero containers to the first response.

    .venv/bin/python benchmarks/serve_overhead.py [--requests 3000] [--trials 10]

Writes benchmarks/results/serve_overhead.{json,md}.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
APPS = HERE / "apps"
RESULTS = HERE / "results"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(port: int, timeout: float = 60.0) -> float:
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/")
            if conn.getresponse().status == 200:
                conn.close()
                return time.perf_counter() - start
        except OSError:
            time.sleep(0.005)
    raise TimeoutError(port)


def latencies(port: int, n: int) -> list[float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    out = []
    for _ in range(n // 10):  # warm-up
        conn.request("GET", "/")
        conn.getresponse().read()
    for _ in range(n):
        t = time.perf_counter()
        conn.request("GET", "/")
        r = conn.getresponse()
        r.read()
        out.append(time.perf_counter() - t)
        assert r.status == 200
    conn.close()
    return out


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(len(s) * p))]


def uvicorn_proc(module: str, port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "uvicorn", f"{module}:app", "--loop", "uvloop", "--http", "httptools",
         "--port", str(port), "--log-level", "warning", "--no-access-log"],
        cwd=APPS, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )


def bench_direct(n: int) -> list[float]:
    port = free_port()
    proc = uvicorn_proc("raw_hello", port)
    try:
        wait_http(port)
        return latencies(port, n)
    finally:
        proc.terminate()
        proc.wait(10)


def cold_direct(trials: int) -> list[float]:
    out = []
    for _ in range(trials):
        port = free_port()
        start = time.perf_counter()
        proc = uvicorn_proc("fastapi_hello", port)
        try:
            wait_http(port)
            out.append(time.perf_counter() - start)
        finally:
            proc.terminate()
            proc.wait(10)
    return out


async def bench_sampan(n: int, trials: int) -> tuple[list[float], list[float]]:
    sys.path.insert(0, str(HERE.parent / "src"))
    from sampan.backends.local import LocalBackend
    from sampan.config import Settings
    from sampan.manifest import Manifest
    from sampan.server.apps import AppServer
    from sampan.server.bundle import read_files, write_bundle

    home = Path(tempfile.mkdtemp(prefix="sampan-bench-"))
    out = home / "manifest.json"
    subprocess.run([sys.executable, "-m", "sampan.cli.importer", str(APPS / "sampan_apps.py"), "--out", str(out)],
                   check=True, cwd=APPS)
    data = json.loads(out.read_text())
    settings = Settings(home=home, workspace="bench", domain="localhost", host="127.0.0.1", gateway_port=0,
                        endpoint_port_base=0, dev_suffix="dev", debounce_ms=100, server_id="bench")
    server = AppServer(settings, LocalBackend(home=home), lambda *a: None, lambda *a: print("start error", a),
                       stop_grace=5)
    await server.start()
    bundle = write_bundle(home, read_files(Path(data["root"]), data["files"]))
    version = await server.publish("bench", Manifest.from_json(data["manifest"]), bundle, ephemeral=False)
    ports = {i.tag: int(i.url.rsplit(":", 1)[1]) for i in version.infos}
    endpoints = {e.entry.tag: e for e in version.endpoints.values()}
    try:
        cold = []
        for _ in range(trials):
            endpoint = endpoints["fastapi"]
            await endpoint.close()
            endpoint.pools.clear()
            start = time.perf_counter()
            await asyncio.to_thread(wait_http, ports["fastapi"])
            cold.append(time.perf_counter() - start)
        await asyncio.to_thread(wait_http, ports["raw"])
        warm = await asyncio.to_thread(latencies, ports["raw"], n)
    finally:
        await server.close()
    return warm, cold


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--trials", type=int, default=10)
    args = parser.parse_args()
    direct = bench_direct(args.requests)
    cold_base = cold_direct(args.trials)
    import uvloop

    via, cold = uvloop.run(bench_sampan(args.requests, args.trials))
    ms = 1000.0
    report = {
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()},
        "warm_latency_ms": {
            "direct_p50": statistics.median(direct) * ms, "direct_p99": pct(direct, 0.99) * ms,
            "sampan_p50": statistics.median(via) * ms, "sampan_p99": pct(via, 0.99) * ms,
        },
        "cold_start_ms": {
            "uvicorn_spawn_median": statistics.median(cold_base) * ms,
            "sampan_median": statistics.median(cold) * ms,
            "sampan_p90": pct(cold, 0.9) * ms,
        },
    }
    w = report["warm_latency_ms"]
    w["added_p50"] = w["sampan_p50"] - w["direct_p50"]
    w["added_p99"] = w["sampan_p99"] - w["direct_p99"]
    w["ratio_p50"] = w["sampan_p50"] / w["direct_p50"]
    c = report["cold_start_ms"]
    c["ratio"] = c["sampan_median"] / c["uvicorn_spawn_median"]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "serve_overhead.json").write_text(json.dumps(report, indent=2))
    md = [
        "| measure | baseline | sampan | added / ratio |",
        "|---|---|---|---|",
        f"| warm p50 (ms), 1 conn, app A | {w['direct_p50']:.3f} | {w['sampan_p50']:.3f} | "
        f"+{w['added_p50']:.3f} ms ({w['ratio_p50']:.2f}x) |",
        f"| warm p99 (ms) | {w['direct_p99']:.3f} | {w['sampan_p99']:.3f} | +{w['added_p99']:.3f} ms |",
        f"| cold start to first response (ms), app B, median of {args.trials} | {c['uvicorn_spawn_median']:.0f} "
        f"(uvicorn spawn) | {c['sampan_median']:.0f} | {c['ratio']:.2f}x |",
    ]
    (RESULTS / "serve_overhead.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    print(json.dumps(report["machine"]))


if __name__ == "__main__":
    main()
