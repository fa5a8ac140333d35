"""Secrets, Volumes and retries as the manifest carries them: what `@app.function()` declared
(sdk/describe.py) and what `.with_options()` overrides (sdk/variants.py) both write this way."""

from __future__ import annotations

from typing import Any

from ..cloud_bucket_mount import CloudBucketMount
from ..exception import InvalidError
from ..mountpaths import validate_mount_points
from .secret import Secret
from .volume import Volume


def secret_refs(secrets: list[Secret], env: dict[str, str | None] | None) -> tuple[dict[str, Any], ...]:
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


def retries_json(retries: Any) -> dict[str, Any] | None:
    """`retries=N` or `modal.Retries(...)` as plain data (Modal's defaults: 1 s doubling, 60 s cap)."""
    if retries is None or retries == 0:
        return None
    if isinstance(retries, int):
        return {"max_retries": retries, "backoff_coefficient": 2.0, "initial_delay": 1.0, "max_delay": 60.0}
    return {"max_retries": retries.max_retries, "backoff_coefficient": retries.backoff_coefficient,
            "initial_delay": retries.initial_delay, "max_delay": retries.max_delay}


def volumes_json(volumes: dict[Any, Any]) -> tuple[dict[str, Any], ...]:
    """`volumes={"/data": Volume}` as plain data; anything that is not a Volume is refused clearly."""
    out = []
    where: dict[str, list[str]] = {}
    for path, volume in validate_mount_points(volumes):
        if isinstance(volume, CloudBucketMount):  # mounted by the server (server/buckets.py)
            ref = secret_refs([volume.secret], None)[0] if volume.secret is not None else None
            out.append({"path": path, "bucket": volume.to_json(ref)})
            continue
        if not isinstance(volume, Volume):
            raise InvalidError(f"Object of type {type(volume)} mounted at '{path}' is not usable as a volume.")
        out.append({"path": path, **volume.to_json()})
        where.setdefault(volume.to_json()["name"], []).append(path)
    for paths in where.values():
        if len(paths) > 1:
            raise InvalidError("The same Volume cannot be mounted in multiple locations for the same function: "
                               + ", ".join(paths))
    return tuple(out)
