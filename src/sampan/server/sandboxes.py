"""`modal.Sandbox` on the server: one container each, started from an image with a command, outside any pool.

A sandbox's container runs the agent (runtime/sandbox_agent.py) in place of a user module: it runs the
entrypoint and every `exec`, keeps their output, works on files, and relays the exposed ports, which
the server's tunnels (gateway/tunnels.py) reach. Everything a client asks of a sandbox goes through
here after the control API checked the workspace: the server is the only one who can reach an agent.

A sandbox ends when its entrypoint exits (its code), at its `timeout` (124), after `idle_timeout`
seconds with no exec running, no request and no tunnel connection (137), or on `terminate()` (137).
Finished sandboxes are remembered (the last MAX_FINISHED) for `from_id`, `wait` and `poll`. Sandboxes
count against the workspace's container cap; past it, Modal's "Insufficient capacity" error.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import re
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..exception import AlreadyExistsError, InvalidError, NotFoundError, ResourceExhaustedError
from ..manifest import SANDBOX_KIND, FunctionEntry, Manifest, compose_env
from ..resources import Resources
from .bundle import check_paths, write_bundle
from .endpoints import AppVersion, WebEndpoint
from .gateway.tunnels import Tunnel
from .objects import NAME

if TYPE_CHECKING:
    from .apps import AppServer

MAX_FINISHED = 1000
KEPT_OUTPUT = 4 << 20  # bytes of each stream of a finished sandbox's entrypoint kept for `sb.stdout.read()`
MAX_KEPT_OUTPUT = 256 << 20  # of all finished sandboxes together; the oldest outputs go first
WAIT_STEP_S = 25.0  # one long poll of the agent for the entrypoint's end
TIMEOUT_CODE, TERMINATED_CODE = 124, 137
AGENT_TIMEOUT_S = 120.0
MAX_PORTS = 32
ENV_KEY = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")


class AgentError(Exception):
    """The agent answered with an error: `kind` is the Python exception it met (FileNotFoundError...)."""

    def __init__(self, status: int, message: str, kind: str) -> None:
        super().__init__(message)
        self.status, self.kind = status, kind


async def agent_call(address: Any, path: str, body: dict[str, Any], timeout: float = AGENT_TIMEOUT_S) -> Any:
    """One request to a sandbox's agent, on its Unix socket (or loopback port on the process runtime)."""
    async def exchange() -> Any:
        if isinstance(address, str):
            reader, writer = await asyncio.open_unix_connection(address, limit=1 << 20)
        else:
            reader, writer = await asyncio.open_connection(*address, limit=1 << 20)
        try:
            data = json.dumps(body).encode()
            writer.write(f"POST {path} HTTP/1.1\r\nhost: agent\r\ncontent-type: application/json\r\n"
                         f"content-length: {len(data)}\r\n\r\n".encode() + data)
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length:"))
            answer = json.loads(await reader.readexactly(length))
        finally:
            writer.close()
        if status != 200:
            raise AgentError(status, answer.get("error", "the sandbox's agent failed"), answer.get("kind", ""))
        return answer

    return await asyncio.wait_for(exchange(), timeout)


@dataclass
class Sandbox:
    id: str
    workspace: str
    app_key: str
    name: str | None
    tags: dict[str, str]
    timeout: float
    idle_timeout: float | None
    ports: tuple[int, ...]
    endpoint: Any = None  # the WebEndpoint its container spec came from (image, env, Volumes)
    container: Any = None
    created: float = field(default_factory=time.time)
    started_at: float = field(default_factory=time.time)  # what the containers list shows (age)
    returncode: int | None = None
    how: str = ""  # how it finished: "exited" (its entrypoint), "timeout", "terminated"
    finishing: bool = False
    finished: float | None = None
    last_active: float = field(default_factory=time.monotonic)
    busy: int = 0  # requests and tunnel connections in progress
    tunnels: dict[int, Tunnel] = field(default_factory=dict)
    output: dict[int, bytes] = field(default_factory=dict)  # a finished sandbox's entrypoint output, by fd
    done: asyncio.Event = field(default_factory=asyncio.Event)
    watcher: asyncio.Task[None] | None = None

    @property
    def backend(self) -> Any:  # what `sampan container exec|shell` enter (control/containers.py container_pid)
        return self.container

    def describe(self) -> dict[str, Any]:
        return {"sandbox_id": self.id, "app_key": self.app_key, "name": self.name, "tags": self.tags,
                "created_at": self.created, "returncode": self.returncode, "finished_at": self.finished,
                "how": self.how, "status": "RUNNING" if self.returncode is None else "FINISHED",
                "timeout": self.timeout}


def check_request(body: dict[str, Any]) -> None:
    """What the SDK already checked, checked again at the boundary (Modal's texts)."""
    cmd = body.get("cmd") or []
    if not isinstance(cmd, list) or not all(isinstance(a, str) for a in cmd):
        raise InvalidError("All entrypoint arguments must be strings")
    if sum(len(a.encode()) for a in cmd) > 65536:
        raise InvalidError(f"Total length of CMD arguments cannot exceed 65536 bytes (ARG_MAX). "
                           f"Got {sum(len(a.encode()) for a in cmd)} bytes.")
    workdir = body.get("workdir")
    if workdir is not None and not str(workdir).startswith("/"):
        raise InvalidError(f"workdir must be an absolute path, got: {workdir}")
    timeout = body.get("timeout")
    if timeout is None:
        raise InvalidError("`timeout=None` is only supported for experimental persistent Sandboxes.")
    if not 0 < float(timeout) <= 86400:
        raise InvalidError("`timeout` must be between 1 second and 24 hours.")
    ports = body.get("ports") or []
    if not isinstance(ports, list) or not all(isinstance(p, int) and 1 <= p <= 65535 for p in ports):
        raise InvalidError("port must be between 1 and 65535")
    if len(ports) > MAX_PORTS:
        raise InvalidError(f"A sandbox exposes at most {MAX_PORTS} ports.")
    if ports and body.get("block_network"):
        raise InvalidError("Cannot specify open ports when `block_network` is enabled")
    name = body.get("name")
    if name is not None and (not isinstance(name, str) or not NAME.match(name)):
        raise InvalidError(f"Invalid Sandbox name: {name!r}. Names may contain only alphanumeric characters, "
                           "dashes, periods, and underscores, must contain a letter or digit, and must be "
                           "shorter than 64 characters.")
    env = body.get("env") or {}
    if not isinstance(env, dict) or not all(isinstance(k, str) and ENV_KEY.match(k) and isinstance(v, str)
                                            for k, v in env.items()):
        raise InvalidError("`env` must map variable names (letters, digits, underscores) to strings.")
    probe = body.get("probe")
    if probe is not None:
        argv = probe.get("exec_argv") if isinstance(probe, dict) else None
        tcp = probe.get("tcp_port") if isinstance(probe, dict) else None
        if not ((isinstance(tcp, int) and 1 <= tcp <= 65535 and argv is None)
                or (tcp is None and isinstance(argv, list) and argv and all(isinstance(a, str) for a in argv))):
            raise InvalidError("Probe must be created with Probe.with_tcp(...) or Probe.with_exec(...)")
    try:
        Resources.from_json(body.get("resources"))
    except (TypeError, ValueError, KeyError, AttributeError):
        raise InvalidError("`resources` is not what `cpu=`, `memory=` and `gpu=` make.") from None


class Sandboxes:
    def __init__(self, server: AppServer) -> None:
        self.server = server
        self.live: dict[str, Sandbox] = {}
        self.finished: OrderedDict[str, Sandbox] = OrderedDict()

    # -- lookups ----------------------------------------------------------------------------------
    def get(self, workspace: str, sandbox_id: str) -> Sandbox:
        found = self.live.get(sandbox_id) or self.finished.get(sandbox_id)
        if found is None or found.workspace != workspace:
            raise NotFoundError(f"Sandbox {sandbox_id} not found.")
        return found

    def running(self, workspace: str, sandbox_id: str) -> Sandbox:
        found = self.get(workspace, sandbox_id)
        if found.returncode is not None:
            raise InvalidError(f"Sandbox {sandbox_id} has already finished (exit code {found.returncode}).")
        found.last_active = time.monotonic()
        return found

    def listed(self, workspace: str, app_key: str | None, tags: dict[str, str]) -> list[Sandbox]:
        """Running sandboxes of the workspace, newest first; of one app, with all these tags."""
        found = [s for s in self.live.values() if s.workspace == workspace and (app_key is None or s.app_key == app_key)
                 and all(s.tags.get(k) == v for k, v in tags.items())]
        return sorted(found, key=lambda s: s.created, reverse=True)

    def by_name(self, workspace: str, app_key: str, name: str, include_terminated: bool) -> Sandbox:
        for group in ([self.live.values()] + ([reversed(self.finished.values())] if include_terminated else [])):
            for s in group:
                if s.workspace == workspace and s.app_key == app_key and s.name == name:
                    return s
        raise NotFoundError(f"Sandbox with name '{name}' not found in app '{app_key.split('/', 1)[-1]}'.")

    # -- create -----------------------------------------------------------------------------------
    async def create(self, workspace: str, app_key: str, app_name: str, body: dict[str, Any]) -> Sandbox:
        check_request(body)
        name = body.get("name")
        if name is not None:
            with contextlib.suppress(NotFoundError):
                self.by_name(workspace, app_key, name, False)
                raise AlreadyExistsError(f"Sandbox with name '{name}' already exists in app '{app_name}'.")
        server = self.server
        entry = FunctionEntry(
            tag="sandbox", kind=SANDBOX_KIND,
            web={"cmd": list(body.get("cmd") or []), "workdir": body.get("workdir"), "pty": bool(body.get("pty")),
                 "block_network": bool(body.get("block_network")), "ports": list(body.get("ports") or []),
                 "probe": body.get("probe")},
            timeout=int(float(body["timeout"])), startup_timeout=int(body.get("startup_timeout") or 600),
            image_env=dict(body.get("image_env") or {}), secrets=tuple(body.get("secrets") or ()),
            image=tuple(body.get("image") or ()), volumes=tuple(body.get("volumes") or ()),
            resources=body.get("resources"),
        )
        manifest = Manifest(app_name=app_name, module="sandbox", app_var="app", functions=(), calls=(entry,))
        env = compose_env(entry, server.secret_resolver(workspace))  # a missing secret fails here, before a build
        files = {rel: base64.b64decode(data) for rel, data in dict(body.get("files") or {}).items()}
        check_paths(files)  # the image's local files: relative paths inside the bundle, or a 400
        bundle = write_bundle(server.settings.home, files or {".sandbox": b""})
        images = await server.build_images(manifest, workspace=workspace, bundle=bundle)
        if not server.quota.take(workspace):
            server.quota.reclaim(workspace, -1)
            if not server.quota.take(workspace):
                raise ResourceExhaustedError("Insufficient capacity to create sandbox.")
        sandbox = Sandbox("sb-" + secrets.token_hex(12), workspace, app_key, name, dict(body.get("tags") or {}),
                          float(body["timeout"]), float(body["idle_timeout"]) if body.get("idle_timeout") else None,
                          tuple(body.get("ports") or ()))
        try:
            version = AppVersion(manifest, bundle, ephemeral=True, number=0, workspace=workspace, key=app_key)
            sandbox.endpoint = WebEndpoint(server, version, entry, "", False, images[0],
                                           {**env, **dict(body.get("env") or {})})
            spec = sandbox.endpoint.container_spec(sandbox.id)
            sandbox.container = await server.backend.start(
                spec, lambda cid, stream, line: server.log("sandbox", cid, stream, line, app_key, workspace))
        except BaseException:
            server.quota.give_back(workspace)
            raise
        sandbox.started_at = time.time()
        self.live[sandbox.id] = sandbox
        for port in sandbox.ports:
            tunnel = Tunnel(server.settings.host, getattr(sandbox.container, "socket_path", None), port,
                            on_connection=self._touch(sandbox))
            await tunnel.start()
            sandbox.tunnels[port] = tunnel
        sandbox.watcher = asyncio.create_task(self._watch(sandbox))
        return sandbox

    @staticmethod
    def _touch(sandbox: Sandbox) -> Any:
        def touched(delta: int) -> None:
            sandbox.busy += delta
            sandbox.last_active = time.monotonic()
        return touched

    # -- while it runs --------------------------------------------------------------------------------
    async def _watch(self, sandbox: Sandbox) -> None:
        """Until the entrypoint ends (its code), the timeout (124), the idle timeout or the container dies."""
        deadline = time.monotonic() + sandbox.timeout
        code: int | None = None
        how = "exited"
        while code is None:
            left = deadline - time.monotonic()
            if left <= 0:
                code, how = TIMEOUT_CODE, "timeout"
                break
            if sandbox.idle_timeout is not None and sandbox.busy == 0 \
                    and time.monotonic() - sandbox.last_active > sandbox.idle_timeout:
                code, how = TERMINATED_CODE, "terminated"
                break
            step = min(left, WAIT_STEP_S, sandbox.idle_timeout or WAIT_STEP_S)
            try:
                answer = await agent_call(sandbox.container.address, "/io",
                                          {"process": "main", "op": "wait", "timeout": step}, step + 10)
                code = answer["returncode"]
            except (OSError, asyncio.TimeoutError, AgentError, ValueError):
                if not sandbox.container.alive:
                    code, how = TERMINATED_CODE, "terminated"
                else:
                    await asyncio.sleep(0.5)
        await self._finish(sandbox, code, how)

    async def _keep_output(self, sandbox: Sandbox) -> None:
        """The entrypoint's output, read from the agent before its container goes: readable afterwards."""
        for fd in (1, 2):
            kept, offset = bytearray(), 0
            with contextlib.suppress(OSError, asyncio.TimeoutError, AgentError, ValueError, KeyError):
                while len(kept) < KEPT_OUTPUT:
                    got = await agent_call(sandbox.container.address, "/io",
                                           {"process": "main", "op": "read", "fd": fd, "offset": offset}, 10)
                    piece = base64.b64decode(got["data"])
                    kept += piece
                    offset = got["offset"]
                    if got["eof"] or not piece:
                        break
            sandbox.output[fd] = bytes(kept[:KEPT_OUTPUT])
        total = sum(len(b) for s in self.finished.values() for b in s.output.values())
        for old in self.finished.values():
            if total <= MAX_KEPT_OUTPUT:
                break
            total -= sum(len(b) for b in old.output.values())
            old.output = {}

    def read_kept(self, sandbox: Sandbox, body: dict[str, Any]) -> dict[str, Any]:
        """What the agent's `read` answered, for the entrypoint of a finished sandbox."""
        data = sandbox.output.get(int(body.get("fd") or 1), b"")
        offset = max(0, int(body.get("offset") or 0))
        piece = data[offset:offset + (4 << 20)]
        return {"data": base64.b64encode(piece).decode(), "offset": offset + len(piece), "lost": 0,
                "eof": offset + len(piece) >= len(data)}

    async def _finish(self, sandbox: Sandbox, code: int, how: str) -> None:
        if sandbox.returncode is not None or sandbox.finishing:
            return
        sandbox.finishing = True
        if sandbox.container.alive:  # before its end is told: a client that sees the end may read it at once
            await self._keep_output(sandbox)
        sandbox.returncode, sandbox.how, sandbox.finished = code, how, time.time()
        self.live.pop(sandbox.id, None)
        self.finished[sandbox.id] = sandbox
        while len(self.finished) > MAX_FINISHED:
            self.finished.popitem(last=False)
        for tunnel in sandbox.tunnels.values():
            tunnel.close()
        sandbox.done.set()
        try:
            await sandbox.container.stop(grace=2.0)
        finally:
            self.server.quota.give_back(sandbox.workspace)
            self.server.container_exited(sandbox.id)

    async def terminate(self, sandbox: Sandbox) -> None:
        if sandbox.returncode is not None:
            return
        if sandbox.watcher is not None:
            sandbox.watcher.cancel()
        await self._finish(sandbox, TERMINATED_CODE, "terminated")

    async def call(self, sandbox: Sandbox, path: str, body: dict[str, Any], timeout: float = AGENT_TIMEOUT_S) -> Any:
        """A request to the sandbox's agent, which counts as activity for its idle timeout."""
        sandbox.busy += 1
        try:
            return await agent_call(sandbox.container.address, path, body, timeout)
        finally:
            sandbox.busy -= 1
            sandbox.last_active = time.monotonic()

    def describe_containers(self, now: float) -> list[dict[str, Any]]:
        return [{"id": s.id, "workspace": s.workspace, "app_key": s.app_key, "app": s.app_key.split("/", 1)[-1],
                 "function": "sandbox", "pool": "sandbox", "version": 0, "state": "ready", "in_flight": s.busy,
                 "started_at": s.started_at, "age_s": round(now - s.started_at, 1)} for s in self.live.values()]

    async def close(self) -> None:
        for sandbox in list(self.live.values()):
            await self.terminate(sandbox)
