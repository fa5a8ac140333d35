"""The control API: JSON over HTTP on 127.0.0.1, what the CLI and the SDK talk to.

    GET    /v1/health                            {"ok": true, "server_id", "workspace"}
    GET    /v1/apps                              apps of the caller's workspace, live state included
    POST   /v1/deploy                            {name, manifest, files, strategy, tag} -> NDJSON progress
    POST   /v1/apps/{name}/stop
    POST   /v1/apps/{name}/rollback              {version?}
    GET    /v1/apps/{name}/history
    GET    /v1/apps/{name}/logs?n=&follow=1      text; with follow, streamed
    GET    /v1/functions/{app}/{tag}             {"web_url": ...}
    GET    /v1/containers                        every container of the workspace
    GET    /v1/containers/{id}/logs?n=&follow=1
    POST   /v1/containers/{id}/stop  {graceful}  end a container (the pool starts another if it needs one)
    POST   /v1/containers/{id}/exec  {argv, timeout}  run a command in a sandboxed container -> {code, stdout, stderr}
    GET    /v1/secrets | POST /v1/secrets {name, values, force} | DELETE /v1/secrets/{name}
    GET    /v1/proxy-tokens | POST /v1/proxy-tokens {name} | DELETE /v1/proxy-tokens/{id}
    POST   /v1/calls      {app, app_key?, function, params, args, mode}  a .remote() call (server/invoke.py):
                          mode "call" -> {"result"}; "gen" -> NDJSON {"frame"}s; "spawn" -> {"call_id"}
    GET    /v1/calls/{id}?timeout=    {"status", "result"} of a spawned call ("result" null while pending)
    POST   /v1/autoscaler  {app, app_key?, function, settings}  override a function's autoscaler -> its settings
    POST   /v1/calls/{id}/cancel
    POST   /v1/objects/{dict|queue}/{name}   {op, create_if_missing, ...}  a Dict or Queue operation
    GET    /v1/objects/{dict|queue}          names | DELETE /v1/objects/{kind}/{name}
    POST   /v1/volumes/{name}  {op: create|listdir|read|upload|remove|copy, ...} (server/volumes.py)
    GET    /v1/volumes         names | DELETE /v1/volumes/{name}
    GET    /v1/images                            images the caller's workspace built or used (size, steps, last use)
    DELETE /v1/images/{id}                       the workspace stops using it; its layers go when nothing needs them
    POST   /v1/images/prune  {older_than}        release the workspace's images no running app uses
    POST   /v1/tokens                            a new API token for the caller's workspace
    POST   /v1/ephemeral/{name}/heartbeat | POST /v1/ephemeral/{name}/stop | GET /v1/ephemeral/{name}/logs
                                                 a `sampan serve` session on this server (its CLI's calls)

Authentication: `Authorization: Bearer <token id>:<token secret>`, checked against the store, which
names the caller's workspace; everything is filtered by it, so a token of workspace A never sees
or changes workspace B. Every server also accepts one random token of its own, for the workspace of
the user who started it, written with its address to `$SAMPAN_HOME/servers/<server id>.json`
(mode 0600, as private as `config.toml`): that file is also how the CLI finds running servers, and
all a server without a store (a `serve` run without one) accepts. The parsing reuses the gateway's HTTP
head parser, so the control plane needs no web framework.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hmac
import json
import os
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote

from .._proc import pid_alive
from ..exception import Error, InvalidError, NotFoundError
from ..manifest import Manifest
from .apps import AppServer, BuildHooks
from .bundle import check_paths, write_bundle
from .gateway import http
from .gateway.errors import GatewayError, render
from .images.recipe import ImageBuildError
from .invoke import Invoker
from .objects import Objects, check_name
from .scheduler import NO_ARGS, Scheduler, Timer
from .store import Workspace

IMAGE_ID = re.compile(r"^im-[0-9a-f]{20}$")

MAX_BODY = 256 * 1024 * 1024  # a deploy carries the code bundle
EPHEMERAL_TIMEOUT_S = 30.0  # a served app whose CLI is silent this long is stopped


class HTTPError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _json(status: int, payload: Any) -> bytes:
    body = json.dumps(payload).encode()
    return (
        f"HTTP/1.1 {status} {'OK' if status == 200 else 'Error'}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    ).encode() + body


async def _write_result(writer: asyncio.StreamWriter, outcome: bytes, extra: dict[str, Any] | None = None) -> None:
    """`{"result": <base64 of outcome>, **extra}`, written in pieces: a large result is never held as a
    base64 string and a JSON document besides the outcome itself."""
    prefix = b'{"result": "'
    suffix = b'"' + (b", " + json.dumps(extra).encode()[1:-1] if extra else b"") + b"}"
    encoded = 4 * ((len(outcome) + 2) // 3)
    writer.write(f"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: "
                 f"{len(prefix) + encoded + len(suffix)}\r\nconnection: close\r\n\r\n".encode() + prefix)
    view = memoryview(outcome)
    step = 3 * 65536
    for start in range(0, len(outcome), step):
        writer.write(base64.b64encode(view[start:start + step]))
        await writer.drain()
    writer.write(suffix)


def _chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


class ControlServer:
    def __init__(self, server: AppServer, host: str = "127.0.0.1", port: int = 0) -> None:
        self.server = server
        self.store = server.store
        self.host = host
        self.requested_port = port
        self.token = secrets.token_urlsafe(24)
        self.port = 0
        self._srv: asyncio.AbstractServer | None = None
        self._conns: set[asyncio.Task[Any]] = set()
        self._deploy_locks: dict[str, asyncio.Lock] = {}
        self.heartbeats: dict[str, float] = {}  # ephemeral app key -> last heartbeat (monotonic)
        self.invoker = Invoker()
        self.objects: Objects | None = None
        server.call_env = self.call_env
        # A persistent server remembers its schedules across restarts; a `serve` session does not.
        state = server.settings.home / "schedules.json" if self.store is not None else None
        self.scheduler = Scheduler(lambda: self.server.apps, self._fire_scheduled, state)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        self._srv = await asyncio.start_server(self._handle, self.host, self.requested_port, limit=64 * 1024)
        self.port = self._srv.sockets[0].getsockname()[1]
        self.scheduler.start()

    async def _exec(self, ws: Workspace, container_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """A command in the container's own namespaces (nsenter into its PID 1: its root, its uid)."""
        found = self.server.find_container(ws.name, container_id)
        if found is None:
            raise HTTPError(404, f"no container {container_id}")
        argv = body.get("argv")
        if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv) \
                or argv[0].startswith("-"):
            raise InvalidError("exec needs `argv`, a non-empty list of strings naming a program.")
        timeout = float(body.get("timeout") or 60)
        if not 0 < timeout <= 3600:
            raise InvalidError("exec `timeout` must be between 0 and 3600 seconds.")
        pid = container_pid(found[1].backend)
        if pid is None:
            raise InvalidError("`container exec` needs the container sandbox (this container runs as a plain "
                               "process, or has exited).")
        proc = await asyncio.create_subprocess_exec(
            "nsenter", "--target", str(pid), "--all", "--root", "--wd", *argv,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            start_new_session=True)
        try:
            out, err = await asyncio.wait_for(proc.communicate(), timeout)
        except asyncio.TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, 9)
            await proc.wait()
            raise HTTPError(504, f"the command ran longer than {timeout:g} s") from None
        limit = 16 << 20
        return {"code": proc.returncode, "stdout": base64.b64encode(out[-limit:]).decode(),
                "stderr": base64.b64encode(err[-limit:]).decode()}

    def _fire_scheduled(self, timer: Timer) -> None:
        """One tick of a schedule: an input with no arguments, spawned as `.spawn()` would."""
        version = self.server.apps.get(timer.app_key)
        endpoint = version.callables.get(timer.tag) if version is not None else None
        if endpoint is None:
            return

        def pool_for() -> Any:
            return self.server.apps[timer.app_key].callables[timer.tag].pool_for_params({})

        self.invoker.spawn(timer.workspace, timer.tag, pool_for, NO_ARGS, endpoint.entry.retries)

    async def close(self) -> None:
        await self.scheduler.close()
        await self.invoker.close()
        if self._srv is not None:
            self._srv.close()
        for task in list(self._conns):
            task.cancel()

    # -- plumbing -----------------------------------------------------------------------------
    def _workspace(self, head: http.RequestHead) -> Workspace | None:
        auth = dict(head.headers).get(b"authorization", b"")
        if not auth.startswith(b"Bearer "):
            return None
        try:
            token = auth[7:].decode("ascii")  # compare_digest refuses other text; such a token is no token
        except UnicodeDecodeError:
            return None
        if token.startswith("ct-"):  # a container's token: the workspace of its app
            name, _, mac = token[3:].rpartition(".")
            if not name or not hmac.compare_digest(token, self.container_token(name)):
                return None
            return Workspace("embedded", name) if self.store is None else self.store.workspace(name)
        if hmac.compare_digest(token, self.token):  # the registry file's token: the local user's workspace
            if self.store is None:
                return Workspace("embedded", self.server.settings.workspace)
            return self.store.workspace(self.server.settings.workspace)
        if self.store is None:
            return None
        token_id, _, token_secret = token.partition(":")
        return self.store.authenticate(token_id, token_secret)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._conns.add(task)
        try:
            head = http.parse_request_head(await reader.readuntil(b"\r\n\r\n"))
            workspace = self._workspace(head)
            if workspace is None:
                writer.write(_json(401, {"error": "missing or invalid token (sampan token new, or SAMPAN_TOKEN_ID "
                                                  "and SAMPAN_TOKEN_SECRET)"}))
                return
            body: Any = None
            if head.framing == http.LENGTH:
                if head.length > MAX_BODY:
                    writer.write(_json(413, {"error": "request too large"}))
                    return
                try:
                    body = json.loads(await reader.readexactly(head.length) or b"null")
                except ValueError:
                    writer.write(_json(400, {"error": "the request body is not JSON"}))
                    return
            try:
                await self._route(head, workspace, body, writer)
            except HTTPError as exc:
                writer.write(_json(exc.status, {"error": str(exc)}))
            except NotFoundError as exc:
                writer.write(_json(404, {"error": str(exc)}))
            except (InvalidError, ImageBuildError, ValueError, KeyError, TypeError, AttributeError) as exc:
                writer.write(_json(400, {"error": str(exc) or type(exc).__name__}))
        except (GatewayError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            with contextlib.suppress(Exception):
                writer.write(render(400, "bad request", close=True))
        finally:
            self._conns.discard(task)
            with contextlib.suppress(Exception):
                await writer.drain()
            writer.close()

    def _app_key(self, workspace: Workspace, name: str) -> str:
        return f"{workspace.name}/{name}"

    # -- Dict and Queue (server/objects.py) ----------------------------------------------------
    async def _object(self, method: str, ws: Workspace, kind: str, name: str | None, body: Any,
                      writer: asyncio.StreamWriter) -> None:
        if self.objects is None:
            self.objects = Objects(self._needs_store())
        objects = self.objects
        if name is None:
            check_name(kind, "x")
            writer.write(_json(200, objects.names(ws, kind)))
            return
        if method == "DELETE":
            objects.delete(ws, kind, name)
            writer.write(_json(200, {"deleted": name}))
            return
        body = dict(body or {})
        oid = objects.lookup(ws, kind, name, create=bool(body.get("create_if_missing")))
        b64 = base64.b64decode
        for field_name in ("key", "value"):
            if body.get(field_name) is not None:
                body[field_name] = b64(body[field_name])
        if "items" in body:
            body["items"] = [(b64(k), b64(v)) for k, v in body["items"]]
        if "values" in body:
            body["values"] = [b64(v) for v in body["values"]]
        op = body.get("op", "")
        if kind == "dict":
            result = objects.dict_op(oid, op, body)
        else:
            result = await objects.queue_op(oid, op, body)

        def enc(b: bytes) -> str:
            return base64.b64encode(b).decode()

        if result.get("value") is not None:
            result["value"] = enc(result["value"])
        if "values" in result:
            result["values"] = [enc(v) for v in result["values"]]
        if "items" in result:
            result["items"] = [[enc(k), enc(v)] for k, v in result["items"]]
        writer.write(_json(200, result))

    # -- calls (server/invoke.py) -------------------------------------------------------------
    def container_token(self, workspace: str) -> str:
        """What a container of `workspace` uses to call functions and look them up: its workspace,
        signed with this server's secret, so that it cannot speak for another workspace."""
        mac = hmac.new(self.token.encode(), workspace.encode(), "sha256").hexdigest()[:32]
        return f"ct-{workspace}.{mac}"

    def call_env(self, workspace: str) -> dict[str, str]:
        return {"SAMPAN_SERVER_URL": self.url, "SAMPAN_SERVER_TOKEN": self.container_token(workspace)}

    def _callable(self, ws: Workspace, body: dict[str, Any]) -> Any:
        """The function endpoint a call names: by app key (ephemeral apps, from inside), else by name."""
        tag = body["function"]
        version = self.server.apps.get(body.get("app_key") or "")
        if version is not None and version.workspace != ws.name:
            version = None
        name = body.get("app")
        if version is None and name:
            version = self.server.apps.get(self._app_key(ws, name)) or next(
                (v for v in self.server.apps.values() if v.workspace == ws.name and v.manifest.app_name == name), None)
        if version is None:
            raise NotFoundError(f"App '{name}' is not running in workspace '{ws.name}'.")
        endpoint = version.callables.get(tag)
        if endpoint is None:
            if tag in version.web_urls:
                raise InvalidError(
                    f"A webhook function cannot be invoked for remote execution with `.remote`. Invoke this "
                    f"function via its web url '{version.web_urls[tag]}' or call it locally: {tag}.local()")
            raise NotFoundError(f"Function '{tag}' not found in app '{name or version.manifest.app_name}'.")
        return endpoint

    def _endpoint(self, ws: Workspace, body: dict[str, Any]) -> Any:
        """A function of the workspace's app by tag: called with `.remote()`, or a web function."""
        try:
            return self._callable(ws, body)
        except InvalidError:  # a web function: found among the version's web endpoints
            version = self.server.apps.get(body.get("app_key") or "") or self.server.apps.get(
                self._app_key(ws, body.get("app") or ""))
            for endpoint in version.endpoints.values() if version is not None else ():
                if endpoint.tag == body["function"]:
                    return endpoint
            raise

    async def _call(self, ws: Workspace, body: dict[str, Any], writer: asyncio.StreamWriter) -> None:
        endpoint = self._callable(ws, body)
        params = body.get("params") or {}
        endpoint.pool_for_params(params)  # bad class parameters fail here, before anything runs
        payload = base64.b64decode(body["args"])

        def pool_for() -> Any:
            return self._callable(ws, body).pool_for_params(params)

        mode = body.get("mode") or "call"
        if mode == "spawn":
            call_id = self.invoker.spawn(ws.name, endpoint.tag, pool_for, payload, endpoint.entry.retries,
                                         body.get("parent"), body.get("parent_function"))
            writer.write(_json(200, {"call_id": call_id}))
        elif mode == "gen":
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/x-ndjson\r\ntransfer-encoding: chunked\r\n"
                         b"connection: close\r\n\r\n")
            async for frame in self.invoker.stream(pool_for(), payload):
                writer.write(_chunk(json.dumps({"frame": base64.b64encode(frame).decode()}).encode() + b"\n"))
                await writer.drain()
            writer.write(b"0\r\n\r\n")
        else:
            record = self.invoker.child(body.get("parent"), ws.name, endpoint.tag, body.get("parent_function"))
            outcome = await self.invoker.run(pool_for, payload, endpoint.entry.retries, record=record)
            await _write_result(writer, outcome)

    async def _call_action(self, method: str, ws: Workspace, parts: list[str], query: dict[str, str],
                           writer: asyncio.StreamWriter) -> None:
        call = self.invoker.calls.get(parts[0])
        if call is None or call.workspace != ws.name:
            raise NotFoundError(f"Function call {parts[0]} not found (or its result was already dropped).")
        if method == "POST" and parts[1:] == ["cancel"]:
            self.invoker.cancel(call.id)
            writer.write(_json(200, {"status": "cancelled"}))
            return
        if method != "GET" or len(parts) != 1:
            raise HTTPError(404, "no such route")
        timeout = float(query["timeout"]) if query.get("timeout") not in (None, "", "none") else None
        await self.invoker.get(call.id, timeout)
        extra = {"status": call.status, "function": call.function, "expired": call.expired,
                 "graph": call.root().graph()}
        if call.outcome is None:
            writer.write(_json(200, {"result": None, **extra}))
        else:
            await _write_result(writer, call.outcome, extra)

    def _needs_store(self) -> Any:
        if self.store is None:
            raise HTTPError(400, "this is an embedded `sampan serve` server; start one with `sampan server start`")
        return self.store

    async def _route(self, head: http.RequestHead, ws: Workspace, body: Any, writer: asyncio.StreamWriter) -> None:
        method = head.method.decode()
        parts = [unquote(p) for p in head.path.decode("latin-1").strip("/").split("/")]
        query = dict(parse_qsl(head.query.decode("latin-1")))
        route = (method, *parts)
        if route == ("GET", "v1", "health"):
            writer.write(_json(200, {"ok": True, "server_id": self.server.settings.server_id, "workspace": ws.name}))
        elif route == ("POST", "v1", "calls"):
            await self._call(ws, body, writer)
        elif route == ("POST", "v1", "autoscaler"):
            endpoint = self._endpoint(ws, body or {})
            settings = (body or {}).get("settings") or {}
            unknown = set(settings) - {"min_containers", "max_containers", "buffer_containers", "scaledown_window"}
            if unknown:
                raise InvalidError(f"Unknown autoscaler settings: {', '.join(sorted(unknown))}")
            try:
                writer.write(_json(200, endpoint.update_autoscaler(**settings)))
            except ValueError as exc:
                raise InvalidError(str(exc)) from None
        elif len(parts) >= 3 and parts[:2] == ["v1", "calls"]:
            await self._call_action(method, ws, parts[2:], query, writer)
        elif parts[:2] == ["v1", "volumes"] and len(parts) in (2, 3):
            volumes = self.server.volumes
            if len(parts) == 2:
                writer.write(_json(200, volumes.names(ws.name)))
            elif method == "DELETE":
                volumes.delete(ws.name, parts[2])
                writer.write(_json(200, {"deleted": parts[2]}))
            else:
                writer.write(_json(200, volumes.op(ws.name, parts[2], body or {})))
        elif len(parts) in (3, 4) and parts[:2] == ["v1", "objects"]:
            await self._object(method, ws, parts[2], parts[3] if len(parts) == 4 else None, body, writer)
        elif route == ("GET", "v1", "apps"):
            writer.write(_json(200, self._apps(ws)))
        elif route == ("POST", "v1", "deploy"):
            await self._deploy(ws, body, writer)
        elif len(parts) == 4 and parts[:2] == ["v1", "ephemeral"]:
            await self._ephemeral_action(method, ws, parts[2], parts[3], query, writer)
        elif len(parts) == 4 and parts[:2] == ["v1", "apps"]:
            await self._app_action(method, ws, parts[2], parts[3], body, query, writer)
        elif method == "GET" and len(parts) == 4 and parts[:2] == ["v1", "functions"]:
            writer.write(_json(200, {"web_url": self._web_url(ws, parts[2], parts[3])}))
        elif route == ("GET", "v1", "containers"):
            rows = [c for c in self.server.describe_containers() if c["workspace"] == ws.name]
            for row in rows:  # the host pid of a sandboxed container's PID 1: what `sampan shell` enters
                found = self.server.find_container(ws.name, row["id"])
                row["pid"] = container_pid(found[1].backend) if found is not None else None
            writer.write(_json(200, rows))
        elif method == "GET" and len(parts) == 4 and parts[:2] == ["v1", "containers"] and parts[3] == "logs":
            # Running or stopped, a container's logs are its workspace's alone.
            if not self.server.logs.known(parts[2]) or self.server.logs.workspace_of(parts[2]) != ws.name:
                raise HTTPError(404, f"no container {parts[2]}")
            await self._stream_logs([parts[2]], query, writer)
        elif method == "POST" and len(parts) == 4 and parts[:2] == ["v1", "containers"] and parts[3] == "stop":
            if not self.server.stop_container(ws.name, parts[2], bool((body or {}).get("graceful"))):
                raise HTTPError(404, f"no container {parts[2]}")
            writer.write(_json(200, {"stopped": parts[2]}))
        elif method == "POST" and len(parts) == 4 and parts[:2] == ["v1", "containers"] and parts[3] == "exec":
            writer.write(_json(200, await self._exec(ws, parts[2], body or {})))
        elif parts[:2] == ["v1", "secrets"]:
            self._secrets(method, ws, parts[2:], body, writer)
        elif parts[:2] == ["v1", "proxy-tokens"]:
            self._proxy_tokens(method, ws, parts[2:], body, writer)
        elif parts[:2] == ["v1", "images"]:
            await self._images(method, ws, parts[2:], body, writer)
        elif route == ("POST", "v1", "tokens"):
            token_id, secret = self._needs_store().create_token(ws)
            writer.write(_json(200, {"token_id": token_id, "token_secret": secret, "workspace": ws.name}))
        else:
            raise HTTPError(404, "not found")

    # -- apps ---------------------------------------------------------------------------------
    def _apps(self, ws: Workspace) -> list[dict[str, Any]]:
        live = {a["key"]: a for a in self.server.describe_apps()}
        out = []
        if self.store is not None:
            for app in self.store.apps(ws):
                info = live.get(self._app_key(ws, app.name), {})
                out.append({"id": app.id, "name": app.name, "state": app.state, "version": app.current_version,
                            "containers": info.get("containers", 0), "created_at": app.created_at,
                            "stopped_at": app.stopped_at, "endpoints": info.get("endpoints", []),
                            "schedules": self.scheduler.upcoming(self._app_key(ws, app.name))})
        for key, info in live.items():
            if info["ephemeral"] and key.startswith(f"{ws.name}/"):
                out.append({"id": key, "name": info["name"], "state": "ephemeral", "version": info["version"],
                            "containers": info["containers"], "created_at": None, "stopped_at": None,
                            "endpoints": info["endpoints"], "schedules": self.scheduler.upcoming(key)})
        return out

    async def _deploy(self, ws: Workspace, body: dict[str, Any], writer: asyncio.StreamWriter) -> None:
        if body.get("ephemeral"):
            await self._serve_ephemeral(ws, body, writer)
            return
        store = self._needs_store()
        name = body["name"]
        from .store import check_app_name

        check_app_name(name)
        manifest = Manifest.from_json(body["manifest"])
        check_paths(body["files"])  # before the 200: a bad path is a 400, and nothing is written
        files = {rel: base64.b64decode(data) for rel, data in body["files"].items()}
        strategy = body.get("strategy") or "rolling"
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/x-ndjson\r\ntransfer-encoding: chunked\r\n"
                     b"connection: close\r\n\r\n")

        def emit(event: dict[str, Any]) -> None:
            writer.write(_chunk(json.dumps(event).encode() + b"\n"))

        lock = self._deploy_locks.setdefault(f"{ws.id}/{name}", asyncio.Lock())
        started = time.perf_counter()
        try:
            async with lock:
                bundle = write_bundle(self.server.settings.home, files)
                app = store.app(ws, name)
                if app is not None and app.state == "deployed" and app.current_version:
                    current = store.version(app.id, app.current_version)
                    if current.bundle_id == bundle.id and current.manifest == manifest.to_json():
                        version = self.server.apps.get(self._app_key(ws, name))
                        emit({"result": {"skipped": True, "version": app.current_version, "app_id": app.id,
                                         "endpoints": _infos(version), "seconds": time.perf_counter() - started}})
                        return
                hooks = BuildHooks(progress=lambda s: emit({"progress": s}), log=lambda line: emit({"log": line}),
                                   built=lambda im: emit({"built": {"id": im.id, "seconds": im.seconds,
                                                                    "cached": im.cached}}))
                # Build and validate first: a failure leaves the previous version serving, unrecorded.
                subdomains = [sub for _, sub, _ in self.server.plan_subdomains(manifest, False, ws.name)]
                self.server.check_secrets(manifest, ws.name)
                await self.server.build_images(manifest, hooks, ws.name, bundle)
                previous = store.app(ws, name)
                labels = store.labels_of(previous.id) if previous is not None else []
                app, record = store.add_version(ws, name, manifest.to_json(), bundle.id, body.get("tag") or "",
                                                subdomains)
                try:
                    live = await self.server.publish(self._app_key(ws, name), manifest, bundle, ephemeral=False,
                                                     strategy=strategy, workspace=ws.name, number=record.version)
                except BaseException:
                    # A version that never served is not the current one: the store says what serves.
                    store.undo_version(app, record.version, previous, labels)
                    raise
                emit({"result": {"skipped": False, "version": record.version, "app_id": app.id,
                                 "endpoints": _infos(live), "seconds": time.perf_counter() - started}})
        except (Error, ImageBuildError, ValueError, KeyError, OSError) as exc:
            emit({"error": str(exc)})
        finally:
            writer.write(b"0\r\n\r\n")

    async def _serve_ephemeral(self, ws: Workspace, body: dict[str, Any], writer: asyncio.StreamWriter) -> None:
        """`sampan serve` on this server: a `-dev` app kept in memory while its CLI sends heartbeats."""
        key = f"{ws.name}/serve:{body['name']}"
        manifest = Manifest.from_json(body["manifest"])
        check_paths(body["files"])
        files = {rel: base64.b64decode(data) for rel, data in body["files"].items()}
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/x-ndjson\r\ntransfer-encoding: chunked\r\n"
                     b"connection: close\r\n\r\n")

        def emit(event: dict[str, Any]) -> None:
            writer.write(_chunk(json.dumps(event).encode() + b"\n"))

        started = time.perf_counter()
        try:
            bundle = write_bundle(self.server.settings.home, files)
            hooks = BuildHooks(progress=lambda s: emit({"progress": s}), log=lambda line: emit({"log": line}),
                               built=lambda im: emit({"built": {"id": im.id, "seconds": im.seconds,
                                                                "cached": im.cached}}))
            self.heartbeats[key] = time.monotonic()
            live = await self.server.publish(key, manifest, bundle, ephemeral=True, hooks=hooks, workspace=ws.name)
            emit({"result": {"skipped": False, "version": live.number, "app_id": key, "endpoints": _infos(live),
                             "seconds": time.perf_counter() - started}})
        except (Error, ImageBuildError, ValueError, KeyError, OSError) as exc:
            emit({"error": str(exc)})
        finally:
            writer.write(b"0\r\n\r\n")

    async def _ephemeral_action(self, method: str, ws: Workspace, name: str, action: str, query: dict[str, str],
                                writer: asyncio.StreamWriter) -> None:
        key = f"{ws.name}/serve:{name}"
        if key not in self.server.apps:
            raise NotFoundError(f"No app '{name}' is being served.")
        if (method, action) == ("POST", "heartbeat"):
            self.heartbeats[key] = time.monotonic()
            writer.write(_json(200, {"ok": True}))
        elif (method, action) == ("POST", "stop"):
            self.heartbeats.pop(key, None)
            await self.server.stop_app(key)
            writer.write(_json(200, {"stopped": name}))
        elif (method, action) == ("GET", "logs"):
            ids = [c["id"] for c in self.server.describe_containers() if c["app_key"] == key]
            await self._stream_logs(ids, query, writer, app_key=key)
        else:
            raise HTTPError(404, "not found")

    async def reap_ephemeral(self, timeout: float = EPHEMERAL_TIMEOUT_S) -> None:
        """Stop served apps whose CLI stopped sending heartbeats (it was killed, or lost its network)."""
        while True:
            await asyncio.sleep(min(5.0, timeout / 3))
            now = time.monotonic()
            for key, seen in list(self.heartbeats.items()):
                if now - seen > timeout:
                    self.heartbeats.pop(key, None)
                    await self.server.stop_app(key)

    async def _app_action(self, method: str, ws: Workspace, name: str, action: str, body: Any,
                          query: dict[str, str], writer: asyncio.StreamWriter) -> None:
        store = self._needs_store()
        app = store.app(ws, name)
        if app is None:
            raise NotFoundError(f"App '{name}' not found in workspace '{ws.name}'.")
        key = self._app_key(ws, app.name)
        if (method, action) == ("POST", "stop"):
            store.stop_app(app)
            await self.server.stop_app(key)
            writer.write(_json(200, {"stopped": app.name}))
        elif (method, action) == ("GET", "history"):
            versions = {v.version: v for v in store.versions(app.id)}
            writer.write(_json(200, {
                "app": app.name, "current": app.current_version,
                "versions": [{"version": v.version, "tag": v.tag, "created_at": v.created_at, "bundle": v.bundle_id}
                             for v in versions.values()],
                "events": [{"version": e.version, "action": e.action, "at": e.at} for e in store.events(app.id)],
            }))
        elif (method, action) == ("POST", "rollback"):
            versions = [v.version for v in store.versions(app.id)]
            target = (body or {}).get("version")
            if target is None:
                earlier = [v for v in versions if app.current_version and v < app.current_version]
                if not earlier:
                    raise InvalidError(f"App '{app.name}' has no earlier version to roll back to.")
                target = earlier[-1]
            record = store.version(app.id, int(target))
            manifest = Manifest.from_json(record.manifest)
            bundle = self.server.bundle(record.bundle_id)
            await self.server.build_images(manifest, workspace=ws.name, bundle=bundle)
            live = await self.server.publish(key, manifest, bundle, ephemeral=False, workspace=ws.name,
                                             number=record.version)
            store.set_current(app, record.version)  # only once it serves
            writer.write(_json(200, {"version": record.version, "endpoints": _infos(live)}))
        elif (method, action) == ("GET", "logs"):
            ids = [c["id"] for c in self.server.describe_containers() if c["app_key"] == key]
            ids += [cid for cid in self.server.logs.containers_of(key) if cid not in ids]
            await self._stream_logs(ids, query, writer, app_key=key)
        else:
            raise HTTPError(404, "not found")

    def _web_url(self, ws: Workspace, app_name: str, tag: str) -> str | None:
        live = self.server.apps.get(self._app_key(ws, app_name))
        if live is None:
            raise NotFoundError(f"App '{app_name}' is not deployed in workspace '{ws.name}'.")
        if tag not in live.web_urls and not any(s == tag or s.startswith(tag + ".")
                                                for s in [*live.manifest.other_functions, *live.web_urls]):
            raise NotFoundError(f"Function '{tag}' not found in app '{app_name}'.")
        return live.web_urls.get(tag)

    async def _stream_logs(self, container_ids: list[str], query: dict[str, str], writer: asyncio.StreamWriter,
                           app_key: str | None = None) -> None:
        logs = self.server.logs
        n = int(query["n"]) if query.get("n", "").isdigit() else None
        since = float(query["since"]) if query.get("since") else None
        follow = query.get("follow") in ("1", "true")
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain; charset=utf-8\r\ntransfer-encoding: chunked\r\n"
                     b"connection: close\r\n\r\n")
        until = float(query["until"]) if query.get("until") else None
        search = query.get("search") or None
        source = query.get("source") or None

        def wanted(ln: Any) -> bool:  # --since/--until/--search/--source of `sampan app logs`
            return ((since is None or ln.time >= since) and (until is None or ln.time <= until)
                    and (search is None or search in ln.text) and (source is None or ln.stream == source))

        lines = sorted((line for cid in container_ids for line in logs.tail(cid)), key=lambda ln: ln.time)
        lines = [ln for ln in lines if wanted(ln)]
        for line in lines[-n:] if n else lines:
            writer.write(_chunk((line.display() + "\n").encode()))
        await writer.drain()
        if follow:
            queue = logs.follow_all(app_key, set(container_ids))
            try:
                while True:
                    item = await queue.get()
                    if item is None:
                        break
                    if not wanted(item):
                        continue
                    writer.write(_chunk((item.display() + "\n").encode()))
                    await writer.drain()
            finally:
                logs.unfollow_all(queue)
        writer.write(b"0\r\n\r\n")

    # -- secrets and tokens -------------------------------------------------------------------
    def _secrets(self, method: str, ws: Workspace, rest: list[str], body: Any, writer: asyncio.StreamWriter) -> None:
        store = self._needs_store()
        if method == "GET" and not rest:
            writer.write(_json(200, [{"name": s.name, "created_at": s.created_at, "updated_at": s.updated_at,
                                      "keys": list(s.keys)} for s in store.secrets(ws)]))
        elif method == "POST" and not rest:
            values = body.get("values") or {}
            if not all(isinstance(k, str) and isinstance(v, str) for k, v in values.items()):
                raise InvalidError("Secret values must be strings.")
            store.put_secret(ws, body["name"], values, force=bool(body.get("force")))
            writer.write(_json(200, {"name": body["name"], "keys": sorted(values)}))
        elif method == "DELETE" and len(rest) == 1:
            if not store.delete_secret(ws, rest[0]):
                raise NotFoundError(f"Secret '{rest[0]}' not found.")
            writer.write(_json(200, {"deleted": rest[0]}))
        else:
            raise HTTPError(404, "not found")

    async def _images(self, method: str, ws: Workspace, rest: list[str], body: Any,
                      writer: asyncio.StreamWriter) -> None:
        builder = self.server.rootfs
        if builder is None:
            raise InvalidError("This server builds images as virtual environments (the process runtime, or a "
                               "server that is not root); `sampan image` manages root filesystem images only.")
        if method == "GET" and not rest:
            writer.write(_json(200, await asyncio.to_thread(builder.images, ws.name)))
        elif method == "DELETE" and len(rest) == 1:
            if not IMAGE_ID.match(rest[0]) or not builder.release(rest[0], ws.name):
                raise NotFoundError(f"Image '{rest[0]}' not found.")
            await asyncio.to_thread(builder.collect, self.server.images_in_use())
            writer.write(_json(200, {"deleted": rest[0]}))
        elif method == "POST" and rest == ["prune"]:
            older = float((body or {}).get("older_than") or 0)
            if older < 0:
                raise InvalidError("older_than must not be negative.")
            released = await asyncio.to_thread(builder.prune, ws.name, self.server.images_in_use(), older)
            writer.write(_json(200, {"deleted": released}))
        else:
            raise HTTPError(404, "not found")

    def _proxy_tokens(self, method: str, ws: Workspace, rest: list[str], body: Any,
                      writer: asyncio.StreamWriter) -> None:
        store = self._needs_store()
        if method == "GET" and not rest:
            writer.write(_json(200, [{"token_id": t.id, "name": t.name, "created_at": t.created_at}
                                     for t in store.proxy_tokens(ws)]))
        elif method == "POST" and not rest:
            token_id, secret = store.create_proxy_token(ws, (body or {}).get("name") or "")
            writer.write(_json(200, {"token_id": token_id, "token_secret": secret}))
        elif method == "DELETE" and len(rest) == 1:
            if not store.delete_proxy_token(ws, rest[0]):
                raise NotFoundError(f"Proxy token '{rest[0]}' not found.")
            writer.write(_json(200, {"deleted": rest[0]}))
        else:
            raise HTTPError(404, "not found")


def _infos(version: Any) -> list[dict[str, Any]]:
    if version is None:
        return []
    return [{"tag": i.tag, "url": i.url, "host_url": i.host_url, "truncated": i.truncated,
             "requires_proxy_auth": i.requires_proxy_auth} for i in version.infos]


@dataclass(frozen=True)
class ServerInfo:
    server_id: str
    pid: int
    control_url: str
    token: str
    kind: str
    started_at: float
    runtime: str = ""  # how containers run: "sandbox (...)" or "process (NOT isolated: why)"

    def alive(self) -> bool:
        return pid_alive(self.pid)


def container_pid(container: Any) -> int | None:
    """The host pid of a sandboxed container's PID 1: the only child of its supervisor."""
    isolation = getattr(container, "isolation", None)
    proc = getattr(container, "proc", None)
    if isolation is None or not isolation.enabled or proc is None or proc.returncode is not None:
        return None
    try:
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
    except OSError:
        return None
    return int(children[0]) if children else None


def runtime_description(backend: Any) -> str:
    """What a backend says of how its containers run (the local backend: sandbox or process)."""
    return str(getattr(backend, "runtime_description", backend.name))


def process_runtime_warning(backend: Any) -> str | None:
    """The loud notice for a server whose containers are not isolated (or lack a tool), or None."""
    isolation = getattr(backend, "isolation", None)
    if getattr(backend, "sandboxed", True):
        if isolation is not None and isolation.slirp is None:
            return ("slirp4netns is not installed (Debian package `slirp4netns`): `web_server` containers "
                    "reach the platform but have no outbound network.")
        return None
    return (f"Containers run on the process runtime: {runtime_description(backend)}. They share this "
            "machine's filesystem, processes and ports, and can read the server's state. "
            "Do not serve untrusted code (docs/security.md).")


def servers_dir(home: Path) -> Path:
    return home / "servers"


def register(home: Path, control: ControlServer, kind: str) -> Path:
    """Write this server's discovery file (mode 0600: it holds the embedded server's token)."""
    directory = servers_dir(home)
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    path = directory / f"{control.server.settings.server_id}.json"
    info = {
        "server_id": control.server.settings.server_id,
        "pid": os.getpid(),
        "control_url": control.url,
        "token": control.token,
        "kind": kind,
        "started_at": time.time(),
        "runtime": runtime_description(control.server.backend),
    }
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(info, fh)
    tmp.replace(path)
    return path


def running_servers(home: Path) -> list[ServerInfo]:
    """Servers whose discovery file exists and whose process is alive (stale files are removed)."""
    found: list[ServerInfo] = []
    directory = servers_dir(home)
    if not directory.is_dir():
        return found
    for path in sorted(directory.glob("*.json")):
        try:
            info = ServerInfo(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):
            continue
        if info.alive():
            found.append(info)
        else:
            with contextlib.suppress(OSError):
                path.unlink()
    return found
