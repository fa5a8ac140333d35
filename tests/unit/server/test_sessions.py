"""Sticky sessions (server/sessions.py, and the pool's use of them): pure, with a fake clock."""

from __future__ import annotations

import asyncio

import pytest

from sampan.server.autoscaler import PoolConfig
from sampan.server.pool import SessionGone
from sampan.server.sessions import SessionTable
from tests.unit.server.test_pool import Clock, FakeBackend, make_pool, settle


def test_a_session_lives_while_used_and_ends_when_idle_or_terminated() -> None:
    clock = Clock()
    table = SessionTable(clock)
    a = table.start("ta-1", idle_timeout=10)
    b = table.start("ta-2", idle_timeout=10)
    assert a.token != b.token and table.pinned() == {"ta-1", "ta-2"}
    clock.now = 8
    assert table.use(a.token) is a  # used: idle time starts again
    clock.now = 15
    assert table.use(a.token) is a and table.use(b.token) is None  # b was idle 15 s
    assert table.pinned() == {"ta-1"}
    assert table.terminate(a.token) and not table.terminate(a.token) and table.pinned() == set()


def test_the_pool_routes_a_session_to_its_container_and_never_scales_it_down() -> None:
    async def main() -> None:
        backend = FakeBackend()
        backend.gate.set()
        clock = Clock()
        pool = make_pool(backend, PoolConfig(max_inputs=1, min_containers=2, scaledown_window=2), clock)
        pool.start()
        await settle()
        token = await pool.start_session(idle_timeout=100)
        bound = pool.sessions.by_token[token].container
        for _ in range(3):
            pc = await pool.acquire_session(token)
            assert pc.id == bound
            pool.release(pc)
        assert all(v.idle_since == clock.now for v in pool.views() if v.id == bound)  # never idle
        with pytest.raises(SessionGone):
            await pool.acquire_session("no-such-token")
        busy = await pool.acquire_session(token)
        waiting = asyncio.create_task(pool.acquire_session(token))  # its container is full: it waits
        await settle()
        assert not waiting.done()
        pool.release(busy)
        await settle()
        assert waiting.result().id == bound
        await pool.close()

    asyncio.run(main())
