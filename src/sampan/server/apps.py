"""The control plane: publishes an app version as live endpoints, swaps versions, stops apps.

A publish is zero-downtime: for every endpoint that already serves traffic, the new version
starts as many containers as the old one has ready and waits for them; only then does the route
table point at the new version. Requests already queued or running on the old version finish
there (`Pool.drain`), and the old containers stop after that.

Longer than 400 lines because publishing, swapping and stopping versions share the app server's state and
locks.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

from .. import config, naming
from ..backends.base import Backend
from ..config import Settings
from ..exception import InvalidError, NotFoundError
from ..localfiles import UPLOADS, slot_value, upload_slots
from ..manifest import FunctionEntry, Manifest, compose_env
from .autoscaler import READY, STARTING
from .buckets import Buckets
from .bundle import Bundle, write_content
from .dashboard.series import Series
from .endpoints import AppVersion, EndpointInfo, WebEndpoint
from .gateway.listener import Gateway
from .gateway.routing import RouteTable, normal_domain
from .images.builder import BuiltImage, ImageBuilder
from .images.recipe import machine_paths
from .images.service import BuildHooks, build_images, rootfs_builder
from .logs import LogStore
from .metrics import Metrics
from .pool import Pool, PoolContainer
from .portbook import PortBook
from .quota import ContainerQuota
from .requests import RequestLog
from .roots import container_root
from .sandboxes import Sandboxes
from .store import Store
from .telemetry import Telemetry
from .usage import tree_usage
from .volumes import Volumes

LogFn = Callable[[str, str, str, str], None]  # (function tag, container id, stream, line)
ErrorFn = Callable[[str, str, str], None]  # (function tag, container id, reason)


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


def own_snapshots(manifest: Manifest, workspace: str) -> Manifest:
    """A recipe names a Sandbox snapshot by id only: the snapshot is always looked for among the building
    workspace's own, whatever workspace a client wrote into the step (rootfs.py `op_sandbox_snapshot`)."""
    def fixed(entry: FunctionEntry) -> FunctionEntry:
        steps = tuple({**s, "args": {**(s.get("args") or {}), "workspace": workspace}}
                      if s.get("op") == "sandbox_snapshot" else s for s in entry.image)
        return dataclasses.replace(entry, image=steps) if steps != entry.image else entry
    return dataclasses.replace(manifest, functions=tuple(map(fixed, manifest.functions)),
                               calls=tuple(map(fixed, manifest.calls)))


def stage_uploads(manifest: Manifest, bundle: Bundle | None, home: Path, workspace: str) -> Manifest:
    """On a shared server, every image step that reads local files (`copy=True` sources, requirement files,
    pyproject, uv and Poetry projects: localfiles.py `upload_slots`) reads what its client sent in the
    bundle, never the path the client named: those files are copied to
    `$SAMPAN_HOME/image-uploads/<workspace>/<content hash>/` (stable while they do not change, so the
    step's layer stays cached across deploys) and the step names that copy. Not sent: InvalidError."""
    def staged(step: dict[str, Any]) -> dict[str, Any]:
        op, args = step.get("op") or "", dict(step.get("args") or {})
        for slot in upload_slots(op, args):
            named = slot_value(args, slot.arg)
            source = bundle.path / UPLOADS / slot.key if bundle is not None else None
            copied: Path | None = None
            if source is not None and source.is_dir():
                sent = {p.relative_to(source).as_posix(): p.read_bytes()
                        for p in sorted(source.rglob("*")) if p.is_file() and not p.is_symlink()}
                copied = write_content(home / "image-uploads" / workspace, sent).path
                if slot.kind != "dir":
                    copied = copied / PurePosixPath(named).name
                    copied = copied if copied.is_file() else None
            name, _, index = slot.arg.partition(".")
            if copied is None and slot.kind == "optional":
                args.pop(name, None)
            elif copied is None:
                raise InvalidError(f"{op}({named!r}): its files did not come with the app (this server reads none "
                                   "of its own files for a client's image; `sampan deploy` sends them).")
            elif index:
                args[name] = [*args[name][:int(index)], str(copied), *args[name][int(index) + 1:]]
            else:
                args[name] = str(copied)
        return {**step, "args": args} if args != (step.get("args") or {}) else step

    def fixed(entry: FunctionEntry) -> FunctionEntry:
        steps = tuple(staged(dict(s)) for s in entry.image)
        return dataclasses.replace(entry, image=steps) if steps != entry.image else entry
    return dataclasses.replace(manifest, functions=tuple(map(fixed, manifest.functions)),
                               calls=tuple(map(fixed, manifest.calls)))


def check_machine_paths(manifest: Manifest) -> None:
    """A shared server builds for every workspace: an image step that would read a file of this machine at
    a path the client named (its `/etc/shadow`, another workspace's Volume) is refused before any build
    (`add_local_file/dir(copy=True)` read what the client sent instead: `stage_uploads`)."""
    for entry in (*manifest.functions, *manifest.calls):
        found = machine_paths(list(entry.image), staged=True)
        if found:
            raise InvalidError(
                f"Image step {found[0]} reads files of the machine that builds the image, and this server builds "
                "images for several workspaces, so it reads none of its own files for them (Sampan does not "
                "upload a client's files for image builds yet). Use `copy=False` (files are then sent with the "
                "app), `pip_install`/`uv_pip_install` with package names, or a `sampan serve` session; a server "
                "whose every deploying client is on this machine may allow it with SAMPAN_SERVER_LOCAL_PATHS=1.")


def _usage(pc: Any) -> dict[str, Any]:
    proc = getattr(pc.backend, "proc", None)  # a local container's process; a Ray one reports none
    found = tree_usage(proc.pid) if proc is not None and proc.returncode is None else None
    return {"cpu_s": round(found.cpu_s, 2) if found else None, "memory_bytes": found.rss_bytes if found else None}


class AppServer:
    """The embedded server: gateway + apps + backend, in one asyncio process."""

    def __init__(self, settings: Settings, backend: Backend, log: LogFn, start_error: ErrorFn,
                 warn: Callable[[str], None] | None = None, stop_grace: float = 30.0,
                 store: Store | None = None,
                 call_env: Callable[[str], dict[str, str]] = lambda workspace: {},
                 telemetry: Telemetry | None = None) -> None:
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
        self.requests = RequestLog()  # every routed request (server/requests.py), feeding the metrics
        self.metrics = Metrics(lambda ws: self.describe_containers(usage=True, workspace=ws))
        self.requests.sinks.append(self.metrics.observe)
        self.series = Series()  # the dashboard's charts (server/dashboard/series.py)
        self.requests.sinks.append(self.series.observe)
        self.telemetry = telemetry  # OpenTelemetry export (server/telemetry.py), when configured
        if telemetry is not None:
            self.requests.sinks.append(telemetry.request)
        self.gateway = Gateway(self.routes, settings.host, settings.gateway_port, workspace=settings.workspace,
                               limits=settings.limits,
                               verify_proxy_token=store.check_proxy_token if store is not None else None,
                               request_log=self.requests.record if settings.request_log else None)
        self.portbook = PortBook(settings.home / "ports.json")
        self.apps: dict[str, AppVersion] = {}
        self.images = ImageBuilder(settings.images_dir)
        self.rootfs = rootfs_builder(settings, backend, self.images)
        isolation = getattr(backend, "isolation", None)
        if self.rootfs is None and isolation is not None and isolation.enabled and isolation.privileged \
                and shutil.which("mmdebstrap") is None and warn is not None:
            warn("Images are built as virtual environments: real images (apt_install, from_registry, "
                 "Dockerfiles) need Debian's mmdebstrap (sudo apt-get install mmdebstrap skopeo umoci).")
        self.volumes = Volumes(settings.home)
        uid = isolation.uid if isolation is not None and isolation.enabled else os.getuid()
        self.buckets = Buckets(settings.home, config.bucket_endpoints_allowed(), uid)
        self.quota = ContainerQuota(settings.max_containers_per_workspace, settings.max_containers)
        self._draining: dict[WebEndpoint, asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closing = False
        # Variables that let a container call functions through this server (control/auth.Credentials).
        self.call_env = call_env
        self.sandboxes = Sandboxes(self)  # modal.Sandbox (server/sandboxes.py)

    def log(self, tag: str, container_id: str, stream: str, line: str, app_key: str | None = None,
            workspace: str | None = None) -> None:
        self.logs.append(container_id, stream, line, app_key, tag, workspace)
        self._log(tag, container_id, stream, line)
        if self.telemetry is not None:
            self.telemetry.log(container_id, stream, line, workspace, app_key, tag)

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

    def describe_containers(self, usage: bool = False, workspace: str | None = None) -> list[dict[str, Any]]:
        """The live containers (of one workspace, when given); with `usage`, each one's CPU time and memory,
        read from /proc."""
        now = time.time()
        live = {id(e) for v in self.apps.values() for e in v.all_endpoints()}
        rows = [
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
                **({"node": pc.backend.node_id} if getattr(pc.backend, "node_id", None) else {}),
                **(_usage(pc) if usage else {}),
            }
            for endpoint, pool, pc in self._containers()
            if workspace is None or endpoint.workspace == workspace
        ]
        for row in self.sandboxes.describe_containers(now):
            if workspace is not None and row["workspace"] != workspace:
                continue
            if usage:
                row.update(_usage(self.sandboxes.live[row["id"]]))
            rows.append(row)
        return rows

    def find_container(self, workspace: str, container_id: str) -> tuple[Pool | None, Any] | None:
        """A live container of `workspace` (another workspace's is as good as none): (its pool, it), or
        (None, the Sandbox) for a sandbox's container; both have `.id` and `.backend`."""
        sandbox = self.sandboxes.live.get(container_id)
        if sandbox is not None:
            return (None, sandbox) if sandbox.workspace == workspace else None
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
        if pool is None:  # a sandbox: terminated, as `sb.terminate()` does
            self._background(self.sandboxes.terminate(pc))
            return True
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
        scope = workspace or self.settings.workspace
        manifest = own_snapshots(manifest, scope)
        if not self.settings.local_paths:
            check_machine_paths(manifest)
            manifest = stage_uploads(manifest, bundle, self.settings.home, scope)
        hooks = hooks or BuildHooks()
        shown = hooks.built

        def built(image: BuiltImage) -> None:
            if not image.cached:
                self.metrics.built(scope, image.seconds)
            shown(image)

        hooks = dataclasses.replace(hooks, built=built)
        return await build_images(self.images, self.rootfs, manifest, hooks,
                                  self.secret_resolver(scope), scope, bundle, self.settings.image_cache_max,
                                  self.images_in_use)

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
        return container_root(self.settings.home, bundle, image, mounts)

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
        resolve = self.secret_resolver(workspace)
        for entry in [*manifest.functions, *manifest.calls]:  # s3fs mounts off the event loop
            for volume in entry.volumes:
                if "bucket" in volume:
                    await asyncio.to_thread(self.buckets.mount, workspace, volume["bucket"], resolve)
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
        await self.sandboxes.close()
        # Old versions still draining after a reload: stop their containers too.
        await asyncio.gather(*(e.close() for e in list(self._draining)), return_exceptions=True)
        for task in list(self._draining.values()):
            task.cancel()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.gateway.close()
        await self.backend.close()
        await self.buckets.close()
        if self.telemetry is not None:
            await asyncio.to_thread(self.telemetry.close)  # flushes what is still batched


__all__ = ["AppServer", "AppVersion", "EndpointInfo", "READY", "STARTING"]
