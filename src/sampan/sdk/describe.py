"""From an App to its manifest (manifest.py): what the CLI sends the server about a user's script.

The SDK side of the manifest: it reads the handles `@app.function()` and `@app.cls()` made and turns
them into plain data, so that the server never needs the SDK or the user's code to know an app.
"""

from __future__ import annotations

import inspect
from typing import Any

from ..manifest import DEFAULT_SCALEDOWN_WINDOW, DEFAULT_TIMEOUT, FUNCTION_KIND, FunctionEntry, Manifest
from ..resources import Resources
from .app import NOT_HONOURED, App
from .functions import FunctionSpec
from .image import Image
from .refs import retries_json, secret_refs, volumes_json


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
        secrets=secret_refs(secrets, opts.get("env")),
        image=tuple(image.to_json()) if image else (),
        ignored=spec.ignored,
        enable_memory_snapshot=bool(opts.get("enable_memory_snapshot")),
        is_generator=spec.is_generator,
        retries=retries_json(opts.get("retries")),
        volumes=volumes_json({**app.volumes, **(opts.get("volumes") or {}),
                              **(opts.get("network_file_systems") or {})}),
        resources=Resources.parse(opts.get("cpu"), opts.get("memory"), opts.get("gpu"), opts.get("region"),
                                  opts.get("cloud")).to_json(),
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


def entrypoint_json(name: str, f: Any) -> dict[str, Any]:
    """A local entrypoint and its parameters, which `sampan run` turns into --flags."""
    params = []
    for p in inspect.signature(f).parameters.values():
        annotation = p.annotation if isinstance(p.annotation, str) else getattr(p.annotation, "__name__", "str")
        params.append({"name": p.name, "type": annotation if annotation != "_empty" else "str",
                       "default": None if p.default is inspect.Parameter.empty else repr(p.default),
                       "required": p.default is inspect.Parameter.empty})
    return {"name": name, "params": params}
