"""From an App to its manifest (manifest.py): what the CLI sends the server about a user's script.

The SDK side of the manifest: it reads the handles `@app.function()` and `@app.cls()` made and turns
them into plain data, so that the server never needs the SDK or the user's code to know an app.
"""

from __future__ import annotations

import inspect
from typing import Any

from ..cloud_bucket_mount import CloudBucketMount
from ..exception import InvalidError
from ..manifest import DEFAULT_SCALEDOWN_WINDOW, DEFAULT_TIMEOUT, FUNCTION_KIND, FunctionEntry, Manifest
from ..mountpaths import validate_mount_points
from ..resources import Resources
from .app import NOT_HONOURED, App
from .functions import FunctionSpec
from .image import Image
from .secret import Secret
from .volume import Volume


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


def entry_for(app: App, spec: FunctionSpec) -> FunctionEntry:
    """The server's view of one function. App-level image and secrets apply unless overridden."""
    opts = spec.options
    image: Image | None = opts.get("image") or app.image
    legacy_mounts = [*getattr(app, "mounts", ()), *(opts.get("mounts") or ())]
    if legacy_mounts:  # `mounts=[modal.Mount...]` (Modal < 1.0): the `add_local_*` steps that replaced them
        image = image or Image.debian_slim()
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
    params = []
    for p in inspect.signature(f).parameters.values():
        annotation = p.annotation if isinstance(p.annotation, str) else getattr(p.annotation, "__name__", "str")
        params.append({"name": p.name, "type": annotation if annotation != "_empty" else "str",
                       "default": None if p.default is inspect.Parameter.empty else repr(p.default),
                       "required": p.default is inspect.Parameter.empty})
    return {"name": name, "params": params}


def volumes_json(volumes: dict[Any, Any]) -> tuple[dict[str, Any], ...]:
    """`volumes={"/data": Volume}` as plain data; anything that is not a Volume is refused clearly."""
    out = []
    where: dict[str, list[str]] = {}
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
