"""The seam between the server and wherever containers run.

A backend starts a container for a `ContainerSpec` and hands back a `Container` once the
container is ready, with the address the gateway should send requests to. The gateway and the
pools never assume a container is a local process: the local backend runs process groups,
a Ray backend would run actors, a fake backend (in tests) runs an in-process server.
"""

from __future__ import annotations

import abc
import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LogSink = Callable[[str, str, str], None]  # (container_id, stream name, line)


class ContainerStartError(Exception):
    """A container could not become ready: its import failed, a hook raised, a port never opened."""


@dataclass(frozen=True)
class ContainerSpec:
    container_id: str
    app_name: str | None
    entry: dict[str, Any]  # FunctionEntry.to_json()
    bundle_dir: Path
    module: str
    app_var: str
    class_params: dict[str, Any] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    web_urls: dict[str, str] = field(default_factory=dict)
    startup_timeout: float = 300.0
    labels: dict[str, str] = field(default_factory=dict)  # free-form, for logs and cleanup
    python: str | None = None  # the image's interpreter; None: Sampan's own environment
    workdir: Path | None = None  # the container's working directory (default: bundle_dir)
    path_prepend: tuple[str, ...] = ()  # directories put first on PATH (the image's bin)
    unix_socket: str | None = None  # serve on this Unix socket instead of a TCP port (set by the backend)
    listen_host: str | None = None  # the address to serve on when not a Unix socket (default 127.0.0.1)
    limits: dict[str, Any] | None = None  # {"cpus": [...], "memory_bytes": N}: set by the local backend
    # What a sandboxed container's filesystem is made of, besides the bundle at /root: trees of files at
    # their absolute paths (the image's baked files), and Volumes as (mount path, host directory).
    layers: tuple[str, ...] = ()
    volumes: tuple[tuple[str, str], ...] = ()
    # A root filesystem image (server/images/rootfs.py): its layer directories, top first, and Sampan's
    # runtime built for its Python. `python` is then the interpreter's path inside the image.
    rootfs: tuple[str, ...] = ()
    runtime: str | None = None


Address = tuple[str, int] | str  # (host, port), or the path of a Unix socket on this machine


class Container(abc.ABC):
    id: str
    address: Address
    calls_address: Address | None = None  # where a function takes single calls framed (runtime/callline.py)

    @abc.abstractmethod
    async def stop(self, grace: float = 30.0) -> None:
        """Ask the container to finish (SIGTERM-like), then force it after `grace` seconds."""

    def kill(self) -> None:
        """End the container now, without a grace period (a second Ctrl-C)."""

    @abc.abstractmethod
    async def wait(self) -> int:
        """Return the exit status once the container has exited."""

    @property
    @abc.abstractmethod
    def alive(self) -> bool: ...


class Backend(abc.ABC):
    name: str = "abstract"

    @abc.abstractmethod
    async def start(self, spec: ContainerSpec, log: LogSink) -> Container:
        """Start a container and return once it is ready. Raises ContainerStartError."""

    async def prepare(self, specs: list[ContainerSpec]) -> None:
        """The containers that may be started next look like `specs` (one per live pool): get ready
        for them (the local backend warms a template per image) and let go of what nothing needs."""

    async def close(self) -> None:
        """Release backend resources (containers are stopped by their pools first)."""

    def max_containers_for(self, entry: dict[str, Any]) -> int | None:
        """A backend-imposed cap on containers per pool (None: no cap)."""
        return None


_BACKENDS = {"local": "sampan.backends.local:LocalBackend", "ray": "sampan.backends.ray:RayBackend"}


def get_backend(name: str, **options: Any) -> Backend:
    """Backends are chosen by name and imported only when used."""
    try:
        target = _BACKENDS[name]
    except KeyError:
        raise ValueError(f"Unknown backend {name!r}; known: {', '.join(sorted(_BACKENDS))}") from None
    module_name, _, attr = target.partition(":")
    return getattr(importlib.import_module(module_name), attr)(**options)
