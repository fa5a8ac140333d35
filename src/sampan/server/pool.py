"""A pool of containers for one (function, version, class-parameter values): the autoscaler's I/O shell.

The gateway asks the pool for a container with a free slot (`acquire`) and gives the slot back
when the request ends (`release`). Whenever the picture changes, the pool asks the pure
`autoscaler.decide()` what to do and carries it out: start containers through the backend, stop
idle ones, and set a timer for the next scale-down check. Nothing on the request path waits for
anything but a free slot.

Longer than 400 lines because the request path (slots, waiters, sessions) and the scaling it triggers
share one state and are read together.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from ..backends.base import Address, Backend, Container, ContainerSpec, ContainerStartError, LogSink
from .autoscaler import READY, STARTING, ContainerView, PoolConfig, decide, start_backoff
from .callline import IdleLines
from .gateway.upstream import IdleConnections
from .quota import ContainerQuota
from .sessions import SessionTable

STOPPING = "stopping"
Clock = Callable[[], float]

MAX_PENDING_INPUTS = 2000  # Modal's per-function limit on queued inputs (fact sheet §6)


class PoolClosed(Exception):
    """The pool was drained and stopped: the caller should look its route up again."""


class QueueFull(Exception):
    """MAX_PENDING_INPUTS requests are already waiting for this pool."""


class SessionGone(Exception):
    """No live session has this token (it expired, was terminated, or its container is gone)."""


class AtCapacity(Exception):
    """Every ready container of a pool that refuses to queue (a Server's `max_concurrency`) is full."""


def new_container_id() -> str:
    return "ta-" + secrets.token_hex(6)


@dataclass(eq=False)
class PoolContainer:
    id: str
    started_at: float = field(default_factory=time.time)
    state: str = STARTING
    in_flight: int = 0
    served: int = 0  # inputs taken so far (the first one of a container that was waited for: a cold start)
    idle_since: float | None = None
    backend: Container | None = None
    conns: IdleConnections = field(default_factory=IdleConnections)  # keep-alive connections to it
    lines: IdleLines = field(default_factory=IdleLines)  # its call line's idle connections (callline.py)

    @property
    def address(self) -> Address:
        assert self.backend is not None
        return self.backend.address

    def view(self) -> ContainerView:
        return ContainerView(self.id, self.state, self.in_flight, self.idle_since)

    def close_idle_conns(self) -> None:
        self.conns.close()
        self.lines.close()


class Pool:
    def __init__(
        self,
        name: str,
        config: PoolConfig,
        backend: Backend,
        make_spec: Callable[[str], ContainerSpec],
        log: LogSink,
        *,
        clock: Clock = time.monotonic,
        on_start_error: Callable[[str, str], None] | None = None,
        stop_grace: float = 30.0,
        timeout: float = 300.0,
        max_pending: int = MAX_PENDING_INPUTS,
        on_exit: Callable[[str], None] | None = None,
        quota: ContainerQuota | None = None,
        workspace: str = "",
        refuse_when_full: bool = False,
    ) -> None:
        self.name = name
        # A Server with `max_concurrency`: a request finding every ready container at its limit is refused
        # (429) instead of queued; requests still wait while no container is ready (a cold start).
        self.refuse_when_full = refuse_when_full
        self.sessions = SessionTable(clock)  # `@modal.sessioned()` servers (server/sessions.py)
        self.config = config
        self.backend = backend
        self.make_spec = make_spec
        self.log = log
        self.clock = clock
        self.on_start_error = on_start_error
        self.stop_grace = stop_grace
        self.timeout = timeout
        self.max_pending = max_pending
        self.on_exit = on_exit
        self.quota = quota
        self.workspace = workspace
        if quota is not None:
            quota.register(id(self), workspace, self._stop_one_idle)
        self.created_at = time.time()
        self.containers: dict[str, PoolContainer] = {}
        self.waiters: deque[asyncio.Future[PoolContainer]] = deque()
        self.closed = False
        self.draining = False
        self._timer: asyncio.TimerHandle | None = None
        self._reconcile_due = False  # a `_reconcile` is scheduled for this turn of the loop
        self._tasks: set[asyncio.Task[Any]] = set()
        self._changed = asyncio.Event()
        self.input_seconds: float | None = None  # moving mean per call, exchange included (mapbatch.py)
        self.failures = 0  # failed starts in a row
        self.last_error = ""
        self.retry_at = 0.0

    # -- request path -------------------------------------------------------------------------
    def _free(self) -> PoolContainer | None:
        best: PoolContainer | None = None
        for pc in self.containers.values():
            if pc.state == READY and pc.in_flight < self.config.max_inputs:
                if best is None or pc.in_flight < best.in_flight:
                    best = pc
        return best

    async def acquire(self) -> PoolContainer:
        """A ready container with a free slot; waits (and scales up) when there is none."""
        pc = self.free_slot()
        if pc is not None:
            return self.take(pc)
        fut = self.enqueue()
        try:
            return await fut
        except asyncio.CancelledError:
            self.abandon(fut)
            raise

    def enqueue(self) -> asyncio.Future[PoolContainer]:
        """Wait for a slot (where `free_slot` found none) without awaiting: the future resolves with a
        container (its slot taken) or fails as `acquire` would; raises what `acquire` raises at once."""
        if self.closed:
            raise PoolClosed(self.name)
        if self.failures and not self.views() and self.clock() < self.retry_at:
            raise ContainerStartError(self.last_error)  # crash-loop backoff (autoscaler rule 7)
        if self.refuse_when_full and any(c.state == READY for c in self.containers.values()):
            raise AtCapacity(self.config.max_inputs)
        if len(self.waiters) >= self.max_pending:
            raise QueueFull(self.max_pending)
        fut: asyncio.Future[PoolContainer] = asyncio.get_running_loop().create_future()
        self.waiters.append(fut)
        self._reconcile_soon()
        return fut

    def abandon(self, fut: asyncio.Future[PoolContainer]) -> None:
        """The caller of `enqueue` gave up (its client left): the slot it got back, or its place in the queue."""
        if fut.done() and not fut.cancelled() and fut.exception() is None:
            self.release(fut.result())
            return
        fut.cancel()
        with contextlib.suppress(ValueError):
            self.waiters.remove(fut)
        self._reconcile_soon()

    def free_slot(self) -> PoolContainer | None:
        """What `acquire` would return at once (None: it would wait, scale or refuse), changing nothing:
        the gateway's quick path (front.py) admits the request, then `take`s it in the same turn."""
        return None if self.closed or self.waiters else self._free()

    @staticmethod
    def take(pc: PoolContainer) -> PoolContainer:
        pc.in_flight += 1
        pc.served += 1
        return pc

    def release(self, pc: PoolContainer) -> None:
        pc.in_flight -= 1
        if pc.in_flight == 0:
            pc.idle_since = self.clock()
        self._dispatch()
        if pc.in_flight == 0 and self.quota is not None and self.quota.wants_room(self.workspace, id(self)):
            self._stop_one_idle()  # another pool waits for room under a cap: this container only idles
        self._reconcile_soon()
        self._changed.set()

    def _dispatch(self) -> None:
        while self.waiters:
            pc = self._free()
            if pc is None:
                return
            fut = self.waiters.popleft()
            if fut.done():
                continue
            pc.in_flight += 1
            pc.served += 1
            fut.set_result(pc)

    # -- scaling ------------------------------------------------------------------------------
    def views(self) -> list[ContainerView]:
        views = [pc.view() for pc in self.containers.values() if pc.state != STOPPING]
        if not self.sessions.by_token:  # the common case: no sticky session, nothing more to do
            return views
        # A container holding a live session never looks idle, so it is never scaled down.
        pinned, now = self.sessions.pinned(), self.clock()
        return [replace(v, idle_since=now) if v.id in pinned and v.in_flight == 0 else v for v in views]

    async def start_session(self, idle_timeout: float) -> str:
        """Bind a new session to a container (the least loaded ready one, started if need be)."""
        pc = await self.acquire()
        try:
            return self.sessions.start(pc.id, idle_timeout).token
        finally:
            self.release(pc)

    async def acquire_session(self, token: str) -> PoolContainer:
        """A slot of the container `token`'s session is bound to, waiting for one to be free."""
        while True:
            session = self.sessions.use(token)
            pc = self.containers.get(session.container) if session is not None else None
            if pc is None or pc.state != READY:
                if session is not None:
                    self.sessions.terminate(token)
                raise SessionGone(token)
            if pc.in_flight < self.config.max_inputs:
                pc.in_flight += 1
                pc.served += 1
                return pc
            if self.refuse_when_full:
                raise AtCapacity(self.config.max_inputs)
            self._changed.clear()
            await self._changed.wait()

    def _reconcile_soon(self) -> None:
        """Reconcile after the callbacks already due: one `decide()` per turn of the loop, not per request."""
        if not self._reconcile_due:
            self._reconcile_due = True
            asyncio.get_running_loop().call_soon(self._reconcile)

    def _reconcile(self) -> None:
        self._reconcile_due = False
        if self.closed:
            return
        now = self.clock()
        decision = decide(self.config, self.views(), len(self.waiters), now)
        next_check = decision.next_check
        if decision.start and now < self.retry_at:
            next_check = self.retry_at if next_check is None else min(next_check, self.retry_at)
        else:
            for _ in range(decision.start):
                self._start_container()
        for cid in decision.stop:
            self._stop_container(self.containers[cid])
        # A timer due no later stays (it looks again): a timer per released slot cost the call path.
        loop = asyncio.get_running_loop()
        when = None if next_check is None else loop.time() + max(0.0, next_check - self.clock()) + 0.01
        timer = self._timer  # kept only while still pending, and due no later than `when`
        if timer is not None and (when is None or not loop.time() < timer.when() <= when):
            timer.cancel()
            self._timer = None
        if when is not None and self._timer is None:
            self._timer = loop.call_at(when, self._reconcile)

    def start(self) -> None:
        """Bring the pool to its floor (`min_containers`) before any request."""
        self._reconcile()

    async def warm(self, count: int) -> None:
        """Start containers until `count` are live and wait until none is still starting."""
        if self.config.max_containers is not None:
            count = min(count, self.config.max_containers)
        for _ in range(max(0, count - len(self.views()))):
            self._start_container()
        while any(pc.state == STARTING for pc in self.containers.values()):
            self._changed.clear()
            await self._changed.wait()

    def _stop_one_idle(self) -> bool:
        """Stop one ready container with nothing in flight (another pool needs the room)."""
        pinned = self.sessions.pinned()
        idle = [pc for pc in self.containers.values() if pc.state == READY and pc.in_flight == 0
                and pc.id not in pinned]
        if not idle or self.waiters:
            return False
        self._stop_container(min(idle, key=lambda pc: pc.idle_since or 0.0))
        return True

    def _forget(self, pc: PoolContainer) -> None:
        if self.containers.pop(pc.id, None) is not None and self.quota is not None:
            self.quota.give_back(self.workspace)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _start_container(self) -> None:
        if self.quota is not None and not self.quota.take(self.workspace):
            self.quota.wait(self._reconcile, self.workspace)  # past a cap: start once a container goes away,
            self.quota.reclaim(self.workspace, id(self))  # and make one go away if it only idles
            return
        pc = PoolContainer(new_container_id())
        self.containers[pc.id] = pc
        self._spawn(self._boot(pc))

    async def _boot(self, pc: PoolContainer) -> None:
        try:
            pc.backend = await self.backend.start(self.make_spec(pc.id), self.log)
        except asyncio.CancelledError:
            self._forget(pc)
            raise
        except ContainerStartError as exc:
            self._start_failed(pc, str(exc))
            return
        except Exception as exc:  # noqa: BLE001 - a bug or an OS error must fail the waiters, not hang them
            self._start_failed(pc, f"{type(exc).__name__}: {exc}")
            return
        if pc.state == STOPPING or self.closed:
            await pc.backend.stop(self.stop_grace)
            self._forget(pc)
            return
        pc.state = READY
        pc.idle_since = self.clock()
        self.failures = 0
        self._spawn(self._watch(pc))
        self._dispatch()
        self._reconcile()
        self._changed.set()

    def _start_failed(self, pc: PoolContainer, reason: str) -> None:
        self._forget(pc)
        self.failures += 1
        self.last_error = reason
        self.retry_at = self.clock() + start_backoff(self.failures)
        if self.on_start_error is not None:
            self.on_start_error(pc.id, reason)
        # The requests waiting now would only wait for the next attempt to fail the same way.
        error = ContainerStartError(reason)
        while self.waiters:
            fut = self.waiters.popleft()
            if not fut.done():
                fut.set_exception(error)
        self._changed.set()

    async def _watch(self, pc: PoolContainer) -> None:
        assert pc.backend is not None
        await pc.backend.wait()
        pc.close_idle_conns()
        if pc.state != STOPPING:
            self.log(pc.id, "system", "container exited unexpectedly")
        self._forget(pc)
        if self.on_exit is not None:
            self.on_exit(pc.id)
        self._changed.set()
        if not self.closed:
            self._reconcile()

    def _stop_container(self, pc: PoolContainer) -> None:
        if pc.state == STOPPING:
            return
        pc.state = STOPPING
        pc.close_idle_conns()
        if pc.backend is not None:
            self._spawn(pc.backend.stop(self.stop_grace))

    def reconfigure(self, config: PoolConfig) -> None:
        """New autoscaler settings (`Function.update_autoscaler`), acted on at once."""
        self.config = config
        self._changed.set()
        if not self.closed:
            self._reconcile()

    def recycle(self, pc: PoolContainer) -> None:
        """Take a container out of rotation and stop it (its work could not be cancelled)."""
        self._stop_container(pc)
        self._reconcile()

    # -- shutdown -----------------------------------------------------------------------------
    async def drain(self) -> None:
        """Serve what is queued or in flight, then stop every container (a reload or a stop)."""
        self.draining = True
        while self.waiters or any(pc.in_flight for pc in self.containers.values()):
            self._changed.clear()
            await self._changed.wait()
        await self.close()

    async def close(self) -> None:
        self.closed = True
        if self.quota is not None:
            self.quota.unregister(id(self))
        if self._timer is not None:
            self._timer.cancel()
        for fut in self.waiters:
            if not fut.done():
                fut.set_exception(PoolClosed(self.name))
        self.waiters.clear()
        for pc in list(self.containers.values()):
            self._stop_container(pc)
        pending = [pc.backend.wait() for pc in self.containers.values() if pc.backend is not None]
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        for task in list(self._tasks):
            if not task.done():
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await asyncio.wait_for(task, self.stop_grace + 5)

    def kill_all(self) -> None:
        for pc in self.containers.values():
            if pc.backend is not None:
                pc.backend.kill()

    def stats(self) -> dict[str, int]:
        live = [pc for pc in self.containers.values() if pc.state != STOPPING]
        return {"containers": len(live), "ready": sum(pc.state == READY for pc in live),
                "in_flight": sum(pc.in_flight for pc in self.containers.values()), "queued": len(self.waiters)}
