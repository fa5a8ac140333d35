"""The control API's server: JSON over HTTP on 127.0.0.1, what the CLI, the SDK and containers talk to.

For each request of a (kept-alive) connection: read the head (the gateway's parser, so the control
plane needs no web framework), authenticate it (auth.py), read a JSON body, find the route (routes.py)
and run its handler; an exception becomes its status through one map (router.STATUS). `dispatch` is that whole
path after the head, callable in memory by tests. The server also owns what outlives one request:
the call invoker, the scheduler, `serve` sessions' heartbeats.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import time
from typing import Any

from ..apps import AppServer
from ..dashboard import web as dashboard_web
from ..gateway import http
from ..gateway.errors import GatewayError, render
from ..invoke import Invoker
from ..objects import Objects
from ..scheduler import NO_ARGS, Scheduler, Timer
from ..store import Workspace
from .auth import Credentials, authenticate
from .router import WRITTEN, Request, Route, error_text, literal_routes, match, parse_query, status_for
from .routes import ROUTES
from .wire import HTTPError, Writer, json_response

MAX_BODY = 256 * 1024 * 1024  # a deploy carries the code bundle
EPHEMERAL_TIMEOUT_S = 30.0  # a served app whose CLI is silent this long is stopped
IDLE_TIMEOUT_S = 60.0  # a kept-alive connection with no request this long is closed
SAMPLE_EVERY_S = 2.5  # the dashboard's container counts: twice per 5-second bucket
UNAUTHORIZED = "missing or invalid token (sampan token new, or SAMPAN_TOKEN_ID and SAMPAN_TOKEN_SECRET)"


class ControlServer:
    def __init__(self, server: AppServer, credentials: Credentials, host: str = "127.0.0.1", port: int = 0,
                 routes: list[Route] | None = None, tls: ssl.SSLContext | None = None,
                 advertise: str | None = None) -> None:
        self.server = server
        self.tls = tls  # HTTPS with the operator's certificate (assemble.tls_context)
        self.advertise = advertise  # the URL clients and containers are given, when not host:port
        self.store = server.store
        self.credentials = credentials
        self.host = host
        self.requested_port = port
        self.port = 0
        self.routes = ROUTES if routes is None else routes
        self._literal = literal_routes(self.routes)
        self._srv: asyncio.AbstractServer | None = None
        self._conns: set[asyncio.Task[Any]] = set()
        self.deploy_locks: dict[str, asyncio.Lock] = {}
        self.heartbeats: dict[str, float] = {}  # ephemeral app key -> last heartbeat (monotonic)
        self.invoker = Invoker(inputs=server.logs)
        self._objects: Objects | None = None
        # A persistent server remembers its schedules across restarts; a `serve` session does not.
        state = server.settings.home / "schedules.json" if self.store is not None else None
        self.scheduler = Scheduler(lambda: self.server.apps, self._fire_scheduled, state)
        self.dashboard = dashboard_web.Dashboard()  # its sessions and container samples (server/dashboard/)
        self._sampler: asyncio.Task[None] | None = None
        self._idle_closer: asyncio.Task[None] | None = None
        # Connections waiting for their next request, since when: one sweep closes those idle too long,
        # where a timer per request would cost every request (~10 µs here).
        self._waiting: dict[asyncio.StreamWriter, float] = {}

    @property
    def token(self) -> str:
        return self.credentials.token

    @property
    def url(self) -> str:
        if self.advertise:
            return self.advertise
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        host = f"[{host}]" if ":" in host else host
        return f"{'https' if self.tls is not None else 'http'}://{host}:{self.port}"

    async def start(self) -> None:
        self._srv = await asyncio.start_server(self._handle, self.host, self.requested_port, limit=64 * 1024,
                                               ssl=self.tls)
        self.port = self._srv.sockets[0].getsockname()[1]
        self.credentials.url = self.url
        self.scheduler.start()
        self._sampler = asyncio.create_task(self._sample_containers())
        self._idle_closer = asyncio.create_task(self._close_idle())

    async def close(self) -> None:
        for task in (self._sampler, self._idle_closer):
            if task is not None:
                task.cancel()
        await self.scheduler.close()
        await self.invoker.close()
        if self._srv is not None:
            self._srv.close()
        for task in list(self._conns):
            task.cancel()

    # -- what handlers share ------------------------------------------------------------------
    @staticmethod
    def app_key(workspace: Workspace, name: str) -> str:
        return f"{workspace.name}/{name}"

    @staticmethod
    def ephemeral_key(workspace: Workspace, name: str) -> str:
        return f"{workspace.name}/serve:{name}"

    def needs_store(self) -> Any:
        if self.store is None:
            raise HTTPError(400, "this is an embedded `sampan serve` server; start one with `sampan server start`")
        return self.store

    def shared_objects(self) -> Objects:
        if self._objects is None:
            self._objects = Objects(self.needs_store())
        return self._objects

    def _fire_scheduled(self, timer: Timer) -> None:
        """One tick of a schedule: an input with no arguments, spawned as `.spawn()` would."""
        version = self.server.apps.get(timer.app_key)
        endpoint = version.callables.get(timer.tag) if version is not None else None
        if endpoint is None:
            return

        def pool_for() -> Any:
            return self.server.apps[timer.app_key].callables[timer.tag].pool_for_params({})

        self.invoker.spawn(timer.workspace, timer.tag, pool_for, NO_ARGS, endpoint.entry.retries)

    async def _sample_containers(self) -> None:
        """Every few seconds, the containers of each function for the dashboard's charts, and, while someone
        is logged in to the dashboard, each one's CPU use since the last look (read from /proc)."""
        while True:
            await asyncio.sleep(SAMPLE_EVERY_S)
            rows = self.server.describe_containers(usage=self.dashboard.sessions.active())
            now = time.time()
            self.server.series.sample(now, rows)
            self.dashboard.sample(now, rows)

    async def _close_idle(self) -> None:
        while True:
            await asyncio.sleep(IDLE_TIMEOUT_S / 4)
            now = time.monotonic()
            for writer, since in list(self._waiting.items()):
                if now - since > IDLE_TIMEOUT_S:
                    writer.close()  # the waiting read ends: `_one` returns False, `_handle` cleans up

    async def reap_ephemeral(self, timeout: float = EPHEMERAL_TIMEOUT_S) -> None:
        """Stop served apps whose CLI stopped sending heartbeats (it was killed, or lost its network)."""
        while True:
            await asyncio.sleep(min(5.0, timeout / 3))
            now = time.monotonic()
            for key, seen in list(self.heartbeats.items()):
                if now - seen > timeout:
                    self.heartbeats.pop(key, None)
                    await self.server.stop_app(key)

    # -- one request --------------------------------------------------------------------------
    def authenticate(self, authorization: bytes) -> Workspace | None:
        return authenticate(authorization, self.credentials, self.store, self.server.settings.workspace)

    async def dispatch(self, method: str, target: str, workspace: Workspace, body: Any, writer: Writer) -> None:
        """Route an authenticated request and write its answer (JSON, a stream, or the error)."""
        path, _, query = target.partition("?")
        try:
            route = self._literal.get((method, path))
            if route is not None:
                params: dict[str, str] = {}
            else:
                route, params = match(self.routes, method, path)
            answer = await route.handler(self, Request(workspace, params, parse_query(query.encode("latin-1")),
                                                       body, writer))
            if answer is not WRITTEN:
                writer.write(json_response(200, answer))
        except Exception as exc:
            status = status_for(exc)
            if status is None:
                raise
            writer.write(json_response(status, {"error": error_text(exc)}))

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._conns.add(task)
        try:
            while await self._one(reader, writer):
                await writer.drain()
        except (GatewayError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            with contextlib.suppress(Exception):
                writer.write(render(400, "bad request", close=True))
        finally:
            self._conns.discard(task)
            with contextlib.suppress(Exception):
                await writer.drain()
            writer.close()

    async def _one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Answer one request; whether the connection carries another (clients keep theirs alive)."""
        self._waiting[writer] = time.monotonic()  # closed by _close_idle after IDLE_TIMEOUT_S
        try:
            data = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as exc:
            if not exc.partial.strip():
                return False  # the client closed its idle connection (or _close_idle did)
            raise
        finally:
            self._waiting.pop(writer, None)
        head = http.parse_request_head(data)
        if head.path == b"/dashboard" or head.path.startswith(b"/dashboard/"):
            return await dashboard_web.handle(self, head, reader, writer)  # a browser: a cookie, not a token
        workspace = self.authenticate(dict(head.headers).get(b"authorization", b""))
        if workspace is None:
            writer.write(json_response(401, {"error": UNAUTHORIZED}, close=True))
            return False
        body: Any = None
        if head.framing == http.LENGTH:
            if head.length > MAX_BODY:
                writer.write(json_response(413, {"error": "request too large"}, close=True))
                return False
            try:
                body = json.loads(await reader.readexactly(head.length) or b"null")
            except ValueError:
                writer.write(json_response(400, {"error": "the request body is not JSON"}, close=True))
                return False
        elif head.framing != http.NO_BODY:
            writer.write(json_response(400, {"error": "send JSON with a content-length"}, close=True))
            return False
        await self.dispatch(head.method.decode(), head.target.decode("latin-1"), workspace, body, writer)
        return head.keep_alive
