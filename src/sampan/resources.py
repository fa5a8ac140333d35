"""`cpu=`, `memory=` and `gpu=` as a backend can use them: pure decisions, no I/O.

Modal's forms (fact sheet §1.2): `cpu=2` or `cpu=(request, limit)` in cores (default request
0.125); `memory=1024` or `(request, limit)` in MiB (default 128); `gpu="A10G"`, `"H100:2"`,
`"any"`, or a list of those as a fallback ranking. `Resources.parse` validates them once, with
Modal's kind of messages; `ray_options` maps them onto a Ray actor's options; `choose` picks the
first acceptable GPU choice that some node can hold, or says why none can.

    >>> r = Resources.parse(cpu=(1, 2), memory=512, gpu="H100:2")
    >>> ray_options(r, r.gpus[0])
    {'num_cpus': 1.0, 'memory': 536870912, 'num_gpus': 2, 'accelerator_type': 'H100'}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .exception import InvalidError

DEFAULT_CPU = 0.125
MIB = 1 << 20
# Modal's GPU names -> Ray's accelerator types (ray.util.accelerators) where they differ.
_RAY_TYPES = {"A100-40GB": "A100-40G", "A100-80GB": "A100-80G", "A10": "A10G"}


@dataclass(frozen=True)
class GpuChoice:
    type: str | None  # None: any GPU
    count: int

    def __str__(self) -> str:
        return f"{self.type or 'any'}:{self.count}"


@dataclass(frozen=True)
class Resources:
    cpu: float = DEFAULT_CPU
    cpu_limit: float | None = None
    memory_mib: int | None = None
    memory_limit_mib: int | None = None
    gpus: tuple[GpuChoice, ...] = field(default=())  # fallback ranking; empty: no GPU
    # Modal's `region=` (any of) and `cloud=`: node labels on the Ray backend (backends/placement.py).
    regions: tuple[str, ...] = ()
    cloud: str | None = None

    @classmethod
    def parse(cls, cpu: Any = None, memory: Any = None, gpu: Any = None, region: Any = None,
              cloud: Any = None) -> Resources:
        request, limit = _pair(cpu, "cpu", float)
        mem, mem_limit = _pair(memory, "memory", int)
        if request is not None and request <= 0:
            raise InvalidError(f"Invalid cpu={cpu!r}: the request must be a positive number of cores.")
        if limit is not None and request is not None and limit < request:
            raise InvalidError(f"Invalid cpu={cpu!r}: the limit must be at least the request.")
        if mem is not None and mem <= 0:
            raise InvalidError(f"Invalid memory={memory!r}: the request must be a positive number of MiB.")
        if mem_limit is not None and mem is not None and mem_limit < mem:
            raise InvalidError(f"Invalid memory={memory!r}: the limit must be at least the request.")
        choices = gpu if isinstance(gpu, (list, tuple)) else ([] if gpu is None else [gpu])
        regions = [region] if isinstance(region, str) else list(region or [])
        if not all(isinstance(r, str) and r for r in regions):
            raise InvalidError(f"Invalid region={region!r}: use a region name or a list of them.")
        if cloud is not None and (not isinstance(cloud, str) or not cloud):
            raise InvalidError(f"Invalid cloud={cloud!r}: use a cloud provider's name.")
        return cls(DEFAULT_CPU if request is None else request, limit, mem, mem_limit,
                   tuple(_gpu(c) for c in choices), tuple(regions), cloud)

    def to_json(self) -> dict[str, Any]:
        return {"cpu": self.cpu, "cpu_limit": self.cpu_limit, "memory_mib": self.memory_mib,
                "memory_limit_mib": self.memory_limit_mib, "gpus": [[g.type, g.count] for g in self.gpus],
                **({"regions": list(self.regions)} if self.regions else {}),
                **({"cloud": self.cloud} if self.cloud else {})}

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> Resources:
        """What `to_json` wrote; ValueError for anything else (it comes from a client)."""
        if not data:
            return cls()

        def number(value: Any, integer: bool = False) -> Any:
            kinds = (int,) if integer else (int, float)
            if value is not None and (isinstance(value, bool) or not isinstance(value, kinds) or value < 0):
                raise ValueError(f"invalid resources: {value!r}")
            return value

        if not isinstance(data, dict):
            raise ValueError("invalid resources")
        gpus = data.get("gpus") or []
        if not isinstance(gpus, list) or not all(isinstance(g, list) and len(g) == 2 and (g[0] is None or
                                                 isinstance(g[0], str)) and isinstance(g[1], int) and g[1] > 0
                                                 for g in gpus):
            raise ValueError("invalid resources: gpus")
        regions = data.get("regions") or []
        cloud = data.get("cloud")
        if not isinstance(regions, list) or not all(isinstance(r, str) for r in regions):
            raise ValueError("invalid resources: regions")
        if cloud is not None and not isinstance(cloud, str):
            raise ValueError("invalid resources: cloud")
        return cls(number(data["cpu"]), number(data.get("cpu_limit")), number(data.get("memory_mib"), True),
                   number(data.get("memory_limit_mib"), True), tuple(GpuChoice(t, c) for t, c in gpus),
                   tuple(regions), cloud)

    def describe(self, gpu: GpuChoice | None = None) -> str:
        parts = [f"cpu={self.cpu:g}"]
        if self.memory_mib:
            parts.append(f"memory={self.memory_mib} MiB")
        if gpu is not None:
            parts.append(f"gpu={gpu}")
        elif self.gpus:
            parts.append("gpu=" + " or ".join(str(g) for g in self.gpus))
        if self.regions:
            parts.append("region=" + " or ".join(self.regions))
        if self.cloud:
            parts.append(f"cloud={self.cloud}")
        return ", ".join(parts)


def _pair(value: Any, name: str, kind: type) -> tuple[Any, Any]:
    if value is None:
        return None, None
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise InvalidError(f"Invalid {name}={value!r}: use a number or a (request, limit) tuple.")
        return kind(value[0]), kind(value[1])
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidError(f"Invalid {name}={value!r}: use a number or a (request, limit) tuple.")
    return kind(value), None


def _gpu(spec: Any) -> GpuChoice:
    if hasattr(spec, "_modal_gpu_string"):  # a legacy `modal.gpu.H100(count=2)` object
        spec = spec._modal_gpu_string()
    if not isinstance(spec, str) or not spec:
        raise InvalidError(f"Invalid gpu={spec!r}: use a GPU type such as 'A10G' or 'H100:2', or 'any'.")
    name, _, count = spec.partition(":")
    if count and (not count.isdigit() or int(count) < 1):
        raise InvalidError(f"Invalid gpu={spec!r}: the count after ':' must be a positive integer.")
    kind = None if name.lower() == "any" else name.upper()
    return GpuChoice(kind, int(count) if count else 1)


def ray_options(resources: Resources, gpu: GpuChoice | None) -> dict[str, Any]:
    """A Ray actor's options for one container (the request, not the limit: Ray schedules requests)."""
    options: dict[str, Any] = {"num_cpus": float(resources.cpu)}
    if resources.memory_mib:
        options["memory"] = resources.memory_mib * MIB
    if gpu is not None:
        options["num_gpus"] = gpu.count
        if gpu.type is not None:
            options["accelerator_type"] = _RAY_TYPES.get(gpu.type, gpu.type)
    return options


def fits(options: dict[str, Any], node: dict[str, float]) -> bool:
    """Could a node with these total resources ever hold a container with these options?"""
    if node.get("CPU", 0.0) < options.get("num_cpus", 0.0):
        return False
    if node.get("memory", 0.0) < options.get("memory", 0):
        return False
    if node.get("GPU", 0.0) < options.get("num_gpus", 0):
        return False
    kind = options.get("accelerator_type")
    return kind is None or f"accelerator_type:{kind}" in node


def choose(resources: Resources, nodes: list[dict[str, float]]) -> tuple[GpuChoice | None, dict[str, Any]]:
    """The first choice of the ranking that some node can hold, with its options; else InvalidError
    naming what was asked and what the largest node has (instead of an actor pending forever)."""
    for gpu in resources.gpus or (None,):
        options = ray_options(resources, gpu)
        if any(fits(options, node) for node in nodes):
            return gpu, options
    biggest = max(nodes, key=lambda n: (n.get("GPU", 0), n.get("CPU", 0), n.get("memory", 0)), default={})
    memory = int(biggest.get("memory", 0) // MIB)
    has = f"cpu={biggest.get('CPU', 0):g}, memory={memory} MiB, gpu={biggest.get('GPU', 0):g}"
    types = sorted(k.split(":", 1)[1] for n in nodes for k in n if k.startswith("accelerator_type:"))
    raise InvalidError(
        f"No node of the Ray cluster can hold a container with {resources.describe()}: the largest has {has}"
        + (f" (GPU types: {', '.join(types)})" if types else "") + "."
    )
