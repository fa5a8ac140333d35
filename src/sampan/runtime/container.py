"""What runs inside a container, in the order Modal documents (fact sheet §6, lifecycle):

    import the user's module from the code bundle
    -> @enter hooks (snap=True first)          (classes)
    -> build the app for the function's kind   (runtime/kinds.py)
    -> ASGI lifespan startup                   (uvicorn)
    -> report "ready" with our address on the status pipe
    -> serve until SIGTERM, finishing in-flight requests
    -> lifespan shutdown -> @exit hooks -> exit

Anything that fails before "ready" is reported on the status pipe with its traceback on stderr,
so the server can answer the waiting request and the user sees why.

Longer than 400 lines because the container's whole life (load, hooks, serve, drain, exit) is one loop
best read top to bottom.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import inspect
import json
import os
import select
import signal
import socket
import sys
import threading
import time
import traceback
from typing import Any

from .. import modal_alias, volume_sync
from ..callcontext import set_call_id
from ..classparams import resolve_class_params
from ..manifest import SANDBOX_KIND
from ..sdk.functions import instantiate, lifecycle_methods
from ..sdk.partial import LIFECYCLE_ENTER, LIFECYCLE_EXIT
from . import kinds, sandbox_agent
from .callline import CallLine
from .relay import relay_to_port

CALL_ID_HEADER = b"modal-function-call-id"
GRACEFUL_SHUTDOWN_S = 30


class StatusPipe:
    """One JSON line to the backend: {"ready": {...}} or {"error": "..."}."""

    def __init__(self, fd: int | None) -> None:
        self.fd = fd

    def send(self, message: dict[str, Any]) -> None:
        if self.fd is None:
            return
        data = (json.dumps(message) + "\n").encode()
        with contextlib.suppress(OSError):
            os.write(self.fd, data)
            os.close(self.fd)
        self.fd = None


def _watch_server() -> None:
    """End the container if the server that started it dies (no orphaned containers).

    The server is the parent of a spawned container, but the grandparent of a forked one (its
    parent is the template, whose own end must not take its containers down). So the container
    watches the server's pid through a pidfd, which cannot be fooled by pid reuse.
    """
    server = int(os.environ.get("SAMPAN_SERVER_PID") or os.getppid())
    if server == os.getppid():
        with contextlib.suppress(Exception):
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    try:
        pidfd: int | None = os.pidfd_open(server)
    except (AttributeError, OSError):
        pidfd = None
    if pidfd is None and server != os.getppid():
        return  # the server is already gone, or this platform has no pidfd: nothing to watch

    def watch() -> None:
        if pidfd is not None:
            select.select([pidfd], [], [])
        else:
            while os.getppid() == server:
                time.sleep(1.0)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(os.getpgrp(), signal.SIGTERM)

    threading.Thread(target=watch, name="sampan-server-watch", daemon=True).start()


async def _maybe_await(value: Any) -> Any:
    if inspect.isawaitable(value):
        return await value
    return value


class CallIdMiddleware:
    """Expose the gateway's function call id to `modal.current_function_call_id()`."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket"):
            for name, value in scope.get("headers", ()):
                if name == CALL_ID_HEADER:
                    set_call_id(value.decode("latin-1"))
                    break
        await self.app(scope, receive, send)


class Runtime:
    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.entry = spec["entry"]
        self.instance: Any = None
        self.fn: Any = None
        self.app: Any = None

    def load(self) -> Any:
        """Import the user's module from the bundle and return the callable to serve."""
        self.fn = self._load()
        return self.fn

    def _load(self) -> Any:
        bundle = self.spec["bundle_dir"]
        if not os.path.isdir(bundle):  # in the sandbox the code is at /root, importable whatever the WORKDIR
            bundle = "/root"
        if bundle not in sys.path:
            sys.path.insert(0, bundle)
        module = importlib.import_module(self.spec["module"])
        app = self.app = getattr(module, self.spec["app_var"])
        self._hydrate(app)
        cls_name = self.entry.get("cls_name")
        if cls_name:
            cls_handle = app.classes[cls_name]
            params = resolve_class_params(cls_handle.params, self.spec.get("class_params") or {})
            self.instance = instantiate(cls_handle.user_cls, params)
            return None  # resolved after @enter hooks run
        return app.functions[self.entry["tag"]].spec.raw_f

    def _hydrate(self, app: Any) -> None:
        urls: dict[str, str] = self.spec.get("web_urls") or {}
        for tag, url in urls.items():
            if tag in app.functions:
                app.functions[tag]._web_url = url
            elif "." in tag:
                cls_name, method_name = tag.split(".", 1)
                if cls_name in app.classes:
                    app.classes[cls_name]._web_urls[method_name] = url
            elif tag in app.classes:  # a server class (`@app.server`)
                app.classes[tag]._web_urls[""] = url

    async def run_hooks(self, flag: str = LIFECYCLE_ENTER, snap: bool | None = None) -> None:
        """Run `flag` hooks in order; `snap` picks only the enter hooks with that `snap=` value."""
        if self.instance is None:
            return
        for pf in lifecycle_methods(type(self.instance), flag):
            if snap is None or pf.snap == snap:
                if inspect.iscoroutinefunction(pf.raw_f):
                    await pf.raw_f(self.instance)
                else:  # a sync hook runs outside the loop's thread, as on Modal (it may call asyncio.run)
                    await _maybe_await(await asyncio.to_thread(pf.raw_f, self.instance))

    def target(self, fn: Any) -> Any:
        if self.instance is not None:
            if not self.entry.get("method_name"):  # a server class: its @enter hooks started the server
                return lambda: None
            return getattr(self.instance, self.entry["method_name"])
        return fn

    def build_app(self, target: Any) -> Any:
        kind = self.entry["kind"]
        web = self.entry["web"]
        if kind == "fastapi_endpoint":
            return kinds.fastapi_endpoint_app(target, web["method"], web["docs"])
        if kind == "asgi_app":
            return target()
        if kind == "wsgi_app":
            return kinds.wsgi_asgi_app(target(), self.entry.get("max_inputs") or 1)
        if kind == "function":
            return kinds.call_app(target, bool(self.entry.get("is_generator")), self.entry.get("max_inputs") or 1,
                                  self.entry.get("batch"))
        raise ValueError(f"unknown web function kind {kind!r}")


def _listen(unix_path: str | None, host: str = "127.0.0.1") -> socket.socket:
    """The socket the gateway connects to: the backend's Unix socket path, else a port on `host`
    (loopback, or the node's address on a Ray node)."""
    if unix_path:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(unix_path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(unix_path)
        os.chmod(unix_path, 0o600)
    else:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # TCP_NODELAY (listener.py)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, 0))
    sock.listen(2048)
    return sock


def calls_target(runtime: Runtime, target: Any) -> Any:
    """What the call line (callline.py) runs, for a function whose single calls can take it: not a web
    function, a generator or a `@modal.batched` one (those keep the call app's protocol). None otherwise."""
    entry = runtime.entry
    if entry["kind"] != "function" or entry.get("is_generator") or entry.get("batch"):
        return None
    return target


_uvicorn_logging = False


def configure_uvicorn_logging() -> None:
    """uvicorn's logging setup (its LOGGING_CONFIG), once per process: a template runs it before the fork,
    where `uvicorn.Config` would run its dictConfig again in every container (~4 ms of a ~40 ms start)."""
    global _uvicorn_logging
    if not _uvicorn_logging:
        import logging.config

        from uvicorn.config import LOGGING_CONFIG

        logging.config.dictConfig(LOGGING_CONFIG)
        _uvicorn_logging = True


async def _serve_asgi(app: Any, status: StatusPipe, unix_path: str | None = None, host: str = "127.0.0.1",
                      calls: Any = None, max_inputs: int = 1) -> int:
    import uvicorn

    configure_uvicorn_logging()
    sock = _listen(unix_path, host)
    sock.setblocking(False)
    line = None
    if calls is not None:  # single calls on a socket of their own, beside the call app
        line = CallLine(_listen(unix_path + ".calls" if unix_path else None, host), calls,
                        asyncio.get_running_loop(), max(64, 2 * max_inputs))
    config = uvicorn.Config(
        CallIdMiddleware(app),
        loop="none",
        http="httptools",
        lifespan="auto",
        proxy_headers=True,
        forwarded_allow_ips="*",
        log_config=None,  # configured once per process (configure_uvicorn_logging)
        log_level="warning",
        access_log=False,
        server_header=False,
        timeout_keep_alive=3600,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        ws_max_size=2 * 1024 * 1024,
        ws_per_message_deflate=False,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started and not task.done():
        await asyncio.sleep(0.002)
    if not server.started:
        with contextlib.suppress(BaseException):
            await task
        if line is not None:
            line.sock.close()
        status.send({"error": "the app failed during ASGI lifespan startup (see the container's output above)"})
        return 1
    if unix_path:
        ready: dict[str, Any] = {"unix": unix_path}
    else:
        host, port = sock.getsockname()[:2]
        ready = {"host": host, "port": port}
    if line is not None:
        line.start()
        ready["calls"] = line.sock.getsockname() if unix_path else line.sock.getsockname()[1]
    status.send({"ready": ready})
    try:
        await task
    finally:
        if line is not None:  # uvicorn has drained its requests; the line's calls get the same grace
            await asyncio.to_thread(line.close, GRACEFUL_SHUTDOWN_S)
        if unix_path:
            for path in (unix_path, unix_path + ".calls"):
                with contextlib.suppress(OSError):
                    os.unlink(path)
    return 0


async def _serve_web_server(runtime: Runtime, target: Any, status: StatusPipe) -> int:
    web = runtime.entry["web"]
    port = int(web["port"])
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    server_class = runtime.entry.get("cls_name") and not runtime.entry.get("method_name")
    if not server_class and not kinds.port_is_free(port):  # a server class's @enter hooks bound it already
        status.send({"error": f"port {port} is already in use on this machine, so the web server cannot bind it"})
        return 1
    target()
    try:
        await kinds.wait_for_port(port, float(web["startup_timeout"]))
    except TimeoutError as exc:
        traceback.print_exc()
        status.send({"error": f"TimeoutError: {exc}"})
        return 1
    unix_path = runtime.spec.get("unix_socket")
    if not unix_path:
        status.send({"ready": {"host": "127.0.0.1", "port": port}})
        await stop.wait()
        return 0
    # A sandboxed container has a network namespace of its own: its port is reachable only from
    # inside, and the gateway reaches it through this relay on the container's socket.
    with contextlib.suppress(FileNotFoundError):
        os.unlink(unix_path)
    relay = await asyncio.start_unix_server(lambda r, w: relay_to_port(r, w, port), unix_path)
    os.chmod(unix_path, 0o600)
    status.send({"ready": {"unix": unix_path}})
    try:
        await stop.wait()
    finally:
        relay.close()
    return 0


async def run(spec: dict[str, Any], status: StatusPipe, snapshot: Runtime | None = None,
              loaded: Runtime | None = None) -> int:
    """Serve one container. `snapshot`: a Runtime restored from a template (module loaded, snap hooks run);
    `loaded`: one whose module `_main` imported before the loop started.

    The user's module, sync `@enter` hooks and the `asgi_app`/`wsgi_app` factory run where Modal runs
    them: with no event loop running in their thread, so code that calls `asyncio.run()` there works."""
    runtime = snapshot or loaded or Runtime(spec)
    try:
        if snapshot is not None:
            runtime.spec = {**runtime.spec, **spec}
            runtime._hydrate(runtime.app)
            await runtime.run_hooks(LIFECYCLE_ENTER, snap=False)
        else:
            if loaded is None:
                runtime.load()
            await runtime.run_hooks(LIFECYCLE_ENTER)
        target = runtime.target(runtime.fn)
        if runtime.entry["kind"] == "web_server":
            code = await _serve_web_server(runtime, target, status)
        else:
            app = await asyncio.to_thread(runtime.build_app, target)
            code = await _serve_asgi(app, status, spec.get("unix_socket"), spec.get("listen_host") or "127.0.0.1",
                                     calls_target(runtime, target), runtime.entry.get("max_inputs") or 1)
    except BaseException as exc:  # noqa: BLE001 - every failure is reported to the server
        if isinstance(exc, (KeyboardInterrupt, SystemExit)) and status.fd is None:
            raise
        traceback.print_exc()
        status.send({"error": f"{type(exc).__name__}: {exc}"})
        return 1
    try:
        await runtime.run_hooks(LIFECYCLE_EXIT)
    except Exception:
        traceback.print_exc()
    return code


ENVIRON_FILE = "/run/sampan/environ"  # for `sampan shell` (cli/shellrun.py), in the sandbox only


def _publish_environ(spec: dict[str, Any]) -> None:
    """Leave this container's environment (secrets included) in its own /run, where `sampan shell` finds it:
    a forked container's own variables are not in /proc/<pid>/environ (that is the template's, from its
    exec). Only in the sandbox, whose /run/sampan is the container's alone."""
    if not str(spec.get("unix_socket") or "").startswith(os.path.dirname(ENVIRON_FILE) + "/"):
        return
    with contextlib.suppress(OSError):
        fd = os.open(ENVIRON_FILE, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(b"\0".join(f"{k}={v}".encode(errors="replace") for k, v in os.environ.items()))


def main() -> None:
    """A spawned container: `python -m sampan.runtime` with its spec in the environment."""
    box = os.environ.get("SAMPAN_SANDBOX")
    if box is not None:  # a spawned sandboxed container: the base, then its own namespaces (sandbox.py)
        from . import sandbox

        parts = json.loads(box)
        if parts.get("base") is not None:
            sandbox.enter_base(parts["base"], parts["base_fds"])
            if parts.get("exec"):  # a root filesystem image: continue in its own interpreter
                os.environ["SAMPAN_SANDBOX"] = json.dumps({**parts, "base": None})
                sandbox.exec_in_image(parts["exec"], "sampan.runtime.container")
        os.environ.pop("SAMPAN_SANDBOX", None)
        sandbox.enter_container(parts["plan"], parts["plan_fds"])
        sys.path[0] = os.getcwd()
    spec = json.loads(os.environ.pop("SAMPAN_CONTAINER"))
    fd = os.environ.pop("SAMPAN_STATUS_FD", None)
    modal_alias.install()
    os._exit(_main(spec, StatusPipe(int(fd) if fd else None)))


def main_forked(spec: dict[str, Any], status_fd: int, snapshot: Runtime | None = None) -> int:
    """A container forked from a template (runtime/template.py); returns the exit code."""
    os.environ.pop("SAMPAN_CONTAINER", None)
    os.environ.pop("SAMPAN_STATUS_FD", None)
    return _main(spec, StatusPipe(status_fd), snapshot)


def apply_limits(limits: dict[str, Any] | None) -> None:
    """The local backend's enforcement of `cpu=(request, limit)` and `memory=(request, limit)`:
    the container may run on that many cores (CPU affinity), and its address space is capped (an
    allocation past it raises MemoryError). Applied before the user's code runs, on either path."""
    if not limits:
        return
    import resource

    if limits.get("cpus"):
        with contextlib.suppress(OSError, AttributeError):
            os.sched_setaffinity(0, set(limits["cpus"]))
    if limits.get("memory_bytes"):
        cap = int(limits["memory_bytes"])
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_AS, (cap, cap))


def _main(spec: dict[str, Any], status: StatusPipe, snapshot: Runtime | None = None) -> int:
    apply_limits(spec.get("limits"))
    _watch_server()
    _publish_environ(spec)
    # uvicorn re-raises a captured SIGTERM after its graceful shutdown; a no-op handler keeps us
    # alive long enough to run @exit hooks.
    signal.signal(signal.SIGTERM, lambda *_: None)
    signal.signal(signal.SIGINT, lambda *_: None)
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:
        runner = asyncio.run
    if spec["entry"]["kind"] == SANDBOX_KIND:  # a modal.Sandbox: no user module, the agent (sandbox_agent.py)
        return runner(sandbox_agent.serve(spec, status))
    try:  # a Ray node's own copy of each Volume, filled from the server before any user code runs
        volume_sync.pull_all()
    except BaseException as exc:  # noqa: BLE001 - reported to the server, as any start failure
        traceback.print_exc()
        status.send({"error": f"could not fetch the container's Volumes from the server: {exc}"})
        return 1
    loaded = None
    if snapshot is None:  # import the user's module before any loop runs (module-level asyncio.run works)
        loaded = Runtime(spec)
        try:
            loaded.load()
        except BaseException as exc:  # noqa: BLE001 - reported to the server, as any start failure
            traceback.print_exc()
            status.send({"error": f"{type(exc).__name__}: {exc}"})
            return 1
    code = runner(run(spec, status, snapshot, loaded))
    volume_sync.commit_all()  # Modal commits a container's Volume writes when it ends
    sys.stdout.flush()
    sys.stderr.flush()
    return code
