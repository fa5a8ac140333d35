"""Container caps per workspace and per server (server/quota.py): pure bookkeeping, tested directly."""

from __future__ import annotations

from sampan.server.quota import ContainerQuota


def test_caps_per_workspace_and_in_total() -> None:
    quota = ContainerQuota(per_workspace=2, total=3)
    assert quota.take("a") and quota.take("a")
    assert not quota.take("a"), "a workspace at its cap waits"
    assert quota.take("b")
    assert not quota.take("c"), "the server at its cap: every workspace waits"
    quota.give_back("a")
    assert quota.take("c")


def test_a_freed_slot_wakes_each_waiting_pool_once() -> None:
    quota = ContainerQuota(per_workspace=None, total=1)
    assert quota.take("a")
    woken: list[str] = []

    class Pool:
        def __init__(self, name: str) -> None:
            self.name = name

        def reconcile(self) -> None:
            woken.append(self.name)

    first, second = Pool("first"), Pool("second")
    quota.wait(first.reconcile, "a")
    quota.wait(first.reconcile, "a")  # the same pool asking twice is woken once
    quota.wait(second.reconcile, "b")
    assert quota.wants_room("a", offering=id(first)), "second waits, and only the server's cap binds it"
    quota.give_back("a")
    assert sorted(woken) == ["first", "second"]
    quota.give_back("a")  # nothing waits any more, and the count never goes below zero
    assert sorted(woken) == ["first", "second"] and quota.live["a"] == 0


def test_no_caps() -> None:
    quota = ContainerQuota()
    assert all(quota.take("a") for _ in range(1000))


def test_a_pool_that_must_wait_reclaims_an_idle_container_of_its_workspace_first() -> None:
    quota = ContainerQuota(per_workspace=1, total=10)
    stopped: list[str] = []

    def idle(name: str, has_idle: bool):  # noqa: ANN202
        def stop_one() -> bool:
            if has_idle:
                stopped.append(name)
            return has_idle
        return stop_one

    quota.register(1, "a", idle("a-busy", False))
    quota.register(2, "b", idle("b-idle", True))
    quota.register(3, "a", idle("a-idle", True))
    assert quota.take("a")
    assert not quota.take("a")
    assert quota.reclaim("a", asking=4) and stopped == ["a-idle"], "never another workspace's container"
    quota.unregister(3)
    assert not quota.reclaim("a", asking=4)
