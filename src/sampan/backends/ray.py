"""The Ray backend: each container is a Ray actor that runs the same runtime on its node.

    server                               Ray node (any of the cluster)
    RayBackend.start(spec) ──actor──►    ContainerActor.start: write the code bundle (shipped
                                         through Ray's object store, once per bundle), build the
                                         image from its recipe (cached on the node), then start
                                         the container with a LocalBackend on the node, serving
                                         TCP on the node's address
    gateway ──HTTP──► (node address, port)

Placement: the function's `cpu=`, `memory=` and `gpu=` become the actor's resource request
(resources.py), checked against the cluster's nodes first so that a request no node can hold
fails at once; containers of a pool are spread over the nodes. Nothing assumes a shared
filesystem: code and images reach a node through Ray. A node that dies takes its actors with
it: `wait()` returns, the pool replaces the container elsewhere, and the requests that were
in flight there get Modal's "terminated" 500 from the gateway.

Ray is an optional dependency (`pip install "sampan[ray]"`); it is imported only here, and
`sampan` must be importable on the nodes (installed in the Python the cluster runs).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import os
import socket
import tempfile
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from ..exception import InvalidError
from ..resources import Resources, choose
from .base import Backend, Container, ContainerSpec, ContainerStartError, LogSink
from .local import LocalBackend

# (recipe, images directory of the node) -> the built image (its .python and .env); from the server.
BuildImage = Callable[[list[dict[str, Any]], Path], Awaitable[Any]]

LOG_POLL_S = 0.5


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ContainerStartError('The Ray backend needs Ray: pip install "sampan[ray]"') from None
    return ray


def read_root(root: Path) -> dict[str, bytes]:
    """The files of a container's root (code bundle and baked image files), to ship to a node."""
    files: dict[str, bytes] = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink():
            files[path.relative_to(root).as_posix()] = path.read_bytes()
    return files


class ContainerActorImpl:
    """What runs on the node, one per container (wrapped by `ray.remote` when the backend starts)."""

    def __init__(self) -> None:
        self.container: Container | None = None
        self.lines: collections.deque[tuple[str, str]] = collections.deque(maxlen=10_000)
        self.new_lines = asyncio.Event()

    def _log(self, cid: str, stream: str, line: str) -> None:
        self.lines.append((stream, line))
        self.new_lines.set()

    async def start(self, spec: dict[str, Any], files: dict[str, bytes], root_id: str,
                    build_image: BuildImage | None = None) -> list[Any]:
        import ray

        home = Path(os.environ.get("SAMPAN_NODE_HOME") or Path(tempfile.gettempdir()) / f"sampan-node-{os.getuid()}")
        root = home / "roots" / root_id
        if not root.is_dir():
            tmp = root.with_name(f"{root_id}.{os.getpid()}.tmp")
            for rel, data in files.items():
                target = tmp / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
            tmp.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(OSError):
                os.rename(tmp, root)
        backend = LocalBackend(home=home)
        fields = dict(spec)
        node_id = ray.get_runtime_context().get_node_id()
        # The shipped root is the whole filesystem a node gives the container: re-rooted as on the
        # process runtime (the server's layer and Volume paths are not on this machine).
        fields.update(bundle_dir=root, workdir=None if backend.sandboxed else root, python=None, path_prepend=(),
                      unix_socket=None, layers=(), volumes=(),
                      listen_host=ray.util.get_node_ip_address(), env={**spec["env"], "SAMPAN_RAY_NODE_ID": node_id})
        recipe = list(spec["entry"].get("image") or [])
        if recipe:  # built on this node from the same recipe, cached here (SAMPAN_IMAGES: the node's cache)
            if build_image is None:
                raise ContainerStartError("This Ray backend was given no image builder for the nodes.")
            image = await build_image(recipe, Path(os.environ.get("SAMPAN_IMAGES") or home / "images"))
            fields.update(python=image.python, path_prepend=(str(Path(image.python).parent),),
                          env={**image.env, **fields["env"]})
        self.container = await backend.start(ContainerSpec(**fields), self._log)
        address = self.container.address
        return list(address) if isinstance(address, tuple) else [address]

    async def logs(self) -> list[tuple[str, str]]:
        """New output lines, waiting up to LOG_POLL_S for some."""
        if not self.lines:
            self.new_lines.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.new_lines.wait(), LOG_POLL_S)
        out = list(self.lines)
        self.lines.clear()
        return out

    async def wait(self) -> int:
        assert self.container is not None
        return await self.container.wait()

    async def stop(self, grace: float) -> None:
        if self.container is not None:
            await self.container.stop(grace)


class RayContainer(Container):
    def __init__(self, container_id: str, actor: Any, address: tuple[str, int], log: LogSink) -> None:
        self.id = container_id
        self.actor = actor
        self.address = address
        self._exit: asyncio.Task[int] = asyncio.create_task(self._wait())
        self._pump = asyncio.create_task(self._logs(log))

    async def _wait(self) -> int:
        try:
            return int(await self.actor.wait.remote())
        except Exception:  # noqa: BLE001 - the actor or its node died: the container is gone
            return -1

    async def _logs(self, log: LogSink) -> None:
        while not self._exit.done():
            try:
                lines = await self.actor.logs.remote()
            except Exception:  # noqa: BLE001 - the actor is gone
                return
            for stream, line in lines:
                log(self.id, stream, line)

    @property
    def alive(self) -> bool:
        return not self._exit.done()

    async def stop(self, grace: float = 30.0) -> None:
        if self.alive:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.actor.stop.remote(grace), grace + 5)
        self.kill()
        await self.wait()

    def kill(self) -> None:
        with contextlib.suppress(Exception):
            _ray().kill(self.actor)

    async def wait(self) -> int:
        code = await asyncio.shield(self._exit)
        self._pump.cancel()
        return code


def _probe(address: str, timeout: float = 5.0) -> None:
    """Fail in seconds, not minutes, when a `host:port` address does not answer (ray.init would
    retry for a long time); "auto" and `ray://` addresses are left to Ray."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or "://" in address:
        return
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as exc:
        raise ContainerStartError(f"Could not reach the Ray cluster at {address}: {exc.strerror or exc}. "
                                  "Start one with `ray start --head`, or pass the address it printed.") from None


class RayBackend(Backend):
    name = "ray"

    def __init__(self, address: str | None = None, home: Path | None = None, build_image: BuildImage | None = None,
                 **_: Any) -> None:
        self.address = address or "auto"
        self.build_image = build_image  # runs on a node: a module-level function, which Ray ships by reference
        self._actor_cls: Any = None
        self._roots: dict[str, tuple[str, Any]] = {}  # container root path -> (id, ObjectRef of its files)
        self._lock = threading.Lock()

    def connect(self) -> None:
        """Join the cluster (blocking). Raises ContainerStartError with the reason when it cannot."""
        ray = _ray()
        with self._lock:  # starts run in threads at once; ray.init must happen once
            self._connect(ray)

    def _connect(self, ray: Any) -> None:
        if self._actor_cls is not None:
            return
        _probe(self.address)
        try:
            if not ray.is_initialized():
                ray.init(address=self.address, namespace="sampan", log_to_driver=False, logging_level="ERROR",
                         configure_logging=False)
        except Exception as exc:  # noqa: BLE001 - Ray raises many kinds here; all mean "not reachable"
            raise ContainerStartError(f"Could not reach the Ray cluster at {self.address}: {exc}") from None
        self._actor_cls = ray.remote(ContainerActorImpl)

    def nodes(self) -> list[dict[str, float]]:
        return [n["Resources"] for n in _ray().nodes() if n.get("Alive")]

    def _files(self, root: Path) -> tuple[str, Any]:
        key = str(root)
        if key not in self._roots:
            import hashlib

            files = read_root(root)
            digest = hashlib.sha256()
            for rel in sorted(files):
                digest.update(rel.encode() + b"\0" + hashlib.sha256(files[rel]).digest())
            self._roots[key] = (digest.hexdigest()[:24], _ray().put(files))
        return self._roots[key]

    async def start(self, spec: ContainerSpec, log: LogSink) -> Container:
        await asyncio.to_thread(self.connect)
        try:
            _, options = choose(Resources.from_json(spec.entry.get("resources")), await asyncio.to_thread(self.nodes))
        except InvalidError as exc:
            raise ContainerStartError(str(exc)) from None
        root_id, files = await asyncio.to_thread(self._files, spec.workdir or spec.bundle_dir)
        fields = {f.name: getattr(spec, f.name) for f in dataclasses.fields(spec)}
        fields.update(bundle_dir=str(spec.bundle_dir), workdir=None)
        actor = self._actor_cls.options(**options, scheduling_strategy="SPREAD", max_concurrency=1000).remote()
        try:
            address = await asyncio.wait_for(actor.start.remote(fields, files, root_id, self.build_image),
                                             spec.startup_timeout + 60)
        except ContainerStartError:
            raise
        except Exception as exc:  # noqa: BLE001 - the start failed on the node: say why
            with contextlib.suppress(Exception):
                _ray().kill(actor)
            cause = getattr(exc, "cause", None) or exc
            raise ContainerStartError(str(cause).strip().splitlines()[-1] if str(cause).strip() else
                                      type(cause).__name__) from None
        return RayContainer(spec.container_id, actor, (address[0], int(address[1])), log)

    def max_containers_for(self, entry: dict[str, Any]) -> int | None:
        # Two containers of a web_server function on one node would collide on its port, and Ray
        # may place them together: one at a time, as on the local backend.
        return 1 if entry.get("kind") == "web_server" else None

    async def close(self) -> None:
        if self._actor_cls is not None:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(_ray().shutdown)
