"""Every performance scenario, each next to its baseline in the same run (issue: performance).

    .venv/bin/python benchmarks/run.py [--quick] [--only warm,throughput,cold,sandbox,reload,burst,calls,requestlog]

Sampan runs as a real `sampan serve` process; the baseline is the same app under plain
`uvicorn --loop uvloop --http httptools`. Apps: A = raw ASGI hello, B = FastAPI hello,
C = FastAPI with a 100 ms `asyncio.sleep`. `sandbox` compares cold starts in the container sandbox with the
process runtime (SAMPAN_RUNTIME=process) in one run. Throughput uses wrk when installed (`apt-get install
wrk`), else a small Python client (benchmarks/loadgen.py). Writes benchmarks/results/report.{md,json}.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from loadgen import run_burst, throughput  # noqa: E402

APPS = HERE / "apps"
RESULTS = HERE / "results"
MS = 1000.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(port: int, timeout: float = 60.0) -> float:
    """Poll until GET / answers 200; returns the seconds it took."""
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
    """`n` sequential requests on one keep-alive connection, after a tenth as many to warm up."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    out = []
    for _ in range(n // 10):
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


def uvicorn_proc(module: str, port: int, cwd: Path = APPS) -> subprocess.Popen[bytes]:
    """The baseline: the same ASGI app under plain `uvicorn --loop uvloop --http httptools`."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            f"{module}:app",
            "--loop",
            "uvloop",
            "--http",
            "httptools",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


BENCH_APP = '''
import asyncio
import modal
from fastapi_hello import app as fastapi_asgi
from raw_hello import app as raw_asgi

app = modal.App("bench")


@app.function()
@modal.concurrent(max_inputs=1000)
@modal.asgi_app()
def raw():
    return raw_asgi


@app.function()
@modal.concurrent(max_inputs=1000)
@modal.asgi_app()
def fastapi():
    return fastapi_asgi


@app.cls(scaledown_window=2)
@modal.concurrent(max_inputs=1000)
class Cold:
    """App B again; each value of `trial` is its own pool, so each trial starts from zero containers."""

    trial: int = modal.parameter(default=0)

    @modal.asgi_app()
    def fastapi(self):
        return fastapi_asgi


@app.function(max_containers=16, scaledown_window=2)
@modal.concurrent(max_inputs=32)
@modal.fastapi_endpoint()
async def slow():
    await asyncio.sleep(0.1)
    return "ok"
'''

SLOW_PLAIN = """
import asyncio
from fastapi import FastAPI

app = FastAPI()


@app.get("/")
async def slow():
    await asyncio.sleep(0.1)
    return "ok"
"""

RELOAD_APP = """
import modal

app = modal.App("reload")


@app.function()
@modal.concurrent(max_inputs=100)
@modal.fastapi_endpoint()
def version():
    return {{"v": {v}}}
"""


CALLS_APP = """
import json, statistics, time
import modal

app = modal.App("calls")


@app.function()
@modal.concurrent(max_inputs=100)
def noop(x=None):
    return x


@app.local_entrypoint()
def main(n: int = 300, m: int = 1000):
    def timed(f, count):
        out = []
        for _ in range(count):
            t = time.perf_counter()
            f()
            out.append(time.perf_counter() - t)
        return sorted(out)

    timed(lambda: noop.remote(1), 20)  # warm: the container is up
    remote = timed(lambda: noop.remote(1), n)
    local = timed(lambda: noop.local(1), n)
    t = time.perf_counter()
    assert list(noop.map(range(m))) == list(range(m))
    map_s = time.perf_counter() - t
    t = time.perf_counter()
    assert [noop.local(i) for i in range(m)] == list(range(m))
    local_map_s = time.perf_counter() - t
    pick = lambda v, p: v[min(len(v) - 1, int(len(v) * p))]
    print("BENCH " + json.dumps({
        "remote_p50_ms": statistics.median(remote) * 1000, "remote_p99_ms": pick(remote, 0.99) * 1000,
        "local_p50_ms": statistics.median(local) * 1000, "local_p99_ms": pick(local, 0.99) * 1000,
        "map_inputs": m, "map_per_s": m / map_s, "local_loop_per_s": m / local_map_s}))
"""


def scenario_calls(workdir: Path, quick: bool) -> dict[str, Any]:
    """`.remote()` round trip on a warm no-op function and `.map` over 1,000 inputs, next to `.local()`."""
    path = workdir / "calls_app.py"
    path.write_text(CALLS_APP)
    env = {
        **os.environ,
        "SAMPAN_HOME": str(workdir / "home-calls"),
        "SAMPAN_GATEWAY_PORT": "0",
        "SAMPAN_ENDPOINT_PORT_BASE": "0",
    }
    args = ["--n", "100", "--m", "300"] if quick else []
    done = subprocess.run(
        [sys.executable, "-m", "sampan", "run", str(path), *args],
        env=env,
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=600,
    )
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("BENCH ")), None)
    if line is None:
        raise RuntimeError("the calls benchmark failed:\n" + done.stdout + done.stderr)
    return json.loads(line[6:])


class Served:
    """`sampan serve FILE` as a subprocess, with its URLs and its control API."""

    def __init__(self, path: Path, home: Path, env: dict[str, str] | None = None) -> None:
        self.home = home
        full = {
            **os.environ,
            "SAMPAN_HOME": str(home),
            "SAMPAN_GATEWAY_PORT": "0",
            "SAMPAN_ENDPOINT_PORT_BASE": "0",
            "SAMPAN_RATE_LIMIT": "0",
            "PYTHONUNBUFFERED": "1",
            **(env or {}),
        }
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sampan", "serve", str(path)],
            cwd=path.parent,
            env=full,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.urls: dict[str, str] = {}
        self.lines: list[str] = []
        self.ready = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()
        if not self.ready.wait(180):
            self.close()
            raise RuntimeError("sampan serve did not start:\n" + "\n".join(self.lines[-30:]))

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip())
            match = re.search(r"Created web function (\S+) => (http://\S+)", line)
            if match:
                self.urls[match.group(1)] = match.group(2)
            if "Serving..." in line:
                self.ready.set()

    def containers(self) -> list[dict[str, Any]]:
        reg = next((self.home / "servers").glob("*.json"))
        info = json.loads(reg.read_text())
        req = urllib.request.Request(
            info["control_url"] + "/v1/containers", headers={"Authorization": f"Bearer {info['token']}"}
        )
        with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 - loopback control API
            return json.loads(resp.read())

    def processes(self) -> dict[str, list[int]]:
        """Template and container pids of this serve process (by parentage)."""
        children = _children()
        templates = [p for p in children.get(self.proc.pid, []) if b"sampan.runtime.template" in _cmdline(p)]
        forked = [c for t in templates for c in children.get(t, [])]
        # A sandboxed container is the child of a small supervisor that the template forked.
        inner = {c: children.get(c, []) for c in forked}
        spawned = [
            p
            for p in children.get(self.proc.pid, [])
            if b"sampan.runtime\x00" in _cmdline(p) + b"\x00" and p not in templates
        ]
        return {"templates": templates, "forked": forked, "spawned": spawned, "inner": inner}

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _children() -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            out.setdefault(ppid, []).append(int(entry))
    return out


def _memory_kb(pid: int) -> dict[str, int]:
    """RSS and PSS (RSS with shared pages divided among their sharers) of one process."""
    out = {}
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("Rss", "Pss"):
                out[key.lower() + "_kb"] = int(rest.split()[0])
    except OSError:
        pass
    return out


def summary(values: list[float]) -> dict[str, float]:
    return {
        "p50_ms": statistics.median(values) * MS,
        "p95_ms": pct(values, 0.95) * MS,
        "p99_ms": pct(values, 0.99) * MS,
        "n": len(values),
    }


def first_byte(url: str) -> float:
    """Seconds from sending a request on a new connection to the response's status line."""
    parts = url.split("//", 1)[1]
    hostport, _, path = parts.partition("/")
    host, _, port = hostport.partition(":")
    start = time.perf_counter()
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    conn.request("GET", "/" + path)
    resp = conn.getresponse()
    elapsed = time.perf_counter() - start
    resp.read()
    conn.close()
    if resp.status != 200:
        raise RuntimeError(f"{url}: {resp.status}")
    return elapsed


# -- scenarios ----------------------------------------------------------------------------------
def scenario_warm(served: Served, n: int) -> dict[str, Any]:
    port = free_port()
    proc = uvicorn_proc("raw_hello", port)
    try:
        wait_http(port)
        direct = latencies(port, n)
    finally:
        proc.terminate()
        proc.wait(10)
    sport = int(served.urls["raw"].rsplit(":", 1)[1])
    wait_http(sport)
    before = cpu_seconds(served.proc.pid)
    via = latencies(sport, n)
    gateway_us = (cpu_seconds(served.proc.pid) - before) / n * 1e6  # one request at a time: no batching
    return {
        "direct": summary(direct),
        "sampan": summary(via),
        "gateway_cpu_us": gateway_us,
        "added_p50_ms": (statistics.median(via) - statistics.median(direct)) * MS,
        "added_p99_ms": (pct(via, 0.99) - pct(direct, 0.99)) * MS,
    }


def cpu_seconds(pid: int) -> float:
    """User and system CPU time a process has used so far (/proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _descendants(pid: int) -> list[int]:
    children, out, stack = _children(), [], [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            out.append(child)
            stack.append(child)
    return out


def _cpu_of(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError):
            total += cpu_seconds(pid)
    return total


def _measured(url: str, connections: int, seconds: float, pid: int) -> dict[str, Any]:
    """`throughput`, with the requests served per CPU-second of the process `pid` (what scales with cores),
    and where the machine's CPU went per request: `pid` itself, its descendants (for `sampan serve`: the
    containers) and the load generator (a child of this process, timed by os.times)."""
    below = _descendants(pid)
    before, below_before, gen_before = cpu_seconds(pid), _cpu_of(below), os.times()
    result = throughput(url, connections, seconds)
    used = cpu_seconds(pid) - before
    gen_after = os.times()
    served = result["rps"] * seconds
    result["cpu_s"] = used
    result["requests_per_cpu_s"] = served / used if used else float("nan")
    if served:
        result["cpu_us"] = {
            "process": used / served * 1e6,
            "descendants": (_cpu_of(below) - below_before) / served * 1e6,
            "load_generator": ((gen_after.children_user + gen_after.children_system)
                               - (gen_before.children_user + gen_before.children_system)) / served * 1e6,
        }
    return result


def cpu_budget_us(direct_rps: float, ratio: float, cores: int, others_us: float) -> float:
    """The CPU a request may cost the gateway for Sampan to serve `ratio` x `direct_rps` on `cores` cores,
    with `others_us` of each request's CPU spent elsewhere (its container, the load generator): every
    request's CPU together cannot exceed what the cores have (cores / rps seconds per request)."""
    return cores / (ratio * direct_rps) * 1e6 - others_us


def scenario_throughput(served: Served, seconds: float, connections: int = 64) -> dict[str, Any]:
    """Requests/s at 64 connections through the gateway and straight to uvicorn; and the requests each
    serves per CPU-second of its own process (uvicorn's; the gateway's, the `sampan serve` process)."""
    out: dict[str, Any] = {}
    for app, tag in (("raw_hello", "raw"), ("fastapi_hello", "fastapi")):
        port = free_port()
        proc = uvicorn_proc(app, port)
        try:
            wait_http(port)
            throughput(f"http://127.0.0.1:{port}/", connections, 1)  # warm-up
            direct = _measured(f"http://127.0.0.1:{port}/", connections, seconds, proc.pid)
        finally:
            proc.terminate()
            proc.wait(10)
        url = served.urls[tag] + "/"
        wait_http(int(served.urls[tag].rsplit(":", 1)[1]))
        throughput(url, connections, 1)
        via = _measured(url, connections, seconds, served.proc.pid)
        out["A" if tag == "raw" else "B"] = {"direct": direct, "sampan": via, "ratio": via["rps"] / direct["rps"]}
    return out


def scenario_requestlog(app: Path, workdir: Path, seconds: float, rounds: int = 2) -> dict[str, Any]:
    """Gateway throughput of app A with the request log and metrics on, next to the same server with
    SAMPAN_REQUEST_LOG=0, alternating; the cost per request is the difference of 1/throughput (the
    gateway is one saturated process at 64 connections)."""
    runs: dict[str, list[float]] = {"on": [], "off": []}
    for _ in range(rounds):
        for mode, flag in (("off", "0"), ("on", "1")):
            served = Served(app, workdir / f"home-log-{mode}", env={"SAMPAN_REQUEST_LOG": flag})
            try:
                url = served.urls["raw"] + "/"
                wait_http(int(served.urls["raw"].rsplit(":", 1)[1]))
                throughput(url, 64, 1)
                runs[mode].append(throughput(url, 64, seconds)["rps"])
            finally:
                served.close()
    on, off = max(runs["on"]), max(runs["off"])
    return {"rps_on": on, "rps_off": off, "ratio": on / off, "added_us": (1 / on - 1 / off) * 1e6, "runs": runs,
            "record": record_cost()}


def record_cost(n: int = 200_000, rounds: int = 5) -> dict[str, float]:
    """What the gateway's hot path pays per request for its record, in process: building the record and
    `RequestLog.record` with the server's sinks (metrics, the dashboard's series), against the same
    loop handing one prebuilt record to a function that does nothing. Best of `rounds` (the least
    disturbed)."""
    from sampan.server.dashboard.series import Series
    from sampan.server.metrics import Metrics
    from sampan.server.requests import Request, RequestLog

    log = RequestLog()
    log.sinks += [Metrics().observe, Series().observe]
    now = time.time()

    def loop(record: Any, build: bool) -> float:
        made = Request(now, "alice", "alice/shop", "item", "GET", "/", 200, 1.2, 0.1, False, "ta-1", 10, 100,
                       "127.0.0.1")
        start = time.perf_counter()
        for i in range(n):
            if build:
                made = Request(now + i * 1e-4, "alice", "alice/shop", "item", "GET", "/", 200, 1.2, 0.1, False,
                               "ta-1", 10, 100, "127.0.0.1")
            record(made)
        return (time.perf_counter() - start) / n * 1e6

    base = min(loop(lambda r: None, False) for _ in range(rounds))
    logged = min(loop(log.record, True) for _ in range(rounds))
    return {"baseline_us": base, "logged_us": logged, "added_us": logged - base}


def scenario_cold(served: Served, trials: int, first_trial: int = 1) -> dict[str, Any]:
    times = []
    for i in range(first_trial, first_trial + trials):
        times.append(first_byte(f"{served.urls['Cold.fastapi']}/?trial={i}"))
        time.sleep(0.3)  # let the container settle, as separate cold starts would
    procs = served.processes()

    def container_memory(pid: int) -> dict[str, int]:
        """One container's memory: its process, plus the sandbox's supervisor and what it runs."""
        parts = [_memory_kb(p) for p in [pid, *procs["inner"].get(pid, [])]]
        return {k: sum(x.get(k, 0) for x in parts) for k in ("rss_kb", "pss_kb")}

    memory = {
        "templates": [_memory_kb(p) for p in procs["templates"]],
        "containers": [container_memory(p) for p in procs["forked"] + procs["spawned"]][:5],
    }
    return {"sampan": summary(times), "memory": memory, "forked": bool(procs["forked"])}


def cold_direct(trials: int) -> dict[str, float]:
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
    return summary(out)


def scenario_sandbox(app: Path, workdir: Path, trials: int) -> dict[str, Any]:
    """Cold starts with the sandbox (the default) and with SAMPAN_RUNTIME=process, alternating in one
    run, next to a plain uvicorn spawn."""
    out: dict[str, Any] = {}
    for name, env in (("process", {"SAMPAN_RUNTIME": "process"}), ("sandboxed", {"SAMPAN_RUNTIME": "sandbox"})):
        served = Served(app, workdir / f"home-{name}", env=env)
        try:
            out[name] = scenario_cold(served, trials)
        finally:
            served.close()
    out["baseline"] = cold_direct(trials)
    return out


def scenario_reload(workdir: Path, edits: int) -> dict[str, Any]:
    path = workdir / "reload_app.py"
    path.write_text(RELOAD_APP.format(v=0))
    served = Served(
        path,
        workdir / "home-reload",
        env={"SAMPAN_WATCH_DEBOUNCE_MS": os.environ.get("SAMPAN_WATCH_DEBOUNCE_MS", "")}
        if os.environ.get("SAMPAN_WATCH_DEBOUNCE_MS")
        else None,
    )
    url = served.urls["version"]
    host, port = url.split("//")[1].split(":")
    seen: list[tuple[float, int]] = []
    failures: list[str] = []
    stop = threading.Event()

    def load() -> None:  # paced: one request every 20 ms on a keep-alive connection
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        while not stop.is_set():
            t = time.perf_counter()
            try:
                conn.request("GET", "/")
                resp = conn.getresponse()
                body = resp.read()
                if resp.status != 200:
                    failures.append(f"{resp.status} {body[:80]!r}")
                else:
                    seen.append((time.perf_counter(), json.loads(body)["v"]))
            except (OSError, http.client.HTTPException, ValueError) as exc:
                failures.append(repr(exc))
                conn.close()
                conn = http.client.HTTPConnection(host, int(port), timeout=30)
            time.sleep(max(0.0, 0.02 - (time.perf_counter() - t)))

    thread = threading.Thread(target=load, daemon=True)
    thread.start()
    delays = []
    try:
        time.sleep(1.0)
        for v in range(1, edits + 1):
            saved = time.perf_counter()
            path.write_text(RELOAD_APP.format(v=v))
            deadline = saved + 30
            while time.perf_counter() < deadline:
                hit = next((t for t, got in reversed(seen) if got == v), None)
                if hit is not None:
                    delays.append(hit - saved)
                    break
                time.sleep(0.005)
            time.sleep(0.7)
    finally:
        stop.set()
        thread.join(10)
        served.close()
    return {
        "save_to_new_code": summary(delays) if delays else {},
        "edits": edits,
        "answered": len(delays),
        "requests": len(seen),
        "failed": len(failures),
        "failures": failures[:5],
    }


def scenario_burst(served: Served, n: int, workdir: Path) -> dict[str, Any]:
    (workdir / "slow_plain.py").write_text(SLOW_PLAIN)
    port = free_port()
    proc = uvicorn_proc("slow_plain", port, cwd=workdir)
    try:
        wait_http(port)
        base = run_burst(f"http://127.0.0.1:{port}/", n)
    finally:
        proc.terminate()
        proc.wait(10)
    timeline: list[tuple[float, int, int]] = []
    stop = threading.Event()
    t0 = time.perf_counter()

    def sample() -> None:
        while not stop.is_set():
            try:
                cs = [c for c in served.containers() if c["function"] == "slow"]
            except OSError:
                time.sleep(0.05)
                continue
            timeline.append((round(time.perf_counter() - t0, 2), len(cs), sum(c["state"] == "ready" for c in cs)))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        results = run_burst(served.urls["slow"] + "/", n)
        end = time.perf_counter() - t0
        zero_at = None
        deadline = time.perf_counter() + 30
        while time.perf_counter() < deadline:
            if timeline and timeline[-1][0] > end and timeline[-1][1] == 0:
                zero_at = timeline[-1][0]
                break
            time.sleep(0.05)
    finally:
        stop.set()
        sampler.join(10)
    changes, last = [], None
    for t, total, ready in timeline:
        if (total, ready) != last:
            changes.append([t, total, ready])
            last = (total, ready)
    lat = [d for d, _ in results]
    return {
        "requests": n,
        "baseline_warm_uvicorn": {"ok": sum(ok for _, ok in base), **summary([d for d, _ in base])},
        "sampan_from_zero": {
            "ok": sum(ok for _, ok in results),
            **summary(lat),
            "peak_containers": max(t[1] for t in timeline),
            "back_to_zero_s_after_burst": None if zero_at is None else round(zero_at - end, 2),
            "scaledown_window_s": 2,
        },
        "timeline_changes_s_total_ready": changes,
    }


# -- report -------------------------------------------------------------------------------------
def machine() -> dict[str, Any]:
    cpu = ""
    try:
        cpu = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    except (OSError, StopIteration):
        pass
    return {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "platform": platform.platform(),
        "load_generator": "wrk" if shutil.which("wrk") else "python (benchmarks/loadgen.py)",
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }


def markdown(r: dict[str, Any]) -> str:
    m = r["machine"]
    lines = [
        f"Machine: {m['cpus']} cores ({m['cpu']}), Python {m['python']}, {m['platform']}, {m['date']}; "
        f"load generator: {m['load_generator']}.",
        "",
    ]
    lines += ["| scenario | baseline | Sampan | added / ratio | goal |", "|---|---|---|---|---|"]
    if "requestlog" in r:
        q = r["requestlog"]
        lines.append(f"| request log + metrics on, app A, 64 connections | {q['rps_off']:,.0f} req/s (log off) | "
                     f"{q['rps_on']:,.0f} req/s | {q['ratio']:.2f}x, {q['added_us']:+.1f} µs/request | "
                     "≤ 5 µs/request |")
        c = q["record"]
        lines.append(f"| a request's record (build + log + metrics + charts), in process | "
                     f"{c['baseline_us']:.2f} µs (record handed to a no-op) | {c['logged_us']:.2f} µs | "
                     f"+{c['added_us']:.2f} µs/request | ≤ 5 µs/request |")
    if "warm" in r:
        w = r["warm"]
        lines.append(
            f"| warm p50, 1 connection, app A | {w['direct']['p50_ms']:.3f} ms | {w['sampan']['p50_ms']:.3f} ms"
            f" | +{w['added_p50_ms']:.3f} ms (the gateway's CPU: {w.get('gateway_cpu_us', float('nan')):.0f} µs"
            " per request) | ≤ +0.1 ms (issue 17; +0.3 ms before) |"
        )
        lines.append(
            f"| warm p99, 1 connection, app A | {w['direct']['p99_ms']:.3f} ms | {w['sampan']['p99_ms']:.3f} ms"
            f" | +{w['added_p99_ms']:.3f} ms | ≤ +1.5 ms |"
        )
    if "throughput" in r:
        for app, goal in (("A", "≥ 0.8x"), ("B", "≥ 0.85x")):
            t = r["throughput"][app]
            d, s = t["direct"], t["sampan"]
            lines.append(
                f"| throughput, 64 connections, app {app} | {d['rps']:.0f} req/s (p99 {d['p99_ms']:.1f} ms, "
                f"{d['errors']} errors) | {s['rps']:.0f} req/s (p99 {s['p99_ms']:.1f} ms, {s['errors']} errors)"
                f" | {t['ratio']:.2f}x | {goal}, 0 errors |"
            )
            lines.append(
                f"| requests per CPU-second of the process, app {app} | {d['requests_per_cpu_s']:.0f} (uvicorn) | "
                f"{s['requests_per_cpu_s']:.0f} (the gateway's process) | "
                f"{s['requests_per_cpu_s'] / d['requests_per_cpu_s']:.2f}x | - |"
            )
            if app == "A" and "cpu_us" in d and "cpu_us" in s:
                dc, sc = d["cpu_us"], s["cpu_us"]
                others = sc["descendants"] + sc["load_generator"]
                budget = cpu_budget_us(d["rps"], 0.8, m["cpus"], others)
                lines.append(
                    f"| CPU per request, app A (µs) | uvicorn {dc['process']:.0f} + wrk {dc['load_generator']:.0f}"
                    f" | gateway {sc['process']:.0f} + container {sc['descendants']:.0f} + wrk "
                    f"{sc['load_generator']:.0f} | for 0.8x on {m['cpus']} cores the gateway may spend "
                    f"{budget:.0f} µs | - |"
                )
    if "cold" in r:
        c, base = r["cold"], r["cold"]["baseline"]
        s = c["sampan"]
        lines.append(
            f"| cold start → first byte, app B, {s['n']} trials | {base['p50_ms']:.0f} ms p50 (plain spawn) | "
            f"{s['p50_ms']:.0f} ms p50, {s['p95_ms']:.0f} ms p95 | {s['p50_ms'] / base['p50_ms']:.2f}x | "
            "p50 ≤ 150 ms, p95 ≤ 300 ms, ≤ 0.25x |"
        )
        if "spawn_path" in c:
            sp = c["spawn_path"]["sampan"]
            lines.append(
                f"| cold start, Sampan with SAMPAN_FORK=0 (spawn path) | {base['p50_ms']:.0f} ms p50 | "
                f"{sp['p50_ms']:.0f} ms p50, {sp['p95_ms']:.0f} ms p95 | {sp['p50_ms'] / base['p50_ms']:.2f}x | - |"
            )
    if "sandbox" in r:
        sb = r["sandbox"]
        base, boxed, plain = sb["baseline"], sb["sandboxed"]["sampan"], sb["process"]["sampan"]
        lines.append(
            f"| cold start → first byte, app B, sandboxed, {boxed['n']} trials | {plain['p50_ms']:.0f} ms p50 "
            f"(process runtime), {base['p50_ms']:.0f} ms (plain uvicorn spawn) | {boxed['p50_ms']:.0f} ms p50, "
            f"{boxed['p95_ms']:.0f} ms p95 | {boxed['p50_ms'] / plain['p50_ms']:.2f}x the process runtime | "
            "p50 ≤ 100 ms, ≤ 1.2x |"
        )
        for name in ("sandboxed", "process"):
            cs = sb[name]["memory"]["containers"]
            if cs:
                lines.append(
                    f"| memory of one {name} container (median of {len(cs)}) | - | RSS "
                    f"{statistics.median(x.get('rss_kb', 0) for x in cs) / 1024:.1f} MiB, PSS "
                    f"{statistics.median(x.get('pss_kb', 0) for x in cs) / 1024:.1f} MiB | - | - |"
                )
    if "calls" in r:
        c = r["calls"]
        lines.append(
            f"| `.remote()` round trip, warm no-op function | {c['local_p50_ms'] * 1000:.1f} µs p50 (`.local()`) | "
            f"{c['remote_p50_ms']:.2f} ms p50, {c['remote_p99_ms']:.2f} ms p99 | - | - |"
        )
        lines.append(
            f"| `.map` over {c['map_inputs']} inputs | {c['local_loop_per_s']:.0f}/s (`.local()` in a loop) | "
            f"{c['map_per_s']:.0f} inputs/s | - | - |"
        )
    if "reload" in r:
        rl = r["reload"]
        s = rl["save_to_new_code"]
        lines.append(
            f"| reload: save → new code, {rl['edits']} edits under 50 req/s | - | "
            f"{s.get('p50_ms', float('nan')):.0f} ms p50, {s.get('p99_ms', float('nan')):.0f} ms max | "
            f"{rl['failed']} failed of {rl['requests'] + rl['failed']} | p50 ≤ 200 ms, 0 failed |"
        )
    if "burst" in r:
        b = r["burst"]
        base, s = b["baseline_warm_uvicorn"], b["sampan_from_zero"]
        lines.append(
            f"| burst: {b['requests']} at once, app C, max_inputs=32, max_containers=16 | "
            f"{base['ok']}/{b['requests']} ok, p50 {base['p50_ms']:.0f} ms, p99 {base['p99_ms']:.0f} ms "
            f"(warm uvicorn) | {s['ok']}/{b['requests']} ok from zero, p50 {s['p50_ms']:.0f} ms, p99 "
            f"{s['p99_ms']:.0f} ms, peak {s['peak_containers']} containers, zero "
            f"{s['back_to_zero_s_after_burst']} s after the burst (window 2 s) | - | 100 % ok, p99 ≤ 1.0 s, "
            "≤ 16 containers |"
        )
    if "cold" in r:
        mem = r["cold"]["memory"]
        t = ", ".join(f"RSS {x.get('rss_kb', 0) / 1024:.0f} MiB" for x in mem["templates"]) or "none"
        cs = mem["containers"]
        c = (
            (
                f"RSS {statistics.median(x.get('rss_kb', 0) for x in cs) / 1024:.0f} MiB, PSS "
                f"{statistics.median(x.get('pss_kb', 0) for x in cs) / 1024:.0f} MiB (median of {len(cs)})"
            )
            if cs
            else "-"
        )
        lines += ["", f"Templates in use: {len(mem['templates'])} ({t}). A forked container: {c}."]
    if "burst" in r:
        tl = "; ".join(
            f"{t:.2f} s: {n} ({ready} ready)" for t, n, ready in r["burst"]["timeline_changes_s_total_ready"]
        )
        lines += ["", f"Burst timeline (containers, changes only): {tl}."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer requests, trials and seconds")
    parser.add_argument("--only", default="warm,throughput,cold,sandbox,reload,burst,calls,requestlog")
    parser.add_argument("--results", type=Path, default=RESULTS, help="where report.json and report.md go")
    args = parser.parse_args()
    only = set(args.only.split(","))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)  # a burst of 1,000 connections at once
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))
    n, seconds, trials, edits = (1000, 3, 8, 4) if args.quick else (3000, 10, 20, 10)
    report: dict[str, Any] = {"machine": machine()}
    with tempfile.TemporaryDirectory(prefix="sampan-bench-") as tmp:
        workdir = Path(tmp)
        app = workdir / "bench_app.py"
        app.write_text(BENCH_APP)
        for name in ("fastapi_hello.py", "raw_hello.py"):  # local modules: they travel in the code bundle
            shutil.copy(APPS / name, workdir / name)
        if only & {"warm", "throughput", "cold", "burst"}:
            served = Served(app, workdir / "home")
            try:
                if "burst" in only:  # first, while the `slow` pool has never had a container
                    report["burst"] = scenario_burst(served, 256 if args.quick else 1000, workdir)
                    print("burst done", flush=True)
                if "warm" in only:
                    report["warm"] = scenario_warm(served, n)
                    print("warm done", flush=True)
                if "throughput" in only:
                    report["throughput"] = scenario_throughput(served, seconds)
                    print("throughput done", flush=True)
                if "cold" in only:
                    report["cold"] = scenario_cold(served, trials)
                    report["cold"]["baseline"] = cold_direct(trials)
            finally:
                served.close()
            if "cold" in only:
                spawn = Served(app, workdir / "home-spawn", env={"SAMPAN_FORK": "0"})
                try:
                    report["cold"]["spawn_path"] = scenario_cold(spawn, max(5, trials // 2))
                finally:
                    spawn.close()
                print("cold done", flush=True)
        if "requestlog" in only:
            report["requestlog"] = scenario_requestlog(app, workdir, seconds)
            print("requestlog done", flush=True)
        if "sandbox" in only:
            report["sandbox"] = scenario_sandbox(app, workdir, trials)
            print("sandbox done", flush=True)
        if "calls" in only:
            report["calls"] = scenario_calls(workdir, args.quick)
            print("calls done", flush=True)
        if "reload" in only:
            report["reload"] = scenario_reload(workdir, edits)
            print("reload done", flush=True)
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "report.json").write_text(json.dumps(report, indent=2))
    text = markdown(report)
    (args.results / "report.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
