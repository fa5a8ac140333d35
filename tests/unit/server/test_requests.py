"""The request log and metrics (server/requests.py, server/metrics.py): filters, bounds, workspaces, and
Prometheus's text format as its official parser reads it. Pure, with a fake clock."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client.parser import text_string_to_metric_families

from sampan.server.metrics import Metrics
from sampan.server.requests import Request, RequestLog, parse_since, select, status_matches


def req(ws: str = "alice", app: str = "alice/shop", fn: str = "square", status: int = 200, t: float = 100.0,
        ms: float = 12.0, queue: float = 0.0, cold: bool = False) -> Request:
    return Request(t, ws, app, fn, "GET", "/", status, ms, queue, cold, "ta-1", 0, 10, "127.0.0.1")


def test_filters() -> None:
    assert parse_since("10m", 1000.0) == 400.0 and parse_since("2h", 10_000.0) == 2800.0
    assert parse_since(None, 5.0) is None and parse_since("123.5", 0) == 123.5
    with pytest.raises(ValueError):
        parse_since("yesterday", 0)
    assert status_matches(503, "5xx") and not status_matches(404, "5xx") and status_matches(404, "4xx,5xx")
    assert status_matches(404, "404") and not status_matches(200, "404") and status_matches(200, None)
    records = [req(t=1), req(status=500, t=2), req(ws="bob", app="bob/shop", t=3), req(app="alice/other", t=4)]
    assert [r.time for r in select(records, workspace="alice", app="alice/shop")] == [1, 2]
    assert [r.time for r in select(records, workspace="alice", app="alice/shop", status="5xx")] == [2]
    assert [r.time for r in select(records, workspace="alice", since=3)] == [4]
    assert [r.time for r in select(records, workspace="bob")] == [3]


def test_the_log_is_bounded_and_followed() -> None:
    async def main() -> None:
        log = RequestLog(max_records=3)
        seen: list[Request] = []
        log.sinks.append(seen.append)
        queue = log.follow()
        for i in range(5):
            log.record(req(t=i))
        assert [r.time for r in log.records] == [2, 3, 4] and len(seen) == 5
        assert (await queue.get()).time == 0
        log.unfollow(queue)
        assert not log.followers

    asyncio.run(main())


def test_metrics_are_prometheus_text_of_one_workspace() -> None:
    metrics = Metrics(lambda workspace: [{"workspace": "alice", "app_key": "alice/shop", "function": "square",
                                "state": "ready", "id": "ta-1", "cpu_s": 1.5, "memory_bytes": 4096},
                               {"workspace": "bob", "app_key": "bob/x", "function": "f", "state": "ready",
                                "id": "ta-2", "cpu_s": 9.0, "memory_bytes": 1}])
    metrics.built("alice", 12.0)
    metrics.built("bob", 1.0)
    for r in (req(), req(status=500, ms=2000), req(queue=300, cold=True), req(ws="bob", app="bob/x", fn="f")):
        metrics.observe(r)
    families = {f.name: f for f in text_string_to_metric_families(metrics.exposition("alice").decode())}
    assert set(families) >= {"sampan_requests", "sampan_request_duration_seconds",
                             "sampan_input_queue_time_seconds", "sampan_coldstart_time_seconds", "sampan_containers"}
    totals = {s.labels["status"]: s.value for s in families["sampan_requests"].samples if s.name.endswith("_total")}
    assert totals == {"200": 2.0, "500": 1.0}
    counts = [s for s in families["sampan_request_duration_seconds"].samples if s.name.endswith("_count")]
    assert counts[0].value == 3.0 and counts[0].labels == {"workspace": "alice", "app": "alice/shop",
                                                           "function": "square"}
    assert [s.value for s in families["sampan_containers"].samples] == [1.0]
    assert [(s.labels["container"], s.value) for s in families["sampan_container_cpu_seconds"].samples
            if s.name.endswith("_total")] == [("ta-1", 1.5)]
    assert [s.value for s in families["sampan_container_memory_bytes"].samples] == [4096.0]
    builds = {s.name: s.value for s in families["sampan_image_build_duration_seconds"].samples}
    assert builds["sampan_image_build_duration_seconds_count"] == 1.0
    assert builds["sampan_image_build_duration_seconds_sum"] == 12.0
    assert b"bob" not in metrics.exposition("alice")
    stats = metrics.stats("alice", "alice/shop")["square"]
    assert (stats["requests"], stats["errors_5xx"], stats["cold_starts"]) == (3, 1, 1)
    assert stats["latency_p50_s"] == 0.025 and stats["latency_p99_s"] == 2.5
