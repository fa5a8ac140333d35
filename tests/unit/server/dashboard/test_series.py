"""The dashboard's charts: 5-second buckets kept as requests end, read back as columns (fake clock)."""

from __future__ import annotations

from sampan.server.dashboard.series import BOUNDS_MS, SLOTS, STEP_S, WINDOW_S, Series, quantile
from sampan.server.requests import Request

KEY = ("alice", "alice/shop", "item")


def request(t: float, status: int = 200, ms: float = 2.0, cold: bool = False, queue: float = 0.0,
            app: str = "alice/shop") -> Request:
    return Request(t, "alice", app, "item", "GET", "/", status, ms, queue, cold, "ta-1", 0, 0, "127.0.0.1")


def test_requests_land_in_their_bucket_and_read_back_as_columns() -> None:
    series = Series()
    now = 10_002.0
    for _ in range(10):
        series.observe(request(now - 1, ms=2.0))
    series.observe(request(now - 1, status=503, ms=50.0, cold=True, queue=40.0))
    series.observe(request(now - 6, status=404))
    cols = series.window(KEY, now, seconds=15)
    assert len(cols["t"]) == 3 and cols["t"][-1] == int(now // STEP_S) * STEP_S
    assert cols["rps"] == [0, round(1 / STEP_S, 2), round(11 / STEP_S, 2)]
    assert cols["errors_5xx"] == [0, 0, 1] and cols["errors_4xx"] == [0, 1, 0]
    assert cols["cold_starts"][-1] == 1 and cols["cold_ms"][-1] == 40.0
    assert cols["p50_ms"][0] is None and 2.0 <= cols["p50_ms"][-1] <= 3.1
    assert cols["p99_ms"][-1] >= 50.0
    assert series.functions("alice", "alice/shop") == ["item"]
    assert series.functions("bob", "alice/shop") == []


def test_quantiles_come_from_the_bucket_bounds() -> None:
    counts = [0] * (len(BOUNDS_MS) + 1)
    assert quantile(counts, 0.5) is None
    counts[3] = 9
    counts[10] = 1
    assert quantile(counts, 0.5) == BOUNDS_MS[3] and quantile(counts, 0.99) == BOUNDS_MS[10]
    counts[-1] = 100
    assert quantile(counts, 0.99) > BOUNDS_MS[-1]


def test_the_window_is_one_hour_and_older_buckets_go() -> None:
    series = Series()
    start = 50_000.0
    series.observe(request(start))
    series.observe(request(start + WINDOW_S + 2 * STEP_S))
    assert len(series.keys[KEY]) == 1 and len(series.window(KEY, start + WINDOW_S)["t"]) == SLOTS


def test_container_samples_count_busy_idle_and_starting() -> None:
    series = Series()
    now = 20_000.0
    rows = [{"workspace": "alice", "app_key": "alice/shop", "function": "item", "state": s, "in_flight": n}
            for s, n in (("ready", 0), ("ready", 2), ("starting", 0), ("ready (old version)", 1))]
    series.sample(now, rows)
    cols = series.window(KEY, now, seconds=5)
    assert (cols["busy"], cols["idle"], cols["starting"]) == ([2], [1], [1])
    series.sample(now + STEP_S, [])  # all gone: zeros, not nothing, while the function is recent
    assert series.window(KEY, now + STEP_S, seconds=5)["busy"] == [0]
    series.sample(now + WINDOW_S + 10 * STEP_S, [])  # long gone: nothing recorded any more
    assert series.window(KEY, now + WINDOW_S + 10 * STEP_S, seconds=5)["busy"] == [None]
