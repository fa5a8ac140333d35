"""`Function.with_options/with_concurrency/with_batching` (and `Cls.*`): variants of a function.

A variant is the same function with some options changed; on the server it gets a pool of its own
(manifest.apply_variant), created on its first call. Here the options are checked with Modal's
rules and written as the manifest writes them; variants chain, later values winning
(manifest.merge_variants).
"""

from __future__ import annotations

import copy
from typing import Any

from ..exception import InvalidError
from ..manifest import merge_variants
from ..resources import Resources
from .partial import check_batching, check_concurrency
from .refs import retries_json, secret_refs, volumes_json


def options(*, cpu: Any = None, memory: Any = None, gpu: Any = None, env: dict[str, str | None] | None = None,
            secrets: Any = None, volumes: dict[Any, Any] | None = None, retries: Any = None,
            max_containers: int | None = None, buffer_containers: int | None = None,
            scaledown_window: int | None = None, timeout: int | None = None, region: Any = None, cloud: Any = None,
            routing_region: Any = None) -> dict[str, Any]:
    """`with_options(...)` as a variant. `region`, `cloud` and `routing_region` are accepted (no meaning on
    a self-hosted server, as at `@app.function`)."""
    out: dict[str, Any] = {}
    if cpu is not None or memory is not None or gpu is not None:
        parsed = Resources.parse(cpu, memory, gpu).to_json()
        given = {"cpu": cpu, "cpu_limit": cpu, "memory_mib": memory, "memory_limit_mib": memory, "gpus": gpu}
        keys = {k for k, v in given.items() if v is not None}
        out["resources"] = {k: v for k, v in parsed.items() if k in keys}
    if env:
        out["env"] = {k: v for k, v in env.items() if v is not None}
    if secrets:
        out["secrets"] = list(secret_refs(list(secrets), None))
    if volumes:
        out["volumes"] = list(volumes_json(volumes))
    if retries is not None:
        out["retries"] = retries_json(retries)
    for key, value in (("max_containers", max_containers), ("buffer_containers", buffer_containers),
                       ("scaledown_window", scaledown_window), ("timeout", timeout)):
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise InvalidError(f"`{key}` must be a non-negative integer.")
            out[key] = value
    return out


def concurrency(*, max_inputs: int, target_inputs: int | None = None) -> dict[str, Any]:
    target = check_concurrency(max_inputs, target_inputs)
    return {"max_inputs": max_inputs, **({"target_inputs": target} if target is not None else {})}


def batching(*, max_batch_size: int, wait_ms: int) -> dict[str, Any]:
    check_batching(max_batch_size, wait_ms)
    return {"batch": {"max_batch_size": int(max_batch_size), "wait_ms": int(wait_ms)}}


class VariantMixin:
    """`with_options`, `with_concurrency` and `with_batching` for a handle that keeps its options in
    `_variant` (a Function, a Cls, their `from_name` lookups): each returns a new handle."""

    _variant: dict[str, Any] = {}  # noqa: RUF012 - never mutated: each variant gets a new dict

    def _with(self, change: dict[str, Any]) -> Any:
        other = copy.copy(self)
        other._variant = merge_variants(self._variant, change)
        return other

    def with_options(self, **kwargs: Any) -> Any:
        """A variant of this function with other resources, secrets, volumes, retries, scaling or timeout."""
        return self._with(options(**kwargs))

    def with_concurrency(self, *, max_inputs: int, target_inputs: int | None = None) -> Any:
        return self._with(concurrency(max_inputs=max_inputs, target_inputs=target_inputs))

    def with_batching(self, *, max_batch_size: int, wait_ms: int) -> Any:
        return self._with(batching(max_batch_size=max_batch_size, wait_ms=wait_ms))
