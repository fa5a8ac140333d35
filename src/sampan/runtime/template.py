"""A template process: a warm interpreter that new containers are `fork()`ed from.

Importing FastAPI, Starlette, pydantic and uvicorn takes 0.3-1 s on a small machine, and every
freshly spawned container would pay it again. A template pays it once per image: it imports the
runtime and the heavy modules the image has, then waits. Each container is a `fork()` of it, so a
cold start costs a fork, the user's module and the app's own startup.

For a function with `enable_memory_snapshot=True` the template also imports the user's module and
runs the `@modal.enter(snap=True)` hooks; containers forked from it skip straight to the
`snap=False` hooks (Modal's memory snapshots, done with copy-on-write memory instead of a file).

What makes a fork safe, and how this file keeps it so:

- no threads: a fork copies only the calling thread, so a lock held by another thread stays held
  forever in the child. The template starts none, and checks before every fork that none was
  started by an import; if one was, it refuses and the server spawns containers instead;
- no event loop: the loop, its selector and its sockets would be shared with every child. The
  template waits with a plain selector and the child builds its own loop;
- nothing inherited by accident: the child closes every descriptor but stdin, its own stdout,
  stderr and status pipe, starts its own session (process group, signalled as a whole), resets
  signal handlers, and gets the container's own environment and working directory;
- fresh randomness: `random` reseeds itself after a fork; ids use `os.urandom`.

Protocol, over a SOCK_SEQPACKET socket from the server (one message each way per event):

    template -> server  {"ready": {"pid", "preloaded", "rss_kb", "seconds"}} | {"unsafe": reason}
    server -> template  {"fork": container id, "spec", "env", "cwd", "sandbox"?: {"plan", "fds": names}}
                        with fds [stdout, stderr, status, *the plan's mounts]
    template -> server  {"forked": container id, "pid"} | {"forked": container id, "error"}
    template -> server  {"exit": pid, "code"} when a child ends
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import os
import random
import selectors
import signal
import socket
import sys
import threading
import time
import traceback
import warnings
from typing import Any

# Modules worth having in memory before the fork, when the image has them. Missing ones are skipped.
PRELOAD = (
    "sampan.runtime.container",
    "uvloop",
    "httptools",
    "uvicorn",
    "uvicorn.config",
    "uvicorn.server",
    "uvicorn.lifespan.on",
    "uvicorn.loops.uvloop",
    "uvicorn.protocols.http.httptools_impl",
    "uvicorn.protocols.websockets.auto",  # what `ws="auto"` loads (the sans-I/O one): ~9 ms per container
    "uvicorn.middleware.proxy_headers",
    "anyio",
    "anyio._backends._asyncio",
    "pydantic",
    "pydantic.v1",  # what FastAPI looks into for a handler's return annotation (`-> dict`): ~23 modules
    "starlette.applications",
    "starlette.responses",
    "starlette.middleware.cors",
    "fastapi",
    "fastapi.middleware.cors",
    "fastapi.routing",
    "fastapi.openapi.utils",
    "fastapi.telemetry._runtime",  # imported by a FastAPI app's first call, where this FastAPI has it
    "a2wsgi",
    "flask",
    "cloudpickle",
)
MAX_MESSAGE = 1 << 20
MAX_FDS = 64  # stdout, stderr, status, and the mounts of a sandboxed container (sandbox.py)


def preload(names: tuple[str, ...] = PRELOAD) -> list[str]:
    """Import what the image has of `names`; returns those imported."""
    done = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deprecation notices of modules the app may never use
        for name in names:
            try:
                importlib.import_module(name)
            except Exception:  # noqa: BLE001 - missing or broken: the container imports it itself, or not
                continue
            done.append(name)
    return done


def _rss_kb() -> int:
    with contextlib.suppress(OSError, ValueError), open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _watch_server() -> None:
    """End with the server: a template outliving it would keep its containers alive."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class Template:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.children: set[int] = set()
        self.snapshot: Any = None  # a Runtime with the user's module loaded and snap=True hooks run
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_w, False)

    def send(self, message: dict[str, Any]) -> None:
        with contextlib.suppress(OSError):
            self.sock.send(json.dumps(message).encode())

    def prepare(self, snapshot_spec: dict[str, Any] | None) -> None:
        started = time.perf_counter()
        preloaded = preload()
        with contextlib.suppress(Exception):  # an image without uvicorn: its containers say so themselves
            from .container import configure_uvicorn_logging

            configure_uvicorn_logging()
        if snapshot_spec is not None:
            self.snapshot = _take_snapshot(snapshot_spec)
        unsafe = self.unsafe()
        if unsafe:
            self.send({"unsafe": unsafe})
            return
        self.send({"ready": {"pid": os.getpid(), "preloaded": preloaded, "rss_kb": _rss_kb(),
                             "seconds": round(time.perf_counter() - started, 3),
                             "snapshot": self.snapshot is not None}})

    @staticmethod
    def unsafe() -> str | None:
        threads = [t.name for t in threading.enumerate() if t is not threading.main_thread()]
        if threads:
            return f"the template has threads ({', '.join(threads)}): forking it is not safe"
        return None

    def serve(self) -> None:
        signal.set_wakeup_fd(self.wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        selector = selectors.DefaultSelector()
        selector.register(self.sock, selectors.EVENT_READ, "ctrl")
        selector.register(self.wake_r, selectors.EVENT_READ, "child")
        while True:
            for key, _ in selector.select():
                if key.data == "child":
                    with contextlib.suppress(BlockingIOError):
                        os.read(self.wake_r, 4096)
                    self.reap()
                    continue
                try:
                    data, fds, _flags, _addr = socket.recv_fds(self.sock, MAX_MESSAGE, MAX_FDS)
                except (BlockingIOError, InterruptedError):
                    continue
                if not data:
                    return  # the server went away
                self.handle(json.loads(data), fds)

    def reap(self) -> None:
        for pid in list(self.children):
            try:
                done, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                self.children.discard(pid)
                continue
            if done:
                self.children.discard(pid)
                self.send({"exit": pid, "code": os.waitstatus_to_exitcode(status)})

    def handle(self, message: dict[str, Any], fds: list[int]) -> None:
        cid = message.get("fork")
        unsafe = self.unsafe()
        expected = 3 + len((message.get("sandbox") or {}).get("fds") or [])
        if cid is None or len(fds) != expected or unsafe:
            for fd in fds:
                os.close(fd)
            self.send({"forked": cid, "error": unsafe or "bad fork request"})
            return
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            self.child(message, fds)  # never returns
        for fd in fds:
            os.close(fd)
        self.children.add(pid)
        self.send({"forked": cid, "pid": pid})

    def child(self, message: dict[str, Any], fds: list[int]) -> None:
        code = 1
        try:
            out, err, status, *mounts = fds
            os.setsid()
            _set_process_name(message["fork"])
            os.dup2(out, 1)
            os.dup2(err, 2)
            keep = {0, 1, 2, status, *mounts}
            signal.set_wakeup_fd(-1)
            for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGPIPE):
                signal.signal(sig, signal.SIG_DFL if sig != signal.SIGPIPE else signal.SIG_IGN)
            self.sock.close()
            for fd in (self.wake_r, self.wake_w, out, err):
                if fd not in keep:
                    with contextlib.suppress(OSError):
                        os.close(fd)
            _close_inherited(keep)
            os.environ.clear()
            os.environ.update(message["env"])
            box = message.get("sandbox")
            if box is not None:  # the supervisor stays here; the container returns, isolated and in its workdir
                from . import sandbox

                sandbox.enter_container(box["plan"], dict(zip(box["fds"], mounts, strict=False)))
            else:
                os.chdir(message["cwd"])
            sys.path[0] = os.getcwd()  # as `python -m` would have set it
            sys.argv = [sys.argv[0]]
            random.seed()
            from . import container

            code = container.main_forked(message["spec"], status, self.snapshot)
        except BaseException:  # noqa: BLE001 - the child must never return into the template's loop
            with contextlib.suppress(Exception):
                traceback.print_exc()
        finally:
            with contextlib.suppress(Exception):
                sys.stdout.flush()
                sys.stderr.flush()
            os._exit(code)


def _close_inherited(keep: set[int]) -> None:
    """Close every descriptor the child does not need (what an import may have left open)."""
    try:
        open_fds = [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:
        open_fds = list(range(3, 256))
    for fd in open_fds:
        if fd not in keep:
            with contextlib.suppress(OSError):
                os.close(fd)


def _set_process_name(name: str) -> None:
    """What `ps -o comm` and `top` show: the container id, not the template's command line."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(15, name.encode()[:15])  # PR_SET_NAME


def _take_snapshot(spec: dict[str, Any]) -> Any:
    """Import the user's module and run `snap=True` hooks, as Modal does before its snapshot."""
    from .container import Runtime

    runtime = Runtime(spec)
    runtime.load()
    asyncio.run(runtime.run_hooks(snap=True))
    return runtime


def main() -> None:
    base = os.environ.pop("SAMPAN_SANDBOX_BASE", None)
    if base is not None:  # before anything of the image is imported (and before PDEATHSIG: a uid change clears it)
        from . import sandbox

        spec = json.loads(base)
        sandbox.enter_base(spec["base"], spec["fds"])
        if spec.get("exec"):  # a root filesystem image: from here on, its own interpreter
            sandbox.exec_in_image(spec["exec"], "sampan.runtime.template")
    sock = socket.socket(fileno=int(os.environ.pop("SAMPAN_TEMPLATE_FD")))
    snapshot = os.environ.pop("SAMPAN_TEMPLATE_SNAPSHOT", None)
    _watch_server()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the server; it stops us in order
    from .. import modal_alias

    modal_alias.install()
    template = Template(sock)
    try:
        template.prepare(json.loads(snapshot) if snapshot else None)
    except BaseException as exc:  # noqa: BLE001 - reported, then the server spawns instead
        traceback.print_exc()
        template.send({"unsafe": f"the template failed to prepare: {type(exc).__name__}: {exc}"})
        return
    template.serve()


if __name__ == "__main__":
    main()
