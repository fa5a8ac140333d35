"""The Ray backend's agent: one long-lived actor per node that starts that node's containers.

    server (RayBackend)                     node agent (this, one per node)
      place the container on a node ──►      start(): the code bundle from Ray's object store (once per
                                              root), the image built from its recipe (cached on the node),
                                              each Volume's own directory, then LocalBackend.start: a fork
                                              of the node's warm template for that image
      logs() long poll  ◄──                   every container's output lines, tagged with its id
      wait(id), stop(id), kill(id)            one container

A Ray actor per container (what came first) cost a Ray worker process per container, ~1.3 s a cold
start; the agent keeps the node's templates warm between containers, so a cold start on a warm node
is a fork (docs/performance.md). The agent asks Ray for no CPU: the server keeps the books of what
containers asked for (placement.py) and the containers are the agent's children, which watch it:
a dead agent (or node) takes its containers along, and the server replaces them elsewhere.

A container serves TCP on the node's address; a `web_server` function's port is in the container's
own network (sandbox) or on the node's loopback, so the agent relays a port of the node's address
to it. Volumes: with `volumes="sync"` (the default) each container has a directory of its own,
filled from the server at start and synced on `commit()`/`reload()` (sdk/volume_sync.py); with
`"shared"` the server's Volume directories are used in place (a filesystem every node mounts at the
same path).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from ..mountpaths import reroot
from ..runtime.relay import relay
from ..volume_sync import ENV as VOLUME_SYNC_ENV
from .base import Container, ContainerSpec, ContainerStartError
from .local import LocalBackend

LOG_POLL_S = 0.5
VOLUME_MODES = ("sync", "shared")


def node_home() -> Path:
    return Path(os.environ.get("SAMPAN_NODE_HOME") or Path(tempfile.gettempdir()) / f"sampan-node-{os.getuid()}")


def materialize(root: Path, files: dict[str, bytes]) -> None:
    """Write a shipped root (relative path -> bytes) at `root`, atomically (a rename)."""
    tmp = root.with_name(f"{root.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True, exist_ok=True)
    for rel, data in files.items():
        target = tmp / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    try:
        os.rename(tmp, root)
    except OSError:  # another start wrote it first
        shutil.rmtree(tmp, ignore_errors=True)


def linked_workdir(work: Path, root: Path, mounts: list[tuple[str, Path]]) -> Path:
    """A container's own working directory on a node without the sandbox: links to the shipped root's
    entries, and a link at each Volume's re-rooted mount path to the container's Volume directory."""
    work.mkdir(parents=True, exist_ok=True)
    for child in root.iterdir():
        (work / child.name).symlink_to(child)
    for path, directory in mounts:
        link = work / reroot(path)
        if link.is_symlink() or link.exists() or any(p.is_symlink() for p in link.parents if work in p.parents):
            raise ContainerStartError(f"Volume mount path {path} collides with a file of the app.")
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(directory)
    return work


class NodeAgentImpl:
    """What runs on each node (wrapped by `ray.remote` in backends/ray.py)."""

    def __init__(self, volume_mode: str = "sync") -> None:
        import ray

        self.home = node_home()
        self.backend = LocalBackend(home=self.home)
        self.ip = ray.util.get_node_ip_address()
        self.node_id = ray.get_runtime_context().get_node_id()
        self.volume_mode = volume_mode
        self.containers: dict[str, Container] = {}
        self.ended: dict[str, int] = {}
        self.relays: dict[str, asyncio.AbstractServer] = {}
        self.lines: collections.deque[tuple[str, str, str]] = collections.deque(maxlen=50_000)
        self.new_lines = asyncio.Event()
        self.root_locks: dict[str, asyncio.Lock] = collections.defaultdict(asyncio.Lock)

    def describe(self) -> dict[str, Any]:
        return {"node_id": self.node_id, "ip": self.ip, "sandboxed": self.backend.sandboxed,
                "runtime": self.backend.runtime_description, "containers": len(self.containers),
                "pid": os.getpid()}

    def _log(self, cid: str, stream: str, line: str) -> None:
        self.lines.append((cid, stream, line))
        self.new_lines.set()

    async def _root(self, root_id: str, files_box: list[Any]) -> Path:
        root = self.home / "roots" / root_id
        async with self.root_locks[root_id]:
            if not root.is_dir():
                files = await files_box[0]  # from the object store, only where the node lacks the root
                await asyncio.to_thread(materialize, root, files)
        return root

    async def _node_spec(self, fields: dict[str, Any], files_box: list[Any], root_id: str,
                         build_image: Any) -> ContainerSpec:
        """The server's spec made true on this node: its root, its image, its address."""
        root = await self._root(root_id, files_box)
        fields = dict(fields)
        web_server = fields["entry"].get("kind") == "web_server"
        fields.update(bundle_dir=root, workdir=None if self.backend.sandboxed else root, python=None,
                      path_prepend=(), unix_socket=None, layers=(), volumes=(),
                      listen_host=None if web_server else self.ip,
                      env={**fields["env"], "SAMPAN_RAY_NODE_ID": self.node_id})
        recipe = list(fields["entry"].get("image") or [])
        if recipe:  # built on this node from the same recipe, cached here (SAMPAN_IMAGES: the node's cache)
            if build_image is None:
                raise ContainerStartError("This Ray backend was given no image builder for the nodes.")
            image = await build_image(recipe, Path(os.environ.get("SAMPAN_IMAGES") or self.home / "images"))
            fields.update(python=image.python, path_prepend=(str(Path(image.python).parent),),
                          env={**image.env, **fields["env"]})
        return ContainerSpec(**fields)

    def _volumes(self, spec: ContainerSpec, server_dirs: list[tuple[str, str]]) -> ContainerSpec:
        """Each Volume of the function at its mount path: a directory of the container's own (synced with
        the server by the container) or, in `shared` mode, the server's directory itself."""
        entries = [v for v in spec.entry.get("volumes") or [] if "bucket" not in v]
        buckets = [v["path"] for v in spec.entry.get("volumes") or [] if "bucket" in v]
        if buckets and self.volume_mode == "sync":
            raise ContainerStartError(f"A CloudBucketMount ({buckets[0]}) is not available on the Ray backend's "
                                      "nodes; use volumes='shared' with a filesystem every node mounts.")
        if not entries and not buckets:
            return spec
        mounts: list[tuple[str, Path]] = []
        synced: list[dict[str, str]] = []
        if self.volume_mode == "shared":
            mounts = [(path, Path(directory)) for path, directory in server_dirs]
        else:
            base = self.home / "volumes" / spec.container_id
            for i, volume in enumerate(entries):
                directory = base / str(i)
                directory.mkdir(parents=True, exist_ok=True)
                mounts.append((volume["path"], directory))
                seen = volume["path"] if self.backend.sandboxed else str(directory)
                synced.append({"name": volume["name"], "dir": seen})
        env = {**spec.env, VOLUME_SYNC_ENV: json.dumps(synced)} if synced else spec.env
        if self.backend.sandboxed:
            return dataclasses.replace(spec, env=env, volumes=tuple((p, str(d)) for p, d in mounts))
        work = linked_workdir(self.home / "work" / spec.container_id, spec.bundle_dir, mounts)
        return dataclasses.replace(spec, env=env, workdir=work)

    async def start(self, fields: dict[str, Any], files_box: list[Any], root_id: str, build_image: Any,
                    server_volumes: list[tuple[str, str]]) -> list[Any]:
        cid = fields["container_id"]
        try:
            spec = self._volumes(await self._node_spec(fields, files_box, root_id, build_image), server_volumes)
            container = await self.backend.start(spec, self._log)
        except BaseException:
            self._clean(cid)
            raise
        self.containers[cid] = container
        address = container.address
        if spec.entry.get("kind") == "web_server":  # its port is not on the node's address: relay it
            server = await asyncio.start_server(lambda r, w: relay(r, w, address), self.ip, 0)
            self.relays[cid] = server
            return [self.ip, server.sockets[0].getsockname()[1]]
        if not isinstance(address, tuple):
            return [address]
        calls = container.calls_address  # a function's call line (runtime/callline.py): its port, third
        return [*address, calls[1]] if isinstance(calls, tuple) else list(address)

    def _clean(self, cid: str) -> None:
        relay = self.relays.pop(cid, None)
        if relay is not None:
            relay.close()
        for place in (self.home / "volumes" / cid, self.home / "work" / cid):
            shutil.rmtree(place, ignore_errors=True)

    async def prepare(self, items: list[tuple[dict[str, Any], list[Any], str, Any]]) -> None:
        """Warm a template for each live pool's image on this node and stop the others."""
        specs = []
        for fields, files_box, root_id, build_image in items:
            with contextlib.suppress(Exception):  # a pool that cannot start here says so when it starts
                specs.append(await self._node_spec(fields, files_box, root_id, build_image))
        await self.backend.prepare(specs)

    async def logs(self) -> list[tuple[str, str, str]]:
        """New output lines of every container here, waiting up to LOG_POLL_S for some."""
        if not self.lines:
            self.new_lines.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.new_lines.wait(), LOG_POLL_S)
        out = list(self.lines)
        self.lines.clear()
        return out

    async def wait(self, cid: str) -> int:
        container = self.containers.get(cid)
        if container is None:
            return self.ended.get(cid, -1)
        code = await container.wait()
        if self.containers.pop(cid, None) is not None:
            self.ended[cid] = code
            if len(self.ended) > 10_000:
                self.ended.pop(next(iter(self.ended)))
            self._clean(cid)
        return code

    async def stop(self, cid: str, grace: float) -> None:
        container = self.containers.get(cid)
        if container is not None:
            await container.stop(grace)

    def kill(self, cid: str) -> None:
        container = self.containers.get(cid)
        if container is not None:
            container.kill()

    async def close(self) -> None:
        await asyncio.gather(*(c.stop(5.0) for c in list(self.containers.values())), return_exceptions=True)
        await self.backend.close()
