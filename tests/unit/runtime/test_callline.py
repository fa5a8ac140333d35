"""The call line (runtime/callline.py, server/callline.py): both ends over a real Unix socket, real threads."""

from __future__ import annotations

import asyncio
import contextlib
import os
import pickle
import socket
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable
from types import SimpleNamespace
from typing import Any

import pytest

from sampan import callwire
from sampan.callcontext import current_call_id
from sampan.runtime.callline import CallLine
from sampan.server import callline
from sampan.server.callline import IdleLines, LineConnection, LineFailed


def _args(*args: Any, **kwargs: Any) -> bytes:
    return pickle.dumps((args, kwargs))


def _value(outcome: bytes) -> Any:
    assert outcome[:1] == callwire.VALUE, outcome[:200]
    return pickle.loads(outcome[1:])


@contextlib.asynccontextmanager
async def _line(target: Callable[..., Any], max_connections: int = 64) -> AsyncIterator[tuple[Any, CallLine]]:
    """A container's call line serving `target` (on this test's loop, for async functions), and a
    PoolContainer-like handle the server's side calls it through."""
    directory = tempfile.mkdtemp()
    path = os.path.join(directory, "c.sock.calls")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)
    sock.listen(64)
    line = CallLine(sock, target, asyncio.get_running_loop(), max_connections)
    line.start()
    pc = SimpleNamespace(state="ready", lines=IdleLines(), backend=SimpleNamespace(calls_address=path))
    try:
        yield pc, line
    finally:
        pc.lines.close()
        await asyncio.to_thread(line.close, 5)
        with contextlib.suppress(OSError):
            os.unlink(path)
        os.rmdir(directory)


def test_a_sync_function_answers_on_one_kept_connection_under_its_call_id() -> None:
    seen: list[tuple[str | None, str]] = []

    def fn(x: int, y: int = 0) -> int:
        seen.append((current_call_id(), threading.current_thread().name))
        return x * 10 + y

    async def main() -> None:
        async with _line(fn) as (pc, _):
            assert _value(await callline.call(pc, "fc-1", _args(4, y=2))) == 42
            assert _value(await callline.call(pc, "fc-2", _args(5))) == 50
            assert len(pc.lines) == 1, "the connection is kept for the next call"

    asyncio.run(main())
    assert [s[0] for s in seen] == ["fc-1", "fc-2"]
    assert seen[0][1] == seen[1][1] == "sampan-input", "the function runs in the connection's own thread"


def test_an_exception_is_a_failure_outcome_and_the_line_goes_on() -> None:
    def fn(x: int) -> int:
        if x < 0:
            raise ValueError(f"negative: {x}")
        return x

    async def main() -> None:
        async with _line(fn) as (pc, _):
            outcome = await callline.call(pc, "fc-1", _args(-1))
            assert outcome[:1] == callwire.FAILURE
            exc, text, _ = pickle.loads(outcome[1:])
            assert isinstance(exc, ValueError) and "negative: -1" in text
            assert _value(await callline.call(pc, "fc-2", _args(3))) == 3

    asyncio.run(main())


def test_concurrent_calls_each_take_a_connection_and_run_at_once() -> None:
    gate = threading.Barrier(4, timeout=10)

    def fn(i: int) -> int:
        gate.wait()  # all four must be running together, or this times out
        return i

    async def main() -> None:
        async with _line(fn) as (pc, line):
            results = await asyncio.gather(*(callline.call(pc, f"fc-{i}", _args(i)) for i in range(4)))
            assert [_value(r) for r in results] == [0, 1, 2, 3]
            assert len(pc.lines) == 4 and line.connections == 4

    asyncio.run(main())


def test_an_async_function_runs_on_the_loop_under_its_call_id() -> None:
    async def fn(x: int) -> tuple[int, str | None, bool]:
        await asyncio.sleep(0.01)
        return x + 1, current_call_id(), threading.current_thread() is threading.main_thread()

    async def main() -> None:
        async with _line(fn) as (pc, _):
            assert _value(await callline.call(pc, "fc-a", _args(1))) == (2, "fc-a", True)

    asyncio.run(main())


def test_a_dropped_call_cancels_an_async_function() -> None:
    """`FunctionCall.cancel()` (or a timeout) closes the server's connection: the coroutine is cancelled."""
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def fn() -> None:
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async def main() -> None:
        async with _line(fn) as (pc, line):
            task = asyncio.create_task(callline.call(pc, "fc-1", _args()))
            await asyncio.wait_for(started.wait(), 5)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await asyncio.wait_for(cancelled.wait(), 5)
            assert len(pc.lines) == 0, "a cancelled call's connection is never reused"
            deadline = time.monotonic() + 5
            while line.busy and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            assert line.busy == 0

    asyncio.run(main())


def _held(result: str) -> tuple[threading.Event, Callable[[], str]]:
    """A function that returns `result` once the event is set (at most 10 s): a call still running."""
    release = threading.Event()

    def fn() -> str:
        release.wait(10)
        return result

    return release, fn


def test_a_call_past_its_timeout_raises_and_its_connection_is_dropped() -> None:
    release, fn = _held("late")

    async def main() -> None:
        async with _line(fn) as (pc, _):
            with pytest.raises(TimeoutError):
                await callline.call(pc, "fc-1", _args(), timeout=0.1)
            assert len(pc.lines) == 0, "a timed-out call's connection is never reused"
            release.set()
            assert _value(await callline.call(pc, "fc-2", _args(), timeout=5)) == "late"

    asyncio.run(main())


def test_a_large_result_arrives_whole() -> None:
    async def main() -> None:
        async with _line(lambda n: b"x" * n) as (pc, _):
            assert _value(await callline.call(pc, "fc-1", _args(8 << 20))) == b"x" * (8 << 20)

    asyncio.run(main())


def test_connections_past_the_bound_are_refused() -> None:
    async def main() -> None:
        async with _line(lambda: 1, max_connections=1) as (pc, line):
            first = await callline.open_line(pc.backend.calls_address)
            assert _value(await first.exchange(callwire.frame(callwire.CALL, b"fc-1\0" + _args()))) == 1
            second = await callline.open_line(pc.backend.calls_address)
            with pytest.raises(LineFailed):
                await asyncio.wait_for(second.exchange(callwire.frame(callwire.CALL, b"fc-2\0" + _args())), 5)
            first.close()
            assert line.connections <= 1

    asyncio.run(main())


def test_close_waits_for_running_calls() -> None:
    release, fn = _held("done")

    async def main() -> None:
        async with _line(fn) as (pc, line):
            task = asyncio.create_task(callline.call(pc, "fc-1", _args()))
            while line.busy == 0:
                await asyncio.sleep(0.005)
            assert await asyncio.to_thread(line.close, 0.05) is False, "a call is still running"
            release.set()
            assert _value(await task) == "done", "a call running at close still answers"
            assert await asyncio.to_thread(line.close, 5) is True

    asyncio.run(main())


# -- the server's end against containers that misbehave ------------------------------------------
async def _container(answer: Callable[[socket.socket], None]) -> tuple[str, threading.Thread]:
    directory = tempfile.mkdtemp()
    path = os.path.join(directory, "bad.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)
    sock.listen(1)

    def serve() -> None:
        conn, _ = sock.accept()
        with conn, sock:
            answer(conn)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return path, thread


def _read_call(conn: socket.socket) -> bytes:
    stream = conn.makefile("rb")
    n = int.from_bytes(stream.read(4), "big")
    return stream.read(n)


@pytest.mark.parametrize("name, answer", [
    ("closes before answering", lambda conn: _read_call(conn)),
    ("closes in the middle of the outcome", lambda conn: (_read_call(conn), conn.sendall(b"\0\0\0\x10Oabc"))),
    ("announces an impossible size", lambda conn: (_read_call(conn), conn.sendall(b"\xff\xff\xff\xffO"))),
    ("sends more than the outcome", lambda conn: (_read_call(conn), conn.sendall(b"\0\0\0\x02Ox" + b"junk"))),
])
def test_a_broken_answer_fails_the_call_and_the_connection(name: str, answer: Callable[[socket.socket], None]) -> None:
    async def main() -> None:
        path, thread = await _container(answer)
        line = await callline.open_line(path)
        with pytest.raises(LineFailed):
            await asyncio.wait_for(line.exchange(callwire.frame(callwire.CALL, b"fc-1\0" + _args())), 5)
        assert line.broken, name
        lines = IdleLines()
        lines.put(line)
        assert lines.take() is None, "a broken connection is never handed out again"
        thread.join(5)

    asyncio.run(main())


def test_an_outcome_in_pieces_is_put_together() -> None:
    outcome = callwire.VALUE + pickle.dumps(list(range(1000)))

    def answer(conn: socket.socket) -> None:
        _read_call(conn)
        data = callwire.outcome_frame(outcome)
        for i in range(0, len(data), 7):  # the head itself split across reads
            conn.sendall(data[i:i + 7])
            time.sleep(0.0005)

    async def main() -> None:
        path, thread = await _container(answer)
        line = await callline.open_line(path)
        assert isinstance(line, LineConnection)
        got = await asyncio.wait_for(line.exchange(callwire.frame(callwire.CALL, b"fc\0" + _args())), 5)
        assert bytes(got) == outcome
        thread.join(5)

    asyncio.run(main())
