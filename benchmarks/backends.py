"""Benchmark: cold start and warm overhead through the Ray backend, next to the local backend.

    .venv/bin/python benchmarks/backends.py [--trials 10] [--requests 2000]

Re-runs itself inside a network namespace of its own (`unshare -rn`, loopback only), where it
starts a two-node Ray cluster on 127.0.0.1 (Ray would otherwise advertise the machine's address).
App B (FastAPI hello): cold start = a request to a pool that has never had a container (a fresh
class-parameter value each trial), on nodes whose agent has warmed the app's template at deploy;
warm = sequential requests on one keep-alive connection.
Writes benchmarks/results/backends.{json,md}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

RAY_COLD_GOAL_MS = 150
HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
try:  # the server runs on uvloop, as `sampan serve` and `sampan server` do
    from uvloop import run as RUN
except ImportError:
    RUN = asyncio.run

APP = """
import modal
from fastapi_hello import app as fastapi_asgi

app = modal.App("backends")


@app.cls(scaledown_window=2)
@modal.concurrent(max_inputs=100)
class B:
    trial: int = modal.parameter(default=0)

    @modal.asgi_app()
    def web(self):
        return fastapi_asgi
"""


CLIENT = """
import http.client, json, sys, time
host, port, mode, n = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
def get(conn, path):
    t = time.perf_counter()
    conn.request("GET", path)
    r = conn.getresponse()
    r.read()
    assert r.status == 200, r.status
    return time.perf_counter() - t
out = []
if mode == "cold":  # each trial a new pool: a class-parameter value never used before
    for i in range(1, n + 1):
        conn = http.client.HTTPConnection(host, port, timeout=120)
        out.append(get(conn, f"/?trial={i}"))
        conn.close()
        time.sleep(0.3)
else:
    conn = http.client.HTTPConnection(host, port, timeout=120)
    for _ in range(n // 10):
        get(conn, "/")
    out = [get(conn, "/") for _ in range(n)]
print(json.dumps(sorted(out)))
"""


async def client(host: str, port: int, mode: str, n: int) -> list[float]:
    """Timings from a client in its own process, so that it never competes with the server for the GIL."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CLIENT, host, str(port), mode, str(n), stdout=asyncio.subprocess.PIPE
    )
    out, _ = await proc.communicate()
    return json.loads(out)


async def measure(backend_name: str, trials: int, requests: int, workdir: Path, address: str | None) -> dict[str, Any]:
    sys.path[:0] = [str(ROOT), str(ROOT / "src")]
    from tests.server_helpers import Logs, load, settings

    from sampan.backends.base import get_backend
    from sampan.config import ProxyLimits
    from sampan.server.assemble import Sinks, assemble
    from sampan.server.bundle import read_files, write_bundle
    from sampan.server.images.builder import build_on_node

    options: dict[str, Any] = {"home": workdir / f"home-{backend_name}"}
    if address:
        options["address"] = address
    if backend_name == "ray":
        options["build_image"] = build_on_node
    logs = Logs()
    server = assemble(
        settings(workdir / f"home-{backend_name}", ProxyLimits(rate=0)),  # no rate limit: this is the load
        backend=get_backend(backend_name, **options), sinks=Sinks(logs.log, logs.error), stop_grace=5,
    ).server
    await server.start()
    manifest, root, files = load(workdir / "bench_app.py")
    version = await server.publish(
        "b", manifest, write_bundle(server.settings.home, read_files(root, files)), ephemeral=True
    )
    url = version.infos[0].url
    host, port = url.split("//")[1].split(":")
    try:
        cold = await client(host, int(port), "cold", trials)
        warm = await client(host, int(port), "warm", requests)
    finally:
        await server.close()
    return {
        "cold_p50_ms": statistics.median(cold) * 1000,
        "cold_max_ms": cold[-1] * 1000,
        "warm_p50_ms": statistics.median(warm) * 1000,
        "warm_p99_ms": warm[int(len(warm) * 0.99)] * 1000,
        "errors": logs.errors,
    }


def inside(args: argparse.Namespace) -> None:
    from ray.cluster_utils import Cluster

    workdir = Path(tempfile.mkdtemp(prefix="sampan-backends-"))
    (workdir / "bench_app.py").write_text(APP)
    shutil.copy(HERE / "apps" / "fastapi_hello.py", workdir / "fastapi_hello.py")
    report: dict[str, Any] = {"trials": args.trials, "requests": args.requests, "cpus": os.cpu_count()}
    report["local"] = RUN(measure("local", args.trials, args.requests, workdir, None))
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    cluster.add_node(num_cpus=2)
    try:
        report["ray"] = RUN(measure("ray", args.trials, args.requests, workdir, cluster.address))
    finally:
        cluster.shutdown()
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "backends.json").write_text(json.dumps(report, indent=2))
    lo, ray = report["local"], report["ray"]
    md = [
        f"App B (FastAPI hello), {args.trials} cold starts, {args.requests} warm requests, {os.cpu_count()} cores; "
        "Ray: two nodes on this machine.",
        "",
        "| backend | cold start p50 | cold start max | warm p50 | warm p99 |",
        "|---|---|---|---|---|",
        f"| local | {lo['cold_p50_ms']:.0f} ms | {lo['cold_max_ms']:.0f} ms | {lo['warm_p50_ms']:.3f} ms "
        f"| {lo['warm_p99_ms']:.3f} ms |",
        f"| ray | {ray['cold_p50_ms']:.0f} ms | {ray['cold_max_ms']:.0f} ms | {ray['warm_p50_ms']:.3f} ms "
        f"| {ray['warm_p99_ms']:.3f} ms |",
    ]
    md += ["", f"Ray cold start p50: {ray['cold_p50_ms']:.0f} ms, {ray['cold_p50_ms'] / lo['cold_p50_ms']:.2f}x the "
           f"local backend's in the same run (goal: <= {RAY_COLD_GOAL_MS} ms on a warm node, issue 17)."]
    (RESULTS / "backends.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inside:
        inside(args)
        return
    cmd = (
        f'ip link set lo up && exec "{sys.executable}" "{__file__}" --inside --trials {args.trials} '
        f"--requests {args.requests}"
    )
    sys.exit(
        subprocess.run(
            ["unshare", "-rn", "sh", "-c", cmd], env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
        ).returncode
    )


if __name__ == "__main__":
    main()
