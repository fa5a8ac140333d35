"""The server's metrics: aggregates kept as requests end (server/requests.py feeds `observe`), exposed in
Prometheus's text format through the official client library (`GET /metrics` on the control API, one
workspace per token) and summarised for `sampan app stats`.

Per (workspace, app, function): requests by status, latency, queue wait and cold-start histograms,
bytes; per workspace, image build durations. Containers by state, and each one's CPU time and memory,
come from the live pools when scraped. Names follow Prometheus's conventions; the queue wait and cold
start are Modal's `input_queue_time` and `coldstart_time`.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from .requests import Request

BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 150.0)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@dataclass
class Histogram:
    counts: list[int] = field(default_factory=lambda: [0] * (len(BUCKETS_S) + 1))
    total: float = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(BUCKETS_S, seconds)] += 1
        self.total += seconds

    @property
    def count(self) -> int:
        return sum(self.counts)

    def cumulative(self) -> list[tuple[str, int]]:
        out, running = [], 0
        for bound, n in zip((*map(str, BUCKETS_S), "+Inf"), self.counts, strict=True):
            running += n
            out.append((bound, running))
        return out

    def quantile(self, q: float) -> float | None:
        """The upper bound of the bucket holding the q-quantile (None: no observation)."""
        total = self.count
        if not total:
            return None
        rank, running = q * total, 0
        for bound, n in zip((*BUCKETS_S, float("inf")), self.counts, strict=True):
            running += n
            if running >= rank:
                return bound
        return float("inf")


@dataclass
class FunctionStats:
    by_status: dict[int, int] = field(default_factory=dict)
    latency: Histogram = field(default_factory=Histogram)
    queue: Histogram = field(default_factory=Histogram)
    cold: Histogram = field(default_factory=Histogram)  # queue wait of requests that waited for a start
    bytes_in: int = 0
    bytes_out: int = 0


Key = tuple[str, str, str]  # (workspace, app, function)


class Metrics:
    def __init__(self, containers: Callable[[str], list[dict[str, Any]]] = lambda workspace: []) -> None:
        self.functions: dict[Key, FunctionStats] = {}
        self.builds: dict[str, Histogram] = {}  # workspace -> durations of the images it built
        # A workspace's live containers with their usage, when it scrapes (AppServer.describe_containers):
        # only its own are read from /proc.
        self.containers = containers

    def built(self, workspace: str, seconds: float) -> None:
        """An image built for `workspace` (one found already built is not a build)."""
        self.builds.setdefault(workspace, Histogram()).observe(seconds)

    def observe(self, request: Request) -> None:
        key = (request.workspace, request.app, request.function)
        stats = self.functions.get(key)
        if stats is None:
            stats = self.functions[key] = FunctionStats()
        stats.by_status[request.status] = stats.by_status.get(request.status, 0) + 1
        stats.latency.observe(request.duration_ms / 1000)
        stats.queue.observe(request.queue_ms / 1000)
        if request.cold:
            stats.cold.observe(request.queue_ms / 1000)
        stats.bytes_in += request.bytes_in
        stats.bytes_out += request.bytes_out

    # -- what a workspace sees ----------------------------------------------------------------------
    def exposition(self, workspace: str) -> bytes:
        """Prometheus's text format of the workspace's metrics, and nothing of another workspace."""
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Collector(self, workspace))
        return generate_latest(registry)

    def stats(self, workspace: str, app: str) -> dict[str, Any]:
        """`sampan app stats`: per function of one app."""
        out = {}
        for (ws, app_key, function), s in sorted(self.functions.items()):
            if ws != workspace or app_key != app:
                continue
            total = sum(s.by_status.values())
            errors = sum(n for status, n in s.by_status.items() if status >= 500)
            out[function] = {
                "requests": total, "errors_5xx": errors,
                "by_status": {str(k): v for k, v in sorted(s.by_status.items())},
                "latency_p50_s": s.latency.quantile(0.5), "latency_p95_s": s.latency.quantile(0.95),
                "latency_p99_s": s.latency.quantile(0.99), "queue_p95_s": s.queue.quantile(0.95),
                "cold_starts": s.cold.count, "bytes_in": s.bytes_in, "bytes_out": s.bytes_out,
            }
        return out


class _Collector:
    def __init__(self, metrics: Metrics, workspace: str) -> None:
        self.metrics = metrics
        self.workspace = workspace

    def collect(self) -> Iterator[Any]:
        labels = ["workspace", "app", "function"]
        requests = CounterMetricFamily("sampan_requests", "Requests through the gateway, by status.",
                                       labels=[*labels, "status"])
        latency = HistogramMetricFamily("sampan_request_duration_seconds", "Request duration at the gateway.",
                                        labels=labels)
        queue = HistogramMetricFamily("sampan_input_queue_time_seconds", "Time a request waited for a container.",
                                      labels=labels)
        cold = HistogramMetricFamily("sampan_coldstart_time_seconds",
                                     "Wait of requests that waited for a container to start.", labels=labels)
        traffic = CounterMetricFamily("sampan_request_bytes", "Bytes of requests and responses.",
                                      labels=[*labels, "direction"])
        for (ws, app, function), s in sorted(self.metrics.functions.items()):
            if ws != self.workspace:
                continue
            values = [ws, app, function]
            for status, n in sorted(s.by_status.items()):
                requests.add_metric([*values, str(status)], n)
            for family, hist in ((latency, s.latency), (queue, s.queue), (cold, s.cold)):
                family.add_metric(values, hist.cumulative(), hist.total)
            traffic.add_metric([*values, "in"], s.bytes_in)
            traffic.add_metric([*values, "out"], s.bytes_out)
        containers = GaugeMetricFamily("sampan_containers", "Live containers, by state.",
                                       labels=[*labels, "state"])
        per_container = [*labels, "container"]
        cpu = CounterMetricFamily("sampan_container_cpu_seconds", "CPU time of a container's processes.",
                                  labels=per_container)
        memory = GaugeMetricFamily("sampan_container_memory_bytes", "Resident memory of a container's processes.",
                                   labels=per_container)
        counts: dict[tuple[str, str, str], int] = {}
        for row in self.metrics.containers(self.workspace):
            if row.get("workspace") != self.workspace:
                continue
            app, function = row.get("app_key") or "", row.get("function") or ""
            key = (app, function, str(row.get("state") or ""))
            counts[key] = counts.get(key, 0) + 1
            values = [self.workspace, app, function, str(row.get("id"))]
            if row.get("cpu_s") is not None:
                cpu.add_metric(values, row["cpu_s"])
            if row.get("memory_bytes") is not None:
                memory.add_metric(values, row["memory_bytes"])
        for (app, function, state), n in sorted(counts.items()):
            containers.add_metric([self.workspace, app, function, state], n)
        builds = HistogramMetricFamily("sampan_image_build_duration_seconds", "Image builds, found-built ones not.",
                                       labels=["workspace"])
        hist = self.metrics.builds.get(self.workspace)
        if hist is not None:
            builds.add_metric([self.workspace], hist.cumulative(), hist.total)
        yield from (requests, latency, queue, cold, traffic, containers, cpu, memory, builds)
