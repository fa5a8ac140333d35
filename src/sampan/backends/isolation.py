"""The server's side of the container sandbox (runtime/sandbox.py): which runtime this machine
gets, and what each template and container is made of.

`Isolation.detect()` chooses once, at start: the sandbox where the kernel allows it, else the
process runtime with the reason (said loudly by `sampan serve`, `sampan server start` and
`sampan server status`); `SAMPAN_RUNTIME=process` chooses the process runtime on purpose.

A template's base is the host's `/usr` and `/etc` (read-only) and whatever the image's interpreter
needs: the image directory, its runtime layer, the interpreter's prefix, Sampan's source. A
container's plan adds the code bundle (`/root`), the image's baked files, the Volumes and a socket
directory of its own. A root server hands each non-system path over as a detached mount
(`open_tree`), since the container's uid cannot walk `$SAMPAN_HOME`; any other server hands over
paths, reachable because its containers' user namespace maps the server's own uid.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .. import config
from ..runtime import sandbox
from .base import ContainerSpec

SYSTEM = ("/usr", "/etc")
CONTAINER_UID = 100000  # container root on the host when the server is root (never host root)
UID_RANGE = 65536  # container uid N is host uid CONTAINER_UID + N
CONTAINER_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_SAMPAN_SRC = str(Path(__file__).resolve().parents[2])


@dataclass
class Handover:
    """Descriptors that travel with a template start or a fork request, by the names a plan uses."""

    names: list[str] = field(default_factory=list)
    fds: list[int] = field(default_factory=list)

    def add(self, fd: int) -> str:
        name = f"f{len(self.fds)}"
        self.names.append(name)
        self.fds.append(fd)
        return name

    def close(self) -> None:
        for fd in self.fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self.fds.clear()


def _under(path: str, roots: list[str] | tuple[str, ...]) -> bool:
    return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)


def interpreter_paths(python: str) -> list[str]:
    """The host directories an interpreter (a venv's, or Sampan's own) needs to run, outermost only."""
    found: list[str] = []
    exe = Path(python)
    venv = exe.parent.parent
    cfg = venv / "pyvenv.cfg"
    if cfg.is_file():
        found.append(str(venv.resolve()) if not venv.is_symlink() else str(venv))
        for line in cfg.read_text().splitlines():
            key, _, value = line.partition("=")
            if key.strip() == "home" and value.strip():
                found.append(str(Path(value.strip()).resolve().parent))
        for pth in venv.glob("lib/python*/site-packages/*.pth"):
            for line in pth.read_text().splitlines():
                line = line.strip()
                if line.startswith("/") and os.path.isdir(line):
                    found.append(line)
                    package = Path(line) / "sampan"
                    if package.is_symlink():
                        found.append(str(package.resolve().parent))
    else:
        found.append(str(exe.resolve().parent.parent))
    if python == sys.executable:
        found += [sys.prefix, sys.base_prefix, _SAMPAN_SRC]
    out: list[str] = []
    for path in sorted({str(Path(p)) for p in found}, key=len):
        if not _under(path, SYSTEM) and not _under(path, out) and os.path.exists(path):
            out.append(path)
    return out


def own_network(spec: ContainerSpec) -> bool:
    """A network namespace of its own: `web_server` containers (any number bind the same port) and
    Sandboxes, unless they must answer on the node's address (the Ray backend)."""
    return spec.entry.get("kind") in ("web_server", "sandbox") and not spec.listen_host


def network_blocked(spec: ContainerSpec) -> bool:
    """`Sandbox.create(block_network=True)`: no way out at all, not even to the platform's own ports."""
    return bool(spec.entry.get("web", {}).get("block_network"))


def platform_ports(spec: ContainerSpec) -> list[int]:
    """The loopback ports a container with its own network namespace still reaches: the control API
    (calls, Dict, Queue, Volume) and the gateway's URLs of its app (`get_web_url()`)."""
    ports = set()
    for url in [spec.env.get("SAMPAN_SERVER_URL", ""), *spec.web_urls.values()]:
        parsed = urlsplit(url)
        host = parsed.hostname or ""
        if parsed.port and (host in ("127.0.0.1", "localhost") or host.endswith(".localhost")):
            ports.add(parsed.port)
    return sorted(ports)


@dataclass
class Isolation:
    """The sandbox of one backend: its mode, the uid its containers' root is, its socket directory."""

    reason: str | None  # None: containers are sandboxed; else why they run as plain processes
    uid: int = 0
    privileged: bool = False  # a root server: hands paths over as detached mounts
    sockets: Path | None = None
    slirp: str | None = field(default_factory=lambda: shutil.which("slirp4netns"))  # outbound for web_server

    @classmethod
    def detect(cls, runtime: str | None = None) -> Isolation:
        runtime = (runtime if runtime is not None else config.runtime_choice()).strip().lower()
        sockets = Path(tempfile.mkdtemp(prefix="sampan-sockets-"))  # 0700, never a directory found in place
        if runtime == "process":
            return cls("SAMPAN_RUNTIME=process", sockets=sockets)
        if runtime not in ("", "sandbox", "auto"):
            raise ValueError(f"SAMPAN_RUNTIME must be 'sandbox' or 'process', not {runtime!r}")
        reason = sandbox.probe()
        if reason is not None:
            if runtime == "sandbox":
                raise RuntimeError(f"SAMPAN_RUNTIME=sandbox, but this machine cannot sandbox containers: {reason}")
            return cls(reason, sockets=sockets)
        privileged = sandbox.host_root()
        uid = config.container_uid(CONTAINER_UID) if privileged else os.getuid()
        if privileged and uid == 0:
            raise ValueError("SAMPAN_CONTAINER_UID must not be 0: container root is never host root")
        return cls(None, uid, privileged, sockets)

    @property
    def count(self) -> int:
        """How many uids a container's user namespace maps: a root server maps a range (images keep
        their files' owners), anyone else only their own uid."""
        return UID_RANGE if self.privileged else 1

    @property
    def enabled(self) -> bool:
        return self.reason is None

    def describe(self) -> str:
        if self.enabled:
            net = "" if self.slirp else "; web_server containers have no outbound network: install slirp4netns"
            return f"sandbox (namespaces; container root is host uid {self.uid}{net})"
        return f"process (NOT isolated: {self.reason})"

    def _source(self, path: str, handover: Handover) -> dict[str, Any]:
        if self.privileged:
            return {"fd": handover.add(sandbox.open_tree(path))}
        return {"src": path}

    def base_binds(self, python: str) -> list[str]:
        return interpreter_paths(python)

    def base(self, python: str, extra: tuple[str, ...] = ()) -> tuple[dict[str, Any], Handover]:
        """A template's (or spawned container's) base, with the descriptors it needs."""
        handover = Handover()
        binds: list[dict[str, Any]] = [{"dst": p, "src": p} for p in SYSTEM if os.path.isdir(p)]
        links = []
        for name in sorted(os.listdir("/")):
            path = f"/{name}"
            if os.path.islink(path):
                links.append([path, os.readlink(path)])
        try:
            for path in [*self.base_binds(python), *(p for p in extra if os.path.isdir(p))]:
                if _under(path, [b["dst"] for b in binds]):
                    continue
                binds.append({"dst": path, **self._source(path, handover)})
        except BaseException:
            handover.close()
            raise
        return {"uid": self.uid, "count": self.count, "binds": binds, "links": links,
                "keep_host": not self.privileged}, handover

    def image_base(self, layers: tuple[str, ...], runtime: str) -> tuple[dict[str, Any], Handover]:
        """The base of a template (or spawned container) of a root filesystem image: its layers, top
        first, and Sampan's runtime at /__sampan (its dependencies, built for the image's Python, and
        this package), all read-only. Only a root server builds such images (images/rootfs.py)."""
        handover = Handover()
        try:
            image = [self._source(layer, handover) for layer in layers]
            binds = [{"dst": "/__sampan/deps", **self._source(runtime, handover)},
                     {"dst": "/__sampan/pkg/sampan", **self._source(str(Path(_SAMPAN_SRC) / "sampan"), handover)}]
        except BaseException:
            handover.close()
            raise
        return {"uid": self.uid, "count": self.count, "image": image, "binds": binds}, handover

    def container_dir(self, container_id: str) -> Path:
        """The container's socket directory on the host (its /run/sampan): mode 0700, owned by its root."""
        assert self.sockets is not None
        path = self.sockets / container_id
        path.mkdir(mode=0o700, exist_ok=True)
        if self.privileged:
            os.chown(path, self.uid, self.uid)
        return path

    def plan(self, spec: ContainerSpec, python: str, extra: tuple[str, ...] = ()) -> tuple[dict[str, Any], Handover]:
        """What `spec`'s container is made of, with the descriptors it needs (module docstring)."""
        handover = Handover()
        try:
            layers = [self._source(p, handover) for p in spec.layers if os.path.isdir(p)]
            fs = spec.bundle_dir / ".sampan-fs"
            if fs.is_dir():
                layers.append(self._source(str(fs), handover))
            volumes = []
            for dst, host in spec.volumes:
                self.own(Path(host))
                volumes.append({"dst": dst, **self._source(host, handover)})
            plan = {
                "code": self._source(str(spec.bundle_dir), handover),
                "layers": layers,
                "volumes": volumes,
                "sockets": self._source(str(self.container_dir(spec.container_id)), handover),
                "nested": [] if spec.rootfs else [p for p in [*self.base_binds(python), *extra]
                                                   if not _under(p, SYSTEM)],
                "image": bool(spec.rootfs),
                "files": self._files(spec),
                "net": own_network(spec),
                "bridge_ports": [] if network_blocked(spec) else platform_ports(spec),
                # the server attaches slirp4netns (attach_network)
                "outbound": self.slirp is not None and not network_blocked(spec),
                "hostname": "modal",
                "workdir": str(spec.workdir) if spec.workdir else "/root",
            }
        except BaseException:
            handover.close()
            raise
        return plan, handover

    def _files(self, spec: ContainerSpec) -> dict[str, str]:
        """What a root filesystem image's container gets written into its /etc: name resolution that
        works on its network (slirp4netns's resolver, or the host's), and its own host name."""
        if not spec.rootfs:
            return {}
        if own_network(spec) and self.slirp is not None and not network_blocked(spec):
            resolv = "nameserver 10.0.2.3\n"
        else:
            try:
                resolv = Path("/etc/resolv.conf").read_text()
            except OSError:
                resolv = ""
        hosts = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\tmodal\n"
        return {"/etc/resolv.conf": resolv, "/etc/hosts": hosts, "/etc/hostname": "modal\n"}

    async def attach_network(self, supervisor_pid: int, timeout: float = 10.0) -> asyncio.subprocess.Process | None:
        """Give the network namespace of a container (the supervisor's child) a way out with slirp4netns
        (a user-mode TCP/IP stack: outbound connections, as on Modal, with nothing of the host's
        loopback reachable). Returns the helper, to end with the container; None without slirp4netns."""
        if self.slirp is None:
            return None
        own = os.readlink(f"/proc/{supervisor_pid}/ns/net")
        deadline = time.monotonic() + timeout
        child = None
        while time.monotonic() < deadline:  # the container unshares its network right after its fork
            with contextlib.suppress(OSError, ValueError):
                kids = Path(f"/proc/{supervisor_pid}/task/{supervisor_pid}/children").read_text().split()
                if kids and os.readlink(f"/proc/{kids[0]}/ns/net") != own:
                    child = int(kids[0])
                    break
            await asyncio.sleep(0.002)
        if child is None:
            return None
        return await asyncio.create_subprocess_exec(
            self.slirp, "--configure", "--mtu=65520", "--disable-host-loopback", str(child), "tap0",
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
            start_new_session=True)

    def own(self, directory: Path) -> None:
        """A Volume is written by container root: on a root server, that is `uid`."""
        if not self.privileged or not directory.is_dir() or directory.stat().st_uid == self.uid:
            return
        for root, dirs, files in os.walk(directory):
            for name in [*dirs, *files]:
                with contextlib.suppress(OSError):
                    os.lchown(os.path.join(root, name), self.uid, self.uid)
        os.chown(directory, self.uid, self.uid)

    def host_socket(self, container_id: str, inside: str) -> str:
        """The host path of a socket the container made at `inside` (under /run/sampan)."""
        assert self.sockets is not None
        rel = os.path.relpath(inside, sandbox.SOCKET_DIR)
        return str(self.sockets / container_id / rel)

    def release(self, container_id: str) -> None:
        if self.sockets is not None:
            shutil.rmtree(self.sockets / container_id, ignore_errors=True)

    def close(self) -> None:
        if self.sockets is not None:
            shutil.rmtree(self.sockets, ignore_errors=True)
