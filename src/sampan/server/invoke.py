"""Calls of functions through the server: `.remote()`, `.remote_gen()`, `.spawn()` and `.map()`.

A call takes a slot of the function's pool exactly as a web request does (so it counts against
`max_inputs`, queues at `max_containers` and scales the pool), then POSTs the pickled arguments
to the container's call app (runtime/kinds.py `call_app`) and hands back the pickled outcome. The
server never unpickles anything: arguments and results are opaque bytes here.

    run()     one call, with the function's `retries` (Modal's backoff: initial delay, times the
              coefficient each retry, capped), bounded by its `timeout` per attempt
    stream()  a generator's frames as they come
    spawn()   run() in the background under an `fc-…` id; get() waits for it, cancel() stops it
    run_map() a `.map` request's inputs, in batches to one container where the function is quick

Outcomes and frames are the call protocol of sampan/callwire.py: the server never unpickles what
user code made, it reads an outcome's first byte; outcomes it makes itself are `X` ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from .. import callwire
from ..backends.base import ContainerStartError
from . import callline, mapbatch
from .gateway import errors, http
from .gateway.bodies import iter_chunked, within
from .gateway.upstream import Upstream, UpstreamFailed, response_head
from .pool import Pool, PoolClosed, QueueFull

MAX_KEPT_CALLS = 10_000  # finished spawned calls kept for get(), oldest dropped first
MAX_KEPT_RESULT_BYTES = 256 << 20  # results of spawned calls held at once; past it the oldest expire
MAX_RESULT = 1 << 30


@dataclass
class SpawnedCall:
    id: str
    workspace: str
    function: str
    created: float = field(default_factory=time.time)
    finished: float | None = None  # when its outcome came (the dashboard's durations)
    outcome: bytes | None = None
    status: str = "PENDING"  # PENDING, SUCCESS, FAILURE, INIT_FAILURE, TERMINATED, TIMEOUT
    done: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    children: list[SpawnedCall] = field(default_factory=list)  # calls made while this one ran
    parent: SpawnedCall | None = None  # the input this call was made from (a web request's, another call's)
    expired: bool = False  # its result was dropped to bound the server's memory (OutputExpiredError)
    input_id: str = field(default_factory=lambda: "in-" + secrets.token_hex(12))

    def root(self) -> SpawnedCall:
        """The top of this call's tree: the input made from outside (a web request, a local client)."""
        node = self
        while node.parent is not None:
            node = node.parent
        return node

    def graph(self) -> dict[str, Any]:
        return {"function_call_id": self.id, "input_id": self.input_id, "function": self.function,
                "status": self.status, "children": [c.graph() for c in self.children]}


async def _read_exactly(reader: asyncio.StreamReader, length: int) -> bytes:
    """A call's outcome, read in pieces into one buffer: `readexactly` would let the stream's own
    buffer grow to the whole result and then copy it, twice the memory of a large result."""
    buffer = bytearray(length)
    view = memoryview(buffer)
    filled = 0
    while filled < length:
        piece = await reader.read(min(length - filled, 1 << 20))
        if not piece:
            raise asyncio.IncompleteReadError(bytes(view[:filled]), length)
        view[filled:filled + len(piece)] = piece
        filled += len(piece)
    return buffer  # type: ignore[return-value] - bytes-like: sliced, compared and base64-encoded as bytes


def _post(payload: bytes, call_id: str) -> bytes:
    """The request a container's call app takes (runtime/kinds.py `call_app`)."""
    return (b"POST / HTTP/1.1\r\nhost: sampan\r\ncontent-type: application/x-sampan-pickle\r\n"
            b"modal-function-call-id: " + call_id.encode() + b"\r\n"
            b"content-length: " + str(len(payload)).encode() + b"\r\n\r\n" + payload)


def _post_batch(body: bytes) -> bytes:
    """A batch of inputs for a container's call app (callwire.py's batch frames)."""
    return (b"POST / HTTP/1.1\r\nhost: sampan\r\ncontent-type: " + callwire.CONTENT_BATCH + b"\r\n"
            b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body)


def new_call_id() -> str:
    return "fc-" + secrets.token_hex(12)


class Invoker:
    def __init__(self, max_kept_bytes: int = MAX_KEPT_RESULT_BYTES, inputs: Any = None) -> None:
        """`inputs` (the server's LogStore) hears which call runs on which container, to tag its lines."""
        self.inputs = inputs
        self.calls: OrderedDict[str, SpawnedCall] = OrderedDict()
        self.max_kept_bytes = max_kept_bytes
        self.kept_bytes = 0

    def _kept(self, call: SpawnedCall) -> None:
        """Count a finished call's result, and expire the oldest results past the byte budget: unfetched
        results must not hold the server's memory without bound."""
        if call.outcome is None:
            return
        self.kept_bytes += len(call.outcome)
        for old in list(self.calls.values()):
            if self.kept_bytes <= self.max_kept_bytes:
                break
            if old is not call and old.outcome is not None and old.done.is_set():
                self.kept_bytes -= len(old.outcome)
                old.outcome, old.expired = None, True

    # -- one attempt --------------------------------------------------------------------------
    async def _attempt(self, pool: Pool, payload: bytes, call_id: str) -> bytes:
        try:
            pc = await pool.acquire()
        except ContainerStartError as exc:
            return errors.container_failed(str(exc)).outcome()
        except QueueFull as exc:
            return errors.queue_full(pool.name, exc.args[0], "").outcome()
        if self.inputs is not None:
            self.inputs.input_started(pc.id, call_id)
        try:
            if pc.backend is not None and pc.backend.calls_address is not None:  # the container's call line
                return await callline.call(pc, call_id, payload, pool.timeout)
            return await within(self._exchange(pc, _post(payload, call_id)), pool.timeout)
        except (asyncio.TimeoutError, TimeoutError):
            pool.recycle(pc)  # the work inside may not be cancellable
            return errors.timed_out(pool.timeout).outcome()
        except (UpstreamFailed, callline.LineFailed, ConnectionError, asyncio.IncompleteReadError, OSError):
            return errors.terminated().outcome()
        finally:
            if self.inputs is not None:
                self.inputs.input_ended(pc.id, call_id)
            pool.release(pc)

    @staticmethod
    async def _exchange(pc: Any, request: bytes) -> bytes:
        """One request to the container's call app (a call, or a batch of inputs); its whole answer."""
        upstream = Upstream(pc)
        await upstream.open()
        upstream.writer.write(request)
        try:
            response = await response_head(upstream, b"POST")
            if response.framing != http.LENGTH or response.length > MAX_RESULT:
                raise UpstreamFailed("unexpected response framing")
            data = await _read_exactly(upstream.reader, response.length)
        except BaseException:
            upstream.close()
            raise
        if response.keep_alive:
            upstream.give_back()
        else:
            upstream.close()
        return data

    # -- calls --------------------------------------------------------------------------------
    def child(self, parent_id: str | None, workspace: str, function: str,
              parent_function: str | None = None) -> SpawnedCall | None:
        """A record of a call made from inside another input, for the call graph. The parent is a spawned
        call, or the web request (or `.remote()` call) a container is serving: that input becomes the
        root of the graph, as on Modal. A parent of another workspace is never linked to."""
        if not parent_id:
            return None
        parent = self.calls.get(parent_id)
        if parent is None:
            parent = SpawnedCall(parent_id, workspace, parent_function or "")
            self._keep(parent)
        if parent.workspace != workspace:
            return None
        record = SpawnedCall(new_call_id(), workspace, function, parent=parent)
        parent.children.append(record)
        self._keep(record)
        return record

    def _keep(self, call: SpawnedCall) -> None:
        self.calls[call.id] = call
        while len(self.calls) > MAX_KEPT_CALLS:
            _, gone = self.calls.popitem(last=False)
            if gone.outcome is not None and gone.done.is_set():
                self.kept_bytes -= len(gone.outcome)

    @staticmethod
    def _finish(record: SpawnedCall, outcome: bytes) -> bytes:
        record.outcome = outcome
        record.status = callwire.status(outcome)
        record.finished = time.time()
        record.done.set()
        return outcome

    async def run(self, pool_for: Any, payload: bytes, retries: dict[str, Any] | None,
                  call_id: str | None = None, record: SpawnedCall | None = None) -> bytes:
        """One call with its retries. `pool_for()` returns the pool (looked up again after a reload)."""
        if record is not None:
            try:
                return self._finish(record, await self.run(pool_for, payload, retries, record.id))
            except asyncio.CancelledError:
                record.status = "TERMINATED"
                raise
        call_id = call_id or new_call_id()
        attempts = 1 + int((retries or {}).get("max_retries", 0))
        delay = float((retries or {}).get("initial_delay", 1.0))
        outcome = b""
        for attempt in range(attempts):
            pool = None
            for _ in range(3):
                pool = pool_for()
                try:
                    outcome = await self._attempt(pool, payload, call_id)
                    break
                except PoolClosed:
                    continue  # a redeploy swapped the function while we looked: look again
            if not callwire.is_failure(outcome) or attempt == attempts - 1:
                return outcome
            await asyncio.sleep(delay)
            delay = min(delay * float(retries.get("backoff_coefficient", 2.0)),  # type: ignore[union-attr]
                        float(retries.get("max_delay", 60.0)))  # type: ignore[union-attr]
        return outcome

    # -- a `.map`'s inputs, in batches where the function is quick (mapbatch.py) -------------
    async def run_batch(self, pool: Pool, items: list[tuple[str, bytes]]) -> list[bytes] | None:
        """Several inputs in one exchange with one container, run there one after the other; their outcomes
        in order. None when the batch failed as a whole (no container, a timeout, a lost container): the
        caller then runs its inputs one by one, which says what happened to each."""
        try:
            pc = await pool.acquire()
        except (ContainerStartError, QueueFull, PoolClosed):
            return None
        try:
            data = await within(self._exchange(pc, _post_batch(callwire.batch_body(items))), pool.timeout)
        except (asyncio.TimeoutError, TimeoutError):
            pool.recycle(pc)
            return None
        except (UpstreamFailed, ConnectionError, asyncio.IncompleteReadError, OSError):
            return None
        finally:
            pool.release(pc)
        outcomes = callwire.FrameReader().feed(bytes(data))
        if len(outcomes) != len(items) + 1 or outcomes[-1][:1] != callwire.TIMING:
            return None
        try:
            seconds = float(outcomes.pop()[1:])
        except ValueError:
            return None
        pool.input_seconds = mapbatch.update_mean(pool.input_seconds, seconds, len(items))
        return outcomes

    async def run_map(self, pool_for: Any, payloads: list[bytes], retries: dict[str, Any] | None,
                      records: list[SpawnedCall | None], emit: Callable[[int, bytes], None],
                      batchable: bool = True) -> None:
        """Every input of a `.map` request; `emit(i, outcome)` as each ends. Inputs of a function that
        takes under a millisecond go to containers in batches sized by mapbatch.size (the first input
        alone, to measure it); others, and every input of a function with retries, run one by one, all
        at once, as `.remote()` calls do (the pool queues them and scales)."""
        async def single(i: int) -> None:
            emit(i, await self.run(pool_for, payloads[i], retries, record=records[i]))

        async def batch(indices: list[int]) -> None:
            ids = [record.id if (record := records[i]) is not None else new_call_id() for i in indices]
            try:
                items = [(c, payloads[i]) for c, i in zip(ids, indices, strict=True)]
                outcomes = await self.run_batch(pool_for(), items)
            except PoolClosed:
                outcomes = None
            if outcomes is None:
                await asyncio.gather(*(single(i) for i in indices))
                return
            for i, outcome in zip(indices, outcomes, strict=True):
                record = records[i]
                emit(i, self._finish(record, outcome) if record is not None else outcome)

        waiting = list(range(len(payloads)))
        waiting.reverse()  # popped from the end: inputs leave in order
        tasks: list[asyncio.Task[None]] = []
        try:
            if not batchable or int((retries or {}).get("max_retries", 0)) > 0:
                tasks = [asyncio.create_task(single(i)) for i in reversed(waiting)]
                waiting.clear()
            room = asyncio.Semaphore(mapbatch.IN_FLIGHT)
            if waiting and pool_for().input_seconds is None:  # unknown function: a batch of one measures it
                tasks.append(asyncio.create_task(batch([waiting.pop()])))
                await asyncio.wait(tasks, timeout=mapbatch.PROBE_WAIT_S)  # a slow one goes on meanwhile
            launched = 0
            while waiting:
                count = mapbatch.size(pool_for().input_seconds, len(waiting))
                if count == 1:  # a slow function: every input at once, one in PROBE_EVERY still measuring
                    launched += 1
                    i = waiting.pop()
                    tasks.append(asyncio.create_task(batch([i]) if launched % mapbatch.PROBE_EVERY == 0
                                                     else single(i)))
                    continue
                # Sized when it leaves (by what the batches before it measured), a few at a time: a quick
                # function's inputs then need no more containers than its pool has.
                await room.acquire()
                count = mapbatch.size(pool_for().input_seconds, len(waiting))
                taken = [waiting.pop() for _ in range(count)]
                task = asyncio.create_task(batch(taken))
                task.add_done_callback(lambda _: room.release())
                tasks.append(task)
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()

    async def stream(self, pool: Pool, payload: bytes) -> AsyncIterator[bytes]:
        """A generator's frames (each a pickled ("item", v), then ("end", None) or ("err", ...))."""
        call_id = new_call_id()
        try:
            pc = await pool.acquire()
        except ContainerStartError as exc:
            yield errors.container_failed(str(exc)).outcome()
            return
        upstream = Upstream(pc)
        ended = False
        try:
            await upstream.open()
            upstream.writer.write(_post(payload, call_id))
            response = await within(response_head(upstream, b"POST"), pool.timeout)
            if response.framing != http.CHUNKED:
                raise UpstreamFailed("unexpected response framing")
            frames = callwire.FrameReader()
            deadline = time.monotonic() + pool.timeout
            chunks = iter_chunked(upstream.reader)
            while not ended:
                data = await within(anext(chunks, None), deadline - time.monotonic())
                if data is None:
                    break
                for frame in frames.feed(data):
                    ended = callwire.ends_stream(frame)
                    yield frame
                    if ended:
                        break
            if not ended:
                yield errors.terminated("the generator's container closed the stream early").outcome()
        except (asyncio.TimeoutError, TimeoutError):
            pool.recycle(pc)
            yield errors.timed_out(pool.timeout).outcome()
        except (UpstreamFailed, ConnectionError, asyncio.IncompleteReadError, OSError, ValueError):
            yield errors.terminated().outcome()
        finally:
            if hasattr(upstream, "writer"):
                upstream.close()
            pool.release(pc)

    # -- spawned calls ------------------------------------------------------------------------
    def spawn(self, workspace: str, function: str, pool_for: Any, payload: bytes,
              retries: dict[str, Any] | None, parent: str | None = None, parent_function: str | None = None) -> str:
        call = self.child(parent, workspace, function, parent_function) or SpawnedCall(new_call_id(), workspace,
                                                                                      function)
        self._keep(call)

        async def background() -> None:
            try:
                call.outcome = await self.run(pool_for, payload, retries, call.id)
                call.status = callwire.status(call.outcome)
            except asyncio.CancelledError:
                call.outcome = errors.CANCELLED.outcome()
                call.status = "TERMINATED"
            except Exception as exc:  # noqa: BLE001 - a bug must still end the call
                call.outcome = errors.terminated(f"{type(exc).__name__}: {exc}").outcome()
                call.status = "FAILURE"
            finally:
                call.finished = time.time()
                call.done.set()
                self._kept(call)

        call.task = asyncio.create_task(background())
        return call.id

    async def get(self, call_id: str, timeout: float | None) -> SpawnedCall | None:
        call = self.calls.get(call_id)
        if call is None:
            return None
        if timeout is None or timeout > 0:
            with contextlib.suppress(asyncio.TimeoutError, TimeoutError):
                await within(call.done.wait(), timeout)
        return call

    def cancel(self, call_id: str) -> SpawnedCall | None:
        call = self.calls.get(call_id)
        if call is not None and call.task is not None and not call.task.done():
            call.task.cancel()
        return call

    async def close(self) -> None:
        tasks = [c.task for c in self.calls.values() if c.task is not None and not c.task.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
