"""The server's side of template processes (runtime/template.py): start them, ask them to fork.

A template is keyed by what a fork cannot change afterwards: the interpreter, the variables the
interpreter reads at start-up (`PYTHON*`, `PATH`) and, for memory snapshots, the function and
bundle whose module it imported. Everything else (secrets, ids, the working directory) is set in
the child after the fork, so the functions of one image share one template.

A forked container is not the server's child, so its exit is watched with a pidfd (Linux 5.3+),
and its exit status comes from the template, which reaps it.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import os
import secrets
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import config
from .isolation import Handover, Isolation

READY_TIMEOUT_S = 60.0
FORK_TIMEOUT_S = 10.0
EXIT_REPORT_WAIT_S = 2.0
# Set per container after the fork; everything else in the environment is the template's key.
_PER_CONTAINER = ("SAMPAN_CONTAINER", "SAMPAN_STATUS_FD", "MODAL_TASK_ID")
# Kept in a template's own environment: PATH, and what marks a process as this server's (a forked
# child's /proc/PID/environ is the template's, and tests and operators find processes by it).
_PER_SERVER = ("PATH", "SAMPAN_SERVER_PID", "SAMPAN_LABEL_SERVER")


def extra_paths(env: dict[str, str]) -> tuple[str, ...]:
    """Directories on a sandboxed container's PATH that its base must hold (the image's bin, shims)."""
    return tuple(p for p in env.get("PATH", "").split(os.pathsep) if p and not p.startswith(("/usr", "/bin", "/sbin")))


class TemplateUnavailable(Exception):
    """No template can fork this container (unsupported platform, threads, a failed start)."""


def fork_supported() -> str | None:
    """Why this platform cannot fork containers, or None when it can."""
    if not config.fork_enabled():
        return "SAMPAN_FORK=0"
    if not sys.platform.startswith("linux"):
        return f"fork templates need Linux (this is {sys.platform})"
    if not hasattr(os, "pidfd_open") or not hasattr(socket, "send_fds"):
        return "fork templates need Python 3.9+ with os.pidfd_open"
    return None


@dataclass(frozen=True)
class TemplateKey:
    python: str
    env: tuple[tuple[str, str], ...]
    cwd: str
    snapshot: str | None = None  # JSON runtime spec of a memory-snapshot function
    rootfs: tuple[str, ...] = ()  # a root filesystem image's layers: `python` is a path inside it
    runtime: str | None = None  # Sampan's runtime built for that image's Python

    @classmethod
    def for_container(cls, python: str, env: dict[str, str], cwd: str, snapshot_spec: dict[str, Any] | None,
                      neutral_cwd: str, rootfs: tuple[str, ...] = (), runtime: str | None = None) -> TemplateKey:
        if snapshot_spec is None:
            base = {k: v for k, v in env.items() if k.startswith("PYTHON") or k in _PER_SERVER}
            return cls(python, tuple(sorted(base.items())), neutral_cwd, None, rootfs, runtime)
        base = {k: v for k, v in env.items() if k not in _PER_CONTAINER}
        snap = {k: v for k, v in snapshot_spec.items() if k not in ("container_id", "unix_socket")}
        return cls(python, tuple(sorted(base.items())), cwd, json.dumps(snap, sort_keys=True), rootfs, runtime)


class ForkedProcess:
    """A process forked by a template, looked after through a pidfd: the same surface as
    `asyncio.subprocess.Process` for what the local backend needs (pid, returncode, wait)."""

    def __init__(self, pid: int, code: asyncio.Future[int]) -> None:
        self.pid = pid
        self._code = code
        self._exited = asyncio.get_running_loop().create_future()
        self.returncode: int | None = None
        loop = asyncio.get_running_loop()
        try:
            self._pidfd: int | None = os.pidfd_open(pid)
        except ProcessLookupError:  # already gone (and reaped)
            self._pidfd = None
            self._exited.set_result(None)
            return
        loop.add_reader(self._pidfd, self._on_exit)

    def _on_exit(self) -> None:
        if self._pidfd is not None:
            asyncio.get_running_loop().remove_reader(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = None
        if not self._exited.done():
            self._exited.set_result(None)

    async def wait(self) -> int:
        await asyncio.shield(self._exited)
        if self.returncode is None:
            try:
                self.returncode = await asyncio.wait_for(asyncio.shield(self._code), EXIT_REPORT_WAIT_S)
            except (asyncio.TimeoutError, ConnectionError):
                self.returncode = -1  # the template died before it could say
        return self.returncode


class TemplateProcess:
    """One running template and its control socket."""

    def __init__(self, key: TemplateKey, isolation: Isolation | None = None) -> None:
        self.key = key
        self.isolation = isolation if isolation is not None and isolation.enabled else None
        self.id = "tp-" + secrets.token_hex(4)
        self.proc: asyncio.subprocess.Process | None = None
        self.sock: socket.socket | None = None
        self.info: dict[str, Any] = {}
        self.tail: collections.deque[str] = collections.deque(maxlen=20)
        self._ready: asyncio.Future[dict[str, Any]] | None = None
        self._forks: dict[str, asyncio.Future[int]] = {}
        self._codes: dict[int, asyncio.Future[int]] = {}
        self._pumps: list[asyncio.Task[None]] = []

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None and self.sock is not None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        env = dict(self.key.env)
        env.update({"SAMPAN_TEMPLATE_FD": str(theirs.fileno()), "PYTHONUNBUFFERED": "1"})
        if self.key.snapshot is not None:
            env["SAMPAN_TEMPLATE_SNAPSHOT"] = self.key.snapshot
        handover = Handover()
        launcher = self.key.python
        if self.isolation is not None and self.key.rootfs:  # the template runs in its image (sandbox.py)
            assert self.key.runtime is not None
            base, handover = self.isolation.image_base(self.key.rootfs, self.key.runtime)
            if self.key.snapshot is not None:  # a memory snapshot imports the user's module in the template
                bundle = json.loads(self.key.snapshot)["bundle_dir"]
                base["binds"].append({"dst": bundle, **self.isolation._source(bundle, handover)})
            fds = dict(zip(handover.names, handover.fds, strict=True))
            env["SAMPAN_SANDBOX_BASE"] = json.dumps({"base": base, "fds": fds, "exec": self.key.python})
            launcher = sys.executable  # enters the image, then becomes the image's interpreter
        elif self.isolation is not None:  # the template lives in its image's sandbox (runtime/sandbox.py)
            extra = extra_paths(env)
            if self.key.snapshot is not None:  # a memory snapshot imports the user's module in the template
                extra += (json.loads(self.key.snapshot)["bundle_dir"],)
            base, handover = self.isolation.base(self.key.python, extra)
            fds = dict(zip(handover.names, handover.fds, strict=True))
            env["SAMPAN_SANDBOX_BASE"] = json.dumps({"base": base, "fds": fds})
        Path(self.key.cwd).mkdir(parents=True, exist_ok=True)
        try:
            self.proc = await asyncio.create_subprocess_exec(
                launcher, "-m", "sampan.runtime.template",
                stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
                pass_fds=(theirs.fileno(), *handover.fds), start_new_session=True, cwd=self.key.cwd, env=env,
            )
        finally:
            theirs.close()
            handover.close()
        self.sock = ours
        ours.setblocking(False)
        self._ready = loop.create_future()
        loop.add_reader(ours.fileno(), self._on_message)
        assert self.proc.stdout is not None
        self._pumps.append(asyncio.create_task(self._pump(self.proc.stdout)))
        try:
            self.info = await asyncio.wait_for(asyncio.shield(self._ready), READY_TIMEOUT_S)
        except BaseException:
            await self.close()
            raise

    async def _pump(self, stream: asyncio.StreamReader) -> None:
        while line := await stream.readline():
            self.tail.append(line.decode(errors="replace").rstrip("\n"))

    def _why(self, reason: str) -> str:
        last = "\n".join(self.tail)
        return reason + (f":\n{last}" if last else "")

    def _on_message(self) -> None:
        assert self.sock is not None
        try:
            data = self.sock.recv(1 << 16)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._lost()
            return
        message = json.loads(data)
        if "exit" in message:
            fut = self._codes.pop(message["exit"], None)
            if fut is not None and not fut.done():
                fut.set_result(int(message["code"]))
        elif "forked" in message:
            fut = self._forks.pop(message["forked"], None)
            if fut is not None and not fut.done():
                if "pid" in message:
                    fut.set_result(int(message["pid"]))
                else:
                    fut.set_exception(TemplateUnavailable(message.get("error", "fork refused")))
        elif self._ready is not None and not self._ready.done():
            if "ready" in message:
                self._ready.set_result(message["ready"])
            else:
                self._ready.set_exception(TemplateUnavailable(message.get("unsafe", "template refused")))

    def _lost(self) -> None:
        """The template went away: whatever waits on it learns so."""
        if self.sock is not None:
            with contextlib.suppress(ValueError, OSError):
                asyncio.get_running_loop().remove_reader(self.sock.fileno())
            self.sock.close()
            self.sock = None
        error = ConnectionError("the template process exited")
        for fut in [*self._forks.values(), *self._codes.values()]:
            if not fut.done():
                fut.set_exception(error)
        self._forks.clear()
        self._codes.clear()
        if self._ready is not None and not self._ready.done():
            self._ready.set_exception(TemplateUnavailable(self._why("the template process exited during start-up")))

    async def fork(self, container_id: str, spec: dict[str, Any], env: dict[str, str], cwd: str,
                   sandbox: tuple[dict[str, Any], Handover] | None = None) -> tuple[ForkedProcess, int, int, int]:
        """Fork a container (into its sandbox: a plan and the descriptors it names, closed here once sent).
        Returns the process and the read ends of its stdout, stderr and status pipe."""
        handover = sandbox[1] if sandbox is not None else Handover()
        if not self.alive:
            handover.close()
            raise TemplateUnavailable("the template process is not running")
        assert self.sock is not None
        pipes = [os.pipe() for _ in range(3)]
        request: dict[str, Any] = {"fork": container_id, "spec": spec, "env": env, "cwd": cwd}
        if sandbox is not None:
            request["sandbox"] = {"plan": sandbox[0], "fds": handover.names}
        message = json.dumps(request).encode()
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._forks[container_id] = fut
        try:
            socket.send_fds(self.sock, [message], [*(w for _, w in pipes), *handover.fds])
        except OSError as exc:
            handover.close()
            self._forks.pop(container_id, None)
            for r, w in pipes:
                os.close(r)
                os.close(w)
            raise TemplateUnavailable(f"could not reach the template: {exc}") from None
        handover.close()
        for _, w in pipes:
            os.close(w)
        try:
            pid = await asyncio.wait_for(fut, FORK_TIMEOUT_S)
        except BaseException as exc:
            for r, _ in pipes:
                os.close(r)
            if isinstance(exc, (asyncio.TimeoutError, ConnectionError)):
                raise TemplateUnavailable(f"the template did not fork: {exc or 'timed out'}") from None
            raise
        code = self._codes.setdefault(pid, asyncio.get_running_loop().create_future())
        return ForkedProcess(pid, code), pipes[0][0], pipes[1][0], pipes[2][0]

    async def close(self) -> None:
        self._lost()
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 5.0)
            except asyncio.TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self.proc.kill()
                await self.proc.wait()
        for pump in self._pumps:
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(pump, 1.0)


class Templates:
    """The templates of one backend, at most one per key, started on first need."""

    def __init__(self, home: Path, isolation: Isolation | None = None) -> None:
        self.home = home
        self.isolation = isolation
        self.neutral_cwd = str(home / "templates")
        self._by_key: dict[TemplateKey, asyncio.Task[TemplateProcess]] = {}

    def key(self, python: str, env: dict[str, str], cwd: str, snapshot_spec: dict[str, Any] | None,
            rootfs: tuple[str, ...] = (), runtime: str | None = None) -> TemplateKey:
        return TemplateKey.for_container(python, env, cwd, snapshot_spec, self.neutral_cwd, rootfs, runtime)

    async def get(self, key: TemplateKey) -> TemplateProcess:
        """The running template for `key`, starting one if needed. Raises TemplateUnavailable."""
        task = self._by_key.get(key)
        if task is not None and task.done() and not task.cancelled() and task.exception() is None:
            if not task.result().alive:  # it died: start a fresh one
                task = None
        if task is None:
            task = asyncio.create_task(self._start(key))
            self._by_key[key] = task
        try:
            return await asyncio.shield(task)
        except TemplateUnavailable:
            raise
        except (OSError, asyncio.TimeoutError) as exc:
            raise TemplateUnavailable(f"the template did not start: {type(exc).__name__}: {exc}") from None

    async def _start(self, key: TemplateKey) -> TemplateProcess:
        template = TemplateProcess(key, self.isolation)
        await template.start()
        return template

    async def retain(self, keys: set[TemplateKey]) -> None:
        """Start the templates of `keys` and stop every other one."""
        for key in list(self._by_key):
            if key not in keys:
                await self._stop(key)
        await asyncio.gather(*(self.get(key) for key in keys), return_exceptions=True)

    async def _stop(self, key: TemplateKey) -> None:
        task = self._by_key.pop(key, None)
        if task is None:
            return
        if not task.done():
            task.cancel()
        with contextlib.suppress(BaseException):
            template = await task
            await template.close()

    def running(self) -> list[TemplateProcess]:
        return [t.result() for t in self._by_key.values()
                if t.done() and not t.cancelled() and t.exception() is None and t.result().alive]

    async def close(self) -> None:
        for key in list(self._by_key):
            await self._stop(key)
