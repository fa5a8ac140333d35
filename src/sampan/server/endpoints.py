"""One published function as the server holds it: a `WebEndpoint` (its pools, one per set of class
parameters, its image and container spec) and an `AppVersion` (every endpoint of one version of an app).

The app server (apps.py) publishes and swaps versions; this module says what one endpoint is.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from ..backends.base import ContainerSpec
from ..classparams import ClassParam, resolve_class_params
from ..exception import InvalidError
from ..manifest import FunctionEntry, Manifest, apply_variant, compose_env, recipe_hash
from ..mountpaths import reroot
from . import autoscaler
from .autoscaler import PoolConfig
from .bundle import Bundle
from .gateway.errors import INVALID_CLASS_PARAMETERS, TOO_MANY_POOLS, GatewayError
from .images.builder import BuiltImage
from .pool import Pool

if TYPE_CHECKING:
    from .apps import AppServer

WARM_TIMEOUT_S = 120.0


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


class WebEndpoint:
    """One web function of one app version: its pools (one per class-parameter values)."""

    def __init__(self, server: AppServer, version: AppVersion, entry: FunctionEntry, subdomain: str,
                 truncated: bool, image: BuiltImage | None = None, env: dict[str, str] | None = None) -> None:
        self.server = server
        self.version = version
        self.entry = entry
        self.image = image
        resolve = server.secret_resolver(version.workspace)
        mounts = [(v["path"], server.buckets.mount(version.workspace, v["bucket"], resolve) if "bucket" in v
                   else server.volumes.dir(version.workspace, v["name"], v.get("create_if_missing", False)))
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
        self.variants: dict[str, WebEndpoint] = {}  # `.with_options(...)` and friends, by their options
        # A `@modal.sessioned()` server: requests carry a session token (server/sessions.py). Read per request.
        self.sessioned = bool(entry.web.get("sessioned"))
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
            raise GatewayError(400, INVALID_CLASS_PARAMETERS.format(reason=exc)) from None
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

    def variant(self, options: dict[str, Any] | None) -> WebEndpoint:
        """This function as `f.with_options(...)` (and friends) made it: an endpoint of its own, with its own
        pools, made on first use. Bounded as class-parameter pools are: a client may not mint them."""
        if not options:
            return self
        key = json.dumps(options, sort_keys=True)
        found = self.variants.get(key)
        if found is None:
            cap = self.server.settings.max_pools_per_function
            if len(self.variants) >= cap:
                raise GatewayError(429, TOO_MANY_POOLS.format(tag=self.tag, cap=cap, workspace=self.workspace))
            try:
                entry = apply_variant(self.entry, options)
            except (ValueError, KeyError, TypeError) as exc:
                raise InvalidError(str(exc)) from None
            image = self.image if entry.image == self.entry.image else None
            found = WebEndpoint(self.server, self.version, entry, self.subdomain, self.truncated, image)
            self.variants[key] = found
        return found

    def all_variants(self) -> list[WebEndpoint]:
        """This endpoint and its variants: what a version drains, closes and lists."""
        return [self, *self.variants.values()]

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
            refuse_when_full=bool(self.entry.web.get("refuse_when_full")),
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
        return [v for e in (*self.endpoints.values(), *self.callables.values()) for v in e.all_variants()]


