"""The manifest: what the CLI learned from a user's script, as plain JSON-able data.

The CLI imports the script (in a fresh process), reads the App's registry and writes a manifest.
The server publishes it; each container gets the entry of its own function. Nothing here imports
user code, so the server never executes the script itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .resources import Resources
from .sdk.app import NOT_HONOURED, App
from .sdk.functions import FunctionSpec
from .sdk.image import Image
from .sdk.secret import Secret

FUNCTION_KIND = "function"  # a function or method called through the server, not over its own URL
DEFAULT_SCALEDOWN_WINDOW = 60
DEFAULT_TIMEOUT = 300


@dataclass(frozen=True)
class FunctionEntry:
    """One web function (or web method of a class) as the server sees it."""

    tag: str
    kind: str
    web: dict[str, Any]
    cls_name: str | None = None
    method_name: str | None = None
    class_params: tuple[dict[str, Any], ...] = ()
    max_inputs: int = 1
    target_inputs: int | None = None
    min_containers: int = 0
    max_containers: int | None = None
    buffer_containers: int = 0
    scaledown_window: int = DEFAULT_SCALEDOWN_WINDOW
    timeout: int = DEFAULT_TIMEOUT
    startup_timeout: int | None = None
    image_env: dict[str, str] = field(default_factory=dict)
    # In order: App secrets, then the function's, then its `env=` (Modal's sugar for one more secret).
    # Each is {"name": ..., "required_keys": [...]} (resolved by the server) or {"values": {...}}.
    secrets: tuple[dict[str, Any], ...] = ()
    image: tuple[dict[str, Any], ...] = ()
    ignored: tuple[str, ...] = ()
    enable_memory_snapshot: bool = False
    is_generator: bool = False
    retries: dict[str, Any] | None = None  # {"max_retries", "backoff_coefficient", "initial_delay", "max_delay"}
    volumes: tuple[dict[str, Any], ...] = ()  # {"path", "name", "create_if_missing"}
    resources: dict[str, Any] | None = None  # resources.Resources.to_json(): cpu, memory, gpu
    schedule: dict[str, Any] | None = None  # {"cron", "timezone"} or {"period": {...}} (sampan/schedules.py)
    batch: dict[str, int] | None = None  # @modal.batched: {"max_batch_size", "wait_ms"}

    @property
    def function_name(self) -> str:
        return self.method_name or self.tag

    def to_json(self) -> dict[str, Any]:
        return {
            "tag": self.tag,
            "kind": self.kind,
            "web": self.web,
            "cls_name": self.cls_name,
            "method_name": self.method_name,
            "class_params": list(self.class_params),
            "max_inputs": self.max_inputs,
            "target_inputs": self.target_inputs,
            "min_containers": self.min_containers,
            "max_containers": self.max_containers,
            "buffer_containers": self.buffer_containers,
            "scaledown_window": self.scaledown_window,
            "timeout": self.timeout,
            "startup_timeout": self.startup_timeout,
            "image_env": self.image_env,
            "secrets": list(self.secrets),
            "image": list(self.image),
            "ignored": list(self.ignored),
            "enable_memory_snapshot": self.enable_memory_snapshot,
            "is_generator": self.is_generator,
            "retries": self.retries,
            "volumes": list(self.volumes),
            "resources": self.resources,
            "schedule": self.schedule,
            "batch": self.batch,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FunctionEntry:
        data = dict(data)
        for key in ("class_params", "secrets", "image", "ignored", "volumes"):
            data[key] = tuple(data.get(key) or ())
        return cls(**data)


@dataclass(frozen=True)
class Manifest:
    app_name: str | None
    module: str
    app_var: str
    functions: tuple[FunctionEntry, ...]
    other_functions: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    calls: tuple[FunctionEntry, ...] = ()  # functions and methods called with .remote()/.spawn()/.map()
    entrypoints: tuple[dict[str, Any], ...] = ()  # @app.local_entrypoint(): {"name", "params"}

    def to_json(self) -> dict[str, Any]:
        return {
            "app_name": self.app_name,
            "module": self.module,
            "app_var": self.app_var,
            "functions": [f.to_json() for f in self.functions],
            "other_functions": list(self.other_functions),
            "notes": list(self.notes),
            "calls": [f.to_json() for f in self.calls],
            "entrypoints": list(self.entrypoints),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Manifest:
        return cls(
            app_name=data["app_name"],
            module=data["module"],
            app_var=data["app_var"],
            functions=tuple(FunctionEntry.from_json(f) for f in data["functions"]),
            other_functions=tuple(data.get("other_functions") or ()),
            notes=tuple(data.get("notes") or ()),
            calls=tuple(FunctionEntry.from_json(f) for f in data.get("calls") or ()),
            entrypoints=tuple(data.get("entrypoints") or ()),
        )


def _secret_refs(secrets: list[Secret], env: dict[str, str | None] | None) -> tuple[dict[str, Any], ...]:
    refs: list[dict[str, Any]] = []
    for secret in secrets:
        if secret.name is not None:
            refs.append({"name": secret.name, "required_keys": list(secret.required_keys)})
        else:
            refs.append({"values": dict(secret.values)})
    function_env = {k: v for k, v in (env or {}).items() if v is not None}
    if function_env:
        refs.append({"values": function_env})
    return tuple(refs)


def compose_env(entry: FunctionEntry, resolve: Any) -> dict[str, str]:
    """The container's variables: the image's env, then each secret in order (later ones win).

    `resolve(name, required_keys)` returns a named secret's values or raises.
    """
    env = dict(entry.image_env)
    for ref in entry.secrets:
        if "name" in ref:
            env.update(resolve(ref["name"], ref.get("required_keys") or []))
        else:
            env.update(ref["values"])
    return env


def entry_for(app: App, spec: FunctionSpec) -> FunctionEntry:
    """The server's view of one function. App-level image and secrets apply unless overridden."""
    opts = spec.options
    image: Image | None = opts.get("image") or app.image
    legacy_mounts = [*getattr(app, "mounts", ()), *(opts.get("mounts") or ())]
    if legacy_mounts:  # `mounts=[modal.Mount...]` (Modal < 1.0): the `add_local_*` steps that replaced them
        from .sdk.image import Image as _Image

        image = image or _Image.debian_slim()
        for mount in legacy_mounts:
            image = mount.apply(image)
    secrets = [*app.secrets, *(opts.get("secrets") or ())]
    return FunctionEntry(
        tag=spec.tag,
        kind=spec.web.kind if spec.web is not None else FUNCTION_KIND,
        web=spec.web.to_json() if spec.web is not None else {},
        cls_name=spec.cls_name,
        method_name=spec.method_name,
        class_params=tuple(p.to_json() for p in spec.class_params),
        max_inputs=spec.max_inputs,
        target_inputs=spec.target_inputs,
        min_containers=opts.get("min_containers") or 0,
        max_containers=opts.get("max_containers"),
        buffer_containers=opts.get("buffer_containers") or 0,
        scaledown_window=int(opts.get("scaledown_window") or DEFAULT_SCALEDOWN_WINDOW),
        timeout=int(opts.get("timeout") or DEFAULT_TIMEOUT),
        startup_timeout=opts.get("startup_timeout"),
        image_env=dict(image.env_vars()) if image else {},
        secrets=_secret_refs(secrets, opts.get("env")),
        image=tuple(image.to_json()) if image else (),
        ignored=spec.ignored,
        enable_memory_snapshot=bool(opts.get("enable_memory_snapshot")),
        is_generator=spec.is_generator,
        retries=retries_json(opts.get("retries")),
        volumes=volumes_json({**app.volumes, **(opts.get("volumes") or {}),
                              **(opts.get("network_file_systems") or {})}),
        resources=Resources.parse(opts.get("cpu"), opts.get("memory"), opts.get("gpu")).to_json(),
        schedule=opts["schedule"].to_json() if opts.get("schedule") is not None else None,
        batch={"max_batch_size": spec.batch[0], "wait_ms": spec.batch[1]} if spec.batch else None,
    )


def build_manifest(app: App, module: str, app_var: str) -> Manifest:
    entries = tuple(entry_for(app, spec) for spec in app.web_specs())
    calls = tuple(entry_for(app, spec) for spec in app.call_specs())
    others = [tag for tag, f in app.functions.items() if f.spec.web is None]
    for cls in app.classes.values():
        others.extend(s.tag for s in cls.methods.values() if s.web is None)
    notes: list[str] = []
    seen: set[str] = set()
    all_specs = [f.spec for f in app.functions.values()]
    for cls in app.classes.values():
        all_specs.extend(cls.methods.values())
    for spec in all_specs:
        for key in spec.ignored:
            if key not in seen:
                seen.add(key)
                notes.append(f"`{key}=` is accepted but has no effect here: {NOT_HONOURED[key]}.")
    return Manifest(
        app_name=app.name,
        module=module,
        app_var=app_var,
        functions=entries,
        other_functions=tuple(others),
        notes=tuple(notes),
        calls=calls,
        entrypoints=tuple(entrypoint_json(name, f) for name, f in app.local_entrypoints.items()),
    )


def retries_json(retries: Any) -> dict[str, Any] | None:
    """`retries=N` or `modal.Retries(...)` as plain data (Modal's defaults: 1 s doubling, 60 s cap)."""
    if retries is None or retries == 0:
        return None
    if isinstance(retries, int):
        return {"max_retries": retries, "backoff_coefficient": 2.0, "initial_delay": 1.0, "max_delay": 60.0}
    return {"max_retries": retries.max_retries, "backoff_coefficient": retries.backoff_coefficient,
            "initial_delay": retries.initial_delay, "max_delay": retries.max_delay}


def entrypoint_json(name: str, f: Any) -> dict[str, Any]:
    """A local entrypoint and its parameters, which `sampan run` turns into --flags."""
    import inspect

    params = []
    for p in inspect.signature(f).parameters.values():
        annotation = p.annotation if isinstance(p.annotation, str) else getattr(p.annotation, "__name__", "str")
        params.append({"name": p.name, "type": annotation if annotation != "_empty" else "str",
                       "default": None if p.default is inspect.Parameter.empty else repr(p.default),
                       "required": p.default is inspect.Parameter.empty})
    return {"name": name, "params": params}


def volumes_json(volumes: dict[Any, Any]) -> tuple[dict[str, Any], ...]:
    """`volumes={"/data": Volume}` as plain data; anything that is not a Volume is refused clearly."""
    from .exception import InvalidError
    from .mountpaths import validate_mount_points
    from .sdk.volume import Volume

    out = []
    where: dict[str, list[str]] = {}
    from .cloud_bucket_mount import CloudBucketMount

    for path, volume in validate_mount_points(volumes):
        if isinstance(volume, CloudBucketMount):
            continue  # accepted, reported once as not mounted (sdk/app.py NOT_HONOURED)
        if not isinstance(volume, Volume):
            raise InvalidError(f"Object of type {type(volume)} mounted at '{path}' is not usable as a volume.")
        out.append({"path": path, **volume.to_json()})
        where.setdefault(volume.to_json()["name"], []).append(path)
    for paths in where.values():
        if len(paths) > 1:
            raise InvalidError("The same Volume cannot be mounted in multiple locations for the same function: "
                               + ", ".join(paths))
    return tuple(out)
