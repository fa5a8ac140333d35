"""A container's call line: single calls (`.remote()`, `.spawn()`) on a socket of their own.

Through the call app (kinds.call_app) a call crosses uvicorn's request cycle, the proxy-headers
middleware, the event loop and a hop to a worker thread and back: about two thirds of the
container's CPU for a quick function. Here the server keeps connections to the container, one
call at a time on each, and each connection has a thread of its own that reads a call frame, runs
the function right there (it is the input's worker thread, as the call app's pool thread was) and
writes the outcome frame. An async function's coroutine runs on the container's loop.

    server ── C frame: call id, NUL, pickled (args, kwargs) ──► thread of this connection
           ◄── outcome frame (callwire: O value, E failure) ──  (runs the function)

The server opens a connection only when none of the container's is idle, and sends no more calls
at once than `max_inputs`: so the threads here are as many as the call app's pool would have
been. Generators, `@modal.batched` functions and `.map` batches stay on the call app.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import socket
import threading
from collections.abc import Callable
from typing import Any

from .. import callwire
from .kinds import run_input

MAX_CALL = 1 << 30  # the largest call frame read (the server's own bound on arguments is lower)
DROP_CHECK_S = 0.05  # how often a running async call looks whether the server dropped it


def _read_exactly(stream: Any, length: int) -> bytes | None:
    """`length` bytes from a buffered socket file, or None at the end of the stream."""
    data = stream.read(length)
    return data if data is not None and len(data) == length else None


def _dropped(conn: socket.socket) -> bool:
    """Whether the server closed this connection (a cancelled call, or one past its timeout)."""
    try:
        return conn.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except (BlockingIOError, InterruptedError):
        return False
    except OSError:
        return True


def _until_done_or_dropped(future: concurrent.futures.Future[Any], conn: socket.socket) -> Any:
    """An async function's result; its task is cancelled when the server drops the call, as the call app's
    was when its request's connection closed (`FunctionCall.cancel()` reaches the coroutine)."""
    while True:
        try:
            return future.result(timeout=DROP_CHECK_S)
        except concurrent.futures.TimeoutError:
            if future.done():  # the function's own TimeoutError
                raise
            if _dropped(conn):
                future.cancel()
                return future.result()


class CallLine:
    """The listening socket and its connections' threads. `busy` counts calls being run, for the drain."""

    def __init__(self, sock: socket.socket, target: Callable[..., Any], loop: asyncio.AbstractEventLoop,
                 max_connections: int) -> None:
        self.sock = sock
        self.target = target
        self.loop = loop
        self.max_connections = max_connections
        self.connections = 0
        self.busy = 0
        self.closing = False
        self._idle = threading.Condition()

    def start(self) -> None:
        threading.Thread(target=self._accept, name="sampan-call-line", daemon=True).start()

    def _accept(self) -> None:
        while not self.closing:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return  # closed: the container is stopping
            with self._idle:
                refused = self.closing or self.connections >= self.max_connections
                if not refused:
                    self.connections += 1
            if refused:  # more than the server ever opens: a leak, never a reason to grow without bound
                conn.close()
                continue
            if conn.family != socket.AF_UNIX:  # a Ray node's TCP: the outcome leaves at once
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=self._serve, args=(conn,), name="sampan-input", daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        stream = conn.makefile("rb")
        try:
            while not self.closing:
                head = _read_exactly(stream, 4)
                if head is None:
                    return
                length = int.from_bytes(head, "big")
                body = _read_exactly(stream, length) if 0 < length <= MAX_CALL else None
                if body is None or body[:1] != callwire.CALL or b"\0" not in body:
                    return  # not the server's protocol: drop the connection
                call_id, _, payload = body[1:].partition(b"\0")
                with self._idle:
                    self.busy += 1
                try:
                    outcome = run_input(self.target, call_id.decode("ascii", "replace"), payload, self.loop,
                                        lambda future: _until_done_or_dropped(future, conn))
                    conn.sendall(callwire.outcome_frame(outcome))
                finally:
                    with self._idle:
                        self.busy -= 1
                        self._idle.notify_all()
        except OSError:
            return
        finally:
            with self._idle:
                self.connections -= 1
            stream.close()
            conn.close()

    def close(self, grace: float) -> bool:
        """Stop taking calls, then wait up to `grace` seconds for those running; whether they all ended."""
        self.closing = True
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread
        self.sock.close()
        with self._idle:
            return self._idle.wait_for(lambda: self.busy == 0, grace)
