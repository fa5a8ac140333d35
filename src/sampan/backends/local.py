"""The local backend: each container is a process group on this machine running the Sampan runtime.

The runtime reports readiness on a dedicated pipe (one JSON line), so the container's own stdout
and stderr stay the user's. Each container gets its own session (process group): stopping it
signals the whole group, which also ends servers a `web_server` function started.

Longer than 400 lines because starting a local container is one sequence (template fork or spawn,
sandbox, ports, log pumps, stop) best read in one place.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import hashlib
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .. import config
from ..resources import MIB, Resources
from ..runtime.sandbox import SOCKET_DIR
from .addresses import NotASocket, owns_listener, pin_socket
from .base import Backend, Container, ContainerSpec, ContainerStartError, LogSink
from .isolation import CONTAINER_PATH, Handover, Isolation, network_blocked, own_network
from .templates import ForkedProcess, TemplateKey, Templates, TemplateUnavailable, extra_paths, fork_supported

# Variables a container inherits from the host; everything else comes from the image and secrets.
_PASSTHROUGH = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR", "TERM")
_SAMPAN_ROOT = str(Path(__file__).resolve().parents[2])
START_SLOT_HOLD_S = 2.0


def python_shims(home: Path, python: str) -> Path:
    """A directory where `python` and `python3` are the container's interpreter.

    Modal images have `python` on PATH (`subprocess.Popen("python -m http.server ...")` is in
    its guides); a stock Debian has only `python3`.
    """
    shims = home / "shims" / hashlib.sha256(python.encode()).hexdigest()[:12]
    if not shims.is_dir():
        tmp = shims.with_name(shims.name + f".{os.getpid()}.tmp")
        tmp.mkdir(parents=True, exist_ok=True)
        for name in ("python", "python3"):
            with contextlib.suppress(FileExistsError):
                os.symlink(python, tmp / name)
        try:
            os.rename(tmp, shims)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
    return shims


def runtime_spec(spec: ContainerSpec) -> dict[str, Any]:
    """What the runtime inside the container needs to know (runtime/container.py)."""
    return {
        "container_id": spec.container_id,
        "app_name": spec.app_name,
        "entry": spec.entry,
        "bundle_dir": str(spec.bundle_dir),
        "module": spec.module,
        "app_var": spec.app_var,
        "class_params": spec.class_params,
        "web_urls": spec.web_urls,
        "unix_socket": spec.unix_socket,
        "listen_host": spec.listen_host,
        "limits": spec.limits,
    }


def container_env(spec: ContainerSpec, status_fd: int | None, shims: Path | None = None,
                  sandboxed: bool = False) -> dict[str, str]:
    """The container's whole environment. Without `status_fd` (a forked container), the spec and the
    status pipe travel in the fork request instead of the environment. A sandboxed container gets
    Modal's HOME and a plain PATH, nothing of the host's."""
    env = {k: os.environ[k] for k in _PASSTHROUGH if k in os.environ}
    if sandboxed:
        env.pop("TMPDIR", None)
        env.update({"HOME": "/root", "PATH": CONTAINER_PATH, "USER": "root", "LOGNAME": "root"})
    first = [*spec.path_prepend, *([str(shims)] if shims is not None and spec.python is None else [])]
    if first:
        env["PATH"] = os.pathsep.join([*first, env.get("PATH", os.defpath)])
    env.update(spec.env)
    if spec.python is None:
        # Sampan's own environment: the runtime is importable from where this package lives. An
        # image's environment finds it through its runtime layer instead (images/builder.py).
        env["PYTHONPATH"] = _SAMPAN_ROOT
    env.update(
        {
            "PYTHONUNBUFFERED": "1",
            "MODAL_IS_REMOTE": "1",
            "MODAL_TASK_ID": spec.container_id,
            "MODAL_CLOUD_PROVIDER": "local",
            "MODAL_REGION": "local",
            "MODAL_ENVIRONMENT": "main",
            "SAMPAN_SERVER_PID": str(os.getpid()),  # what the container watches (runtime/container.py)
        }
    )
    if status_fd is not None:
        env["SAMPAN_STATUS_FD"] = str(status_fd)
        env["SAMPAN_CONTAINER"] = json.dumps(runtime_spec(spec))
    for key, value in spec.labels.items():
        env[f"SAMPAN_LABEL_{key.upper()}"] = value
    return env


class LocalContainer(Container):
    """A process group on this machine: spawned (`asyncio.subprocess.Process`) or forked from a
    template (`ForkedProcess`); both give a pid, a returncode and `wait()`."""

    def __init__(self, container_id: str, proc: asyncio.subprocess.Process | ForkedProcess,
                 address: tuple[str, int], pumps: list[asyncio.Task[None]], how: str = "spawn",
                 isolation: Isolation | None = None) -> None:
        self.id = container_id
        self.isolation = isolation
        self.network: asyncio.Task[Any] | None = None  # attaching slirp4netns to a web_server container
        self.proc = proc
        self.address = address
        self._pumps = pumps
        self.how = how
        self._socket: str | None = None  # the socket's own path, for the cleanup after a kill
        self._pinned: list[int] = []

    @property
    def socket_path(self) -> str | None:
        """The host path of the container's own socket (a sandbox's tunnel relays are beside it)."""
        return self._socket

    def pin(self, path: str, calls: bool) -> None:
        """Serve through the socket at `path` (and its call line's at `path.calls`) as they are now
        (addresses.py `pin_socket`): the addresses become `/proc/self/fd/<n>`, closed when the container
        has ended."""
        self._socket = path
        try:
            self._pinned.append(pin_socket(path))
            self.address = f"/proc/self/fd/{self._pinned[-1]}"
            if calls:
                self._pinned.append(pin_socket(path + ".calls"))
                self.calls_address = f"/proc/self/fd/{self._pinned[-1]}"
        except NotASocket as exc:
            raise ContainerStartError(exc.strerror or str(exc)) from None

    @property
    def alive(self) -> bool:
        return self.proc.returncode is None

    def _signal_group(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, sig)

    def kill(self) -> None:
        self._signal_group(signal.SIGKILL)

    async def stop(self, grace: float = 30.0) -> None:
        if self.alive:
            self._signal_group(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), grace)
            except asyncio.TimeoutError:
                pass
        # Whatever is left in the group (a server a web_server function started, a stuck leader) goes now.
        self._signal_group(signal.SIGKILL)
        await self.wait()
        for pump in self._pumps:
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(pump, 1.0)

    async def wait(self) -> int:
        code = await self.proc.wait()
        self._signal_group(signal.SIGKILL)
        if self._socket is not None:  # a killed container cannot remove its socket itself
            for path in (self._socket, self._socket + ".calls"):
                with contextlib.suppress(OSError):
                    os.unlink(path)
        while self._pinned:
            os.close(self._pinned.pop())
        if self.network is not None:  # the container's slirp4netns ends with it
            helper = None
            with contextlib.suppress(Exception):
                helper = await self.network
            if helper is not None and helper.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    helper.kill()
                await helper.wait()
        if self.isolation is not None:
            self.isolation.release(self.id)
        return code


async def _pump(stream: asyncio.StreamReader, container_id: str, name: str, log: LogSink,
                tail: collections.deque[str]) -> None:
    while True:
        try:
            line = await stream.readline()
        except ValueError:  # a line longer than the reader's limit: take what is there
            line = await stream.read(65536)
        if not line:
            return
        text = line.decode(errors="replace").rstrip("\n")
        tail.append(text)
        log(container_id, name, text)


class LocalBackend(Backend):
    name = "local"

    def __init__(self, home: Path | None = None, python: str | None = None, start_slots: int | None = None,
                 fork: bool = True, runtime: str | None = None) -> None:
        self.python = python or sys.executable
        self.shims = python_shims(home, self.python) if home is not None else None
        # Starting a container is CPU-bound (a Python interpreter importing a web framework). Starting
        # more at once than there are cores makes every one of them late; the first ready container
        # serves the burst sooner when starts are paced to the cores.
        self._start_slots = asyncio.Semaphore(start_slots or max(2, os.cpu_count() or 2))
        home = home or Path(tempfile.gettempdir()) / f"sampan-{os.getuid()}"
        self.isolation = Isolation.detect(runtime)
        self.templates = Templates(home, self.isolation)
        assert self.isolation.sockets is not None
        self.sockets = self.isolation.sockets
        self.no_fork = fork_supported() if fork else "fork disabled for this backend"
        self._next_core = 0
        self._next_gpu = 0
        self._gpus: int | None = None

    async def start(self, spec: ContainerSpec, log: LogSink) -> Container:
        """Start with a start slot held until ready, or at most START_SLOT_HOLD_S (a slow @enter hook
        must not hold up other starts)."""
        await self._start_slots.acquire()
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self._start_slots.release()

        timer = asyncio.get_running_loop().call_later(START_SLOT_HOLD_S, release)
        try:
            return await self._start(spec, log)
        finally:
            timer.cancel()
            release()

    @property
    def sandboxed(self) -> bool:
        return self.isolation.enabled

    @property
    def runtime_description(self) -> str:
        return self.isolation.describe()

    def max_containers_for(self, entry: dict[str, Any]) -> int | None:
        # Without the sandbox, containers share the host's network: two servers cannot both listen
        # on a web_server function's port, so such a pool runs one container at a time.
        return 1 if entry.get("kind") == "web_server" and not self.sandboxed else None

    def _env(self, spec: ContainerSpec, status_fd: int | None) -> dict[str, str]:
        # In the sandbox, the interpreter's own bin directory (in the base already) stands in for the
        # shims, which live under $SAMPAN_HOME: nothing of that path is mounted into a container.
        shims = Path(self.python).parent if self.sandboxed else self.shims
        return container_env(spec, status_fd, shims, self.sandboxed)

    def _template_key(self, spec: ContainerSpec) -> TemplateKey:
        snapshot = runtime_spec(spec) if spec.entry.get("enable_memory_snapshot") else None
        return self.templates.key(spec.python or self.python, self._env(spec, None),
                                  str(spec.workdir or spec.bundle_dir), snapshot, spec.rootfs, spec.runtime)

    async def prepare(self, specs: list[ContainerSpec]) -> None:
        """Have a template ready for each spec (so that the first request forks), stop the others."""
        if self.no_fork is None:
            await self.templates.retain({self._template_key(spec) for spec in specs})

    async def _fork(self, spec: ContainerSpec) -> tuple[ForkedProcess, asyncio.StreamReader,
                                                        asyncio.StreamReader, int, str]:
        key = self._template_key(spec)
        template = await self.templates.get(key)
        env = self._env(spec, None)
        cwd = str(spec.workdir or spec.bundle_dir)
        extra = extra_paths(env) if not spec.rootfs else ()
        box = self.isolation.plan(spec, spec.python or self.python, extra) if self.sandboxed else None
        proc, out, err, status = await template.fork(spec.container_id, runtime_spec(spec), env, cwd, box)
        how = f"fork of template {template.id}" + (" (memory snapshot)" if key.snapshot else "")
        return proc, await _pipe_reader(out), await _pipe_reader(err), status, how

    async def _spawn(self, spec: ContainerSpec) -> tuple[asyncio.subprocess.Process, asyncio.StreamReader,
                                                         asyncio.StreamReader, int]:
        python = spec.python or self.python
        cwd = str(spec.workdir or spec.bundle_dir)
        handovers: list[Handover] = []
        read_fd, write_fd = os.pipe()
        try:
            env = self._env(spec, write_fd)
            if self.sandboxed:  # the runtime enters the base, then the container's own namespaces
                extra = extra_paths(env) if not spec.rootfs else ()
                if spec.rootfs:
                    assert spec.runtime is not None
                    base, base_fds = self.isolation.image_base(spec.rootfs, spec.runtime)
                else:
                    base, base_fds = self.isolation.base(python, extra)
                handovers.append(base_fds)
                plan, plan_fds = self.isolation.plan(spec, python, extra)
                handovers.append(plan_fds)
                env["SAMPAN_SANDBOX"] = json.dumps({
                    "base": base, "base_fds": dict(zip(base_fds.names, base_fds.fds, strict=False)),
                    "plan": plan, "plan_fds": dict(zip(plan_fds.names, plan_fds.fds, strict=False)),
                    "exec": python if spec.rootfs else None})
                cwd = "/"
                if spec.rootfs:
                    python = sys.executable  # enters the image, then becomes its interpreter (runtime/container.py)
            proc = await asyncio.create_subprocess_exec(
                python, "-m", "sampan.runtime",
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                pass_fds=(write_fd, *(fd for h in handovers for fd in h.fds)),
                start_new_session=True,
                cwd=cwd,
                env=env,
                limit=1 << 20,
            )
        except BaseException:
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)
            for handover in handovers:
                handover.close()
        assert proc.stdout is not None and proc.stderr is not None
        return proc, proc.stdout, proc.stderr, read_fd

    def _with_socket(self, spec: ContainerSpec) -> ContainerSpec:
        """Local containers serve on a Unix socket (cheaper than loopback TCP). A sandboxed one makes it in
        its own socket directory, /run/sampan (a `web_server` container relays it to its port); without
        the sandbox, `web_server` functions serve on their own port, and a path too long for a socket
        falls back to loopback TCP."""
        if spec.unix_socket or spec.listen_host:
            return spec
        if self.sandboxed:
            return dataclasses.replace(spec, unix_socket=f"{SOCKET_DIR}/web.sock")
        if spec.entry.get("kind") == "web_server":
            return spec
        path = self.sockets / f"{spec.container_id}.sock"
        if len(str(path)) > 100:  # sun_path holds 108 bytes
            return spec
        self.sockets.mkdir(mode=0o700, parents=True, exist_ok=True)
        return dataclasses.replace(spec, unix_socket=str(path))

    def _with_limits(self, spec: ContainerSpec, log: LogSink) -> ContainerSpec:
        """What this machine can enforce of the function's resources: a CPU limit as that many cores
        (affinity, rotated so containers share the machine), a memory limit as an address-space cap,
        GPUs as CUDA_VISIBLE_DEVICES (round robin over the machine's GPUs). What it cannot, it says."""
        resources = Resources.from_json(spec.entry.get("resources"))
        limits: dict[str, Any] = {}
        env = dict(spec.env)
        if resources.cpu_limit:
            cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
            if cores:
                n = min(len(cores), max(1, math.ceil(resources.cpu_limit)))
                self._next_core = (self._next_core + n) % len(cores)
                limits["cpus"] = [cores[(self._next_core + i) % len(cores)] for i in range(n)]
        if resources.memory_limit_mib:
            limits["memory_bytes"] = resources.memory_limit_mib * MIB
        if resources.gpus:
            count = self.gpu_count()
            want = resources.gpus[0].count
            if count == 0:
                log(spec.container_id, "system", "this machine has no GPU: the container runs without one")
            else:
                first = self._next_gpu
                self._next_gpu = (first + want) % count
                env["CUDA_VISIBLE_DEVICES"] = ",".join(str((first + i) % count) for i in range(min(want, count)))
        if not limits and env == spec.env:
            return spec
        return dataclasses.replace(spec, limits=limits or None, env=env)

    def gpu_count(self) -> int:
        """GPUs of this machine: SAMPAN_GPUS, else what `nvidia-smi -L` lists, else 0."""
        if self._gpus is None:
            configured = config.configured_gpus()
            if configured is not None and configured.isdigit():
                self._gpus = int(configured)
            elif shutil.which("nvidia-smi"):
                try:
                    out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10).stdout
                    self._gpus = sum(1 for line in out.splitlines() if line.startswith("GPU "))
                except (OSError, subprocess.SubprocessError):
                    self._gpus = 0
            else:
                self._gpus = 0
        return self._gpus

    async def _start(self, spec: ContainerSpec, log: LogSink) -> Container:
        spec = self._with_limits(self._with_socket(spec), log)
        started = time.perf_counter()
        launched: tuple[Any, asyncio.StreamReader, asyncio.StreamReader, int] | None = None
        how = f"spawn ({self.no_fork})" if self.no_fork else "spawn"
        if self.no_fork is None:
            try:
                *forked, how = await self._fork(spec)
                launched = (forked[0], forked[1], forked[2], forked[3])
            except TemplateUnavailable as exc:
                how = f"spawn (no template: {str(exc).splitlines()[0]})"
        if launched is None:
            launched = await self._spawn(spec)
        proc, stdout, stderr, read_fd = launched
        tail: collections.deque[str] = collections.deque(maxlen=30)
        pumps = [
            asyncio.create_task(_pump(stdout, spec.container_id, "stdout", log, tail)),
            asyncio.create_task(_pump(stderr, spec.container_id, "stderr", log, tail)),
        ]
        container = LocalContainer(spec.container_id, proc, ("", 0), pumps, how,
                                   self.isolation if self.sandboxed else None)
        if self.sandboxed and own_network(spec) and not network_blocked(spec):
            container.network = asyncio.create_task(self.isolation.attach_network(proc.pid))
        try:
            status = await asyncio.wait_for(_read_status(read_fd), spec.startup_timeout)
        except asyncio.TimeoutError:
            await container.stop(grace=1.0)
            raise ContainerStartError(
                f"container did not become ready within {spec.startup_timeout:g} s (startup_timeout)"
            ) from None
        except BaseException:
            await container.stop(grace=1.0)
            raise
        if "ready" not in status:
            await container.stop(grace=5.0)
            reason = status.get("error") or _exit_reason(proc.returncode, tail)
            raise ContainerStartError(reason)
        try:
            self._address(container, spec, status["ready"])
        except ContainerStartError:
            await container.stop(grace=1.0)
            raise
        log(spec.container_id, "system", f"started by {how}, ready in {(time.perf_counter() - started) * 1000:.0f} ms")
        return container

    def _address(self, container: LocalContainer, spec: ContainerSpec, ready: Any) -> None:
        """Where the gateway reaches a container that said it is ready. The backend decided that before
        the start; the container's line only confirms it (user code runs in the container and can write
        that line first). A Unix socket is pinned (`LocalContainer.pin`): the gateway connects to the
        socket that was there when the container became ready, whatever the container puts at its name
        later. A TCP address must be on the host the backend gave."""
        if not isinstance(ready, dict):
            raise ContainerStartError("the container's ready line was not understood")
        calls = ready.get("calls")
        if spec.unix_socket is not None:
            if ready.get("unix") != spec.unix_socket or calls not in (None, spec.unix_socket + ".calls"):
                raise ContainerStartError("the container named an address it was not given")
            own = spec.unix_socket
            if self.sandboxed:
                own = self.isolation.host_socket(spec.container_id, spec.unix_socket)
            container.pin(own, calls is not None)
            return
        if self.sandboxed and not spec.listen_host:
            raise ContainerStartError("the container named an address it was not given")
        host, port = ready.get("host"), ready.get("port")
        if host != (spec.listen_host or "127.0.0.1") or not _is_port(port) or not (calls is None or _is_port(calls)):
            raise ContainerStartError("the container named an address it was not given")
        if self.sandboxed and not all(owns_listener(container.proc.pid, host, p) for p in (port, calls) if p):
            # A Ray node's container, in the node's network: a port of another container's, or of the
            # node's own services, is not its to name.
            raise ContainerStartError("the container named a port it does not listen on")
        container.address = (host, port)
        if calls is not None:  # the call line (runtime/callline.py): a function's single calls
            container.calls_address = (host, calls)

    async def close(self) -> None:
        await self.templates.close()
        self.isolation.close()


async def _pipe_reader(fd: int) -> asyncio.StreamReader:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 20)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(fd, "rb", buffering=0))
    return reader


def _exit_reason(code: int | None, tail: collections.deque[str]) -> str:
    last = "\n".join(list(tail)[-10:])
    return f"container exited with status {code} during startup" + (f":\n{last}" if last else "")


def _is_port(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value < 65536


async def _read_status(fd: int) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 20)
    transport, _ = await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(fd, "rb", buffering=0)
    )
    try:
        line = await reader.readline()
    finally:
        transport.close()
    if not line:
        return {}
    try:
        status = json.loads(line)
    except ValueError:
        status = None
    return status if isinstance(status, dict) else {"error": "the container's status line was not understood"}
