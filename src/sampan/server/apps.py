"""The control plane: publishes an app version as live endpoints, swaps versions, stops apps.

A publish is zero-downtime: for every endpoint that already serves traffic, the new version
starts as many containers as the old one has ready and waits for them; only then does the route
table point at the new version. Requests already queued or running on the old version finish
there (`Pool.drain`), and the old containers stop after that.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from .. import naming
from ..backends.base import Backend, ContainerSpec
from ..classparams import ClassParam, resolve_class_params
from ..config import Settings
from ..exception import InvalidError, NotFoundError
from ..manifest import FunctionEntry, Manifest, compose_env, recipe_hash
from ..mountpaths import FS_DIR, reroot
from . import autoscaler
from .autoscaler import READY, STARTING, PoolConfig
from .bundle import Bundle
from .gateway.errors import TOO_MANY_POOLS, GatewayError
from .gateway.listener import Gateway
from .gateway.routing import RouteTable, normal_domain
from .images.builder import BuiltImage, ImageBuilder
from .images.rootfs import RootfsBuilder
from .logs import LogStore
from .pool import Pool, PoolContainer
from .quota import ContainerQuota
from .store import Store
from .volumes import Volumes

LogFn = Callable[[str, str, str, str], None]  # (function tag, container id, stream, line)
ErrorFn = Callable[[str, str, str], None]  # (function tag, container id, reason)
WARM_TIMEOUT_S = 120.0


@dataclass
class BuildHooks:
    """What the CLI shows while images build: the current step, the installer's log, the result."""

    progress: Callable[[str], None] = lambda step: None
    log: Callable[[str], None] = lambda line: None
    built: Callable[[BuiltImage], None] = lambda image: None


@dataclass(frozen=True)
class EndpointInfo:
    tag: str
    kind: str
    url: str
    host_url: str
    subdomain: str
    truncated: bool
    requires_proxy_auth: bool


def _class_params(entry: FunctionEntry) -> tuple[ClassParam, ...]:
    return tuple(ClassParam.from_json(p) for p in entry.class_params)


def raise_open_files_limit() -> int:
    """Raise the soft limit on open files to the hard one: every client connection, upstream connection
    and container pipe is a descriptor, and the usual soft limit (1,024) is a handful of idle clients
    away from refusing everyone. Returns the limit now in force."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 1 << 20
    if soft != resource.RLIM_INFINITY and soft < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
            return want
        except (ValueError, OSError):
            pass
    return soft


def _copy_rerooted(tree: Path, root: Path) -> None:
    """Copy an absolute-layout tree (`root/x` is `/root/x`, `a/b` is `/a/b`) into a process-runtime
    working directory, where `/root/x` becomes `x` and `/a/b` becomes `a/b` (recipe.reroot)."""
    root.mkdir(parents=True, exist_ok=True)
    for child in tree.iterdir():
        target = root / reroot("/" + child.name)
        if child.is_dir() and not child.is_symlink():
            shutil.copytree(child, target, symlinks=True, dirs_exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(child, target, follow_symlinks=False)


class WebEndpoint:
    """One web function of one app version: its pools (one per class-parameter values)."""

    def __init__(self, server: AppServer, version: AppVersion, entry: FunctionEntry, subdomain: str,
                 truncated: bool, image: BuiltImage | None = None, env: dict[str, str] | None = None) -> None:
        self.server = server
        self.version = version
        self.entry = entry
        self.image = image
        mounts = [(v["path"], server.volumes.dir(version.workspace, v["name"], v.get("create_if_missing", False)))
                  for v in entry.volumes]
        self.volume_mounts = mounts
        self.sandboxed = bool(getattr(server.backend, "sandboxed", False))
        # In a sandbox the backend assembles the container's filesystem from the bundle, the image's
        # files and the Volumes; the process runtime needs them merged into one working directory.
        self.root = version.bundle.path if self.sandboxed else server.container_root(version.bundle, image, mounts)
        self.workspace = version.workspace
        self.env = env if env is not None else compose_env(entry, server.secret_resolver(self.workspace))
        self.subdomain = subdomain
        self.truncated = truncated
        self.params = _class_params(entry)
        self.pools: dict[tuple[tuple[str, Any], ...], Pool] = {}
        backend_cap = server.backend.max_containers_for(entry.to_json())
        cap = entry.max_containers
        if backend_cap is not None:
            if cap is None or cap > backend_cap:
                server.warn_once(
                    f"web_server:{entry.tag}",
                    f"{entry.tag}: the local backend runs one container at a time for `web_server` functions "
                    "(containers share the host's ports).",
                )
            cap = backend_cap if cap is None else min(cap, backend_cap)
        self.config = PoolConfig(
            max_inputs=entry.max_inputs,
            target_inputs=entry.target_inputs,
            min_containers=min(entry.min_containers, cap) if cap is not None else entry.min_containers,
            max_containers=cap,
            buffer_containers=entry.buffer_containers,
            scaledown_window=float(entry.scaledown_window),
        )

    @property
    def tag(self) -> str:
        return self.entry.tag

    def update_autoscaler(self, **settings: Any) -> dict[str, Any]:
        """Override the deployed autoscaler settings of every pool of this function (until the next
        deploy, as on Modal). Raises ValueError with Modal's texts."""
        self.config = autoscaler.override(self.config, **settings)
        for pool in self.pools.values():
            pool.reconfigure(self.config)
        return autoscaler.describe(self.config)

    @property
    def requires_proxy_auth(self) -> bool:
        return bool(self.entry.web.get("requires_proxy_auth"))

    def _image_fields(self, env: dict[str, str]) -> dict[str, Any]:
        """The image's part of a container spec; `env` (secrets, the platform's address) wins over the
        image's own variables."""
        image = self.image
        if image is None:
            return {}
        env = {**image.env, **env, "MODAL_IMAGE_ID": image.id,
               "SAMPAN_IMAGE_RECIPE": recipe_hash(list(self.entry.image))}
        if image.layers:  # a root filesystem image (images/rootfs.py): only in the sandbox
            return {"python": image.python, "env": env, "workdir": Path(image.workdir) if image.workdir else None,
                    "rootfs": image.layers, "runtime": image.runtime}
        workdir: Path | None = self.root
        if self.sandboxed:
            workdir = Path(image.workdir) if image.workdir else None
        elif image.workdir:
            workdir = self.root / reroot(image.workdir)
            workdir.mkdir(parents=True, exist_ok=True)
        return {"python": image.python, "env": env, "workdir": workdir,
                "path_prepend": (str(Path(image.python).parent),)}

    def _key(self, query: bytes) -> tuple[tuple[str, Any], ...]:
        if not self.params:
            return ()
        names = {p.name for p in self.params}
        given = {k: v for k, v in parse_qsl(query.decode("latin-1")) if k in names}
        try:
            values = resolve_class_params(self.params, given)
        except InvalidError as exc:
            raise GatewayError(400, f"modal-http: invalid class parameters: {exc}") from None
        return tuple(sorted(values.items()))

    def pool_for(self, query: bytes) -> Pool:
        """The pool of a web request (class parameters come from the query string)."""
        return self._pool(self._key(query))

    def pool_for_params(self, params: dict[str, Any]) -> Pool:
        """The pool of a `.remote()` call on `Cls(**params).method`. Raises InvalidError."""
        key = tuple(sorted(resolve_class_params(self.params, params).items())) if self.params else ()
        return self._pool(key)

    def _pool(self, key: tuple[tuple[str, Any], ...]) -> Pool:
        pool = self.pools.get(key)
        if pool is None:
            cap = self.server.settings.max_pools_per_function
            if len(self.pools) >= cap:  # each parameter value is a pool of containers: a client may not mint them
                raise GatewayError(429, TOO_MANY_POOLS.format(tag=self.tag, cap=cap, workspace=self.workspace))
            pool = self._new_pool(key)
        return pool

    def container_spec(self, container_id: str, key: tuple[tuple[str, Any], ...] = ()) -> ContainerSpec:
        """What the backend needs to start a container of the pool for class-parameter values `key`."""
        params = dict(key)
        fields: dict[str, Any] = dict(
            container_id=container_id,
            app_name=self.version.manifest.app_name,
            entry=self.entry.to_json(),
            bundle_dir=self.root,
            module=self.version.manifest.module,
            app_var=self.version.manifest.app_var,
            class_params={k: (v.decode("latin-1") if isinstance(v, bytes) else v) for k, v in params.items()},
            env={**self.env, **self.server.call_env(self.workspace), "SAMPAN_APP_KEY": self.version.key},
            web_urls=self.version.web_urls,
            startup_timeout=float(self.entry.startup_timeout or self.entry.timeout),
            labels={"app": self.version.manifest.app_name or "", "function": self.tag,
                    "server": self.server.settings.server_id},
            layers=(str(self.image.root),) if self.image is not None and self.image.has_root else (),
            volumes=tuple((path, str(directory)) for path, directory in self.volume_mounts),
        )
        fields.update(self._image_fields(fields["env"]))
        return ContainerSpec(**fields)

    def template_specs(self) -> list[ContainerSpec]:
        """One spec per pool (and one for the default pool before any exists), for `Backend.prepare`."""
        keys = list(self.pools) or ([()] if not self.params or not self.entry.enable_memory_snapshot else [])
        return [self.container_spec("ta-template", key) for key in keys]

    def _new_pool(self, key: tuple[tuple[str, Any], ...]) -> Pool:
        tag = self.entry.tag
        name = tag + ("(" + ", ".join(f"{k}={v!r}" for k, v in key) + ")" if key else "")

        pool = Pool(
            name,
            self.config,
            self.server.backend,
            lambda container_id: self.container_spec(container_id, key),
            lambda cid, stream, line: self.server.log(tag, cid, stream, line, self.version.key, self.workspace),
            on_start_error=lambda cid, reason: self.server.start_error(tag, cid, reason, self.workspace),
            on_exit=self.server.container_exited,
            stop_grace=self.server.stop_grace,
            timeout=float(self.entry.timeout),
            quota=self.server.quota,
            workspace=self.workspace,
        )
        self.pools[key] = pool
        pool.start()
        return pool

    async def warm(self, counts: dict[tuple[tuple[str, Any], ...], int]) -> None:
        """Start containers for the pools the previous version had warm, and wait for them."""
        waits = []
        for key, count in counts.items():
            pool = self.pools.get(key) or self._new_pool(key)
            waits.append(pool.warm(count))
        if waits:
            await asyncio.wait_for(asyncio.gather(*waits, return_exceptions=True), WARM_TIMEOUT_S)

    def warm_counts(self) -> dict[tuple[tuple[str, Any], ...], int]:
        return {key: n for key, pool in self.pools.items() if (n := pool.stats()["ready"])}

    async def drain(self) -> None:
        await asyncio.gather(*(p.drain() for p in self.pools.values()), return_exceptions=True)

    async def close(self) -> None:
        await asyncio.gather(*(p.close() for p in self.pools.values()), return_exceptions=True)


@dataclass
class AppVersion:
    manifest: Manifest
    bundle: Bundle
    ephemeral: bool
    number: int
    workspace: str
    key: str = ""
    endpoints: dict[str, WebEndpoint] = field(default_factory=dict)  # by subdomain
    callables: dict[str, WebEndpoint] = field(default_factory=dict)  # functions called with .remote(), by tag
    web_urls: dict[str, str] = field(default_factory=dict)  # by function tag
    infos: list[EndpointInfo] = field(default_factory=list)

    def all_endpoints(self) -> list[WebEndpoint]:
        return [*self.endpoints.values(), *self.callables.values()]


class PortBook:
    """Remembers which port each subdomain had, so a URL stays the same across runs."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.ports: dict[str, int] = json.loads(path.read_text())
        except (OSError, ValueError):
            self.ports = {}

    def candidates(self, subdomain: str, base: int, taken: set[int]) -> list[int]:
        """The port this subdomain had before, then fresh ones (any free port when `base` is 0)."""
        known = self.ports.get(subdomain)
        first = [known] if known and known not in taken else []
        if base == 0:
            return [*first, 0]
        used = set(self.ports.values()) | taken
        return first + [p for p in range(base, min(base + 500, 65536)) if p not in used]

    def record(self, subdomain: str, port: int) -> None:
        if self.ports.get(subdomain) == port:
            return
        self.ports[subdomain] = port
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(self.ports, indent=1, sort_keys=True))
            tmp.replace(self.path)
        except OSError:
            pass


def rootfs_builder(images_dir: Path, backend: Backend, runtimes: ImageBuilder) -> RootfsBuilder | None:
    """Real images (root filesystems, rootfs.py) where the backend's containers can run them: in the
    sandbox of a root server, which can map the uid range an image's files are owned by. Elsewhere
    (the process runtime, a server that is not root) images are virtual environments (builder.py);
    `SAMPAN_IMAGE_BUILDER=venv` chooses those on purpose."""
    isolation = getattr(backend, "isolation", None)
    if os.environ.get("SAMPAN_IMAGE_BUILDER", "").strip().lower() == "venv":
        return None
    if isolation is None or not isolation.enabled or not isolation.privileged:
        return None
    if shutil.which("mmdebstrap") is None:  # the README's first command must work on a fresh machine
        return None
    return RootfsBuilder(images_dir, isolation.uid, count=isolation.count, slirp=isolation.slirp,
                         constraints=runtimes.constraints, runtimes=runtimes)


class AppServer:
    """The embedded server: gateway + apps + backend, in one asyncio process."""

    def __init__(self, settings: Settings, backend: Backend, log: LogFn, start_error: ErrorFn,
                 warn: Callable[[str], None] | None = None, stop_grace: float = 30.0,
                 store: Store | None = None,
                 call_env: Callable[[str], dict[str, str]] = lambda workspace: {}) -> None:
        self.settings = settings
        self.backend = backend
        self.store = store
        self._log = log
        self.logs = LogStore()
        self._start_error = start_error
        self._warn = warn or (lambda message: None)
        self._warned: set[str] = set()
        self.stop_grace = stop_grace
        self.routes = RouteTable(settings.domain)
        self.gateway = Gateway(self.routes, settings.host, settings.gateway_port, workspace=settings.workspace,
                               limits=settings.limits,
                               verify_proxy_token=store.check_proxy_token if store is not None else None)
        self.portbook = PortBook(settings.home / "ports.json")
        self.apps: dict[str, AppVersion] = {}
        self.images = ImageBuilder(settings.images_dir)
        self.rootfs = rootfs_builder(settings.images_dir, backend, self.images)
        isolation = getattr(backend, "isolation", None)
        if self.rootfs is None and isolation is not None and isolation.enabled and isolation.privileged \
                and shutil.which("mmdebstrap") is None and warn is not None:
            warn("Images are built as virtual environments: real images (apt_install, from_registry, "
                 "Dockerfiles) need Debian's mmdebstrap (sudo apt-get install mmdebstrap skopeo umoci).")
        self.volumes = Volumes(settings.home)
        self.quota = ContainerQuota(settings.max_containers_per_workspace, settings.max_containers)
        self._draining: dict[WebEndpoint, asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closing = False
        # Variables that let a container call functions through this server (control/auth.Credentials).
        self.call_env = call_env

    def log(self, tag: str, container_id: str, stream: str, line: str, app_key: str | None = None,
            workspace: str | None = None) -> None:
        self.logs.append(container_id, stream, line, app_key, tag, workspace)
        self._log(tag, container_id, stream, line)

    def start_error(self, tag: str, container_id: str, reason: str, workspace: str | None = None) -> None:
        for line in reason.splitlines():
            self.logs.append(container_id, "system", line, workspace=workspace)
        self._start_error(tag, container_id, reason)

    def container_exited(self, container_id: str) -> None:
        self.logs.close(container_id)

    def _containers(self) -> list[tuple[WebEndpoint, Pool, PoolContainer]]:
        return [
            (endpoint, pool, pc)
            for endpoint in self.all_endpoints()
            for pool in endpoint.pools.values()
            for pc in pool.containers.values()
        ]

    def live_container_ids(self) -> set[str]:
        return {pc.id for _, _, pc in self._containers()}

    def describe_containers(self) -> list[dict[str, Any]]:
        now = time.time()
        live = {id(e) for v in self.apps.values() for e in v.all_endpoints()}
        return [
            {
                "id": pc.id,
                "workspace": endpoint.workspace,
                "app_key": endpoint.version.key,
                "app": endpoint.version.manifest.app_name,
                "function": endpoint.tag,
                "pool": pool.name,
                "version": endpoint.version.number,
                "state": pc.state if id(endpoint) in live else f"{pc.state} (old version)",
                "in_flight": pc.in_flight,
                "started_at": pc.started_at,
                "age_s": round(now - pc.started_at, 1),
            }
            for endpoint, pool, pc in self._containers()
        ]

    def find_container(self, workspace: str, container_id: str) -> tuple[Pool, PoolContainer] | None:
        """A live container of `workspace` (another workspace's is as good as none)."""
        for endpoint, pool, pc in self._containers():
            if pc.id == container_id and endpoint.workspace == workspace:
                return pool, pc
        return None

    def stop_container(self, workspace: str, container_id: str, graceful: bool) -> bool:
        """`sampan container stop`: out of rotation at once; ended now, or after its requests (`graceful`).
        The pool starts another if it needs one."""
        found = self.find_container(workspace, container_id)
        if found is None:
            return False
        pool, pc = found
        if not graceful and pc.backend is not None:
            pc.backend.kill()
        pool.recycle(pc)
        return True

    def describe_apps(self) -> list[dict[str, Any]]:
        return [
            {
                "key": key,
                "name": version.manifest.app_name,
                "version": version.number,
                "ephemeral": version.ephemeral,
                "bundle": version.bundle.id,
                "endpoints": [{"function": i.tag, "url": i.url, "subdomain": i.subdomain} for i in version.infos],
                "containers": sum(p.stats()["containers"] for e in version.all_endpoints()
                                  for p in e.pools.values()),
            }
            for key, version in self.apps.items()
        ]

    def secret_resolver(self, workspace: str) -> Callable[[str, list[str]], dict[str, str]]:
        """Named secrets of `workspace` (`sampan secret create`), checked for their required keys."""

        def resolve(name: str, required_keys: list[str]) -> dict[str, str]:
            if self.store is None:
                raise NotFoundError(f"Secret '{name}' not found: this server has no secret store.")
            values = self.store.secret_values(self.store.workspace(workspace), name)
            missing = [k for k in required_keys if k not in values]
            if missing:
                raise NotFoundError(f"Secret '{name}' is missing required keys: {', '.join(missing)}")
            return values

        return resolve

    def warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            self._warn(message)

    @property
    def public_host(self) -> str:
        return "127.0.0.1" if self.settings.host in ("0.0.0.0", "") else self.settings.host

    async def start(self) -> None:
        raise_open_files_limit()
        await self.gateway.start()

    def bundle(self, bundle_id: str) -> Bundle:
        path = self.settings.home / "bundles" / bundle_id
        if not path.is_dir():
            raise NotFoundError(f"Code bundle {bundle_id} is missing from {path.parent}.")
        return Bundle(bundle_id, path)

    def check_secrets(self, manifest: Manifest, workspace: str) -> None:
        for entry in manifest.functions:
            compose_env(entry, self.secret_resolver(workspace))

    def plan_subdomains(self, manifest: Manifest, ephemeral: bool,
                        workspace: str) -> list[tuple[FunctionEntry, str, bool]]:
        return self._subdomains(manifest, ephemeral, workspace)

    def _subdomains(self, manifest: Manifest, ephemeral: bool, workspace: str) -> list[tuple[FunctionEntry, str, bool]]:
        out: list[tuple[FunctionEntry, str, bool]] = []
        seen: dict[str, str] = {}
        for entry in manifest.functions:
            label = naming.label(manifest.app_name, entry.function_name, entry.cls_name, entry.web.get("label"))
            sub, truncated = naming.subdomain(workspace, label, self.settings.dev_suffix if ephemeral else None)
            if sub in seen:
                raise InvalidError(
                    f"Web functions {seen[sub]} and {entry.tag} would share the URL label {label!r}; "
                    "give one of them a different `label=`."
                )
            seen[sub] = entry.tag
            out.append((entry, sub, truncated))
        return out

    async def build_images(self, manifest: Manifest, hooks: BuildHooks | None = None,
                           workspace: str | None = None, bundle: Bundle | None = None) -> list[BuiltImage | None]:
        """Build (or find) the image of every function (web ones, then the others, as in
        `manifest.functions + manifest.calls`); None where a function declares no image."""
        hooks = hooks or BuildHooks()
        built: dict[str, BuiltImage] = {}
        out: list[BuiltImage | None] = []
        resolve = self.secret_resolver(workspace or self.settings.workspace)

        def build_secrets(name: str) -> dict[str, str]:  # a build step's `secrets=` (named Secrets)
            return resolve(name, [])

        for entry in [*manifest.functions, *manifest.calls]:
            if not entry.image:
                out.append(None)  # no image anywhere: Sampan's own environment (docs/architecture.md)
                continue
            key = json.dumps(entry.image, sort_keys=True)
            if key not in built:
                if self.rootfs is not None:
                    image = await self.rootfs.build(list(entry.image), log=hooks.log, progress=hooks.progress,
                                                    secrets=build_secrets, scope=workspace or self.settings.workspace,
                                                    code=(bundle.path, manifest.module) if bundle else None)
                    self.rootfs.claim(image.id, workspace or self.settings.workspace)
                    if not image.cached and self.settings.image_cache_max:
                        await asyncio.to_thread(self.rootfs.enforce_cap, self.settings.image_cache_max,
                                                self.images_in_use() | {image.id})
                else:
                    image = await self.images.build(list(entry.image), log=hooks.log, progress=hooks.progress)
                built[key] = image
                hooks.built(image)
            out.append(built[key])
        return out

    @property
    def images_description(self) -> str:
        if self.rootfs is not None:
            return f"root filesystems (layers in {self.rootfs.layers})"
        return f"virtual environments (in {self.settings.images_dir})"

    def images_in_use(self) -> set[str]:
        """The images of every app version this server runs (never pruned or evicted)."""
        return {e.image.id for v in self.apps.values() for e in v.all_endpoints() if e.image is not None}

    def container_root(self, bundle: Bundle, image: BuiltImage | None,
                       mounts: list[tuple[str, Path]] | None = None) -> Path:
        """The container's working directory: the code bundle, merged with files baked into the image,
        with a link at each volume's (re-rooted) mount path."""
        baked = image is not None and image.has_root and any(image.root.iterdir())
        if not baked and not mounts:
            return bundle.path
        name = f"{bundle.id}-{image.id if image is not None else 'none'}"
        if mounts:
            name += "-" + hashlib.sha256(json.dumps([(p, str(d)) for p, d in mounts]).encode()).hexdigest()[:12]
        root = self.settings.home / "roots" / name
        if not root.is_dir():
            tmp = root.with_name(root.name + f".{os.getpid()}.tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            if baked:
                assert image is not None
                _copy_rerooted(image.root, tmp)
            shutil.copytree(bundle.path, tmp, symlinks=True, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns(FS_DIR))
            if (bundle.path / FS_DIR).is_dir():
                _copy_rerooted(bundle.path / FS_DIR, tmp)
            for path, directory in mounts or []:
                link = tmp / reroot(path)
                link.parent.mkdir(parents=True, exist_ok=True)
                if link.is_symlink() or link.exists():
                    raise InvalidError(f"Volume mount path {path} collides with a file of the app.")
                link.symlink_to(directory.resolve())
            try:
                os.rename(tmp, root)
            except OSError:
                shutil.rmtree(tmp, ignore_errors=True)
        return root

    async def publish(self, app_key: str, manifest: Manifest, bundle: Bundle, *, ephemeral: bool,
                      strategy: str = "rolling", hooks: BuildHooks | None = None,
                      workspace: str | None = None, number: int | None = None) -> AppVersion:
        """Make `manifest` the live version of app `app_key`; returns the version with its URLs.

        `rolling` (the default) warms the new version where the old one has ready containers, swaps,
        then lets the old containers finish their requests. `recreate` swaps at once and stops the
        old containers (in-flight requests get the grace period).
        """
        if strategy not in ("rolling", "recreate"):
            raise InvalidError(f"Unknown deployment strategy {strategy!r}: use 'rolling' or 'recreate'.")
        workspace = workspace or self.settings.workspace
        old = self.apps.get(app_key)
        version = AppVersion(manifest, bundle, ephemeral, number or ((old.number + 1) if old else 1), workspace,
                             app_key)
        plan = self._subdomains(manifest, ephemeral, workspace)
        taken_domains = self.routes.domain_conflicts(
            workspace, [d for entry, _, _ in plan for d in entry.web.get("custom_domains") or []])
        if taken_domains:
            raise InvalidError(f"Custom domain {taken_domains[0]!r} is already in use by another workspace.")
        envs = [compose_env(entry, self.secret_resolver(workspace))  # fail early
                for entry in [*manifest.functions, *manifest.calls]]
        images = await self.build_images(manifest, hooks, workspace, bundle)
        web_images, call_images = images[:len(manifest.functions)], images[len(manifest.functions):]
        web_envs, call_envs = envs[:len(manifest.functions)], envs[len(manifest.functions):]
        taken = set(self.gateway.endpoint_ports.values()) | {self.gateway.port}
        for entry, sub, truncated in plan:
            port = await self.gateway.open_endpoint(
                sub, self.portbook.candidates(sub, self.settings.endpoint_port_base, taken)
            )
            taken.add(port)
            self.portbook.record(sub, port)
            url = f"http://{self.public_host}:{port}"
            host_url = f"http://{sub}.{self.settings.domain}:{self.gateway.port}"
            version.web_urls[entry.tag] = url
            version.infos.append(
                EndpointInfo(entry.tag, entry.kind, url, host_url, sub, truncated,
                             bool(entry.web.get("requires_proxy_auth")))
            )
        for (entry, sub, truncated), image, env in zip(plan, web_images, web_envs, strict=True):
            version.endpoints[sub] = WebEndpoint(self, version, entry, sub, truncated, image, env)
        for entry, image, env in zip(manifest.calls, call_images, call_envs, strict=True):
            version.callables[entry.tag] = WebEndpoint(self, version, entry, "", False, image, env)
        # Warm templates before any container is needed: the first request then forks one.
        await self.prepare_backend(extra=version.all_endpoints())

        # Warm the new version where the old one is serving, then swap.
        if old is not None and strategy == "rolling":
            warmups = [
                endpoint.warm(old.endpoints[sub].warm_counts())
                for sub, endpoint in version.endpoints.items()
                if sub in old.endpoints
            ] + [
                endpoint.warm(old.callables[tag].warm_counts())
                for tag, endpoint in version.callables.items()
                if tag in old.callables
            ]
            if warmups:
                await asyncio.gather(*warmups, return_exceptions=True)
        for sub, endpoint in version.endpoints.items():
            self.routes.set(sub, endpoint)
            for domain in endpoint.entry.web.get("custom_domains") or []:
                self.routes.claim_domain(workspace, domain, sub)
            if not endpoint.params:
                endpoint.pool_for(b"")  # the default pool honours min_containers from the start
        for endpoint in version.callables.values():
            if not endpoint.params:
                endpoint.pool_for(b"")
        self.apps[app_key] = version
        if old is not None:
            kept = {normal_domain(d) for e in version.endpoints.values()
                    for d in e.entry.web.get("custom_domains") or []}
            for sub, endpoint in old.endpoints.items():
                if sub not in version.endpoints:
                    self.routes.remove(sub, stopped=False)
                for domain in endpoint.entry.web.get("custom_domains") or []:
                    if normal_domain(domain) not in kept:
                        self.routes.release_domain(domain, sub)
                    await self.gateway.close_endpoint(sub)
            for endpoint in old.all_endpoints():
                if strategy == "rolling":
                    self._spawn_drain(endpoint)
                else:
                    self._spawn_close(endpoint)
        return version

    async def prepare_backend(self, extra: list[WebEndpoint] | None = None) -> None:
        """Tell the backend which containers may be started from now on (`Backend.prepare`)."""
        endpoints = [*(extra or []), *self.all_endpoints()]
        specs = [spec for endpoint in endpoints for spec in endpoint.template_specs()]
        try:
            await self.backend.prepare(specs)
        except Exception as exc:  # noqa: BLE001 - containers still start without it, just slower
            self.warn_once(f"prepare:{type(exc).__name__}", f"could not prepare the backend: {exc}")

    def _spawn_drain(self, endpoint: WebEndpoint) -> None:
        self._track_old(endpoint, asyncio.create_task(endpoint.drain()))

    def _spawn_close(self, endpoint: WebEndpoint) -> None:
        self._track_old(endpoint, asyncio.create_task(endpoint.close()))

    def _track_old(self, endpoint: WebEndpoint, task: asyncio.Task[None]) -> None:
        """An old version finishing in the background; once it is gone, what it used is let go."""
        self._draining[endpoint] = task

        def done(_: asyncio.Task[None]) -> None:
            self._draining.pop(endpoint, None)
            if not self._closing:
                self._background(self.prepare_backend())

        task.add_done_callback(done)

    def _background(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def all_endpoints(self) -> list[WebEndpoint]:
        """Live endpoints of every app, then old versions still draining."""
        live = [e for v in self.apps.values() for e in v.all_endpoints()]
        return live + [e for e in self._draining if e not in live]

    def kill_all(self) -> None:
        """SIGKILL every container now (a second Ctrl-C)."""
        for endpoint in self.all_endpoints():
            for pool in endpoint.pools.values():
                pool.kill_all()

    async def stop_app(self, app_key: str, drain_timeout: float = 5.0) -> None:
        """Stop serving: new requests get 404 'app ... is stopped'; in-flight ones get a moment to finish."""
        version = self.apps.pop(app_key, None)
        if version is None:
            return
        for sub, endpoint in version.endpoints.items():
            self.routes.remove(sub, stopped=True)
            for domain in endpoint.entry.web.get("custom_domains") or []:
                self.routes.release_domain(domain, sub)
        endpoints = version.all_endpoints()
        try:
            await asyncio.wait_for(asyncio.gather(*(e.drain() for e in endpoints)), drain_timeout)
        except asyncio.TimeoutError:
            pass
        await asyncio.gather(*(e.close() for e in endpoints), return_exceptions=True)
        if not self._closing:
            await self.prepare_backend()

    async def close(self) -> None:
        self._closing = True
        for key in list(self.apps):
            await self.stop_app(key)
        # Old versions still draining after a reload: stop their containers too.
        await asyncio.gather(*(e.close() for e in list(self._draining)), return_exceptions=True)
        for task in list(self._draining.values()):
            task.cancel()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.gateway.close()
        await self.backend.close()


__all__ = ["AppServer", "AppVersion", "EndpointInfo", "READY", "STARTING"]
