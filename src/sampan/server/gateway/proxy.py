"""The gateway's stream path: one coroutine per client connection, streaming in both directions.

Connections start on the quick path (front.py), which serves the common body-less request by callbacks
and hands everything else here (`serve_streams`), together with any exchange it began that turned out to
need streams (`finish_quick`, the 303 hand-off). For each request on a keep-alive connection:

    read and parse the head, within `head_timeout`           (gateway/http.py)
    answer it ourselves when it is a result-URL fetch         (gateway/calls.py)
    rate limit, resolve the endpoint and its pool             (ratelimit.py, routing.py)
    acquire a container slot                                  (server/pool.py: waits during a cold start)
    send the head; stream the body to the container while waiting for the response head
    stream the response back; or, past the redirect window, answer 303 and finish in the background
    release the slot

WebSocket upgrades are proxied after the 101 (gateway/websocket.py), holding the slot for the
whole connection. Bodies are never held whole in memory (gateway/bodies.py). No exception of one
connection reaches the server loop.

Longer than 400 lines because one request's path through the gateway (limits, routing, the 303 window,
retries, streaming, WebSockets, accounting) is read in one place.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from ...backends.base import ContainerStartError
from ...config import ProxyLimits
from ..pool import AtCapacity, Pool, PoolClosed, PoolContainer, QueueFull, SessionGone
from ..requests import Request
from . import auth, http, websocket
from .auth import proxy_credentials
from .bodies import CHUNK, BodyLimits, copy_body, within
from .calls import CallStore, PendingCall, call_id_from_query, redirect_target
from .errors import (
    AT_CAPACITY,
    BAD_REDIRECT_METHOD,
    BODY_TIMEOUT,
    BODY_TOO_LARGE,
    ENDPOINT_REPLACED,
    HEAD_TIMEOUT,
    HEADERS_TOO_LARGE,
    INCOMPLETE_HEAD,
    INVALID_FUNCTION_CALL,
    RATE_LIMITED,
    SESSION_GONE,
    SESSION_REQUIRED,
    TERMINATED,
    TIMED_OUT,
    TOO_MANY_CONNECTIONS,
    GatewayError,
    container_failed,
    queue_full,
    render,
    terminated,
)
from .ratelimit import RateLimiter
from .routing import RouteTable
from .upstream import ContainerGone, Upstream, UpstreamFailed, response_head

REPLAY_MAX = 1 << 20  # request bodies up to this are read before forwarding, so they can be sent again


SESSIONS_PATH = b"/_modal/sessions/"


def session_token(head: http.RequestHead) -> str | None:
    """The session token of `Modal-Authorization: Bearer <token>`, or None."""
    for name, value in head.headers:
        if name == b"modal-authorization" and value[:7].lower() == b"bearer ":
            return value[7:].strip().decode("latin-1") or None
    return None


def new_call_id() -> str:
    return "fc-" + secrets.token_hex(12)


class _Progress:
    """The client's writer, noting whether the response head has gone out (then no error page can), its
    status and how many bytes went out (for the request log)."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.raw = writer
        self.started = False
        self.status = 0
        self.sent = 0

    def write(self, data: bytes) -> None:
        if not self.started:
            self.started = True
            if data[:5] == b"HTTP/" and data[9:12].isdigit():
                self.status = int(data[9:12])
        self.sent += len(data)
        self.raw.write(data)

    async def drain(self) -> None:
        await self.raw.drain()


class _Meter:
    """What the request log learns of one request on its way (server/requests.py)."""

    __slots__ = ("endpoint", "pc", "queued", "status", "sent")

    def __init__(self) -> None:
        self.endpoint: Any = None
        self.pc: PoolContainer | None = None
        self.queued = 0.0
        self.status = 0
        self.sent = 0


def _no_body() -> asyncio.Future[None]:
    """What a body copy of a request without a body would be: done already (no task to schedule)."""
    fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    fut.set_result(None)
    return fut


async def _settle(task: asyncio.Future[Any]) -> None:
    """Cancel a task that is still running and wait for it to end."""
    if not task.done():
        task.cancel()
    with contextlib.suppress(BaseException):
        await task


@dataclass
class Exchange:
    """One request on its way through the gateway."""

    head: http.RequestHead
    reader: asyncio.StreamReader
    writer: _Progress
    client_ip: str
    call_id: str
    pool: Pool
    pc: PoolContainer
    closed: asyncio.Future[Any]  # resolves when the client's connection is lost
    owner: str = ""  # "<workspace>/<function tag>" of the endpoint
    handed_off: bool = False  # the response is finished in the background (303 chain)


class Proxy:
    """Serves client connections for a route table; `fixed` pins a per-endpoint port to one subdomain."""

    def __init__(self, routes: RouteTable, scheme: str = "http", workspace: str = "",
                 limits: ProxyLimits | None = None, clock: Callable[[], float] = time.monotonic,
                 verify_proxy_token: Callable[[str, str, str], bool] | None = None,
                 request_log: Callable[[Request], None] | None = None) -> None:
        self.routes = routes
        self.request_log = request_log  # one record per routed request (server/requests.py); None: off
        self.scheme = scheme
        self.workspace = workspace
        self.limits = limits or ProxyLimits()
        self.clock = clock
        self.limiter = RateLimiter(self.limits.rate, self.limits.burst_seconds)
        self.calls = CallStore()
        # (workspace, token id, token secret) -> valid?; None: no store, so no token is valid.
        self.verify_proxy_token = verify_proxy_token
        self.connections: set[asyncio.Task[Any]] = set()  # client connections on the stream path
        self.clients: set[Any] = set()  # client connections on the quick path (front.py)
        self.background: set[asyncio.Task[Any]] = set()

    async def serve_streams(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, fixed: str | None,
                            first: Awaitable[bool] | None = None, closed: asyncio.Future[Any] | None = None,
                            counted: bool = False) -> None:
        """A client connection on the stream path. `first`: the end of an exchange the quick path began,
        after which the connection serves its next requests here; None: a connection from its start.
        `closed`: the connection's close watcher, where that exchange made one (see `_connection`).
        `counted`: the first request to be read was admitted on the quick path, which gave it back."""
        task = asyncio.current_task()
        assert task is not None
        self.connections.add(task)
        try:
            if first is not None:
                if not await first:
                    return
            elif len(self.connections) + len(self.clients) > self.limits.max_connections:
                # Idle or hostile connections must not take every endpoint down: new ones are refused.
                writer.write(render(503, TOO_MANY_CONNECTIONS, close=True))
                await writer.drain()
                return
            await self._connection(reader, writer, fixed, closed, counted)
        except (ConnectionError, asyncio.IncompleteReadError, OSError, asyncio.CancelledError):
            pass  # the client went away, or the gateway is shutting down
        except Exception as exc:  # noqa: BLE001 - one connection's bug must not reach the server loop
            print(f"sampan gateway: unexpected {type(exc).__name__}: {exc}", file=sys.stderr)
        finally:
            if closed is not None:
                closed.cancel()
            self.connections.discard(task)
            writer.close()

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run a connection's stream path (it registers itself in `connections` when it starts)."""
        asyncio.get_running_loop().create_task(coro)

    def new_call_id(self) -> str:
        return new_call_id()

    def new_meter(self) -> _Meter | None:
        return _Meter() if self.request_log is not None else None

    def exchange_for(self, quick_ex: Any, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                     client_ip: str) -> Exchange:
        """The stream path's Exchange for one the quick path began (front.py)."""
        closed = asyncio.ensure_future(writer.wait_closed())
        return Exchange(quick_ex.head, reader, _Progress(writer), client_ip, quick_ex.call_id, quick_ex.pool,
                        quick_ex.pc, closed, owner=self._owner(quick_ex.endpoint))

    async def finish_quick(self, ex: Exchange, upstream: Upstream, response: http.ResponseHead,
                           meter: _Meter | None, started: float) -> bool:
        """The rest of an exchange the quick path began, whose response body is streamed: as `_exchange`
        would, within what is left of the function's timeout; the slot is released and the request logged."""
        try:
            remaining = max(0.1, ex.pool.timeout - (self.clock() - started))
            try:
                return await within(self._respond(ex, upstream, response, _no_body()), remaining)
            except asyncio.TimeoutError:
                ex.pool.recycle(ex.pc)
                if not ex.writer.started:
                    ex.writer.write(render(500, TIMED_OUT, close=True,
                                           extra=[(b"modal-function-call-id", ex.call_id.encode())]))
                return False
        finally:  # ex.closed stays: the connection's watcher, cancelled when the connection ends
            ex.pool.release(ex.pc)
            if meter is not None:
                meter.status = ex.writer.status or (500 if ex.writer.started else 499)
                meter.sent = ex.writer.sent
                self._log(ex.head, meter, started, ex.client_ip)

    async def _read_head(self, reader: asyncio.StreamReader) -> bytes | None:
        try:
            return await within(reader.readuntil(b"\r\n\r\n"), self.limits.head_timeout)
        except asyncio.IncompleteReadError as exc:
            if not exc.partial.strip():
                return None
            raise GatewayError(400, INCOMPLETE_HEAD) from None
        except asyncio.LimitOverrunError:
            raise GatewayError(431, HEADERS_TOO_LARGE) from None
        except asyncio.TimeoutError:
            if getattr(reader, "_buffer", b""):  # part of a head arrived, too slowly (slowloris)
                raise GatewayError(408, HEAD_TIMEOUT) from None
            return None  # an idle keep-alive connection: close quietly

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, fixed: str | None,
                          closed: asyncio.Future[Any] | None = None, counted: bool = False) -> None:
        peer = writer.get_extra_info("peername")
        client_ip = peer[0] if peer else "127.0.0.1"
        # One watcher per connection: cancelling a task that awaits the shared close future would
        # cancel that future too, so it is created once and only cancelled when the connection ends.
        if closed is None:
            closed = asyncio.ensure_future(writer.wait_closed())
        try:
            while True:
                try:
                    data = await self._read_head(reader)
                    if data is None:
                        return
                    head = http.parse_request_head(data)
                except GatewayError as exc:
                    writer.write(render(exc.status, exc.body, close=True))
                    await writer.drain()
                    return
                if not await self._request(head, reader, writer, client_ip, fixed, closed, counted):
                    return
                counted = False
        finally:
            closed.cancel()

    # -- one request --------------------------------------------------------------------------
    async def _request(self, head: http.RequestHead, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                       client_ip: str, fixed: str | None, closed: asyncio.Future[Any], counted: bool = False) -> bool:
        """Proxy one request. Returns whether the client connection may serve another. `counted`: the quick
        path admitted this request already (see `_admit`)."""
        call_id = new_call_id()
        meter = _Meter() if self.request_log is not None else None
        started = self.clock()
        try:
            fetched = call_id_from_query(head.query)
            if fetched is not None:
                owner = self._owner(self._admit(head, fixed, meter, counted))
                progress = _Progress(writer)
                try:
                    return await self._fetch_result(head, reader, progress, fetched, owner)  # type: ignore[arg-type]
                finally:
                    if meter is not None:
                        meter.status, meter.sent = progress.status, progress.sent
            if head.framing == http.LENGTH and head.length > self.limits.max_body:
                raise GatewayError(413, BODY_TOO_LARGE.format(limit=self.limits.max_body))
            if head.path.startswith(SESSIONS_PATH):
                return await self._session_route(head, reader, writer, fixed, meter, call_id)
            for attempt in range(3):
                pc, pool, endpoint = await self._acquire(head, fixed, meter, counted or attempt > 0)
                ex = Exchange(head, reader, _Progress(writer), client_ip, call_id, pool, pc, closed,
                              owner=self._owner(endpoint))
                if meter is not None:
                    meter.pc, meter.queued = pc, self.clock() - started
                try:
                    return await self._exchange(ex)
                except ContainerGone:
                    # Nothing reached the app: the container died before the pool noticed. Take it
                    # out of rotation and send the request to another one.
                    pool.recycle(pc)
                    pool.release(pc)
                finally:
                    if meter is not None:
                        meter.status, meter.sent = ex.writer.status or (500 if ex.writer.started else 499), \
                            ex.writer.sent
            raise terminated().gateway_error()
        except GatewayError as exc:
            if meter is not None:
                meter.status = exc.status
            return await self._answer(head, reader, writer, exc, call_id)
        finally:
            if meter is not None and meter.endpoint is not None:
                self._log(head, meter, started, client_ip)

    def _log(self, head: http.RequestHead, meter: _Meter, started: float, client_ip: str) -> None:
        assert self.request_log is not None
        endpoint, pc = meter.endpoint, meter.pc
        version = getattr(endpoint, "version", None)
        now = self.clock()
        began = time.time() - (now - started)
        self.request_log(Request(
            time=began, workspace=getattr(endpoint, "workspace", self.workspace),
            app=getattr(version, "key", ""), function=endpoint.tag, method=head.method.decode("latin-1"),
            path=head.path.decode("latin-1"), status=meter.status, duration_ms=(now - started) * 1000,
            queue_ms=meter.queued * 1000, cold=pc is not None and pc.served == 1 and pc.started_at >= began,
            container=pc.id if pc is not None else "", bytes_in=head.length if head.framing == http.LENGTH else 0,
            bytes_out=meter.sent, client=client_ip))

    async def _exchange(self, ex: Exchange) -> bool:
        pool, pc, writer, call_id = ex.pool, ex.pc, ex.writer.raw, ex.call_id
        try:
            return await within(self._forward(ex), pool.timeout)
        except ContainerGone:
            ex.handed_off = True  # the caller releases this slot itself before retrying
            raise
        except asyncio.TimeoutError:
            # The function ran past its `timeout`: answer if nothing was sent yet, and recycle the
            # container, since the work inside it may not be cancellable.
            pool.recycle(pc)
            if not ex.writer.started:
                writer.write(render(500, TIMED_OUT, close=True, extra=[(b"modal-function-call-id", call_id.encode())]))
            return False
        finally:
            if not ex.handed_off:
                pool.release(pc)

    def _admit(self, head: http.RequestHead, fixed: str | None, meter: _Meter | None = None,
               counted: bool = False) -> Any:
        """The endpoint a request names, once the caller may use it: proxy auth, then the rate limit.
        Every request goes through here, result URLs of the 303 chain too. A request looked up again
        (its pool was replaced by a reload, its container was dead) is `counted` already: auth is checked
        again against the route as it is now, but the request takes no second token."""
        subdomain = fixed if fixed is not None else self.routes.subdomain_for_host(head.host)
        endpoint = self.routes.resolve(subdomain)
        if meter is not None:
            meter.endpoint = endpoint  # from here on, the request is its workspace's to see in its log
        workspace = getattr(endpoint, "workspace", self.workspace)
        if endpoint.requires_proxy_auth:
            self._check_proxy_auth(head, workspace)
        if not counted and not self.limiter.allow(workspace, self.clock()):
            raise GatewayError(429, RATE_LIMITED.format(rate=self.limits.rate, workspace=workspace))
        return endpoint

    def _owner(self, endpoint: Any) -> str:
        return f"{getattr(endpoint, 'workspace', self.workspace)}/{endpoint.tag}"

    async def _acquire(self, head: http.RequestHead, fixed: str | None, meter: _Meter | None = None,
                       counted: bool = False) -> tuple[PoolContainer, Pool, Any]:
        for attempt in range(3):
            endpoint = self._admit(head, fixed, meter, counted or attempt > 0)
            pool = endpoint.pool_for(head.query)
            try:
                if getattr(endpoint, "sessioned", False):
                    token = session_token(head)
                    if token is None:
                        raise GatewayError(401, SESSION_REQUIRED)
                    try:
                        return await pool.acquire_session(token), pool, endpoint
                    except SessionGone:
                        raise GatewayError(404, SESSION_GONE) from None
                return await pool.acquire(), pool, endpoint
            except PoolClosed:
                continue  # a reload swapped the route while we looked: look again
            except (ContainerStartError, QueueFull, AtCapacity) as exc:
                raise self.acquire_error(exc, endpoint) from None
        raise GatewayError(503, ENDPOINT_REPLACED)

    def acquire_error(self, exc: Exception, endpoint: Any) -> GatewayError:
        """The answer to a request whose pool could not give it a slot (not PoolClosed: look again)."""
        if isinstance(exc, ContainerStartError):
            return container_failed(str(exc)).gateway_error()
        if isinstance(exc, QueueFull):
            workspace = getattr(endpoint, "workspace", self.workspace)
            return queue_full(endpoint.tag, exc.args[0], workspace).gateway_error()
        assert isinstance(exc, AtCapacity)
        return GatewayError(429, AT_CAPACITY.format(tag=endpoint.tag, limit=exc.args[0]))

    async def _session_route(self, head: http.RequestHead, reader: asyncio.StreamReader,
                             writer: asyncio.StreamWriter, fixed: str | None, meter: _Meter | None,
                             call_id: str) -> bool:
        """`POST /_modal/sessions/start` and `/terminate` of a sessioned server (Modal's paths): answered
        here, never forwarded."""
        endpoint = self._admit(head, fixed, meter)
        if not getattr(endpoint, "sessioned", False) or head.method != b"POST":
            raise GatewayError(404, INVALID_FUNCTION_CALL)
        pool = endpoint.pool_for(head.query)
        headers = dict(head.headers)
        if head.path == SESSIONS_PATH + b"start":
            raw = headers.get(b"x-modal-server-session-idle-timeout", b"600")
            if not raw.isdigit() or int(raw) <= 0:
                raise GatewayError(400, "modal-http: `idle_timeout` must be a positive integer")
            try:
                token = await pool.start_session(int(raw))
            except ContainerStartError as exc:
                raise container_failed(str(exc)).gateway_error() from None
            except OverflowError as exc:
                raise GatewayError(429, f"modal-http: {exc}") from None
            session = pool.sessions.by_token[token]
            body = json.dumps({"session_id": session.id, "token": token}).encode()
        elif head.path == SESSIONS_PATH + b"terminate":
            token = headers.get(b"x-modal-server-session-token", b"").decode("latin-1")
            if not pool.sessions.terminate(token):
                raise GatewayError(404, SESSION_GONE)
            body = b"{}"
        else:
            raise GatewayError(404, INVALID_FUNCTION_CALL)
        if meter is not None:
            meter.status = 200
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: "
                     + str(len(body)).encode() + b"\r\nmodal-function-call-id: " + call_id.encode() + b"\r\n\r\n"
                     + body)
        await writer.drain()
        return head.keep_alive and head.framing == http.NO_BODY

    def _check_proxy_auth(self, head: http.RequestHead, workspace: str) -> None:
        credentials = proxy_credentials(head.headers)
        if credentials is None:
            raise GatewayError(401, auth.MISSING)
        if self.verify_proxy_token is None or not self.verify_proxy_token(workspace, *credentials):
            raise GatewayError(401, auth.INVALID)

    async def _answer(self, head: http.RequestHead, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                      exc: GatewayError, call_id: str) -> bool:
        """Answer without a container. Small bodies are read and dropped to keep the connection."""
        if head.framing == http.NO_BODY:
            keep = head.keep_alive
        elif head.framing == http.LENGTH and head.length <= CHUNK and head.keep_alive and not head.expect_continue:
            try:  # a body that never comes must not hold the connection forever
                await within(reader.readexactly(head.length), self.limits.body_timeout)
                keep = True
            except asyncio.TimeoutError:
                keep = False
        else:
            keep = False
        extra = [(b"modal-function-call-id", call_id.encode())]
        writer.write(render(exc.status, exc.body, close=not keep, extra=extra))
        await writer.drain()
        return keep

    async def _forward(self, ex: Exchange) -> bool:
        head = ex.head
        request = http.upstream_request(head, ex.client_ip, self.scheme, ex.call_id)
        if head.expect_continue and head.framing != http.NO_BODY:
            ex.writer.raw.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        limits = BodyLimits(self.limits.max_body, self.limits.body_timeout)
        # An idle connection may be closed by the app server just as a request is sent on it (uvicorn
        # closes a keep-alive connection a moment after a handler raised). Such a request never reached
        # the app and is sent again on a fresh connection, so it must be replayable: bodies up to
        # REPLAY_MAX are read first; a longer or chunked body always gets a fresh connection.
        replay = b""
        if head.framing == http.LENGTH and head.length <= REPLAY_MAX and not head.expect_continue:
            try:
                replay = await within(ex.reader.readexactly(head.length), self.limits.body_timeout)
            except asyncio.TimeoutError:
                raise GatewayError(408, BODY_TIMEOUT) from None
        buffered = head.framing == http.NO_BODY or len(replay) == head.length and head.framing == http.LENGTH
        for attempt in range(2):
            upstream = Upstream(ex.pc)
            try:
                await upstream.open(reuse=attempt == 0 and buffered)
            except UpstreamFailed:
                raise ContainerGone() from None
            upstream.writer.write(request + replay)
            body_task = _no_body() if buffered else asyncio.create_task(
                copy_body(head.framing, head.length, ex.reader, upstream.writer, limits))
            head_task = asyncio.create_task(response_head(upstream, head.method, head.websocket))
            try:
                outcome = await self._await_head(ex, head_task, body_task)
            except BaseException:
                await _settle(head_task)
                await _settle(body_task)
                upstream.close()
                raise
            if outcome == "redirect":
                self._hand_off(ex, upstream, head_task)
                return True
            if outcome == "client-gone":
                await _settle(head_task)
                await _settle(body_task)
                upstream.close()
                return False
            if outcome == "body-error":
                await _settle(head_task)
                upstream.close()
                err = body_task.exception()
                assert isinstance(err, GatewayError)
                ex.writer.write(render(err.status, err.body, close=True))
                return False
            try:
                response = head_task.result()
            except (UpstreamFailed, GatewayError) as exc:
                await _settle(body_task)
                upstream.close()
                if isinstance(exc, UpstreamFailed) and upstream.reused and buffered:
                    continue  # the container had closed this idle connection: send it again, freshly
                err = body_task.exception() if not body_task.cancelled() else None
                if isinstance(err, GatewayError):
                    exc = err
                status, text = (exc.status, exc.body) if isinstance(exc, GatewayError) else (500, TERMINATED)
                ex.writer.write(render(status, text, close=True))
                return False
            return await self._respond(ex, upstream, response, body_task)
        ex.writer.write(render(500, TERMINATED, close=True))
        return False

    async def _await_head(self, ex: Exchange, head_task: asyncio.Task[Any], body_task: asyncio.Future[None]) -> str:
        """Wait for the container's response head; notice a client that leaves and the redirect window."""
        closed = ex.closed
        deadline = self.clock() + self.limits.redirect_after
        while True:
            watch = {head_task, closed} if body_task.done() else {head_task, closed, body_task}
            remaining = deadline - self.clock()
            done, _ = await asyncio.wait(watch, timeout=max(0.0, remaining), return_when=asyncio.FIRST_COMPLETED)
            if head_task in done:
                return "head"
            if closed in done:
                return "client-gone"  # closing the upstream connection tells the app (http.disconnect)
            if body_task in done and isinstance(body_task.exception(), GatewayError):
                return "body-error"  # a bad, slow or oversized body: answer with its error
            if not done and body_task.done() and not ex.head.websocket:
                return "redirect"
            if not done:
                deadline = self.clock() + self.limits.redirect_after  # still uploading: wait on

    def _hand_off(self, ex: Exchange, upstream: Upstream, head_task: asyncio.Future[Any]) -> None:
        """Past the redirect window: answer 303 now, finish the exchange into a PendingCall."""
        call = PendingCall(ex.call_id, owner=ex.owner)
        self.calls.add(call)
        ex.handed_off = True
        location = redirect_target(ex.head.target, ex.call_id)
        ex.writer.write(
            b"HTTP/1.1 303 See Other\r\nlocation: " + location + b"\r\ncontent-length: 0\r\n"
            b"modal-function-call-id: " + ex.call_id.encode() + b"\r\n\r\n"
        )
        started = self.clock()
        task = asyncio.create_task(self._finish(call, ex, upstream, head_task, started))
        self.background.add(task)
        task.add_done_callback(self.background.discard)

    async def _finish(self, call: PendingCall, ex: Exchange, upstream: Upstream, head_task: asyncio.Future[Any],
                      started: float) -> None:
        reusable = False
        try:
            remaining = ex.pool.timeout - self.limits.redirect_after
            response = await asyncio.wait_for(head_task, max(0.1, remaining))
            call.response = response
            await asyncio.wait_for(copy_body(response.framing, response.length, upstream.reader, call.spool),
                                   max(0.1, remaining - (self.clock() - started)))
            reusable = response.keep_alive
        except asyncio.TimeoutError:
            ex.pool.recycle(ex.pc)
            call.error = (500, TIMED_OUT)
        except Exception:  # noqa: BLE001 - the container died or broke the protocol
            call.error = (500, TERMINATED)
        finally:
            if reusable:
                upstream.give_back()
            else:
                upstream.close()
            ex.pool.release(ex.pc)
            call.finish()

    async def _fetch_result(self, head: http.RequestHead, reader: asyncio.StreamReader,
                            writer: asyncio.StreamWriter, call_id: str, owner: str) -> bool:
        """GET on a result URL (already admitted: proxy auth, rate limit): wait up to another window,
        then the response or another 303. A result is handed out once, and only at its function's URL."""
        if head.method != b"GET":
            return await self._answer(head, reader, writer, GatewayError(400, BAD_REDIRECT_METHOD), call_id)
        call = self.calls.get(call_id)
        if call is None or call.owner != owner:
            return await self._answer(head, reader, writer, GatewayError(404, INVALID_FUNCTION_CALL), call_id)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(call.done.wait(), self.limits.redirect_after)
        if not call.done.is_set():
            writer.write(b"HTTP/1.1 303 See Other\r\nlocation: " + head.target + b"\r\ncontent-length: 0\r\n"
                         b"modal-function-call-id: " + call_id.encode() + b"\r\n\r\n")
            return head.keep_alive
        if not self.calls.claim(call):  # another fetch took it while this one waited
            return await self._answer(head, reader, writer, GatewayError(404, INVALID_FUNCTION_CALL), call_id)
        try:
            if call.error is not None:
                status, text = call.error
                return await self._answer(head, reader, writer, GatewayError(status, text), call_id)
            assert call.response is not None
            keep = head.keep_alive and call.response.framing != http.UNTIL_CLOSE
            writer.write(http.client_response(call.response, keep, call_id))
            spool = call.spool.file
            spool.seek(0)
            while True:
                data = spool.read(CHUNK)
                if not data:
                    break
                writer.write(data)
                await writer.drain()
            return keep  # delivered: stream semantics, it cannot be fetched twice
        finally:
            call.close()

    async def _respond(self, ex: Exchange, upstream: Upstream, response: http.ResponseHead,
                       body_task: asyncio.Future[None]) -> bool:
        head, writer = ex.head, ex.writer
        reusable = False
        try:
            if head.websocket and response.status == 101:
                writer.write(http.client_response(response, False, ex.call_id, upgrade=True))
                await writer.drain()
                body_task.cancel()
                await websocket.proxy(ex.reader, writer.raw, upstream.reader, upstream.writer,
                                      self.limits.ws_max_message)
                return False
            keep_alive = head.keep_alive and response.framing != http.UNTIL_CLOSE
            writer.write(http.client_response(response, keep_alive, ex.call_id))
            await copy_body(response.framing, response.length, upstream.reader, writer)
            await writer.drain()
            if not body_task.done():
                # The app answered without reading the whole request body: the client's
                # connection holds unread bytes and the container's is mid-request. Close both.
                return False
            if body_task.cancelled() or body_task.exception() is not None:
                return False
            reusable = response.keep_alive
            return keep_alive
        finally:
            await _settle(body_task)
            if reusable:
                upstream.give_back()
            else:
                upstream.close()
