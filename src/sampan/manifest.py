"""The manifest: what the CLI learned from a user's script, as plain JSON-able data.

The CLI imports the script (in a fresh process), reads the App's registry and writes a manifest.
The server publishes it; each container gets the entry of its own function. Nothing here imports
user code, so the server never executes the script itself.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Any

FUNCTION_KIND = "function"  # a function or method called through the server, not over its own URL
SANDBOX_KIND = "sandbox"  # a modal.Sandbox's container: no user module, the agent (runtime/sandbox_agent.py)
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


def recipe_hash(steps: list[dict[str, Any]]) -> str:
    """Hash of an image recipe as the manifest carries it; the server sets it as SAMPAN_IMAGE_RECIPE in the
    image's containers, where `image.imports()` compares it with its own."""
    import hashlib

    return hashlib.sha256(json.dumps(steps, sort_keys=True).encode()).hexdigest()[:20]


# -- variants: `f.with_options(...)`, `.with_concurrency(...)`, `.with_batching(...)` ------------------
VARIANT_KEYS = {"resources", "env", "secrets", "volumes", "retries", "max_containers", "buffer_containers",
                "scaledown_window", "timeout", "max_inputs", "target_inputs", "batch"}
MAX_VARIANT_BYTES = 64 * 1024


def merge_variants(base: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """Chained variants merge as Modal's do: later values win, `resources` merge by field, and an
    option is never unset (None means "keep")."""
    out = dict(base)
    for key, value in new.items():
        if value is None:
            continue
        out[key] = {**out.get(key, {}), **value} if key == "resources" else value
    return out


def apply_variant(entry: FunctionEntry, variant: dict[str, Any]) -> FunctionEntry:
    """The function as a variant runs it: its own pool with these options. `secrets` and `volumes`
    replace the function's; `env` is one more secret, last. Raises ValueError on what is not a variant."""
    unknown = set(variant) - VARIANT_KEYS
    if unknown:
        raise ValueError(f"Unknown function options: {', '.join(sorted(unknown))}")
    if len(json.dumps(variant)) > MAX_VARIANT_BYTES:
        raise ValueError("The function's options are too large.")
    changes: dict[str, Any] = {}
    for key in ("max_containers", "buffer_containers", "scaledown_window", "timeout", "max_inputs", "target_inputs"):
        if key in variant:
            value = variant[key]
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"`{key}` must be a non-negative integer.")
            changes[key] = value
    if "resources" in variant:
        changes["resources"] = {**(entry.resources or {}), **dict(variant["resources"])}
    if "retries" in variant:
        changes["retries"] = variant["retries"]
    if "volumes" in variant:
        changes["volumes"] = tuple(variant["volumes"])
    secrets = tuple(variant["secrets"]) if "secrets" in variant else entry.secrets
    if "env" in variant:
        values = {str(k): str(v) for k, v in dict(variant["env"]).items() if v is not None}
        secrets = (*secrets, {"values": values})
    if secrets != entry.secrets:
        for ref in secrets:
            if not isinstance(ref, dict) or not (set(ref) <= {"name", "required_keys", "values"}):
                raise ValueError("A secret of the function's options is malformed.")
        changes["secrets"] = secrets
    if "batch" in variant:
        batch = dict(variant["batch"])
        changes["batch"] = {"max_batch_size": int(batch["max_batch_size"]), "wait_ms": int(batch["wait_ms"])}
        changes["max_inputs"] = changes["batch"]["max_batch_size"] * max(1, variant.get("max_inputs") or 1)
    return replace(entry, **changes)
