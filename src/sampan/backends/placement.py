"""Which node of a Ray cluster a container goes to: pure decisions, no Ray, no I/O.

The Ray backend starts containers through one agent per node (backends/node_agent.py) instead of a
Ray actor per container, so it keeps the books Ray kept for actors: what each node has in all
(`NodeInfo.resources`, as Ray reports it) and what the containers placed there asked for (`used`).

    place(request, nodes, used, policy)  ->  a node id, or None while none has room now

`spread` (the default) puts a container on the node with the fewest containers of its pool, then
the fewest containers, then the one where the least of its CPUs would be asked for, so that a pool's
containers land on different nodes; `pack` fills the busiest node that still
has room, leaving others idle (to be scaled down by whoever runs the cluster). Modal's `region=` and
`cloud=` become node labels (`ray start --labels region=us-east`) or custom resources
(`--resources '{"region:us-east": 1}'`): a node qualifies when it has either.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

POLICIES = ("spread", "pack")
EPSILON = 1e-9
COUNT = "#containers"  # kept in the books beside the resources: what `spread` evens out first


@dataclass(frozen=True)
class NodeInfo:
    id: str
    resources: Mapping[str, float]  # Ray's totals: CPU, memory (bytes), GPU, accelerator_type:X, custom
    labels: Mapping[str, str] = field(default_factory=dict)


def demand(options: Mapping[str, Any]) -> dict[str, float]:
    """Ray actor options (resources.ray_options) as amounts of the node's resources."""
    out = {"CPU": float(options.get("num_cpus", 0.0)), COUNT: 1.0}
    if options.get("memory"):
        out["memory"] = float(options["memory"])
    if options.get("num_gpus"):
        out["GPU"] = float(options["num_gpus"])
    return out


def located(node: NodeInfo, regions: Iterable[str] = (), cloud: str | None = None) -> bool:
    """Does the node satisfy `region=` (any of them) and `cloud=`, by label or custom resource?"""
    def has(key: str, value: str) -> bool:
        return node.labels.get(key) == value or node.resources.get(f"{key}:{value}", 0) > 0

    wanted = list(regions)
    if wanted and not any(has("region", r) for r in wanted):
        return False
    return cloud is None or has("cloud", cloud)


def free(node: NodeInfo, used: Mapping[str, float]) -> dict[str, float]:
    return {key: node.resources.get(key, 0.0) - used.get(key, 0.0) for key in ("CPU", "memory", "GPU")}


def fits_now(need: Mapping[str, float], node: NodeInfo, used: Mapping[str, float]) -> bool:
    room = free(node, used)
    return all(room.get(key, 0.0) + EPSILON >= amount for key, amount in need.items() if key != COUNT)


def place(options: Mapping[str, Any], nodes: Iterable[NodeInfo], used: Mapping[str, Mapping[str, float]],
          policy: str = "spread", avoid: Iterable[str] = (), regions: Iterable[str] = (),
          cloud: str | None = None, siblings: Mapping[str, int] | None = None) -> str | None:
    """The node for one container with these Ray options, or None when no node has room now.

    `used`: per node id, what its containers asked for. `siblings`: per node id, how many containers
    of the same pool run there (what `spread` evens out first). `avoid`: nodes that must not get this
    one (a `web_server` function already listening there on a node without the sandbox)."""
    siblings = siblings or {}
    if policy not in POLICIES:
        raise ValueError(f"unknown placement policy {policy!r}: use one of {', '.join(POLICIES)}")
    need = demand(options)
    kind = options.get("accelerator_type")
    skip = set(avoid)
    wanted = list(regions)
    candidates = []
    for node in nodes:
        if node.id in skip or not located(node, wanted, cloud):
            continue
        if kind is not None and f"accelerator_type:{kind}" not in node.resources:
            continue
        taken = used.get(node.id, {})
        if not fits_now(need, node, taken):
            continue
        cpus = node.resources.get("CPU", 0.0) or 1.0
        load = (taken.get("CPU", 0.0) + need["CPU"]) / cpus
        candidates.append((siblings.get(node.id, 0), taken.get(COUNT, 0.0), load, node.id))
    if not candidates:
        return None
    if policy == "pack":
        return max(candidates, key=lambda c: (c[2], c[1], _reverse(c[3])))[3]
    return min(candidates)[3]


def _reverse(text: str) -> tuple[int, ...]:
    """A key that orders strings backwards, so that `max` breaks ties by the smallest id as `min` does."""
    return tuple(-ord(ch) for ch in text)


def add(used: dict[str, dict[str, float]], node_id: str, need: Mapping[str, float], sign: int = 1) -> None:
    """Book (or, with sign=-1, give back) a container's demand on a node."""
    books = used.setdefault(node_id, {})
    for key, amount in need.items():
        books[key] = max(0.0, books.get(key, 0.0) + sign * amount)
