"""The autoscaler's rules, stepped with a fake clock (no processes, no sockets)."""

from __future__ import annotations

from sampan.server.autoscaler import READY, STARTING, ContainerView, Decision, PoolConfig, decide


def ready(cid: str, in_flight: int = 0, idle_since: float | None = 0.0) -> ContainerView:
    return ContainerView(cid, READY, in_flight, idle_since if in_flight == 0 else None)


def test_first_request_starts_one_container() -> None:
    assert decide(PoolConfig(), [], queued=1, now=0.0) == Decision(start=1)


def test_no_demand_no_containers() -> None:
    assert decide(PoolConfig(), [], queued=0, now=0.0) == Decision()


def test_one_input_per_container_by_default() -> None:
    d = decide(PoolConfig(), [ready("a", in_flight=1)], queued=3, now=0.0)
    assert d.start == 3


def test_starting_containers_count_as_live() -> None:
    d = decide(PoolConfig(), [ContainerView("a", STARTING)], queued=1, now=0.0)
    assert d.start == 0


def test_concurrency_target_sets_the_container_count() -> None:
    config = PoolConfig(max_inputs=10, target_inputs=4)
    d = decide(config, [ready("a", in_flight=4)], queued=5, now=0.0)
    assert d.start == 2  # 9 inputs / 4 per container = 3 containers


def test_target_defaults_to_max_inputs() -> None:
    assert PoolConfig(max_inputs=100).target == 100
    assert decide(PoolConfig(max_inputs=100), [], queued=100, now=0).start == 1
    assert decide(PoolConfig(max_inputs=100), [], queued=101, now=0).start == 2


def test_max_containers_caps_and_the_rest_queue() -> None:
    d = decide(PoolConfig(max_containers=2), [ready("a", 1), ready("b", 1)], queued=10, now=0.0)
    assert d.start == 0


def test_min_containers_are_started_without_requests() -> None:
    assert decide(PoolConfig(min_containers=2), [], queued=0, now=0.0).start == 2


def test_buffer_containers_only_while_active() -> None:
    config = PoolConfig(buffer_containers=2)
    assert decide(config, [], queued=0, now=0.0).start == 0
    assert decide(config, [], queued=1, now=0.0).start == 3


def test_idle_container_stops_after_the_scaledown_window() -> None:
    config = PoolConfig(scaledown_window=60)
    containers = [ready("a", idle_since=100.0)]
    early = decide(config, containers, queued=0, now=159.0)
    assert early.stop == () and early.next_check == 160.0
    assert decide(config, containers, queued=0, now=160.0).stop == ("a",)


def test_busy_containers_never_stop() -> None:
    d = decide(PoolConfig(scaledown_window=2), [ready("a", in_flight=1)], queued=0, now=1e9)
    assert d.stop == ()


def test_never_below_min_containers() -> None:
    config = PoolConfig(min_containers=1, scaledown_window=2)
    containers = [ready("a", idle_since=0.0), ready("b", idle_since=5.0)]
    d = decide(config, containers, queued=0, now=100.0)
    assert d.stop == ("a",)  # longest idle goes first, one stays


def test_surplus_idle_container_goes_while_others_are_busy() -> None:
    config = PoolConfig(scaledown_window=10)
    containers = [ready("busy", in_flight=1), ready("idle", idle_since=0.0)]
    assert decide(config, containers, queued=0, now=10.0).stop == ("idle",)


def test_start_backoff_doubles_and_caps() -> None:
    from sampan.server.autoscaler import start_backoff

    assert [start_backoff(n) for n in range(8)] == [0.0, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0]
    assert start_backoff(100) == 30.0
