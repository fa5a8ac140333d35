"""The dashboard's charts: the last hour of each function in 5-second buckets, kept incrementally.

`observe` is a sink of the request log (server/requests.py): one bucket found and a few counters bumped
per request, never a scan of the log. `sample` records how many containers were busy, idle and
starting (called every few seconds by the control server). `window` turns the buckets into the
columns a chart draws (uPlot takes one array per series). Pure: the clock comes in as arguments.
"""

from __future__ import annotations

import bisect
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

STEP_S = 5
WINDOW_S = 3600
SLOTS = WINDOW_S // STEP_S
# Latency buckets, in ms: 0.1 ms to ~100 s, each 1.5 times the last (quantiles within ~25 %).
BOUNDS_MS = tuple(round(0.1 * 1.5 ** i, 4) for i in range(35))
MAX_KEYS = 5_000  # functions charted, all workspaces together; the least recently seen go first

Key = tuple[str, str, str]  # (workspace, app key, function)


@dataclass(slots=True)
class Bucket:
    requests: int = 0
    by_class: list[int] = field(default_factory=lambda: [0] * 6)  # index: status // 100
    latency: list[int] = field(default_factory=lambda: [0] * (len(BOUNDS_MS) + 1))
    cold: int = 0
    cold_ms: float = 0.0
    queue_ms: float = 0.0
    busy: int | None = None  # containers, as last sampled in this bucket
    idle: int | None = None
    starting: int | None = None


def quantile(counts: list[int], q: float) -> float | None:
    """The upper bound (ms) of the bucket holding the q-quantile; None with no observation."""
    total = sum(counts)
    if not total:
        return None
    rank, running = q * total, 0
    for i, n in enumerate(counts):
        running += n
        if running >= rank:
            return BOUNDS_MS[i] if i < len(BOUNDS_MS) else BOUNDS_MS[-1] * 1.5
    return None


class Series:
    def __init__(self) -> None:
        self.keys: OrderedDict[Key, dict[int, Bucket]] = OrderedDict()

    def _bucket(self, key: Key, now: float) -> Bucket:
        slot = int(now // STEP_S)
        slots = self.keys.get(key)
        if slots is None:
            slots = self.keys[key] = {}
            while len(self.keys) > MAX_KEYS:
                self.keys.popitem(last=False)
        else:
            self.keys.move_to_end(key)
        bucket = slots.get(slot)
        if bucket is None:
            bucket = slots[slot] = Bucket()
            while True:  # a new bucket, once per 5 s: drop those past the hour (the oldest come first)
                oldest = next(iter(slots))
                if oldest > slot - SLOTS:
                    break
                del slots[oldest]
        return bucket

    def observe(self, request: Any) -> None:
        """A request as recorded by the gateway (server/requests.Request)."""
        b = self._bucket((request.workspace, request.app, request.function), request.time)
        b.requests += 1
        b.by_class[min(request.status // 100, 5)] += 1
        b.latency[bisect.bisect_left(BOUNDS_MS, request.duration_ms)] += 1
        b.queue_ms += request.queue_ms
        if request.cold:
            b.cold += 1
            b.cold_ms += request.queue_ms

    def sample(self, now: float, containers: Iterable[dict[str, Any]]) -> None:
        """The live containers (AppServer.describe_containers rows), counted per function."""
        counts: dict[Key, list[int]] = {}
        for row in containers:
            key = (row.get("workspace") or "", row.get("app_key") or "", row.get("function") or "")
            c = counts.setdefault(key, [0, 0, 0])
            state = str(row.get("state") or "")
            if state.startswith("starting"):
                c[2] += 1
            elif state.startswith("ready") and not row.get("in_flight"):
                c[1] += 1
            elif state.startswith("ready"):
                c[0] += 1
        recent = int(now // STEP_S) - SLOTS
        for key in [*counts, *(k for k in self.keys if k not in counts)]:
            busy, idle, starting = counts.get(key, (0, 0, 0))
            slots = self.keys.get(key)
            if key not in counts and (not slots or next(reversed(slots)) <= recent):
                continue  # nothing of it this hour: no zeros recorded for a function long gone
            b = self._bucket(key, now)
            b.busy, b.idle, b.starting = busy, idle, starting

    def functions(self, workspace: str, app: str) -> list[str]:
        return sorted(f for ws, a, f in self.keys if ws == workspace and a == app)

    def window(self, key: Key, now: float, seconds: int = WINDOW_S) -> dict[str, list[Any]]:
        """One column per series over the last `seconds`, oldest first; None where nothing was seen."""
        slots = self.keys.get(key, {})
        last = int(now // STEP_S)
        first = last - max(1, min(seconds, WINDOW_S) // STEP_S) + 1
        out: dict[str, list[Any]] = {name: [] for name in (
            "t", "rps", "p50_ms", "p95_ms", "p99_ms", "errors_4xx", "errors_5xx", "cold_starts", "cold_ms",
            "queue_ms", "busy", "idle", "starting")}
        for slot in range(first, last + 1):
            b = slots.get(slot)
            out["t"].append(slot * STEP_S)
            if b is None:
                for name in out:
                    if name != "t":
                        out[name].append(0 if name in ("rps", "errors_4xx", "errors_5xx", "cold_starts") else None)
                continue
            out["rps"].append(round(b.requests / STEP_S, 2))
            out["p50_ms"].append(quantile(b.latency, 0.5))
            out["p95_ms"].append(quantile(b.latency, 0.95))
            out["p99_ms"].append(quantile(b.latency, 0.99))
            out["errors_4xx"].append(b.by_class[4])
            out["errors_5xx"].append(b.by_class[5])
            out["cold_starts"].append(b.cold)
            out["cold_ms"].append(round(b.cold_ms / b.cold, 1) if b.cold else None)
            out["queue_ms"].append(round(b.queue_ms / b.requests, 2) if b.requests else None)
            out["busy"].append(b.busy)
            out["idle"].append(b.idle)
            out["starting"].append(b.starting)
        return out
