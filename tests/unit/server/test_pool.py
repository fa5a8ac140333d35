"""The pool (the autoscaler's I/O shell) against a fake backend: only what lies beyond the seam is fake."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from sampan.backends.base import Backend, Container, ContainerSpec, ContainerStartError
from sampan.server.autoscaler import PoolConfig
from sampan.server.pool import AtCapacity, Pool, QueueFull


class FakeContainer(Container):
    def __init__(self, cid: str) -> None:
        self.id = cid
        self.address = ("127.0.0.1", 1)
        self.exited = asyncio.Event()

    @property
    def alive(self) -> bool:
        return not self.exited.is_set()

    async def stop(self, grace: float = 30.0) -> None:
        self.exited.set()

    def kill(self) -> None:
        self.exited.set()

    async def wait(self) -> int:
        await self.exited.wait()
        return 0


class FakeBackend(Backend):
    """Containers become ready when the test says so (or fail, when told to)."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.gate = asyncio.Event()
        self.fail: str | None = None

    async def start(self, spec: ContainerSpec, log: Any) -> Container:
        self.started.append(spec.container_id)
        await self.gate.wait()
        if self.fail:
            raise ContainerStartError(self.fail)
        return FakeContainer(spec.container_id)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def make_pool(backend: FakeBackend, config: PoolConfig, clock: Clock | None = None, **kw: Any) -> Pool:
    def spec(cid: str) -> ContainerSpec:
        return ContainerSpec(cid, "app", {}, Path("/nonexistent"), "m", "app")

    return Pool("f", config, backend, spec, lambda *a: None, clock=clock or Clock(), **kw)


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


def test_least_loaded_routing_never_exceeds_max_inputs() -> None:
    async def main() -> None:
        backend = FakeBackend()
        backend.gate.set()
        pool = make_pool(backend, PoolConfig(max_inputs=2, max_containers=2))
        tasks = [asyncio.create_task(pool.acquire()) for _ in range(5)]
        await settle()
        done = [t.result() for t in tasks if t.done()]
        assert len(done) == 4  # two containers x two slots; the fifth waits
        assert sorted(pc.in_flight for pc in pool.containers.values()) == [2, 2]
        pool.release(done[0])
        await settle()
        assert all(t.done() for t in tasks)
        assert max(pc.in_flight for pc in pool.containers.values()) == 2
        await pool.close()

    asyncio.run(main())


def test_pending_queue_limit_gives_queue_full() -> None:
    async def main() -> None:
        backend = FakeBackend()  # containers never become ready
        pool = make_pool(backend, PoolConfig(max_containers=1), max_pending=50)
        waiting = [asyncio.create_task(pool.acquire()) for _ in range(50)]
        await settle()
        with pytest.raises(QueueFull):
            await pool.acquire()
        for t in waiting:
            t.cancel()
        backend.gate.set()
        await pool.close()

    asyncio.run(main())


def test_start_failure_fails_waiters_and_backs_off() -> None:
    async def main() -> None:
        backend = FakeBackend()
        backend.fail = "ImportError: nope"
        backend.gate.set()
        clock = Clock()
        pool = make_pool(backend, PoolConfig(), clock)
        with pytest.raises(ContainerStartError, match="nope"):
            await pool.acquire()
        assert len(backend.started) == 1
        with pytest.raises(ContainerStartError, match="nope"):
            await pool.acquire()  # within the 0.5 s backoff: fails fast, no new process
        assert len(backend.started) == 1
        clock.now = 0.6
        backend.fail = None
        pc = await pool.acquire()  # after the backoff: a new attempt, which now works
        assert len(backend.started) == 2 and pool.failures == 0
        pool.release(pc)
        await pool.close()

    asyncio.run(main())


def test_cancelled_waiter_does_not_leak_a_slot() -> None:
    async def main() -> None:
        backend = FakeBackend()
        pool = make_pool(backend, PoolConfig())
        waiter = asyncio.create_task(pool.acquire())
        await settle()
        waiter.cancel()
        await settle()
        assert not pool.waiters
        backend.gate.set()
        await settle()
        assert all(pc.in_flight == 0 for pc in pool.containers.values())
        await pool.close()

    asyncio.run(main())


def test_a_pool_that_refuses_when_full_says_so_once_a_container_is_ready() -> None:
    async def main() -> None:
        backend = FakeBackend()
        pool = make_pool(backend, PoolConfig(max_inputs=1, max_containers=2), refuse_when_full=True)
        first = asyncio.create_task(pool.acquire())  # no container yet: it waits for one to start
        await settle()
        assert not first.done()
        backend.gate.set()
        await settle()
        pc = first.result()
        with pytest.raises(AtCapacity):
            await pool.acquire()  # the ready container is at its limit: refused, not queued
        pool.release(pc)
        assert (await pool.acquire()) is pc
        await pool.close()

    asyncio.run(main())
