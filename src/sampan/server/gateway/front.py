"""The gateway's client connections, served by callbacks while their requests are the common kind.

Every client connection starts here, as an `asyncio.Protocol`. A request whose head arrives whole, with
no body or a small one (up to 64 KiB) that came whole with it, is admitted (proxy auth, rate limit),
given a slot (at once, or by a callback when its pool is starting a container or queueing), sent to
the container on a protocol connection (quick.py) and answered from the callback that receives the
response: no coroutine, stream or task per request, one timer. Anything else moves the connection to
the stream path for good (`Proxy.serve_streams`): its transport goes to a StreamReader holding the
bytes not yet handled, and the stream path reads the request again from there. So a request with a
larger, chunked or still arriving body, a WebSocket, a sessioned server, a result URL, a malformed
head (the stream path answers it), pipelined bytes: all take the one path that has always served them.

An exchange that turns out to need streams halfway (a streamed or large response, the redirect window
passing) moves with it: the stream path finishes it (`Proxy.finish_quick`, `Proxy._hand_off`) and then
serves the connection's next requests.

Longer than 400 lines because one connection's state machine (the head, the slot, the exchange, the
moves to the stream path) is read in one place, as proxy.py reads one request's.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from ...backends.base import ContainerStartError
from ..pool import AtCapacity, PoolClosed, QueueFull
from . import http, quick
from .calls import call_id_from_query
from .errors import HEAD_TIMEOUT, INCOMPLETE_HEAD, TERMINATED, TIMED_OUT, TOO_MANY_CONNECTIONS, GatewayError, render
from .upstream import MAX_HEAD, Upstream, UpstreamFailed, response_head

QUICK_BODY = 64 * 1024  # a request body up to this, already here whole, is sent along on the quick path

if TYPE_CHECKING:
    from ..pool import Pool, PoolContainer
    from .proxy import Proxy, _Meter


class _Exchange:
    """One request on the quick path."""

    __slots__ = ("head", "raw", "endpoint", "call_id", "request", "pool", "pc", "meter", "started", "conn",
                 "waiter", "timer", "connecting", "queued")

    def __init__(self, head: http.RequestHead, raw: bytes, endpoint: Any, call_id: str, request: bytes, pool: Pool,
                 pc: PoolContainer | None, meter: _Meter | None, started: float) -> None:
        self.head = head
        self.raw = raw  # the head as the client sent it, for the stream path if the container is gone
        self.endpoint = endpoint
        self.call_id = call_id
        self.request = request
        self.pool = pool
        self.pc = pc
        self.meter = meter
        self.started = started
        self.conn: quick.QuickUpstream | None = None
        self.waiter: asyncio.Future[quick.Outcome] | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.connecting: asyncio.Task[Any] | None = None
        self.queued: asyncio.Future[PoolContainer] | None = None  # waiting for a slot (a cold start, a queue)


class ClientConnection(asyncio.Protocol):
    """One client connection, until it closes or moves to the stream path."""

    def __init__(self, proxy: Proxy, fixed: str | None) -> None:
        self.proxy = proxy
        self.fixed = fixed  # a per-endpoint port's subdomain
        self.loop = asyncio.get_running_loop()
        self.transport: Any = None  # uvloop's transports are not asyncio's classes
        self.client_ip = "127.0.0.1"
        self.buffer = bytearray()
        self.exchange: _Exchange | None = None
        self.idle_timer: asyncio.TimerHandle | None = None
        self.closed = False
        self.moved = False
        self.eof = False
        self.writing_paused = False  # the client does not read: no next request until it does
        self.reading_paused = False

    # -- the protocol ---------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.client_ip = peer[0] if peer else "127.0.0.1"
        proxy = self.proxy
        proxy.clients.add(self)
        if len(proxy.connections) + len(proxy.clients) > proxy.limits.max_connections:
            # Idle or hostile connections must not take every endpoint down: new ones are refused.
            self.transport.write(render(503, TOO_MANY_CONNECTIONS, close=True))
            self.transport.close()
            return
        self._wait_for_head()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.exchange is not None or self.writing_paused:
            # Bytes during an exchange (the next request, pipelined): read once this one is done.
            if len(self.buffer) > MAX_HEAD and not self.reading_paused:
                self.reading_paused = True
                self.transport.pause_reading()
            return
        self._next()

    def eof_received(self) -> bool:
        self.eof = True
        if self.exchange is None:
            self._next()  # a whole request before the end is still answered; nothing more is
            if self.exchange is None and not self.moved and not self.closed:
                if self.buffer.strip():  # the client ended in the middle of a head
                    self.transport.write(render(400, INCOMPLETE_HEAD, close=True))
                self.transport.close()
        return True  # half-closed: the response can still be written

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.proxy.clients.discard(self)
        self._cancel_idle_timer()
        ex = self.exchange
        if ex is not None and ex.queued is not None:  # left while waiting for a slot
            ex.pool.abandon(ex.queued)
            ex.queued = None
            self._done(ex, 499, 0, keep=False)
        elif ex is not None:  # the client left mid-exchange: closing the container's connection tells the app
            self._drop_upstream(ex)
            self._done(ex, 499, 0, keep=False)

    def pause_writing(self) -> None:
        self.writing_paused = True

    def resume_writing(self) -> None:
        self.writing_paused = False
        if self.exchange is None and not self.closed and not self.moved:
            self._next()

    # -- between requests -----------------------------------------------------------------------
    def _wait_for_head(self) -> None:
        self._cancel_idle_timer()
        self.idle_timer = self.loop.call_later(self.proxy.limits.head_timeout, self._head_timeout)

    def _cancel_idle_timer(self) -> None:
        if self.idle_timer is not None:
            self.idle_timer.cancel()
            self.idle_timer = None

    def _head_timeout(self) -> None:
        self.idle_timer = None
        if self.exchange is not None or self.closed or self.moved:
            return
        if self.buffer.strip():  # part of a head arrived, too slowly (slowloris)
            self.transport.write(render(408, HEAD_TIMEOUT, close=True))
        self.transport.close()  # else an idle keep-alive connection: closed quietly

    def _next(self) -> None:
        """Start the request in the buffer, if it is whole and of the common kind; else move on."""
        if self.closed or self.moved:
            return
        buffer = self.buffer
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(buffer) > MAX_HEAD:
                self._move()  # the stream path answers 431
            return
        head_end = end + 4
        if head_end > MAX_HEAD:
            self._move()  # a head too large: the stream path answers 431
            return
        raw = bytes(buffer)
        try:
            head = http.parse_request_head(raw[:head_end])
        except GatewayError:
            self._move()  # the stream path parses it again and answers the error
            return
        # A body comes along only when it is small and already here whole, with nothing after it (a body
        # still arriving, pipelined requests, a chunked body, Expect: 100-continue: the stream path).
        length = head.length if head.framing == http.LENGTH else 0
        if (len(raw) != head_end + length or head.framing == http.CHUNKED or length > QUICK_BODY
                or length > self.proxy.limits.max_body or (length and head.expect_continue)):
            self._move()
            return
        if not self._start(head, raw, raw[head_end:]):
            self._move()

    def _move(self, first: Any = None, counted: bool = False) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """Hand the connection to the stream path, with the bytes not handled yet (`counted`: the first
        of them is a request admitted here already)."""
        self.moved = True
        self.proxy.clients.discard(self)
        self._cancel_idle_timer()
        loop = self.loop
        reader = asyncio.StreamReader(limit=MAX_HEAD, loop=loop)
        protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
        self.transport.set_protocol(protocol)
        protocol.connection_made(self.transport)
        if self.writing_paused:
            protocol.pause_writing()  # the transport will call resume_writing on its new protocol
        if self.buffer:
            reader.feed_data(bytes(self.buffer))
            self.buffer.clear()
        if self.eof:
            reader.feed_eof()
        if self.reading_paused:
            self.transport.resume_reading()  # the reader pauses it again itself when its buffer is full
        writer = asyncio.StreamWriter(self.transport, protocol, reader, loop)
        if first is not False:  # False: the caller starts the stream path itself
            self.proxy.spawn(self.proxy.serve_streams(reader, writer, self.fixed, first, counted=counted))
        return reader, writer

    # -- one request ----------------------------------------------------------------------------
    def _start(self, head: http.RequestHead, raw: bytes, body: bytes) -> bool:
        """Proxy `head` (and its whole `body`) here if it is of the common kind; False: the stream path."""
        proxy = self.proxy
        if (head.websocket or head.path.startswith(b"/_modal/sessions/")
                or call_id_from_query(head.query) is not None):
            return False
        try:
            subdomain = self.fixed if self.fixed is not None else proxy.routes.subdomain_for_host(head.host)
            endpoint = proxy.routes.resolve(subdomain)
            if getattr(endpoint, "sessioned", False):
                return False
            pool = endpoint.pool_for(head.query)
        except GatewayError:
            return False
        pc = pool.free_slot()  # None: wait for one below, once admitted
        self._cancel_idle_timer()
        self.buffer.clear()
        call_id = proxy.new_call_id()
        meter = proxy.new_meter()
        started = proxy.clock()
        try:
            endpoint = proxy._admit(head, self.fixed, meter)
        except GatewayError as exc:  # proxy auth or the rate limit: answered here, like any refusal
            self._answer(head, exc, call_id, meter, started)
            return True
        request = http.upstream_request(head, self.client_ip, proxy.scheme, call_id) + body
        ex = self.exchange = _Exchange(head, raw, endpoint, call_id, request, pool, pc, meter, started)
        if pc is not None:
            self._go(ex, pool.take(pc))
            return True
        try:
            ex.queued = pool.enqueue()
        except PoolClosed:  # a reload swapped the route while we looked: the stream path looks again
            self._back_to_streams(ex)
            return True
        except (ContainerStartError, QueueFull, AtCapacity) as exc:
            self.exchange = None
            self._answer(head, proxy.acquire_error(exc, endpoint), call_id, meter, started)
            return True
        ex.queued.add_done_callback(self._slot)
        return True

    def _slot(self, fut: asyncio.Future[PoolContainer]) -> None:
        """A queued request's slot came (or its pool failed it)."""
        ex = self.exchange
        if ex is None or fut is not ex.queued or fut.cancelled():
            return
        ex.queued = None
        exc = fut.exception()
        if isinstance(exc, PoolClosed):
            self._back_to_streams(ex)
        elif exc is not None:
            self.exchange = None
            assert isinstance(exc, Exception)
            self._answer(ex.head, self.proxy.acquire_error(exc, ex.endpoint), ex.call_id, ex.meter, ex.started)
        else:
            if ex.meter is not None:
                ex.meter.queued = self.proxy.clock() - ex.started
            self._go(ex, fut.result())

    def _go(self, ex: _Exchange, pc: PoolContainer) -> None:
        ex.pc = pc
        if ex.meter is not None:
            ex.meter.pc = pc
        conn = quick.take(pc.conns.quick)
        if conn is None:
            self._connect(ex)
        else:
            self._send(ex, conn)

    def _back_to_streams(self, ex: _Exchange) -> None:
        """The request as it came, to the stream path (which checks its auth against the route again,
        but takes no second count against the rate limit)."""
        self.exchange = None
        if not self.closed:
            self.buffer[:0] = ex.raw
            self._move(counted=True)

    def _answer(self, head: http.RequestHead, exc: GatewayError, call_id: str, meter: _Meter | None,
                started: float) -> None:
        keep = head.keep_alive and not self.eof
        self.transport.write(render(exc.status, exc.body, close=not keep,
                                    extra=[(b"modal-function-call-id", call_id.encode())]))
        if meter is not None:
            meter.status = exc.status
            if meter.endpoint is not None:
                self.proxy._log(head, meter, started, self.client_ip)
        self._after(keep)

    def _connect(self, ex: _Exchange) -> None:
        async def connect() -> None:
            assert ex.pc is not None
            try:
                conn = await quick.connect(ex.pc)
            except UpstreamFailed:
                conn = None
            ex.connecting = None
            if self.exchange is not ex:
                if conn is not None:
                    conn.close()
                return
            if conn is None:
                self._container_gone(ex)
            else:
                self._send(ex, conn)

        ex.connecting = self.loop.create_task(connect())

    def _container_gone(self, ex: _Exchange) -> None:
        """A container that refuses connections is dead and the request never reached it: out of
        rotation, and the request goes to the stream path, which finds another container."""
        self._stop_timer(ex)
        assert ex.pc is not None
        ex.pool.recycle(ex.pc)
        ex.pool.release(ex.pc)
        self._back_to_streams(ex)

    def _send(self, ex: _Exchange, conn: quick.QuickUpstream) -> None:
        ex.conn = conn
        ex.waiter = waiter = conn.send(ex.request, ex.head.method)
        waiter.add_done_callback(self._outcome)
        if ex.timer is None:
            limits = self.proxy.limits
            if ex.pool.timeout < limits.redirect_after:
                ex.timer = self.loop.call_later(ex.pool.timeout, self._timed_out)
            else:
                ex.timer = self.loop.call_later(limits.redirect_after, self._redirect)

    def _outcome(self, waiter: asyncio.Future[quick.Outcome]) -> None:
        ex = self.exchange
        if ex is None or waiter is not ex.waiter or waiter.cancelled():
            return  # given up on by whoever cancelled it
        conn = ex.conn
        assert conn is not None
        exc = waiter.exception()
        if exc is not None:
            conn.close()
            if isinstance(exc, UpstreamFailed) and conn.reused:
                self._connect(ex)  # the container had closed this idle connection: send it again, freshly
                return
            status, text = (exc.status, exc.body) if isinstance(exc, GatewayError) else (500, TERMINATED)
            self._stop_timer(ex)
            self.transport.write(render(status, text, close=True))
            self._done(ex, status, 0, keep=False)
            return
        response, body = waiter.result()
        if body is None:  # a streamed response, a large one or a 101: the stream path finishes it
            self._stop_timer(ex)
            self._finish_on_streams(ex, response)
            return
        self._stop_timer(ex)
        keep = ex.head.keep_alive and not self.eof
        data = http.client_response(response, keep, ex.call_id) + body
        self.transport.write(data)
        assert ex.pc is not None
        conn.give_back(response.keep_alive and ex.pc.state == "ready")
        self._done(ex, response.status, len(data), keep)

    # -- the ends of an exchange ----------------------------------------------------------------
    def _stop_timer(self, ex: _Exchange) -> None:
        if ex.timer is not None:
            ex.timer.cancel()
            ex.timer = None

    def _drop_upstream(self, ex: _Exchange) -> None:
        self._stop_timer(ex)
        if ex.connecting is not None:
            ex.connecting.cancel()
        if ex.waiter is not None and not ex.waiter.done():
            ex.waiter.cancel()
        if ex.conn is not None:
            ex.conn.close()

    def _done(self, ex: _Exchange, status: int, sent: int, keep: bool, release: bool = True) -> None:
        self.exchange = None
        if release and ex.pc is not None:
            ex.pool.release(ex.pc)
        meter = ex.meter
        if meter is not None:
            meter.status, meter.sent = status, sent
            self.proxy._log(ex.head, meter, ex.started, self.client_ip)
        self._after(keep)

    def _after(self, keep: bool) -> None:
        if self.closed:
            return
        if not keep or (self.eof and not self.buffer):
            self.transport.close()
            return
        self._wait_for_head()
        if self.buffer and not self.writing_paused:
            if self.reading_paused:
                self.reading_paused = False
                self.transport.resume_reading()
            self._next()

    def _timed_out(self) -> None:
        """The function ran past its `timeout`: answer, and recycle the container, since the work inside
        it may not be cancellable."""
        ex = self.exchange
        if ex is None:
            return
        ex.timer = None
        self._drop_upstream(ex)
        assert ex.pc is not None
        ex.pool.recycle(ex.pc)
        self.transport.write(render(500, TIMED_OUT, close=True,
                                    extra=[(b"modal-function-call-id", ex.call_id.encode())]))
        self._done(ex, 500, 0, keep=False)

    def _redirect(self) -> None:
        """Past the redirect window: the stream path answers 303 and finishes the call in the background."""
        ex = self.exchange
        if ex is None:
            return
        ex.timer = None
        if ex.conn is None or ex.waiter is None:  # still connecting: wait for the connection first
            ex.timer = self.loop.call_later(0.05, self._redirect)
            return
        ex.waiter.cancel()
        upstream = Upstream(ex.pc)
        upstream.reader, upstream.writer = ex.conn.detach(from_head=False)
        self.exchange = None
        reader, writer = self._move(first=False)
        exchange = self.proxy.exchange_for(ex, reader, writer, self.client_ip)
        self.proxy._hand_off(exchange, upstream, asyncio.ensure_future(response_head(upstream, ex.head.method)))
        if ex.meter is not None:
            ex.meter.status, ex.meter.sent = 303, exchange.writer.sent
            self.proxy._log(ex.head, ex.meter, ex.started, self.client_ip)
        self.proxy.spawn(self.proxy.serve_streams(reader, writer, self.fixed,
                                                  _value(ex.head.keep_alive and not self.eof), exchange.closed))

    def _finish_on_streams(self, ex: _Exchange, response: http.ResponseHead) -> None:
        assert ex.conn is not None
        upstream = Upstream(ex.pc)
        upstream.reader, upstream.writer = ex.conn.detach(from_head=True)
        self.exchange = None
        reader, writer = self._move(first=False)
        exchange = self.proxy.exchange_for(ex, reader, writer, self.client_ip)
        self.proxy.spawn(self.proxy.serve_streams(
            reader, writer, self.fixed, self.proxy.finish_quick(exchange, upstream, response, ex.meter, ex.started),
            exchange.closed))


async def _value(keep: bool) -> bool:
    return keep
