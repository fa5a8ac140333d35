"""Benchmark: a burst from zero containers (issue: autoscaling).

256 simultaneous requests to a 100 ms async handler with `@modal.concurrent(max_inputs=32)` and
`max_containers=8`, starting from zero containers. Reports success rate, latency percentiles, the
peak container count, how long the pool takes to get back to zero after the idle window, and a
timeline of containers over time. The baseline in the same run is the same handler under one
plain uvicorn process that is already running (no cold start at all), hit by the same burst.

    .venv/bin/python benchmarks/burst.py [--requests 256] [--window 2]

Writes benchmarks/results/burst.{json,md}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"

APP = """
import asyncio
import modal

app = modal.App("burst")


@app.function(max_containers=8, scaledown_window={window})
@modal.concurrent(max_inputs=32)
@modal.fastapi_endpoint()
async def work():
    await asyncio.sleep(0.1)
    return "ok"
"""

PLAIN = """
import asyncio
from fastapi import FastAPI

app = FastAPI()


@app.get("/")
async def work():
    await asyncio.sleep(0.1)
    return "ok"
"""


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(len(s) * p))]


async def fire(url: str, n: int) -> tuple[list[float], int]:
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        async def one() -> tuple[float, bool]:
            t = time.perf_counter()
            try:
                r = await client.get(url)
                return time.perf_counter() - t, r.status_code == 200
            except httpx.HTTPError:
                return time.perf_counter() - t, False

        results = await asyncio.gather(*(one() for _ in range(n)))
    return [d for d, _ in results], sum(ok for _, ok in results)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def baseline(n: int, workdir: Path) -> tuple[list[float], int]:
    (workdir / "plain_burst.py").write_text(PLAIN)
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "plain_burst:app", "--loop", "uvloop", "--http", "httptools",
         "--port", str(port), "--log-level", "warning", "--no-access-log"],
        cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        async with httpx.AsyncClient() as client:
            for _ in range(600):
                try:
                    await client.get(f"http://127.0.0.1:{port}/")
                    break
                except httpx.HTTPError:
                    await asyncio.sleep(0.05)
        return await fire(f"http://127.0.0.1:{port}/", n)
    finally:
        proc.terminate()
        proc.wait(10)


async def sampan_run(n: int, window: int, workdir: Path) -> dict:
    sys.path.insert(0, str(HERE.parent / "src"))
    from sampan.backends.local import LocalBackend
    from sampan.config import Settings
    from sampan.manifest import Manifest
    from sampan.server.apps import AppServer
    from sampan.server.bundle import read_files, write_bundle

    app_file = workdir / "burst_app.py"
    app_file.write_text(APP.format(window=window))
    out = workdir / "manifest.json"
    subprocess.run([sys.executable, "-m", "sampan.cli.importer", str(app_file), "--out", str(out)], check=True)
    data = json.loads(out.read_text())
    home = workdir / "home"
    settings = Settings(home=home, workspace="bench", domain="localhost", host="127.0.0.1", gateway_port=0,
                        endpoint_port_base=0, dev_suffix="dev", debounce_ms=100, server_id="burst")
    server = AppServer(settings, LocalBackend(home=home), lambda *a: None, lambda *a: print("start error", a))
    await server.start()
    bundle = write_bundle(home, read_files(Path(data["root"]), data["files"]))
    version = await server.publish("burst", Manifest.from_json(data["manifest"]), bundle, ephemeral=False)
    url = version.infos[0].url
    timeline: list[tuple[float, int, int]] = []
    t0 = time.perf_counter()

    def count() -> tuple[int, int]:
        cs = server.describe_containers()
        return len(cs), sum(1 for c in cs if c["state"] == "ready")

    stop = asyncio.Event()

    async def sample() -> None:
        while not stop.is_set():
            total, ready = count()
            timeline.append((round(time.perf_counter() - t0, 3), total, ready))
            await asyncio.sleep(0.05)

    sampler = asyncio.create_task(sample())
    try:
        latencies, ok = await fire(url, n)
        burst_end = time.perf_counter() - t0
        zero_at = None
        deadline = time.perf_counter() + window + 30
        while time.perf_counter() < deadline:
            if count()[0] == 0:
                zero_at = time.perf_counter() - t0
                break
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await sampler
        await server.close()
    return {
        "latencies": latencies,
        "ok": ok,
        "peak_containers": max(t[1] for t in timeline),
        "burst_end_s": burst_end,
        "back_to_zero_s_after_burst": None if zero_at is None else zero_at - burst_end,
        "timeline": timeline,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=256)
    parser.add_argument("--window", type=int, default=2)
    args = parser.parse_args()
    import uvloop

    with tempfile.TemporaryDirectory(prefix="sampan-burst-") as tmp:
        workdir = Path(tmp)
        base_lat, base_ok = uvloop.run(baseline(args.requests, workdir))
        run = uvloop.run(sampan_run(args.requests, args.window, workdir))
    lat = run["latencies"]
    report = {
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()},
        "requests": args.requests,
        "baseline_warm_uvicorn": {
            "ok": base_ok, "p50_ms": pct(base_lat, 0.5) * 1000, "p99_ms": pct(base_lat, 0.99) * 1000,
        },
        "sampan_from_zero": {
            "ok": run["ok"], "p50_ms": pct(lat, 0.5) * 1000, "p99_ms": pct(lat, 0.99) * 1000,
            "max_ms": max(lat) * 1000, "peak_containers": run["peak_containers"],
            "back_to_zero_s_after_burst": run["back_to_zero_s_after_burst"], "scaledown_window_s": args.window,
        },
        "timeline_s_total_ready": run["timeline"],
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "burst.json").write_text(json.dumps(report, indent=2))
    s, b = report["sampan_from_zero"], report["baseline_warm_uvicorn"]
    changes = []
    last = None
    for t, total, ready in run["timeline"]:
        if (total, ready) != last:
            changes.append(f"{t:.2f}s: {total} containers ({ready} ready)")
            last = (total, ready)
    md = [
        f"Burst of {args.requests} requests, 100 ms handler, max_inputs=32, max_containers=8, from zero.",
        "",
        "| run | succeeded | p50 (ms) | p99 (ms) | peak containers | back to zero after burst |",
        "|---|---|---|---|---|---|",
        f"| plain uvicorn, already warm (baseline) | {b['ok']}/{args.requests} | {b['p50_ms']:.0f} | {b['p99_ms']:.0f} "
        "| 1 process | - |",
        f"| sampan, from zero | {s['ok']}/{args.requests} | {s['p50_ms']:.0f} | {s['p99_ms']:.0f} | "
        f"{s['peak_containers']} | {s['back_to_zero_s_after_burst']:.1f} s (window {args.window} s) |",
        "",
        "Timeline (changes only): " + "; ".join(changes),
    ]
    (RESULTS / "burst.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
